"""Cross-domain similarity local scaling (CSLS, Conneau et al. 2018) with bounded memory.

    r_src, r_tgt = csls_neighbourhoods(src, tgt, k=10)
    scores, idx = csls_topk(src, tgt, topk=5, k=10)          # (Nq, 5) each
    p = precision_at_k(idx, query_ids, gold)                  # {"p@1": .., "p@5": ..}

Legend: S source words, T target words (here not subword positions), C rows per chunk, d dim.

cos(x, y) on unit vectors; r_src[i] = mean cosine of source i to its k nearest targets,
r_tgt[j] = mean cosine of target j to its k nearest sources; CSLS(i, j) = 2 cos - r_src[i] - r_tgt[j].
A hub (a target close to everything) has a large r_tgt and is pushed down.

Only C x T similarities exist at a time (C chosen from a memory budget). Both neighbourhoods
come from ONE pass over the source chunks: each chunk's row top-k gives r_src, and its column
top-k is merged into a running (k, T) top-k that gives r_tgt. Retrieval is a second pass; a
MUSE-style implementation needs three (r_src, r_tgt, retrieval).
"""
from __future__ import annotations

import torch

DEFAULT_MEMORY_MB = 512


def normalize(vectors: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (zero rows stay zero)."""
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (N, d)


MAX_ROWS = 1024  # larger chunks only lose cache locality in the top-k passes


def chunk_rows(num_targets: int, memory_mb: float = DEFAULT_MEMORY_MB, copies: int = 3) -> int:
    """Source rows per chunk so that ``copies`` fp32 (C, T) matrices fit in ``memory_mb``."""
    return max(1, min(MAX_ROWS, int(memory_mb * 2**20 // (4 * copies * max(num_targets, 1)))))


@torch.no_grad()
def csls_neighbourhoods(src: torch.Tensor, tgt: torch.Tensor, k: int = 10,
                        memory_mb: float = DEFAULT_MEMORY_MB) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_src (S,), r_tgt (T,)): mean cosine to the k nearest neighbours on the other side."""
    src, tgt = normalize(src.float()), normalize(tgt.float())
    k_src, k_tgt = min(k, tgt.shape[0]), min(k, src.shape[0])
    rows = chunk_rows(tgt.shape[0], memory_mb)
    r_src = src.new_empty(src.shape[0])
    best_cols = src.new_full((k_tgt, tgt.shape[0]), float("-inf"))  # (k, T) running column top-k
    tgt_t = tgt.t().contiguous()  # (d, T)
    for lo in range(0, src.shape[0], rows):
        sims = src[lo:lo + rows] @ tgt_t  # (C, T)
        r_src[lo:lo + rows] = sims.topk(k_src, dim=1).values.mean(1)
        cols = sims.topk(min(k_tgt, sims.shape[0]), dim=0).values  # (<=k, T)
        best_cols = torch.cat([best_cols, cols]).topk(k_tgt, dim=0).values  # (k, T)
    return r_src, best_cols.mean(0)


@torch.no_grad()
def csls_topk(src: torch.Tensor, tgt: torch.Tensor, topk: int = 1, k: int = 10,
              queries: torch.Tensor | None = None, memory_mb: float = DEFAULT_MEMORY_MB,
              neighbourhoods: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Top-``topk`` targets by CSLS for each query (source rows ``queries``, default all).

    Returns (scores (Nq, topk), indices (Nq, topk)). ``neighbourhoods`` reuses (r_src, r_tgt).
    """
    r_src, r_tgt = neighbourhoods if neighbourhoods is not None else csls_neighbourhoods(src, tgt, k, memory_mb)
    src, tgt = normalize(src.float()), normalize(tgt.float())
    if queries is None:
        queries = torch.arange(src.shape[0], device=src.device)
    rows = chunk_rows(tgt.shape[0], memory_mb)
    tgt_t = tgt.t().contiguous()  # (d, T)
    scores, indices = [], []
    for lo in range(0, queries.shape[0], rows):
        ids = queries[lo:lo + rows]  # (C,)
        sims = src[ids] @ tgt_t  # (C, T)
        sims.mul_(2).sub_(r_src[ids].unsqueeze(1)).sub_(r_tgt)  # CSLS in place
        top = sims.topk(min(topk, tgt.shape[0]), dim=1)
        scores.append(top.values)
        indices.append(top.indices)
    return torch.cat(scores), torch.cat(indices)


@torch.no_grad()
def cosine_topk(src: torch.Tensor, tgt: torch.Tensor, topk: int = 1, queries: torch.Tensor | None = None,
                memory_mb: float = DEFAULT_MEMORY_MB):
    """Plain nearest neighbours by cosine (the baseline CSLS corrects), chunked the same way."""
    zeros = (src.new_zeros(src.shape[0]), tgt.new_zeros(tgt.shape[0]))
    scores, indices = csls_topk(src, tgt, topk, queries=queries, memory_mb=memory_mb, neighbourhoods=zeros)
    return scores / 2, indices


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
