"""Benchmark: DDP scaling on CPU (gloo) -- tokens/s per process with 1 and with 2 processes, one thread each.

    python bench/ddp.py                                   # mini size (H256 L4, 16k vocab), 16 x 64 per rank
    python bench/ddp.py --size tiny --steps 10             # quick

The parent launches ``torchrun --standalone --nproc_per_node=N bench/ddp.py --worker`` for N = 1
then 2 (OMP_NUM_THREADS=1 each). Every rank trains its own batches (a per-rank seed: the per-rank
sharding of core.loop) with the engine's step: DistributedDataParallel (gloo) around
models.heads.XLMRForTokenClassification, core.optim.build_optimizer with dense embedding
gradients as under DDP (sparse_embeddings=False), core.loop.train_step (the labelled-token count
all-reduced, the gradients averaged by DDP). Each rank times ``--steps`` steps after
``--warmup``; rank 0 prints its tokens/s (real tokens of its own batches). Scaling efficiency =
per-process tokens/s with 2 processes / with 1 (1.0 = perfect; the all-reduce of the ~4M+
parameters' gradients and the 2 processes sharing one memory bus cost the rest).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {
    "mini": dict(vocab_size=16000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "tiny": dict(vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}


def worker(args) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from bench.train_step import NUM_LABELS, TokenTask, make_batch
    from core.config import load_config
    from core.distributed import cleanup, init_distributed
    from core.loop import train_step
    from core.optim import build_optimizer, build_scheduler
    from core.precision import autocast_context, build_grad_scaler
    from core.train_state import TrainState
    from models.encoder import XLMRConfig
    from models.encoder_fast import use_kernels
    from models.heads import XLMRForTokenClassification

    torch.set_num_threads(1)
    device = torch.device("cpu")
    info = init_distributed(device)
    size = SIZES[args.size] | dict(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = XLMRForTokenClassification(XLMRConfig.from_hf_dict(dict(size, initializer_range=0.02)), NUM_LABELS)
    use_kernels(model, "fast", announce=False)  # as a training run on the CPU
    model.init_weights()
    model.train()
    train_cfg = load_config(None, ["train.lr=5e-5", "train.weight_decay=0.01"]).train
    optimizer = build_optimizer(model, train_cfg, sparse_embeddings=info.world == 1)
    scheduler = build_scheduler(optimizer, train_cfg, 1000)
    wrapped = DistributedDataParallel(model) if info.world > 1 else model
    B, T = (int(x) for x in args.shape.split("x"))
    batches = [make_batch(B, T, size["vocab_size"], seed=1000 * info.rank + i) for i in range(4)]  # per-rank data
    state = TrainState(model, optimizer, scheduler, build_grad_scaler(device, "fp32"))
    ctx = autocast_context(device, args.precision)
    tokens, seconds = 0, 0.0
    for i in range(args.warmup + args.steps):
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        train_step(state, TokenTask, [batch], batch["n_tokens"], ctx, 1.0, model=wrapped)
        if i >= args.warmup:
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
    params = sum(p.numel() for p in model.parameters())
    if info.is_main:
        print(json.dumps(dict(world=info.world, tokens_per_s=tokens / seconds, step_ms=1e3 * seconds / args.steps,
                              params=params)), flush=True)
    cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="mini")
    ap.add_argument("--shape", default="16x64")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    results = {}
    for world in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
               str(Path(__file__).resolve()), "--worker", "--size", args.size, "--shape", args.shape,
               "--precision", args.precision, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            sys.exit(f"world {world} failed:\n{out.stdout}\n{out.stderr}")
        results[world] = json.loads(lines[-1])
        r = results[world]
        print(f"world {world}: {r['tokens_per_s']:8.0f} tokens/s per process ({r['step_ms']:.0f} ms per step of "
              f"{args.shape}), {world * r['tokens_per_s']:8.0f} in all; {r['params']:,} parameters", flush=True)
    eff = results[2]["tokens_per_s"] / results[1]["tokens_per_s"]
    print(f"gloo DDP, {args.size} size, {args.precision}, 1 thread per process: scaling efficiency per process "
          f"{eff:.2f} (2 processes = {2 * eff:.2f}x the tokens/s of 1)")


if __name__ == "__main__":
    main()
