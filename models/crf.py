"""Linear-chain CRF: negative log-likelihood by the forward algorithm, best path by Viterbi.

    crf = CRF(num_tags, labels=["O", "B-PER", "I-PER", ...], constrain_training=False)
    nll = crf(emissions, tags, mask)            # mean over sentences
    best = crf.decode(emissions, mask)          # (B, W), -1 at masked positions

Legend: B batch, W words (time), K tags.

A tag path y = (y_0, ..., y_n) through a sentence of n + 1 words scores

    score(y) = start[y_0] + e_0[y_0] + sum_{t=1..n} (trans[y_{t-1}, y_t] + e_t[y_t]) + end[y_n]

with emissions e_t (from the encoder), transitions trans (K, K, from -> to) and start and end
scores (K,). The CRF's probability of y is exp(score(y)) / Z with Z = sum over all K^(n+1) paths.
The forward algorithm computes log Z in W steps of a (K, K) log-sum-exp; Viterbi is the same
recursion with max instead of log-sum-exp plus back-pointers. Masks are left-aligned: a sentence's
padding steps leave its state unchanged, so every sentence ends at its own last word.

This file is the reference, written to be read. ``kernels="fast"`` (models/crf_fast.py) runs the
same maths with a hand-written backward pass and a back-trace by pointer doubling; ``"auto"``
picks it. Both run in fp32 (fp64 if given fp64), also under autocast: the partition is a
reduction that must be exact.
"""
from __future__ import annotations

import torch
from torch import nn

IMPOSSIBLE = -1e4  # score of a transition the BIO constraints forbid
KERNELS = ("reference", "fast", "auto")


def bio_allowed(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, K) allowed transitions and (K,) allowed first tags for IOB2 labels.

    Forbidden: O -> I-X, B-X / I-X -> I-Y (Y != X), start -> I-X.
    """
    def entity(tag: str) -> str:
        return tag[2:] if tag[:2] in ("B-", "I-") else ""

    K = len(labels)
    allowed = torch.ones(K, K, dtype=torch.bool)  # (K, K) from, to
    start = torch.ones(K, dtype=torch.bool)  # (K,)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(labels):
            allowed[i, j] = frm[:2] in ("B-", "I-") and entity(frm) == entity(to)
    return allowed, start


# ---------------------------------------------------------------------------------------------
# the three computations, in the reference form

def path_score(emissions, tags, mask, start, trans, end) -> torch.Tensor:
    """score(y) of the given tag paths (B,).

    emissions (B, W, K); tags (B, W) long, any valid tag at masked positions; mask (B, W) bool.
    """
    B, W, K = emissions.shape
    maskf = mask.to(emissions.dtype)  # (B, W)
    emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, W) e_t[y_t]
    score = start[tags[:, 0]] + (emit * maskf).sum(1)  # (B,)
    if W > 1:
        step = trans[tags[:, :-1], tags[:, 1:]]  # (B, W-1) trans[y_{t-1}, y_t]
        score = score + (step * maskf[:, 1:]).sum(1)
    last = mask.long().sum(1) - 1  # (B,) index of each sentence's last word
    last_tag = tags.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
    return score + end[last_tag]


def log_partition(emissions, mask, start, trans, end) -> torch.Tensor:
    """log Z (B,) by the forward algorithm in log space.

    alpha_t[j] = log sum over paths of words 0..t ending in tag j
               = logsumexp_i (alpha_{t-1}[i] + trans[i, j]) + e_t[j],
    and log Z = logsumexp_j (alpha_n[j] + end[j]). Autograd gives the gradients (the marginals).
    """
    B, W, K = emissions.shape
    alpha = start + emissions[:, 0]  # (B, K)
    for t in range(1, W):
        # (B, K, 1) from-tag + (K, K) from->to + (B, 1, K) to-tag emission -> (B, K, K), summed over from
        step = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)  # (B, K)
        alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)  # (B, K) padding keeps the state
    return torch.logsumexp(alpha + end, dim=1)  # (B,)


def viterbi(emissions, mask, start, trans, end) -> torch.Tensor:
    """Best paths (B, W) long, -1 at masked positions: the forward recursion with max, then a back-trace.

    delta_t[j] = max_i (delta_{t-1}[i] + trans[i, j]) + e_t[j]; pointer_t[j] = that argmax i.
    """
    B, W, K = emissions.shape
    delta = start + emissions[:, 0]  # (B, K)
    pointers = []  # W-1 x (B, K): the best previous tag for each tag at word t
    for t in range(1, W):
        best, pointer = (delta.unsqueeze(2) + trans).max(dim=1)  # (B, K) each, over the from-tag
        delta = torch.where(mask[:, t].unsqueeze(1), best + emissions[:, t], delta)  # (B, K)
        pointers.append(pointer)
    tag = (delta + end).argmax(dim=1)  # (B,) best tag at each sentence's last word
    path = [tag]
    for t in range(W - 1, 0, -1):  # walk back; past a sentence's last word its last tag is kept
        previous = pointers[t - 1].gather(1, tag.unsqueeze(1)).squeeze(1)  # (B,) tag at t-1
        tag = torch.where(mask[:, t], previous, tag)
        path.append(tag)
    best_path = torch.stack(path[::-1], dim=1)  # (B, W)
    return best_path.masked_fill(~mask, -1)


# ---------------------------------------------------------------------------------------------
# the module

class CRF(nn.Module):
    """A linear-chain CRF over K tags with start, end and transition scores.

    labels (IOB2 tag names, optional) add BIO constraints: always in ``decode``, in the loss only
    with ``constrain_training``. kernels: reference (this file) | fast (models/crf_fast.py) |
    auto (= fast: the same numbers, and it runs on any device).
    """

    def __init__(self, num_tags: int, labels: list[str] | None = None, constrain_training: bool = False,
                 kernels: str = "auto"):
        super().__init__()
        if labels is not None and len(labels) != num_tags:
            raise ValueError(f"{len(labels)} labels for {num_tags} tags")
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
        self.num_tags = num_tags
        self.labels = list(labels) if labels is not None else None
        self.constrain_training = constrain_training
        self.kernels = "fast" if kernels == "auto" else kernels
        self.start_transitions = nn.Parameter(torch.empty(num_tags))  # (K,)
        self.end_transitions = nn.Parameter(torch.empty(num_tags))  # (K,)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # (K, K) from, to
        allowed, start_allowed = bio_allowed(labels) if labels is not None else (
            torch.ones(num_tags, num_tags, dtype=torch.bool), torch.ones(num_tags, dtype=torch.bool))
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("start_allowed", start_allowed, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-0.1, 0.1), as pytorch-crf."""
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={self.labels is not None}, kernels={self.kernels}"

    def _scores(self, constrained: bool, dtype: torch.dtype):
        """start (K,), transitions (K, K), end (K,) in the compute dtype, constraints applied."""
        start = self.start_transitions.to(dtype)
        trans = self.transitions.to(dtype)
        if constrained and self.labels is not None:
            start = start.masked_fill(~self.start_allowed, IMPOSSIBLE)
            trans = trans.masked_fill(~self.allowed, IMPOSSIBLE)
        return start, trans, self.end_transitions.to(dtype)

    def _kernels(self):
        """(log_partition, viterbi) of the chosen implementation."""
        if self.kernels == "fast":
            from models import crf_fast
            return crf_fast.log_partition, crf_fast.viterbi
        return log_partition, viterbi

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood of ``tags``: log Z - score(tags).

        emissions (B, W, K) any float dtype; tags (B, W) long (values at masked positions ignored);
        mask (B, W) bool, left-aligned, first position on. reduction: mean | sum | none (-> (B,)).
        """
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        emissions, mask = _prepare(emissions, mask)
        partition, _ = self._kernels()
        with torch.autocast(emissions.device.type, enabled=False):
            start, trans, end = self._scores(self.constrain_training, emissions.dtype)
            tags = tags.masked_fill(~mask, 0)  # (B, W) any valid index where masked
            nll = partition(emissions, mask, start, trans, end) - path_score(
                emissions, tags, mask, start, trans, end)  # (B,)
        if reduction == "mean":
            return nll.mean()
        return nll.sum() if reduction == "sum" else nll

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Best tag sequence (B, W) long, -1 at masked positions. BIO constraints apply if labels given."""
        emissions, mask = _prepare(emissions, mask)
        _, best_paths = self._kernels()
        with torch.autocast(emissions.device.type, enabled=False):
            start, trans, end = self._scores(True, emissions.dtype)
            return best_paths(emissions, mask, start, trans, end)


def _prepare(emissions: torch.Tensor, mask: torch.Tensor | None):
    """emissions in fp32 (fp64 kept), mask as bool (all on if None)."""
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, W, K), got {tuple(emissions.shape)}")
    if mask is None:
        mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
    dtype = torch.float64 if emissions.dtype == torch.float64 else torch.float32
    return emissions.to(dtype), mask.bool()
