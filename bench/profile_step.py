"""Where the time of our training step goes: by phase and by operator (torch.profiler via core/profiler.py).

    python bench/profile_step.py --compare                               # base size, 32x128, bf16, reference/fast
    python bench/profile_step.py --small --shape 16x40 --precision fp32     # quick

The same step bench/train_step.py times for ours (models.heads.XLMRForTokenClassification +
core.loop.train_step with core.optim.build_optimizer and autocast), on the same batch. The
loop labels its phases (loss > forward, backward, optimizer); this script runs ``--warmup``
steps, then profiles ``--active`` steps and prints: wall time per step and per phase; the
operators by self time, grouped (matrix products, attention, elementwise, layout copies,
optimizer, other) and the top of the table; and the roofline of the step (bench/flops.py over
the measured GEMM peak). ``--trace DIR`` also writes trace.json / ops.txt there. ``--kernels``
picks the encoder's kernels (default fast); ``--compare`` profiles the same model with the
reference kernels (models/encoder.py: padded layout, torch's linear and F.dropout, sdpa), then
with the fast ones (models/encoder_fast.py: packing, the last layer on the selected rows, oneDNN
fp32 linear, fast dropout, manual attention while training), switched in place by use_kernels.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.flops import phase_summary  # noqa: E402
from bench.matmul import gemm_peak  # noqa: E402
from bench.train_step import BASE, SMALL, Ours, batch_flops, build_our_model, make_batch  # noqa: E402
from core.config import load_config  # noqa: E402
from core.profiler import Profiler  # noqa: E402
from models.encoder_fast import describe_kernels, use_kernels  # noqa: E402

GROUPS = (  # (group, substrings of aten op names); first match wins
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn_", "mkldnn::_linear",
                         "aten::baddbmm", "aten::_addmm")),
    ("attention (sdpa)", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("optimizer", ("adam", "_foreach", "_fused")),
    ("layout copies / casts", ("aten::copy_", "aten::to", "aten::_to_copy", "index_select", "index_copy",
                               "aten::contiguous", "aten::clone", "aten::cat", "aten::index", "nonzero",
                               "aten::t", "aten::transpose", "aten::view", "aten::reshape", "aten::permute",
                               "aten::unsqueeze", "aten::expand", "aten::as_strided", "aten::empty",
                               "aten::zeros", "aten::new_zeros", "aten::zero_", "aten::fill_", "embedding")),
    ("elementwise (norm, gelu, dropout, adds)", ("layer_norm", "gelu", "dropout", "aten::add", "aten::mul",
                                                 "aten::div", "aten::sub", "bernoulli", "native_dropout",
                                                 "aten::sum", "aten::softmax", "log_softmax", "nll_loss",
                                                 "aten::masked_fill", "aten::where", "aten::rsub", "aten::neg",
                                                 "aten::sqrt", "aten::linalg_vector_norm", "aten::norm",
                                                 "aten::clamp", "cross_entropy")),
)


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--shape", default="32x128")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--active", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--trace", help="also write trace.json and ops.txt into this folder")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3, help="interleaved unprofiled reference/fast steps (--compare)")
    ap.add_argument("--kernels", choices=("fast", "reference"), default="fast", help="the encoder's kernels")
    ap.add_argument("--compare", action="store_true",
                    help="profile with the reference kernels, then the fast ones")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = SMALL if args.small else BASE
    B, T = (int(x) for x in args.shape.split("x"))
    train_cfg = load_config(None, ["train.lr=5e-5", "train.weight_decay=0.01"]).train
    ours = Ours(build_our_model(size, args.kernels), train_cfg)
    ours.model.train()
    batch = make_batch(B, T, size["vocab_size"], seed=B * T)
    peak = gemm_peak(args.precision)
    flops = batch_flops(size, batch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; H{size['hidden_size']} "
          f"L{size['num_hidden_layers']}, {args.shape}, {args.precision}, {int(batch['attention_mask'].sum())} real "
          f"tokens; {flops['total'] / 1e9:.1f} GFLOP per step ({phase_summary(flops)}); measured {args.precision} "
          f"GEMM peak {peak:.0f} GFLOP/s")
    for kernels in ("reference", "fast") if args.compare else (args.kernels,):
        use_kernels(ours.model, kernels, announce=False)
        print(f"\n== {describe_kernels(ours.model)}")
        profile_once(ours, batch, args, flops, peak)
    if args.compare:  # reference / fast without the profiler: interleaved, order alternating
        times = {"reference": [], "fast": []}
        for r in range(args.reps):
            for kernels in (("reference", "fast") if r % 2 == 0 else ("fast", "reference")):
                use_kernels(ours.model, kernels, announce=False)
                t0 = time.perf_counter()
                ours.step(batch, args.precision)
                times[kernels].append(time.perf_counter() - t0)
        before, after = statistics_median(times["reference"]), statistics_median(times["fast"])
        ratios = [b / a for b, a in zip(times["reference"], times["fast"])]
        print(f"\ninterleaved, unprofiled, {args.reps} reps: reference {before * 1e3:.0f} ms "
              f"({flops['total'] / before / 1e9:.0f} GFLOP/s = {100 * flops['total'] / before / 1e9 / peak:.0f}% of peak), "
              f"fast {after * 1e3:.0f} ms ({flops['total'] / after / 1e9:.0f} GFLOP/s = "
              f"{100 * flops['total'] / after / 1e9 / peak:.0f}%); speed-up {statistics_median(ratios):.2f}x (median of "
              f"per-rep ratios {', '.join(f'{x:.2f}' for x in ratios)})")


def profile_once(ours, batch, args, flops, peak) -> None:
    run_dir = Path(args.trace) if args.trace else Path(tempfile.mkdtemp(prefix="profile_step_"))
    ours.profiler = Profiler(True, run_dir, torch.device("cpu"), wait=0, warmup=args.warmup, active=args.active,
                             record_shapes=False)
    walls = []
    with ours.profiler:
        for _ in range(args.warmup + args.active):
            t0 = time.perf_counter()
            ours.step(batch, args.precision)
            walls.append(time.perf_counter() - t0)
            ours.profiler.step()
    events = ours.profiler._prof.key_averages()
    ours.profiler = Profiler(False, ".", torch.device("cpu"))
    # unprofiled steps for the clean wall time
    clean = []
    for _ in range(args.active):
        t0 = time.perf_counter()
        ours.step(batch, args.precision)
        clean.append(time.perf_counter() - t0)
    n = args.active
    phases = {e.key: e.cpu_time_total / n / 1e3 for e in events if e.key in ("loss", "forward", "backward", "optimizer")}
    step_ms = statistics_median(clean) * 1e3
    achieved = flops["total"] / (step_ms / 1e3) / 1e9
    print(f"step {step_ms:.0f} ms unprofiled (median of {n}; {statistics_median(walls[args.warmup:]) * 1e3:.0f} ms "
          f"profiled); roofline {achieved:.0f} GFLOP/s = {100 * achieved / peak:.0f}% of the measured GEMM peak")
    print("phases (ms per step, profiled; loss includes forward): "
          + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
    grouped = defaultdict(float)
    rows = []
    for e in events:
        if e.key in ("loss", "forward", "backward", "optimizer") or e.key.startswith("ProfilerStep"):
            continue
        self_ms = e.self_cpu_time_total / n / 1e3
        grouped[group_of(e.key)] += self_ms
        rows.append((self_ms, e.key, e.count // n))
    total = sum(grouped.values())
    print("self time by group (ms per step, share of all operator self time):")
    for g, ms in sorted(grouped.items(), key=lambda kv: -kv[1]):
        print(f"  {g:42} {ms:8.0f}  {100 * ms / total:5.1f}%")
    print(f"top {args.top} operators by self time (ms per step, calls per step):")
    for ms, key, calls in sorted(rows, reverse=True)[:args.top]:
        print(f"  {key:60} {ms:8.1f}  {calls:6d}  [{group_of(key)}]", flush=True)
    if args.trace:
        print(f"trace: {run_dir / 'trace.json'}, table: {run_dir / 'ops.txt'}")


def statistics_median(values):
    import statistics
    return statistics.median(values)


if __name__ == "__main__":
    main()
