"""The relation classifier: encoder -> entity pooling -> small MLP -> relation logits.

Legend: B examples, T subword positions, H hidden, F pooled features, K relations.

    model = RelationClassifier(encoder, num_labels=30, pooling="start")
    logits = model(input_ids, attention_mask, subj_marker, obj_marker, subj_mask, obj_mask)  # (B, K)

The MLP is Zhou & Chen's: Linear(F, H) -> ReLU -> dropout -> Linear(H, K), the same for every
pooling (for [CLS], F = H), so the ablation changes one thing at a time. The decoding of its logits
(type constraint, prior offset, temperature) is models/re_decoding.py.
"""
from __future__ import annotations

import torch
from torch import nn

from models.encoder import init_module
from models.pooling import EntityPooler
from models.re_decoding import (allowed_relations, apply_constraint, fit_temperature,  # noqa: F401 (importable here)
                                tune_prior_offset, with_prior_offset)


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
