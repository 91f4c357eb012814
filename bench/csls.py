"""Benchmark: our CSLS retrieval vs a MUSE-style reference, time and peak memory, side by side.

    python bench/csls.py [--n 100000] [--dim 300] [--k 10] [--reps 1] [--memory-mb 512]
    python bench/csls.py --n 30000 --reps 3        # interleaved repetitions, median ratio
    python bench/csls.py --n 200000 --ours-only   # the memory bound: 200k x 200k within 2 GB

Both retrieve the CSLS top-10 targets for every one of n source vectors among n targets.
The reference follows MUSE (get_nn_avg_dist + batched scoring): queries in batches of 1024,
an fp32 matrix product and a top-k for r_src, again for r_tgt, and once more for the retrieval
(three passes; models/csls.py with kernels="reference" computes the same way). Ours
(models/csls_fast.py, kernels="fast"): one pass of a bf16 product (where the CPU has it) with
block maxima instead of top-k, the candidates re-scored in fp32 and proved per row; the few
unproved queries get a second candidate pass. Repetitions alternate the order; the ratio is
the median of the per-repetition ratios. Peak memory is the resident-set growth above the
inputs, sampled every 5 ms by a thread.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.precision import cpu_supports_bf16  # noqa: E402
from models.csls import normalize  # noqa: E402
from models.csls_fast import _search, product_dtype  # noqa: E402


from bench.memory import PeakMemory, rss_mb  # noqa: E402


def muse_knn_mean(emb: torch.Tensor, query: torch.Tensor, k: int) -> torch.Tensor:
    """MUSE get_nn_avg_dist: mean cosine of each query to its k nearest rows of emb."""
    out = []
    emb_t = emb.t().contiguous()
    for lo in range(0, query.shape[0], 1024):
        sims = query[lo:lo + 1024] @ emb_t
        out.append(sims.topk(k, dim=1).values.mean(1))
    return torch.cat(out)


def muse_csls_topk(src: torch.Tensor, tgt: torch.Tensor, topk: int, k: int):
    src, tgt = normalize(src), normalize(tgt)
    r_src = muse_knn_mean(tgt, src, k)
    r_tgt = muse_knn_mean(src, tgt, k)
    tgt_t = tgt.t().contiguous()
    scores, indices = [], []
    for lo in range(0, src.shape[0], 1024):
        sims = 2 * (src[lo:lo + 1024] @ tgt_t) - r_src[lo:lo + 1024, None] - r_tgt[None, :]
        top = sims.topk(topk, dim=1)
        scores.append(top.values)
        indices.append(top.indices)
    return torch.cat(scores), torch.cat(indices)


def fp64_csls_pair(src, tgt, k: int, i: int, j1: int, j2: int):
    """CSLS(i, j1), CSLS(i, j2) and their difference, all in float64 (r from full float64 top-k)."""
    s, t = normalize(src.double()), normalize(tgt.double())
    r_src = (s[i] @ t.t()).topk(k).values.mean()
    out = []
    for j in (j1, j2):
        r_tgt = (s @ t[j]).topk(k).values.mean()
        out.append(float(2 * (s[i] @ t[j]) - r_src - r_tgt))
    return out[0], out[1], out[0] - out[1]


def run_ours(src, tgt, k: int, memory_mb: float):
    out = _search(src, tgt, k, 10, None, memory_mb)
    return out["scores"], out["indices"], out["stats"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--reps", type=int, default=1, help="interleaved ours/reference repetitions (order alternates)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--memory-mb", type=float, default=512)
    parser.add_argument("--ours-only", action="store_true", help="skip the reference (memory check at large n)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(args.n, args.dim, generator=gen)
    tgt = torch.randn(args.n, args.dim, generator=gen)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, n={args.n} dim={args.dim} k={args.k}; "
          f"fast bf16 (amx/avx512_bf16): {cpu_supports_bf16()}, candidate product in {product_dtype(src.device)}")
    inputs_mb = 2 * args.n * args.dim * 4 / 2**20
    if args.ours_only:
        with PeakMemory() as mem_ours:
            t0 = time.perf_counter()
            _, _, stats = run_ours(src, tgt, args.k, args.memory_mb)
            t_ours = time.perf_counter() - t0
        print(f"  ours        {t_ours:8.1f} s   peak +{mem_ours.growth:7.0f} MB over the inputs ({inputs_mb:.0f} MB), "
              f"{inputs_mb + mem_ours.growth:.0f} MB with them; {stats}")
        return
    ratios = []
    for rep in range(args.reps):
        timings, results, peaks = {}, {}, {}
        for name in (("ours", "ref") if rep % 2 == 0 else ("ref", "ours")):
            gc.collect()
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                if name == "ours":
                    results[name] = run_ours(src, tgt, args.k, args.memory_mb)
                else:
                    results[name] = muse_csls_topk(src, tgt, topk=10, k=args.k)
                timings[name] = time.perf_counter() - t0
            peaks[name] = mem.growth
        (ours_scores, ours_idx, stats), (ref_scores, ref_idx) = results["ours"], results["ref"]
        same_top1 = (ours_idx[:, 0] == ref_idx[:, 0]).float().mean().item()
        same_top10 = (ours_idx == ref_idx).all(1).float().mean().item()
        ratios.append(timings["ref"] / timings["ours"])
        differ = (ours_idx[:, 0] != ref_idx[:, 0]).nonzero().squeeze(1).tolist()
        print(f"rep {rep}: ours {timings['ours']:7.1f} s peak +{peaks['ours']:5.0f} MB | MUSE-style {timings['ref']:7.1f} s "
              f"peak +{peaks['ref']:5.0f} MB | ratio {ratios[-1]:4.2f}x | same top-1 {same_top1:.4%}, same top-10 "
              f"lists {same_top10:.4%}, max score diff {(ours_scores - ref_scores).abs().max().item():.2e} | {stats}",
              flush=True)
        for i in differ[:5]:  # which top-1 is right? CSLS of both in float64
            a, b, gap = fp64_csls_pair(src, tgt, args.k, i, int(ours_idx[i, 0]), int(ref_idx[i, 0]))
            print(f"  query {i}: float64 CSLS ours' top-1 {a:.9f}, reference's {b:.9f} (ours - ref {gap:+.2e}; "
                  f"float32 resolution here ~1e-7: a tie)" if abs(gap) < 1e-6 else
                  f"  query {i}: float64 CSLS ours' top-1 {a:.9f}, reference's {b:.9f} (ours - ref {gap:+.2e})")
    print(f"speed ratio (MUSE-style / ours), median of {args.reps}: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
