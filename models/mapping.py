"""Orthogonal mapping of source word vectors onto target ones (Conneau et al. 2018, MUSE).

    W = procrustes(src[seed[:, 0]], tgt[seed[:, 1]])          # src @ W ~ tgt
    W, pairs = refine(src, tgt, W, steps=5, k=10)             # mutual-CSLS dictionary + Procrustes
    W = adversarial_init(src, tgt, epochs=5)                  # optional: no seed at all

Legend: S source words, T target words, E vector size, P dictionary pairs.
Vectors are expected unit-length and centred (data.word_vectors.center_and_normalize).
"""
from __future__ import annotations

import torch
from torch import nn

from models.csls import csls_neighbourhoods, csls_topk


def procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Orthogonal W (E, E) minimising ||x W - y||_F for paired rows x, y (P, E): W = U V^T of svd(x^T y)."""
    u, _, vt = torch.linalg.svd(x.double().t() @ y.double())
    return (u @ vt).to(x.dtype)


@torch.no_grad()
def mutual_csls_pairs(src: torch.Tensor, tgt: torch.Tensor, k: int = 10, max_rank: int = 15000,
                      memory_mb: float = 256) -> torch.Tensor:
    """(P, 2) pairs (i, j) that are each other's CSLS nearest neighbour among the ``max_rank`` most frequent words."""
    src, tgt = src[:max_rank], tgt[:max_rank]
    hoods = csls_neighbourhoods(src, tgt, k, memory_mb)
    _, s2t = csls_topk(src, tgt, 1, k, memory_mb=memory_mb, neighbourhoods=hoods)  # (S, 1)
    _, t2s = csls_topk(tgt, src, 1, k, memory_mb=memory_mb, neighbourhoods=hoods[::-1])  # (T, 1)
    s2t, t2s = s2t.squeeze(1), t2s.squeeze(1)
    src_ids = torch.arange(len(s2t))
    mutual = t2s[s2t] == src_ids  # (S,)
    return torch.stack([src_ids[mutual], s2t[mutual]], dim=1)


def refine(src: torch.Tensor, tgt: torch.Tensor, w: torch.Tensor, steps: int = 5, k: int = 10,
           max_rank: int = 15000, log=print) -> tuple[torch.Tensor, torch.Tensor]:
    """Alternate: dictionary of mutual CSLS neighbours under the current map -> Procrustes on it."""
    pairs = torch.empty(0, 2, dtype=torch.long)
    for step in range(steps):
        pairs = mutual_csls_pairs(src @ w, tgt, k, max_rank)
        w = procrustes(src[pairs[:, 0]], tgt[pairs[:, 1]])
        log(f"refinement {step + 1}/{steps}: {len(pairs)} mutual pairs")
    return w, pairs


def orthogonalize(w: torch.Tensor, beta: float = 0.01) -> torch.Tensor:
    """One step towards orthogonality: W <- (1 + b) W - b W W^T W (MUSE)."""
    return (1 + beta) * w - beta * w @ w.t() @ w


def adversarial_init(src: torch.Tensor, tgt: torch.Tensor, epochs: int = 5, iterations: int = 1000,
                     batch_size: int = 32, most_frequent: int = 50000, hidden: int = 512, seed: int = 0,
                     log=print) -> torch.Tensor:
    """A mapping learnt without any dictionary: W fools a discriminator telling src W from tgt.

    The discriminator (MLP, dropout on its input) is trained to output 1 for mapped source and 0 for
    target vectors (labels smoothed by 0.1); W is trained with the flipped labels and kept near
    orthogonal after each step. Pairs come from the ``most_frequent`` words of each side.
    """
    gen = torch.Generator().manual_seed(seed)
    dim = src.shape[1]
    mapping = nn.Linear(dim, dim, bias=False)
    nn.init.eye_(mapping.weight)
    disc = nn.Sequential(nn.Dropout(0.1), nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                         nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
    opt_map = torch.optim.SGD(mapping.parameters(), lr=0.1)
    opt_disc = torch.optim.SGD(disc.parameters(), lr=0.1)
    n_src, n_tgt = min(most_frequent, len(src)), min(most_frequent, len(tgt))
    smooth = 0.1
    labels = torch.cat([torch.full((batch_size,), 1 - smooth), torch.full((batch_size,), smooth)])  # (2N,)
    bce = nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        total = 0.0
        for _ in range(iterations):
            for train_disc in (True, False):
                x = src[torch.randint(n_src, (batch_size,), generator=gen)]  # (N, E)
                y = tgt[torch.randint(n_tgt, (batch_size,), generator=gen)]  # (N, E)
                mapped = mapping(x)
                if train_disc:
                    loss = bce(disc(torch.cat([mapped.detach(), y])).squeeze(1), labels)
                    opt_disc.zero_grad()
                    loss.backward()
                    opt_disc.step()
                    total += loss.item()
                else:
                    disc.eval()
                    loss = bce(disc(torch.cat([mapped, y])).squeeze(1), 1 - labels)  # fool it
                    disc.train()
                    opt_map.zero_grad()
                    loss.backward()
                    opt_map.step()
                    with torch.no_grad():
                        mapping.weight.copy_(orthogonalize(mapping.weight))
        log(f"adversarial epoch {epoch + 1}/{epochs}: discriminator loss {total / iterations:.4f}")
    return mapping.weight.detach().t().contiguous()  # x @ W == mapping(x)


def map_vectors(src: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Source vectors in the target space, unit length: (S, E)."""
    mapped = src @ w
    return mapped / mapped.norm(dim=1, keepdim=True).clamp_min(1e-12)
