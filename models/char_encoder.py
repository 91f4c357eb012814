"""Character features of each word: a CNN with max-pooling, or a BiLSTM's final states.

Legend: B batch, W words, C characters per word (0 = padding), H output size.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class CharCNN(nn.Module):
    """Embed characters, convolve (width 3), max-pool over the real characters (Ma & Hovy 2016)."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int, width: int = 3, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv1d(char_dim, hidden, width, padding=width // 2)
        self.out_dim = hidden

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        B, W, C = chars.shape
        x = self.dropout(self.embed(chars.view(B * W, C)))  # (B*W, C, char_dim)
        h = self.conv(x.transpose(1, 2))  # (B*W, H, C)
        h = h.masked_fill((chars.view(B * W, 1, C) == 0), float("-inf"))
        h = h.amax(dim=2)  # (B*W, H)
        h = torch.where(torch.isinf(h), torch.zeros_like(h), h)  # words with no characters (padding)
        return h.view(B, W, -1)  # (B, W, H)


class CharLSTM(nn.Module):
    """Embed characters, run a BiLSTM over each word, concatenate the two final states."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        B, W, C = chars.shape
        flat = chars.view(B * W, C)  # (B*W, C)
        lengths = (flat != 0).sum(1)  # (B*W,)
        out = flat.new_zeros(B * W, self.out_dim, dtype=self.embed.weight.dtype)  # (B*W, 2h)
        real = lengths > 0
        if real.any():
            x = self.dropout(self.embed(flat[real]))  # (N, C, char_dim)
            packed = pack_padded_sequence(x, lengths[real].cpu(), batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.lstm(packed)  # (2, N, h)
            out[real] = torch.cat([h_n[0], h_n[1]], dim=1).to(out.dtype)
        return out.view(B, W, -1)  # (B, W, 2h)


def build_char_encoder(kind: str, num_chars: int, char_dim: int, hidden: int, dropout: float = 0.0) -> nn.Module:
    if kind == "cnn":
        return CharCNN(num_chars, char_dim, hidden, dropout=dropout)
    if kind == "lstm":
        return CharLSTM(num_chars, char_dim, hidden, dropout=dropout)
    raise ValueError(f"char_encoder must be cnn or lstm, got {kind!r}")
