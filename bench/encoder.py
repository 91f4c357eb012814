"""Benchmark: our XLM-R vs transformers' XLMRobertaForTokenClassification, side by side.

    python bench/encoder.py                       # base size, both shapes, fp32 + bf16, + load bench
    python bench/encoder.py --small --reps 2      # quick smoke run
    python bench/encoder.py --skip-load

Modes: fwd; fwd+bwd (both models with a dense (V, H) word-embedding gradient, like for like);
fwd+bwd* (ours with the sparse word-embedding gradient that core.loop trains with -- the rows a
batch touched -- vs the same reference).

Both models hold the same random weights (ours imported from the transformers model through
the key map, so the outputs are checked too). Repetitions are interleaved ours/ref (order
alternating) so machine noise hits both alike; we report the median tokens/s and the ratio
ours/ref (> 1 = we are faster). Tokens = real (non-pad) subword positions; batches have
realistic padding (lengths uniform in [T/2, T]). Roofline: the model FLOPs of the step
(bench/flops.py, counted from the shapes on the real tokens) per wall-clock second, over the
GEMM peak measured at the start in the same process, precision and thread count
(bench/matmul.py gemm_peak).
Load: a fresh subprocess per loader reports its RSS high-water mark before and after loading
a base-size checkpoint written by transformers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.flops import flops_of_batch, phase_summary  # noqa: E402
from bench.matmul import gemm_peak  # noqa: E402
from core.precision import cpu_supports_bf16  # noqa: E402
from bench.same_weights import ours_like  # noqa: E402

BASE = dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
SMALL = BASE | dict(vocab_size=32000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=1024)
NUM_LABELS = 7


def make_models(size: dict, kernels: str = "fast"):
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification
    torch.manual_seed(0)
    hf_config = XLMRobertaConfig(**size, num_labels=NUM_LABELS)
    hf_config._attn_implementation = "sdpa"  # transformers' fastest CPU path
    ref = XLMRobertaForTokenClassification(hf_config)
    ours = ours_like(ref, "token-classification", NUM_LABELS, kernels, share=True)  # both only run inference
    return ours, ref


def make_batch(B: int, T: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T) bool
    ids = torch.randint(4, vocab, (B, T), generator=g).masked_fill(~mask, 1)  # (B, T)
    labels = torch.randint(0, NUM_LABELS, (B, T), generator=g).masked_fill(~mask, -100)
    return ids, mask, labels


def step(model, is_ref: bool, ids, mask, labels, train: bool, precision: str) -> None:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    with ctx:
        if is_ref:
            logits = model(input_ids=ids, attention_mask=mask.long()).logits
        else:
            logits = model(ids, mask)  # (B, T, K)
        if train:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
    if train:
        loss.backward()
        model.zero_grad(set_to_none=True)


def time_pair(ours, ref, batch, train: bool, precision: str, reps: int) -> dict[str, float]:
    """Median tokens/s of each model by wall clock and by process CPU time. On a shared machine
    CPU time is the steadier measure (other jobs steal wall time, not our CPU seconds); it equals
    the work done when torch runs one thread (--threads 1)."""
    ids, mask, labels = batch
    wall = {"ours": [], "ref": []}
    cpu = {"ours": [], "ref": []}
    for m in (ours, ref):
        m.train(train)
    grad = torch.enable_grad() if train else torch.inference_mode()
    with grad:
        for is_ref, m in ((False, ours), (True, ref)):  # warm-up
            step(m, is_ref, ids, mask, labels, train, precision)
        for r in range(reps):
            order = [("ours", False, ours), ("ref", True, ref)]
            for name, is_ref, m in (order if r % 2 == 0 else order[::-1]):
                t0, c0 = time.perf_counter(), time.process_time()
                step(m, is_ref, ids, mask, labels, train, precision)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    n = int(mask.sum())
    return {f"{k}_{clock}": n / statistics.median(d[k]) for clock, d in (("wall", wall), ("cpu", cpu))
            for k in ("ours", "ref")}


def bench_speed(size: dict, shapes, precisions, reps: int, kernels: str = "fast") -> list[dict]:
    ours, ref = make_models(size, kernels)
    ids, mask, _ = make_batch(2, 16, size["vocab_size"])
    with torch.no_grad():
        ours.eval(), ref.eval()
        diff = (ours(ids, mask) - ref(input_ids=ids, attention_mask=mask.long()).logits)[mask].abs().max()
    print(f"max |ours - ref| logits fp32: {diff:.2e}")
    rows = []
    peaks = {p: gemm_peak(p) for p in precisions}
    print("measured GEMM peak (bench/matmul.py gemm_peak, 2048^3, this process): "
          + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()))
    print("tokens/s (median); cpu = by process CPU time, wall = by wall clock; ratio = ours / ref;")
    print("roofline: model GFLOP/s by wall clock (bench/flops.py: matrix products on the real tokens) and % of the peak")
    print(f"{'mode':8} {'prec':5} {'BxT':7} {'ours cpu':>9} {'ref cpu':>9} {'ratio':>6}   "
          f"{'ours wall':>9} {'ref wall':>9} {'ratio':>6}   {'GFLOP/s ours (peak%)':>20} {'ref (peak%)':>12}")
    for precision in precisions:
        for B, T in shapes:
            batch = make_batch(B, T, size["vocab_size"], seed=B * T)
            if precision == precisions[0]:
                print(f"  {B}x{T} FLOPs by phase (fwd): {phase_summary(flops_of_batch(size, batch[1], NUM_LABELS, False))}")
            for mode in ("fwd", "fwd+bwd", "fwd+bwd*"):
                # fwd+bwd* = ours as core.loop trains it: the word-embedding gradient is sparse
                # (core.optim.build_optimizer sets it; LazyAdamW consumes it), no (V, H) dense grad
                ours.encoder.embeddings.word_embeddings.sparse = mode == "fwd+bwd*"
                t = time_pair(ours, ref, batch, mode != "fwd", precision, reps)
                flops = flops_of_batch(size, batch[1], NUM_LABELS, backward=mode != "fwd")
                per_token = flops["total"] / flops["tokens"]
                t |= dict(mode=mode, precision=precision, shape=f"{B}x{T}",
                          ratio_cpu=t["ours_cpu"] / t["ref_cpu"], ratio_wall=t["ours_wall"] / t["ref_wall"],
                          gflops_ours=per_token * t["ours_wall"] / 1e9, gflops_ref=per_token * t["ref_wall"] / 1e9,
                          peak_gflops=peaks[precision])
                rows.append(t)
                print(f"{mode:8} {precision:5} {B}x{T:<4} {t['ours_cpu']:9.0f} {t['ref_cpu']:9.0f} "
                      f"{t['ratio_cpu']:6.2f}   {t['ours_wall']:9.0f} {t['ref_wall']:9.0f} {t['ratio_wall']:6.2f}   "
                      f"{t['gflops_ours']:12.0f} ({100 * t['gflops_ours'] / peaks[precision]:3.0f}%) "
                      f"{t['gflops_ref']:6.0f} ({100 * t['gflops_ref'] / peaks[precision]:3.0f}%)", flush=True)
    return rows


LOADER = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import torch
from bench.memory import status_mb
which, folder, dtype = sys.argv[1], sys.argv[2], getattr(torch, sys.argv[3])
if which == "ref":
    from transformers import XLMRobertaForTokenClassification
else:
    from models import load_pretrained

before = status_mb("VmHWM")
t0 = time.perf_counter()
if which == "ref":
    m = XLMRobertaForTokenClassification.from_pretrained(folder, dtype=dtype)
else:
    m, _ = load_pretrained(folder, task="token-classification", dtype=dtype, with_tokenizer=False)
seconds = time.perf_counter() - t0
peak_load = status_mb("VmHWM")
# transformers maps the file lazily: weights are read from disk when first used. Touch every
# parameter's pages (one element per 4 KB page; no full-size temporary) so both loaders have
# really read all weights.
t0 = time.perf_counter()
total = sum(float(p.detach().reshape(-1)[::4096 // p.element_size()].float().sum()) for p in m.parameters())
touch = time.perf_counter() - t0
print(json.dumps(dict(seconds=seconds, touch_seconds=touch, before_mb=before, peak_load_mb=peak_load,
                      peak_mb=status_mb("VmHWM"), anon_mb=status_mb("RssAnon"), file_mb=status_mb("RssFile"),
                      params=sum(p.numel() for p in m.parameters()))))
"""


def bench_load(size: dict, reps: int) -> list[dict]:
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification
    root = str(Path(__file__).resolve().parent.parent)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        XLMRobertaForTokenClassification(XLMRobertaConfig(**size, num_labels=NUM_LABELS)).save_pretrained(d)
        size_mb = (Path(d) / "model.safetensors").stat().st_size / 2**20
        print(f"\nload a {size_mb:.0f} MB model.safetensors written by transformers (fresh subprocess each)")
        print("seconds: load, then touch = read every parameter once (transformers maps the file lazily);")
        print("MB: RSS high-water after imports (before), after load, after touch; resident anon/file at the end")
        print(f"{'dtype':9} {'loader':6} {'load s':>7} {'touch s':>8} {'before':>7} {'@load':>6} {'@touch':>7} "
              f"{'peak-before':>12} {'anon':>6} {'file':>6}")
        for dtype in ("float32", "bfloat16"):
            for r in range(reps):
                for which in (("ours", "ref") if r % 2 == 0 else ("ref", "ours")):
                    out = subprocess.run([sys.executable, "-c", LOADER.format(root=root), which, d, dtype],
                                         capture_output=True, text=True, check=True)
                    res = json.loads(out.stdout.strip().splitlines()[-1]) | dict(loader=which, dtype=dtype)
                    rows.append(res)
                    print(f"{dtype:9} {which:6} {res['seconds']:7.2f} {res['touch_seconds']:8.2f} "
                          f"{res['before_mb']:7.0f} {res['peak_load_mb']:6.0f} {res['peak_mb']:7.0f} "
                          f"{res['peak_mb'] - res['before_mb']:12.0f} {res['anon_mb']:6.0f} {res['file_mb']:6.0f}",
                          flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="a small config instead of xlm-roberta-base size")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--load-reps", type=int, default=1)
    ap.add_argument("--shapes", default="16x40,32x128")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--kernels", choices=("fast", "reference"), default="fast",
                    help="our encoder's kernels (models/encoder_fast.py)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    size = SMALL if args.small else BASE
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"fast bf16 (amx/avx512_bf16): {cpu_supports_bf16()}, size {'small' if args.small else 'base'}")
    rows = {}
    if not args.skip_speed:
        rows["speed"] = bench_speed(size, shapes, args.precisions.split(","), args.reps, args.kernels)
    if not args.skip_load:
        rows["load"] = bench_load(size, args.load_reps)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
