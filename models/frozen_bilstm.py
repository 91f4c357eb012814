"""Frozen encoder -> BiLSTM -> emissions: the downstream NER model of Wang et al. 2020
(``model.head: bilstm_crf``; the CRF on first pieces is models/tagger.py's CRFTagger).

Legend: B windows, T subword positions, H encoder hidden, L LSTM hidden per direction, K tags.

    tagger = FrozenEncoderBiLSTM(token_classifier, hidden=200, dropout=0.5)
    model = CRFTagger(tagger, CRF(K, labels=tags))
    emissions = model(input_ids, attention_mask)      # (B, T, K)

The encoder's weights never change: requires_grad is off, it stays in eval mode (no dropout) and
runs under no_grad, so a step costs its forward pass only. A BiLSTM reads its hidden states over
the real pieces of each window (packed, pads never enter) and a linear layer gives the emissions.
The token classifier's own linear layer is unused (kept so the encoder exports in the HF layout).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class FrozenEncoderBiLSTM(nn.Module):
    def __init__(self, classifier: nn.Module, hidden: int, dropout: float):
        super().__init__()
        self.base = classifier
        for p in classifier.parameters():
            p.requires_grad_(False)
        self.lstm = nn.LSTM(classifier.config.hidden_size, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, classifier.num_labels)
        self.base.eval()

    def train(self, mode: bool = True) -> "FrozenEncoderBiLSTM":
        super().train(mode)
        self.base.eval()  # frozen: no dropout in the encoder
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, K) emissions, or (M, K) at the ``select`` positions (the BiLSTM reads them all)."""
        with torch.no_grad():
            h = self.base.encoder(input_ids, attention_mask)  # (B, T, H)
        lengths = attention_mask.sum(1).clamp_min(1).cpu()  # (B,) pack wants CPU lengths; pads on the right
        with torch.autocast(device_type=h.device.type, enabled=False):  # the LSTM in fp32
            packed = pack_padded_sequence(h.float(), lengths, batch_first=True, enforce_sorted=False)
            states, _ = self.lstm(packed)
            states, _ = pad_packed_sequence(states, batch_first=True, total_length=h.shape[1])  # (B, T, 2L)
            logits = self.out(self.dropout(states))  # (B, T, K)
        return logits if select is None else logits[select]  # (B, T, K) or (M, K)

    def head_state(self) -> dict[str, torch.Tensor]:
        """The trained part (BiLSTM + output layer), saved beside the HF-layout encoder."""
        return {f"lstm.{k}": v for k, v in self.lstm.state_dict().items()} | \
               {f"out.{k}": v for k, v in self.out.state_dict().items()}
