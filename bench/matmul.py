"""Does this CPU have fast bf16? One square matmul in fp32 and in bf16, and what `precision: auto` picks.

    python bench/matmul.py            # 2048 x 2048 @ 2048 x 2048, torch's default threads (best of 3 x 10)
    from bench.matmul import gemm_peak; gemm_peak("bf16")   # what the benches' roofline lines divide by

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
from models.encoder_fast import ONEDNN_LINEAR  # noqa: E402


def gflops(n: int, dtype: torch.dtype, reps: int, kernel: str = "mm") -> float:
    """Mean GFLOP/s of an n x n @ n x n matmul over ``reps`` products. kernel "mm" = torch.mm (output
    buffer reused; MKL's sgemm in fp32, oneDNN in bf16), "onednn" = oneDNN's fp32 linear, the kernel
    models.encoder_fast.FastLinear trains with (a @ b^T, the same FLOPs)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    if kernel == "mm":
        def product():
            torch.mm(a, b, out=out)
    else:
        def product():
            torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    for _ in range(3):  # warm-up
        product()
    t0 = time.perf_counter()
    for _ in range(reps):
        product()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def gemm_peak(precision: str, n: int = 2048, reps: int = 4, trials: int = 3) -> float:
    """The machine's measured GEMM peak (GFLOP/s) in ``precision`` (fp32 | bf16) with the current
    torch thread count: the best of ``trials`` runs of ``reps`` square products, in fp32 the best of
    MKL's and oneDNN's kernels (on AMD Zen 4 oneDNN's is 10-30% faster). The roofline lines of the
    model benchmarks divide by this, measured in the same process."""
    dtype = PRECISION_DTYPES[precision]
    kernels = ["mm", "onednn"] if precision == "fp32" and ONEDNN_LINEAR else ["mm"]
    return max(gflops(n, dtype, reps, kernel) for _ in range(trials) for kernel in kernels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    fp32, bf16 = gemm_peak("fp32", args.n, args.reps), gemm_peak("bf16", args.n, args.reps)
    mkl = max(gflops(args.n, torch.float32, args.reps) for _ in range(3))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.n} x {args.n} matmul")
    print(f"fp32 {fp32:7.1f} GFLOP/s (torch.mm alone {mkl:.1f})   bf16 {bf16:7.1f} GFLOP/s   bf16 / fp32 = {bf16 / fp32:.2f}")
    print(f"precision: auto -> {resolve_precision('auto', 'cpu')}")


if __name__ == "__main__":
    main()
