"""Task heads on top of the encoder: token classification and masked-LM.

Shapes: B batch, T subword positions, H hidden, K tags, V vocabulary, M selected positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.vocab_loss import linear_cross_entropy
from models.encoder import XLMRConfig, XLMREncoder, init_weights


class XLMRForTokenClassification(nn.Module):
    """Encoder -> dropout -> linear: (B, T) ids -> (B, T, K) logits."""

    def __init__(self, config: XLMRConfig, num_labels: int, classifier_dropout: float | None = None):
        super().__init__()
        self.config, self.num_labels = config, num_labels
        if classifier_dropout is None:  # as HF: classifier_dropout, else the hidden dropout
            classifier_dropout = config.classifier_dropout
        if classifier_dropout is None:
            classifier_dropout = config.hidden_dropout_prob
        self.encoder = XLMREncoder(config)
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """select: optional (B, T) bool; logits only where True -- (M, K) -- for a loss over labelled
        positions (with the fast kernels the encoder's last layer then skips the others; models/encoder_fast.py)."""
        h = self.encoder(input_ids, attention_mask, select)  # (B, T, H) or (M, H)
        return self.classifier(self.dropout(h))  # (B, T, K) or (M, K)

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        init_weights(self, self.config.initializer_range, generator)


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder (weight tied to the word embeddings) + own bias."""

    def __init__(self, config: XLMRConfig, word_embeddings: nn.Embedding):
        super().__init__()
        H, V = config.hidden_size, config.vocab_size
        self.dense = nn.Linear(H, H)
        self.layer_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(H, V, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied: one (V, H) tensor
        self.bias = nn.Parameter(torch.zeros(V))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(F.gelu(self.dense(h)))  # (..., H)
        return F.linear(x, self.decoder.weight, self.bias)  # (..., V)

    def loss(self, h: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed fp32 cross-entropy, correct count) of forward(h) against target (M,), h (M, H),
        without the (M, V) logits in memory (models/vocab_loss.py)."""
        x = self.layer_norm(F.gelu(self.dense(h)))  # (M, H)
        return linear_cross_entropy(x, self.decoder.weight, self.bias, target)


class XLMRForMaskedLM(nn.Module):
    """Encoder -> MLM head: (B, T) ids -> (B, T, V) logits, or (M, V) at the selected positions."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.config = config
        self.encoder = XLMREncoder(config)
        self.lm_head = MaskedLMHead(config, self.encoder.embeddings.word_embeddings)

    def tie_weights(self) -> None:
        """Re-point the decoder at the word embeddings (after weights were assigned)."""
        self.lm_head.decoder.weight = self.encoder.embeddings.word_embeddings.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                select: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        """select: optional (B, T) bool; logits only where True -- (M, V) -- which saves the
        (B, T, V) product when few positions are masked (and, with the fast kernels, most of the
        encoder's last layer). labels: optional (B, T), -100 where not scored; then the result is
        (summed cross-entropy, correct count) over the scored positions, computed without their
        (M, V) logits in memory (MaskedLMHead.loss)."""
        if labels is not None:
            chosen = labels != -100  # (B, T)
            h = self.encoder(input_ids, attention_mask, chosen)  # (M, H)
            return self.lm_head.loss(h, labels[chosen])
        h = self.encoder(input_ids, attention_mask, select)  # (B, T, H) or (M, H)
        return self.lm_head(h)  # (B, T, V) or (M, V)

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        init_weights(self, self.config.initializer_range, generator)
        with torch.no_grad():
            self.lm_head.bias.zero_()
        self.tie_weights()
