"""The CRF token tagger of ``model.head: crf``: encoder emissions on each word's first piece feed a CRF.

Legend: B windows, T subword positions, W owned words of a window, K tags.

    model = CRFTagger(token_classifier, CRF(K, labels=tags))
    emissions = model(input_ids, attention_mask)                      # (B, T, K)
    packed, mask, positions = first_piece_view(emissions, word_ids)   # (B, W, K), (B, W), (B, W)

Used by tasks/ner.py (training, prediction) and evaluate.py (reloading a saved run).
"""
from __future__ import annotations

import torch
from torch import nn


class CRFTagger(nn.Module):
    """A token classifier whose first-piece emissions feed a CRF (``model.head: crf``)."""

    def __init__(self, tagger: nn.Module, crf: nn.Module):
        super().__init__()
        self.tagger, self.crf = tagger, crf

    def forward(self, input_ids, attention_mask):
        return self.tagger(input_ids, attention_mask)  # (B, T, K) emissions


def first_piece_view(emissions: torch.Tensor, word_ids: torch.Tensor):
    """Pack each row's owned first-piece positions to the left.

    ``word_ids`` (B, T) is >= 0 at the first piece of each word the window owns. Returns
    emissions (B, W, K), mask (B, W) bool, positions (B, W) (index into T).
    """
    owned = word_ids >= 0  # (B, T)
    W = max(int(owned.sum(1).max()), 1)
    positions = torch.argsort((~owned).to(torch.int8), dim=1, stable=True)[:, :W]  # (B, W)
    mask = torch.gather(owned, 1, positions)  # (B, W)
    packed = torch.gather(emissions, 1, positions.unsqueeze(-1).expand(-1, -1, emissions.size(-1)))  # (B, W, K)
    return packed, mask, positions
