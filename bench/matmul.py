"""Does this CPU have fast bf16? One square matmul in fp32 and in bf16, and what `precision: auto` picks.

    python bench/matmul.py            # 2048 x 2048 @ 2048 x 2048, torch's default threads

On AVX512-BF16 or AMX a bf16 matmul is several times the fp32 one; without them it is emulated
and many times slower, which is why core/precision.py detects rather than assumes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.precision import resolve_precision  # noqa: E402


def gflops(n: int, dtype: torch.dtype, reps: int) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):  # warm-up
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    fp32, bf16 = gflops(args.n, torch.float32, args.reps), gflops(args.n, torch.bfloat16, args.reps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.n} x {args.n} matmul")
    print(f"fp32 {fp32:7.1f} GFLOP/s   bf16 {bf16:7.1f} GFLOP/s   bf16 / fp32 = {bf16 / fp32:.2f}")
    print(f"precision: auto -> {resolve_precision('auto', 'cpu')}")


if __name__ == "__main__":
    main()
