"""BiLSTM-CRF tagger (Lample et al. 2016; Ma & Hovy 2016): words + characters -> BiLSTM -> CRF.

    model = build_bilstm_crf(cfg.bilstm, num_words, num_chars, labels, word_vectors=None)
    emissions = model(words, chars, mask)                  # (B, W, K)
    nll = model.loss(batch, reduction="sum"); tags = model.decode(batch)

Legend: B batch, W words, C characters per word, E word-embedding size, H LSTM hidden per
direction, K tags. ``extra`` features (B, W, F) concatenated before the output layer carry the
frozen source model's features when a target model is trained with feature augmentation.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.char_encoder import build_char_encoder
from models.crf import CRF


class BiLSTMCRF(nn.Module):
    def __init__(self, num_words: int, word_dim: int, char_encoder: nn.Module, hidden: int, labels: list[str],
                 dropout: float = 0.5, bio_constraints: bool = True, extra_dim: int = 0,
                 freeze_words: bool = False):
        super().__init__()
        self.words = nn.Embedding(num_words, word_dim, padding_idx=0)
        self.words.weight.requires_grad_(not freeze_words)
        self.chars = char_encoder
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(word_dim + char_encoder.out_dim, hidden, batch_first=True, bidirectional=True)
        self.extra_dim = extra_dim
        self.out = nn.Linear(2 * hidden + extra_dim, len(labels))
        self.crf = CRF(len(labels), labels=labels if bio_constraints else None)
        self.labels = list(labels)

    def features(self, words: torch.Tensor, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BiLSTM states (B, W, 2H) over packed sequences (padding never enters the LSTM)."""
        x = torch.cat([self.words(words), self.chars(chars)], dim=-1)  # (B, W, E + char)
        x = self.dropout(x)
        lengths = mask.sum(1).cpu()  # (B,) pack wants CPU lengths
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=words.shape[1])  # (B, W, 2H)
        return self.dropout(out)

    def forward(self, words, chars, mask, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Emission scores (B, W, K)."""
        h = self.features(words, chars, mask)  # (B, W, 2H)
        if self.extra_dim:
            h = torch.cat([h, extra.to(h.dtype)], dim=-1)  # (B, W, 2H + F)
        return self.out(h)

    def loss(self, batch: dict, reduction: str = "sum", extra: torch.Tensor | None = None) -> torch.Tensor:
        emissions = self(batch["words"], batch["chars"], batch["mask"], extra)  # (B, W, K)
        return self.crf(emissions, batch["tags"], batch["mask"], reduction=reduction)

    @torch.no_grad()
    def decode(self, batch: dict, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Best tags (B, W), -1 on padding."""
        emissions = self(batch["words"], batch["chars"], batch["mask"], extra)
        return self.crf.decode(emissions, batch["mask"])


def build_bilstm_crf(cfg, num_words: int, num_chars: int, labels: list[str],
                     word_vectors: torch.Tensor | None = None, freeze_words: bool = False,
                     extra_dim: int = 0) -> BiLSTMCRF:
    """From the ``bilstm`` config section; ``word_vectors`` (num_words, E) initialise the word table."""
    word_dim = word_vectors.shape[1] if word_vectors is not None else cfg.word_dim
    chars = build_char_encoder(cfg.char_encoder, num_chars, cfg.char_dim, cfg.char_hidden)
    model = BiLSTMCRF(num_words, word_dim, chars, cfg.hidden_size, labels, cfg.dropout, cfg.bio_constraints,
                      extra_dim=extra_dim, freeze_words=freeze_words)
    if word_vectors is not None:
        with torch.no_grad():
            model.words.weight.copy_(word_vectors)
            model.words.weight[0].zero_()
    return model
