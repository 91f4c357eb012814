"""The alignment objective of Cao, Kitaev & Klein (2020), and a contrastive (InfoNCE) alternative.

    out = alignment_loss(src, tgt, anchor, anchor_frozen, lam=1.0, kind="l2")   # sums, fp32
    out["loss"] = out["align"] + lam * out["reg"]

Legend: Q aligned word pairs of a batch, A anchor-side words of the batch, H hidden.

L2 (the paper, eq. 2-3): align = sum_q ||f(s_q) - f(t_q)||^2 over the aligned pairs (s_q a word of the
language being moved, t_q its anchor-language word), reg = sum_a ||f(a) - f0(a)||^2 over the anchor
sentences' words, f0 the frozen original encoder: the anchor stays where it was, the others move to it.
reg is exactly zero at f = f0. InfoNCE (later work found L2 unstable): the cosine similarities of the
batch's Q source and Q anchor words over a temperature, cross-entropy of each pair against the other
pairs of the batch, both directions, summed (the regulariser is added the same way).
Every value is a SUM (the loop divides by the step's aligned pairs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("l2", "infonce")


def alignment_l2(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """sum_q ||src_q - tgt_q||^2; src, tgt (Q, H)."""
    return (src.float() - tgt.float()).pow(2).sum()


def anchor_regulariser(anchor: torch.Tensor, anchor_frozen: torch.Tensor) -> torch.Tensor:
    """sum_a ||f(a) - f0(a)||^2; (A, H) each, the frozen side carries no gradient."""
    return (anchor.float() - anchor_frozen.detach().float()).pow(2).sum()


def info_nce(src: torch.Tensor, tgt: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """sum over the Q pairs of CE(src_q -> tgt_q) + CE(tgt_q -> src_q) among the batch's pairs."""
    logits = F.normalize(src.float(), dim=1) @ F.normalize(tgt.float(), dim=1).t() / temperature  # (Q, Q)
    answer = torch.arange(src.shape[0], device=src.device)  # (Q,)
    return F.cross_entropy(logits, answer, reduction="sum") + F.cross_entropy(logits.t(), answer, reduction="sum")


def alignment_loss(src: torch.Tensor, tgt: torch.Tensor, anchor: torch.Tensor, anchor_frozen: torch.Tensor,
                   lam: float = 1.0, kind: str = "l2", temperature: float = 0.1) -> dict[str, torch.Tensor]:
    """{"loss", "align", "reg"}: the objective and its two parts (sums, fp32)."""
    if kind not in KINDS:
        raise ValueError(f"align.loss must be one of {KINDS}, got {kind!r}")
    align = alignment_l2(src, tgt) if kind == "l2" else info_nce(src, tgt, temperature)
    reg = anchor_regulariser(anchor, anchor_frozen)
    return {"loss": align + lam * reg, "align": align, "reg": reg}
