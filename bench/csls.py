"""Benchmark: our CSLS retrieval vs a MUSE-style reference, time and peak memory, side by side.

    python bench/csls.py [--n 100000] [--dim 300] [--k 10] [--threads 1] [--memory-mb 512]
    python bench/csls.py --n 200000 --ours-only   # the issue's memory bound: 200k x 200k within 2 GB

Both retrieve the CSLS top-10 targets for every one of n source vectors among n targets.
The reference follows MUSE (get_nn_avg_dist + batched scoring): queries in batches of 1024,
a matrix product and a top-k for r_src, again for r_tgt, and once more for the retrieval
(three passes). Ours does two (models/csls.py). Peak memory is the resident-set growth above
the inputs, sampled every 5 ms by a thread.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from models.csls import csls_topk, normalize  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


class PeakMemory:
    """Peak RSS growth (MB) while the block runs."""

    def __enter__(self):
        self.base = self.peak = rss_mb()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.growth = self.peak - self.base


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-mb", type=float, default=512)
    parser.add_argument("--ours-only", action="store_true", help="skip the reference (memory check at large n)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(args.n, args.dim, generator=gen)
    tgt = torch.randn(args.n, args.dim, generator=gen)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, n={args.n} dim={args.dim} k={args.k}")

    with PeakMemory() as mem_ours:
        t0 = time.perf_counter()
        ours_scores, ours_idx = csls_topk(src, tgt, topk=10, k=args.k, memory_mb=args.memory_mb)
        t_ours = time.perf_counter() - t0
    inputs_mb = 2 * args.n * args.dim * 4 / 2**20
    if args.ours_only:
        print(f"  ours        {t_ours:8.1f} s   peak +{mem_ours.growth:7.0f} MB over the inputs ({inputs_mb:.0f} MB), "
              f"{inputs_mb + mem_ours.growth:.0f} MB with them")
        return
    with PeakMemory() as mem_ref:
        t0 = time.perf_counter()
        ref_scores, ref_idx = muse_csls_topk(src, tgt, topk=10, k=args.k)
        t_ref = time.perf_counter() - t0
    same_top1 = (ours_idx[:, 0] == ref_idx[:, 0]).float().mean().item()
    print(f"  ours        {t_ours:8.1f} s   peak +{mem_ours.growth:7.0f} MB")
    print(f"  MUSE-style  {t_ref:8.1f} s   peak +{mem_ref.growth:7.0f} MB")
    print(f"  speed ratio (MUSE-style / ours) {t_ref / t_ours:4.2f}x; same top-1 for {same_top1:.2%} of queries; "
          f"max score diff {(ours_scores - ref_scores).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
