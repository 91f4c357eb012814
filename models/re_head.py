"""The relation classifier: encoder -> entity pooling -> small MLP -> relation logits.

Legend: B examples, T subword positions, H hidden, F pooled features, K relations.

    model = RelationClassifier(encoder, num_labels=30, pooling="start")
    logits = model(input_ids, attention_mask, subj_marker, obj_marker, subj_mask, obj_mask)  # (B, K)

The MLP is Zhou & Chen's: Linear(F, H) -> ReLU -> dropout -> Linear(H, K), the same for every
pooling (for [CLS], F = H), so the ablation changes one thing at a time.
"""
from __future__ import annotations

import torch
from torch import nn

from models.encoder import init_module
from models.pooling import EntityPooler


class RelationClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "start", dropout: float = 0.1,
                 mlp_hidden: int = 0):
        super().__init__()
        H = encoder.config.hidden_size
        self.encoder, self.num_labels = encoder, num_labels
        self.pooler = EntityPooler(pooling, H)
        width = mlp_hidden or H
        self.mlp = nn.Sequential(nn.Linear(self.pooler.out_dim, width), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(width, num_labels))
        self.init_head()

    @property
    def config(self):
        return self.encoder.config

    def init_head(self, generator: torch.Generator | None = None) -> None:
        for m in self.mlp:
            init_module(m, self.config.initializer_range, generator)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, subj_marker: torch.Tensor,
                obj_marker: torch.Tensor, subj_mask: torch.Tensor, obj_mask: torch.Tensor) -> torch.Tensor:
        # Only the positions the pooling reads leave the encoder (its last layer skips the rest);
        # the others stay zero in h, where the pooling never looks.
        read = self.pooler.reads(subj_marker, obj_marker, subj_mask, obj_mask)  # (B, T) bool
        states = self.encoder(input_ids, attention_mask, select=read)  # (M, H)
        h = states.new_zeros(*read.shape, states.size(-1))  # (B, T, H)
        h[read] = states
        feats = self.pooler(h, subj_marker, obj_marker, subj_mask, obj_mask)  # (B, F)
        return self.mlp(feats)  # (B, K)

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the encoder (pooler + MLP): what export writes beside the HF folder."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}


# ---- decoding: type constraint, no_relation prior offset, temperature ---------------------------
def allowed_relations(pairs: list[str], labels: list[int], num_labels: int, no_relation: int = 0) -> dict:
    """{type pair: (K,) bool}: the relations seen with that (subject type, object type) pair in training.
    no_relation is always allowed; a pair never seen in training allows everything (see apply_constraint)."""
    table: dict[str, torch.Tensor] = {}
    for pair, label in zip(pairs, labels):
        row = table.setdefault(pair, torch.zeros(num_labels, dtype=torch.bool))
        row[label] = True
    for row in table.values():
        row[no_relation] = True
    return table


def apply_constraint(logits: torch.Tensor, pairs: list[str], table: dict) -> torch.Tensor:
    """logits (B, K) with the relations the pair never took in training set to -inf."""
    allowed = torch.stack([table.get(p, torch.ones(logits.size(1), dtype=torch.bool)) for p in pairs])  # (B, K)
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


def with_prior_offset(logits: torch.Tensor, offset: float, no_relation: int = 0) -> torch.Tensor:
    """logits (B, K) with ``offset`` added to the no_relation column (negative: predict relations more often)."""
    out = logits.clone()
    out[:, no_relation] += offset
    return out


def tune_prior_offset(logits: torch.Tensor, gold: torch.Tensor, score, grid=None, no_relation: int = 0) -> float:
    """The offset of the grid with the best score(gold, pred) on held-out (dev) logits; ties go to the
    offset nearest 0."""
    grid = grid if grid is not None else [x / 4 for x in range(-24, 25)]  # -6 .. 6 in steps of 0.25
    best = max(grid, key=lambda b: (score(gold, with_prior_offset(logits, b, no_relation).argmax(-1)), -abs(b)))
    return float(best)


def fit_temperature(logits: torch.Tensor, gold: torch.Tensor) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) on held-out logits (a log-spaced grid
    0.25 .. 8, then a finer one around the best point): deterministic, no optimiser state."""
    logits = logits.float()
    finite = torch.where(torch.isfinite(logits), logits, torch.full_like(logits, -1e4))

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(finite / t, gold))

    grid = torch.logspace(-2, 3, 41, base=2.0).tolist()  # 0.25 .. 8
    best = min(grid, key=nll)
    fine = (best * torch.logspace(-0.125, 0.125, 21, base=2.0)).tolist()
    return float(min(fine, key=nll))
