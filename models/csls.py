"""Cross-domain similarity local scaling (CSLS, Conneau et al. 2018): the reference.

    r_src, r_tgt = csls_neighbourhoods(src, tgt, k=10)
    scores, idx = csls_topk(src, tgt, topk=5, k=10)          # (Nq, 5) each
    scores, idx = cosine_topk(src, tgt, topk=5)               # plain nearest neighbours
    p = precision_at_k(idx, query_ids, gold)                  # {"p@1": .., "p@5": ..}

Legend: S source words, T target words (here not subword positions), C rows per chunk, d dim.

Nearest-neighbour retrieval between two embedding spaces suffers from hubs: a few targets are
the nearest neighbour of many sources. CSLS discounts them. With cos(x, y) on unit vectors,

    r_src[i] = mean cosine of source i to its k nearest targets
    r_tgt[j] = mean cosine of target j to its k nearest sources
    CSLS(i, j) = 2 cos(i, j) - r_src[i] - r_tgt[j]

so a hub (a target close to everything, large r_tgt) is pushed down. r_src[i] is the same for
every target of row i: it changes no ranking, only the scores.

This file computes it as written, one chunk of source (or target) rows at a time, so only a
(C, T) block of cosines exists at once: 200k x 200k words in d = 300 fit in the inputs, their
unit copies and ``memory_mb``, at the price of three full products (r_src, r_tgt, retrieval).
``kernels="fast"`` (or ``"auto"``, the default) runs models/csls_fast.py instead: the same
results from one candidate pass with exact fp32 re-scoring, proved per row.
"""
from __future__ import annotations

import torch

DEFAULT_MEMORY_MB = 512
MAX_ROWS = 1024  # rows per chunk; larger chunks only lose cache locality
KERNELS = ("reference", "fast", "auto")


def normalize(vectors: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (zero rows stay zero)."""
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (N, d)


def chunk_rows(num_targets: int, memory_mb: float = DEFAULT_MEMORY_MB, copies: int = 3) -> int:
    """Source rows per chunk so that ``copies`` fp32 (C, T) matrices fit in ``memory_mb``."""
    return max(1, min(MAX_ROWS, int(memory_mb * 2**20 // (4 * copies * max(num_targets, 1)))))


def knn_mean(x: torch.Tensor, y: torch.Tensor, k: int, memory_mb: float = DEFAULT_MEMORY_MB) -> torch.Tensor:
    """(N,) mean cosine of each unit row of x (N, d) to its k nearest unit rows of y (M, d)."""
    rows = chunk_rows(y.shape[0], memory_mb)
    means = []
    for lo in range(0, x.shape[0], rows):
        cos = x[lo:lo + rows] @ y.t()  # (C, M)
        means.append(cos.topk(min(k, y.shape[0]), dim=1).values.mean(1))  # (C,)
    return torch.cat(means) if means else x.new_zeros(0)


def _top_rows(scores_of, queries: torch.Tensor, n: int, rows: int, like: torch.Tensor):
    """Top-n (values, indices) of scores_of(query ids) (C, T), a chunk of queries at a time."""
    values, indices = [], []
    for ids in queries.split(rows):
        top = scores_of(ids).topk(n, dim=1)  # (C, n) each
        values.append(top.values)
        indices.append(top.indices)
    if not values:
        return like.new_zeros(0, n), torch.zeros(0, n, dtype=torch.long, device=like.device)
    return torch.cat(values), torch.cat(indices)


def _use_fast(kernels: str) -> bool:
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    return kernels != "reference"


@torch.no_grad()
def csls_neighbourhoods(src: torch.Tensor, tgt: torch.Tensor, k: int = 10, memory_mb: float = DEFAULT_MEMORY_MB,
                        kernels: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(r_src (S,), r_tgt (T,)): mean cosine to the k nearest neighbours on the other side."""
    if _use_fast(kernels):
        from models import csls_fast
        return csls_fast.csls_neighbourhoods(src, tgt, k, memory_mb)
    src, tgt = normalize(src.float()), normalize(tgt.float())  # (S, d), (T, d)
    return knn_mean(src, tgt, k, memory_mb), knn_mean(tgt, src, k, memory_mb)


@torch.no_grad()
def csls_topk(src: torch.Tensor, tgt: torch.Tensor, topk: int = 1, k: int = 10,
              queries: torch.Tensor | None = None, memory_mb: float = DEFAULT_MEMORY_MB,
              neighbourhoods: tuple[torch.Tensor, torch.Tensor] | None = None, kernels: str = "auto"):
    """Top-``topk`` targets by CSLS for each query (source rows ``queries``, default all).

    Returns (scores (Nq, topk), indices (Nq, topk)), best first. ``neighbourhoods`` reuses (r_src, r_tgt).
    """
    if _use_fast(kernels):
        from models import csls_fast
        return csls_fast.csls_topk(src, tgt, topk, k, queries, memory_mb, neighbourhoods)
    if neighbourhoods is None:
        neighbourhoods = csls_neighbourhoods(src, tgt, k, memory_mb, kernels="reference")
    r_src, r_tgt = (r.float() for r in neighbourhoods)  # (S,), (T,)
    src, tgt = normalize(src.float()), normalize(tgt.float())  # (S, d), (T, d)
    if queries is None:
        queries = torch.arange(src.shape[0], device=src.device)  # (Nq,)

    def csls(ids):  # (C, T)
        return 2 * (src[ids] @ tgt.t()) - r_src[ids, None] - r_tgt[None, :]

    return _top_rows(csls, queries, min(topk, tgt.shape[0]), chunk_rows(tgt.shape[0], memory_mb), src)


@torch.no_grad()
def cosine_topk(src: torch.Tensor, tgt: torch.Tensor, topk: int = 1, queries: torch.Tensor | None = None,
                memory_mb: float = DEFAULT_MEMORY_MB, kernels: str = "auto"):
    """Plain nearest neighbours by cosine (the baseline CSLS corrects): (scores (Nq, topk), indices)."""
    if _use_fast(kernels):
        from models import csls_fast
        return csls_fast.cosine_topk(src, tgt, topk, queries, memory_mb)
    src, tgt = normalize(src.float()), normalize(tgt.float())  # (S, d), (T, d)
    if queries is None:
        queries = torch.arange(src.shape[0], device=src.device)  # (Nq,)
    return _top_rows(lambda ids: src[ids] @ tgt.t(), queries, min(topk, tgt.shape[0]),
                     chunk_rows(tgt.shape[0], memory_mb), src)


def precision_at_k(indices: torch.Tensor, query_ids: list[int], gold: dict[int, set[int]],
                   ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Share of queries with a listed translation among the first k retrieved (any one counts).

    indices (Nq, >=max(ks)) retrieved target ids in rank order, row i for source ``query_ids[i]``.
    """
    ranked = indices.tolist()
    out = {}
    for k in ks:
        hits = sum(bool(gold[q] & set(row[:k])) for q, row in zip(query_ids, ranked))
        out[f"p@{k}"] = hits / max(len(query_ids), 1)
    return out
