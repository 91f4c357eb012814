"""Entity representations for relation extraction: [CLS], entity-start marker, span mean/max,
attention over the span.

Legend: B examples, T subword positions, H hidden, F pooled features (H for cls, 2H otherwise).

    pooler = EntityPooler("start", hidden=256)
    feats = pooler(h, subj_marker, obj_marker, subj_mask, obj_mask)   # (B, T, H) -> (B, 2H)

``subj_marker``/``obj_marker`` (B,) are the positions of each entity's first marker piece
(Zhou & Chen's "entity start"); ``subj_mask``/``obj_mask`` (B, T) bool mark the entity's own
pieces (markers excluded). Every span mask must hold at least one True per row.
"""
from __future__ import annotations

import math

import torch
from torch import nn

POOLINGS = ("cls", "start", "mean", "max", "attention")


def gather_positions(h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """h (B, T, H), positions (B,) -> (B, H)."""
    return h[torch.arange(h.size(0), device=h.device), positions]  # (B, H)


def span_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of h over the True positions of mask (B, T) -> (B, H)."""
    weights = mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    return (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, H)


def span_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Element-wise max of h over the True positions of mask (B, T) -> (B, H)."""
    return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)  # (B, H)


class SpanAttention(nn.Module):
    """A learned query scores each piece of the span; the span is the softmax-weighted sum."""

    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(hidden))  # zero: starts as the span mean

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (h @ self.query.to(h.dtype)) / math.sqrt(h.size(-1))  # (B, T)
        scores = scores.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).to(h.dtype)  # (B, T), zero outside the span
        return torch.einsum("bt,bth->bh", weights, h)  # (B, H)


class EntityPooler(nn.Module):
    def __init__(self, mode: str, hidden: int):
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")
        self.mode = mode
        self.out_dim = hidden if mode == "cls" else 2 * hidden
        if mode == "attention":
            self.subj_attention, self.obj_attention = SpanAttention(hidden), SpanAttention(hidden)

    def reads(self, subj_marker: torch.Tensor, obj_marker: torch.Tensor, subj_mask: torch.Tensor,
              obj_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: the positions of h this pooling reads (the encoder computes only those)."""
        if self.mode in ("cls", "start"):
            read = torch.zeros_like(subj_mask)  # (B, T) bool
            if self.mode == "cls":
                read[:, 0] = True
            else:
                rows = torch.arange(read.size(0), device=read.device)
                read[rows, subj_marker] = True
                read[rows, obj_marker] = True
            return read
        return subj_mask | obj_mask

    def forward(self, h: torch.Tensor, subj_marker: torch.Tensor, obj_marker: torch.Tensor,
                subj_mask: torch.Tensor, obj_mask: torch.Tensor) -> torch.Tensor:
        if self.mode == "cls":
            return h[:, 0]  # (B, H)
        if self.mode == "start":
            subj, obj = gather_positions(h, subj_marker), gather_positions(h, obj_marker)  # (B, H) each
        elif self.mode == "mean":
            subj, obj = span_mean(h, subj_mask), span_mean(h, obj_mask)
        elif self.mode == "max":
            subj, obj = span_max(h, subj_mask), span_max(h, obj_mask)
        else:
            subj, obj = self.subj_attention(h, subj_mask), self.obj_attention(h, obj_mask)
        return torch.cat([subj, obj], dim=-1)  # (B, 2H)
