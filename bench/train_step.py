"""Benchmark: one full training step (forward, backward, clip, AdamW) -- ours vs the usual recipe.

    python bench/train_step.py                               # base size, 16x40 and 32x128, bf16 and fp32
    python bench/train_step.py --precisions bf16 --shapes 16x40 --reps 3
    python bench/train_step.py --small                       # quick smoke run
    python bench/train_step.py --active-rows 50000           # emulate late training (see below)

Ours: models.heads.XLMRForTokenClassification with the encoder's ``--kernels`` (default fast: the CPU
fast paths of models/encoder_fast.py) + core.loop.train_step with core.optim.build_optimizer
(fused AdamW, lazy-embedding AdamW with sparse embedding gradients) and core.precision's autocast.
Reference: transformers' XLMRobertaForTokenClassification (sdpa) + torch.optim.AdamW (foreach
default, HF decay groups) + clip_grad_norm_, as a Hugging Face fine-tuning script does it.
Both start from the same random weights (ours imported from the transformers model) and first
take one step in fp32 with dropout off on the same batch to show the update is the same.

Batches look like NER batches: lengths uniform in [T/2, T], ids drawn from a Zipf law over the
vocabulary (a few thousand distinct pieces dominate, as in real text), labels on ~70% of the
real tokens. The lazy optimizer only updates rows touched so far, so its cost grows with the
number of distinct pieces seen; ``--active-rows N`` marks N extra rows as touched before timing
(a German PAN-X epoch touches on the order of 10^4 of the 250,002 rows).
Timing: after warm-up, reps alternate ours/ref (order flipped each rep); median tokens/s (real
tokens) by wall clock and by process CPU time (steadier on a shared machine); ratio = ours/ref.
Roofline: each row's model GFLOP/s (bench/flops.py, fwd + bwd = 3 x fwd, real tokens only, the
last layer's queries on the labelled positions the loss reads: the useful work, the same count for both) by
wall clock, and its share of the GEMM peak measured at the start (bench/matmul.py gemm_peak).
Both models with their AdamW states take ~8.5 GB, plus ~4 GB of activations at 32x128:
``--sequential`` times the reference alone, frees it, then ours (fresh random weights) alone.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.flops import flops_of_batch, phase_summary  # noqa: E402
from bench.matmul import gemm_peak  # noqa: E402
from bench.same_weights import ours_like  # noqa: E402
from core.config import load_config  # noqa: E402
from core.lazy_adamw import LazyAdamW  # noqa: E402
from core.loop import train_step  # noqa: E402
from core.optim import build_optimizer, build_scheduler  # noqa: E402
from core.precision import autocast_context, build_grad_scaler, cpu_supports_bf16  # noqa: E402
from core.profiler import Profiler  # noqa: E402
from core.train_state import TrainState  # noqa: E402
from models import use_kernels  # noqa: E402
from models.encoder import XLMRConfig  # noqa: E402

BASE = dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
SMALL = BASE | dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
NUM_LABELS = 7
DEVICE = torch.device("cpu")


class TokenTask:
    """The loss our loop asks of a task: summed cross-entropy over labelled positions."""

    @staticmethod
    def loss(model, batch):  # as tasks/ner.py's: logits at the labelled positions only
        labelled = batch["labels"] != -100  # (B, T)
        logits = model(batch["input_ids"], batch["attention_mask"], select=labelled).float()  # (M, K)
        return F.cross_entropy(logits, batch["labels"][labelled], reduction="sum")


def batch_flops(size: dict, batch: dict) -> dict:
    """The useful FLOPs (fwd + bwd, bench/flops.py) of one step on a make_batch batch: real tokens,
    the last layer's queries on the labelled positions the loss reads."""
    return flops_of_batch(size, batch["attention_mask"], NUM_LABELS, backward=True, select=batch["labels"] != -100)


def make_models(size: dict, kernels: str = "fast"):
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    torch.manual_seed(0)
    hf_config = XLMRobertaConfig(**size, num_labels=NUM_LABELS)
    hf_config._attn_implementation = "sdpa"
    ref = XLMRobertaForTokenClassification(hf_config)
    ours = ours_like(ref, "token-classification", NUM_LABELS, kernels)  # a copy: both train
    return ours, ref


def make_batch(B: int, T: int, vocab: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T) bool
    zipf = 1.0 / torch.arange(1, vocab - 3, dtype=torch.float64)  # rank r has weight 1/r
    rank_to_id = torch.randperm(vocab - 4, generator=torch.Generator().manual_seed(0)) + 4
    ids = rank_to_id[torch.multinomial(zipf, B * T, replacement=True, generator=g)].view(B, T)  # (B, T)
    ids = ids.masked_fill(~mask, 1)
    ids[:, 0] = 0  # <s>
    labels = torch.randint(0, NUM_LABELS, (B, T), generator=g)  # (B, T)
    labels = labels.masked_fill(~mask | (torch.rand(B, T, generator=g) > 0.7), -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "n_tokens": int((labels != -100).sum())}


class Ours:
    def __init__(self, model, train_cfg):
        self.model = model
        self.optimizer = build_optimizer(model, train_cfg)
        self.state = TrainState(model, self.optimizer, build_scheduler(self.optimizer, train_cfg, 1000),
                                build_grad_scaler(DEVICE, "fp32"))
        self.profiler = Profiler(False, ".", DEVICE)  # bench/profile_step.py swaps in an enabled one

    def step(self, batch, precision):
        train_step(self.state, TokenTask, [batch], batch["n_tokens"], autocast_context(DEVICE, precision), 1.0,
                   self.profiler)


class Reference:
    def __init__(self, model, train_cfg):
        from transformers import get_linear_schedule_with_warmup

        self.model = model
        skip = {n for n, _ in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n}
        groups = [{"params": [p for n, p in model.named_parameters() if n not in skip],
                   "weight_decay": train_cfg.weight_decay},
                  {"params": [p for n, p in model.named_parameters() if n in skip], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, 0, 1000)

    def step(self, batch, precision):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with ctx:
            loss = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long(),
                              labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def check_same_update(ours: Ours, ref: Reference, batch: dict) -> None:
    """One fp32 step with dropout off: the same weights afterwards (up to float rounding)."""
    ours.model.eval(), ref.model.eval()
    ours.step(batch, "fp32")
    ref.step(batch, "fp32")
    ours.optimizer.materialize()
    pairs = {"word embeddings": (ours.model.encoder.embeddings.word_embeddings.weight,
                                 ref.model.roberta.embeddings.word_embeddings.weight),
             "classifier": (ours.model.classifier.weight, ref.model.classifier.weight)}
    for name, (a, b) in pairs.items():
        print(f"after one step, max |ours - ref| {name}: {(a - b).abs().max():.2e}")
    ours.model.train(), ref.model.train()


def mark_active(ours: Ours, rows: int) -> None:
    """Emulate a run that has already touched ``rows`` more embedding rows (they now update every step)."""
    if not rows or not isinstance(ours.optimizer, LazyAdamW):
        return
    weight = ours.model.encoder.embeddings.word_embeddings.weight
    state = ours.optimizer.state[weight]
    extra = torch.randperm(weight.shape[0], generator=torch.Generator().manual_seed(1))[:rows]
    ours.optimizer.activate(weight, state, extra)


def time_pair(ours: Ours, ref: Reference, batch: dict, precision: str, reps: int, warmup: int) -> dict:
    wall, cpu = {"ours": [], "ref": []}, {"ours": [], "ref": []}
    for _ in range(warmup):
        ours.step(batch, precision)
        ref.step(batch, precision)
    for r in range(reps):
        order = [("ours", ours), ("ref", ref)]
        for name, runner in (order if r % 2 == 0 else order[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            runner.step(batch, precision)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    n = int(batch["attention_mask"].sum())
    return {f"{k}_{clock}": n / statistics.median(d[k]) for clock, d in (("wall", wall), ("cpu", cpu))
            for k in ("ours", "ref")}


def time_alone(runner, batch: dict, precision: str, reps: int, warmup: int) -> dict:
    wall, cpu = [], []
    for _ in range(warmup):
        runner.step(batch, precision)
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        runner.step(batch, precision)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    n = int(batch["attention_mask"].sum())
    return {"wall": n / statistics.median(wall), "cpu": n / statistics.median(cpu)}


def run_sequential(runners: dict, size: dict, cases, args, train_cfg) -> list[tuple]:
    """Half the memory: time the reference alone, free it, then ours alone (no interleaving).

    ``runners`` is emptied so the models can be freed.
    """
    runners.pop("ours")
    ref = runners.pop("ref")
    gc.collect()
    results = {}
    for precision, (B, T) in cases:
        results[(precision, B, T)] = time_alone(ref, make_batch(B, T, size["vocab_size"], seed=B * T), precision,
                                                args.reps, args.warmup)
    del ref
    gc.collect()
    ours = Ours(build_our_model(size, args.kernels), train_cfg)
    mark_active(ours, args.active_rows)
    rows = []
    for precision, (B, T) in cases:
        mine = time_alone(ours, make_batch(B, T, size["vocab_size"], seed=B * T), precision, args.reps, args.warmup)
        theirs = results[(precision, B, T)]
        rows.append((precision, B, T, {"ours_cpu": mine["cpu"], "ref_cpu": theirs["cpu"], "ours_wall": mine["wall"],
                                       "ref_wall": theirs["wall"]}, active_rows(ours)))
    return rows


def build_our_model(size: dict, kernels: str = "fast"):
    from models.heads import XLMRForTokenClassification

    config = XLMRConfig.from_hf_dict(dict(size, initializer_range=0.02))
    torch.manual_seed(0)
    model = use_kernels(XLMRForTokenClassification(config, NUM_LABELS), kernels)
    model.init_weights()
    return model


def active_rows(ours: Ours) -> int:
    weight = ours.model.encoder.embeddings.word_embeddings.weight
    active = ours.optimizer.state[weight].get("active") if weight in ours.optimizer.state else None
    return int(active.sum()) if active is not None else weight.shape[0]


PEAKS: dict[str, float] = {}  # measured GEMM peak per precision (filled in main)


def print_row(precision, B, T, t, n_active, size: dict | None = None) -> None:
    """One table row; with ``size``, the roofline: model GFLOP/s of the step (fwd + bwd, bench/flops.py)
    by wall clock and its share of the measured GEMM peak of the same precision."""
    roof = ""
    if size is not None and precision in PEAKS:
        batch = make_batch(B, T, size["vocab_size"], seed=B * T)
        flops = batch_flops(size, batch)
        per_token = flops["total"] / flops["tokens"]
        ours, ref = per_token * t["ours_wall"] / 1e9, per_token * t["ref_wall"] / 1e9
        roof = f"   {ours:6.0f} ({100 * ours / PEAKS[precision]:3.0f}%) {ref:6.0f} ({100 * ref / PEAKS[precision]:3.0f}%)"
    print(f"{precision:5} {B}x{T:<4} {t['ours_cpu']:9.0f} {t['ref_cpu']:9.0f} {t['ours_cpu'] / t['ref_cpu']:6.2f}"
          f"   {t['ours_wall']:9.0f} {t['ref_wall']:9.0f} {t['ours_wall'] / t['ref_wall']:6.2f}   {n_active:>11,}{roof}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="H128, 2 layers (vocabulary stays 250,002)")
    parser.add_argument("--shapes", default="16x40,32x128")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--active-rows", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--kernels", choices=("fast", "reference"), default="fast",
                        help="our encoder's kernels (models/encoder_fast.py)")
    parser.add_argument("--sequential", action="store_true",
                        help="half the memory: reference first, then ours (not interleaved; needs ~8 GB at 32x128)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = SMALL if args.small else BASE
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    precisions = args.precisions.split(",")
    if "bf16" in precisions and not cpu_supports_bf16():
        print("note: this CPU has no native bf16 (AMX / AVX512-BF16); bf16 numbers will be slow for both")
    train_cfg = load_config(None, ["train.lr=5e-5", "train.weight_decay=0.01"]).train

    ours, ref = (runner(model, train_cfg) for runner, model in zip((Ours, Reference), make_models(size, args.kernels)))
    print(f"size: H{size['hidden_size']} L{size['num_hidden_layers']} V{size['vocab_size']}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    check_same_update(ours, ref, make_batch(8, 32, size["vocab_size"], seed=123))
    mark_active(ours, args.active_rows)
    PEAKS.update({p: gemm_peak(p) for p in precisions})
    print("measured GEMM peak (bench/matmul.py gemm_peak, 2048^3, this process): "
          + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in PEAKS.items()))
    for B, T in shapes:
        batch = make_batch(B, T, size["vocab_size"], seed=B * T)
        f = batch_flops(size, batch)
        print(f"  {B}x{T}: {f['total'] / 1e9:.1f} GFLOP per step (fwd+bwd; the last layer on the labelled "
              f"positions the loss reads), {phase_summary(f)}")
    print("tokens/s (median); cpu = by process CPU time, wall = by wall clock; ratio = ours / ref;")
    print("roofline = model GFLOP/s by wall clock (bench/flops.py) and its % of the measured GEMM peak")
    print(f"{'prec':5} {'BxT':7} {'ours cpu':>9} {'ref cpu':>9} {'ratio':>6}   {'ours wall':>9} {'ref wall':>9} "
          f"{'ratio':>6}   {'active rows':>11}   {'GFLOP/s ours':>12} {'ref':>12}")
    cases = [(precision, shape) for precision in precisions for shape in shapes]
    if args.sequential:
        runners = {"ours": ours, "ref": ref}
        del ours, ref
        for row in run_sequential(runners, size, cases, args, train_cfg):
            print_row(*row, size=size)
        return
    for precision, (B, T) in cases:
        t = time_pair(ours, ref, make_batch(B, T, size["vocab_size"], seed=B * T), precision, args.reps, args.warmup)
        print_row(precision, B, T, t, active_rows(ours), size=size)


if __name__ == "__main__":
    main()
