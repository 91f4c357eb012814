"""The XLM-R encoder written out by hand: embeddings, self-attention, post-LN blocks.

This is the reference, meant to be read top to bottom: the same code runs on every device.
The CPU fast paths (the real tokens packed without their pads, oneDNN's fp32 linear, a faster
dropout, the last layer on the selected rows only) live in models/encoder_fast.py as subclasses
of these modules with the same parameters; ``model.kernels`` chooses, and tests/test_encoder_paths.py
proves the two give the same numbers and gradients.

Shapes: B batch, T subword positions, H hidden, N heads, D head dim (H = N * D), I feed-forward
width, V vocabulary, L layers, M selected positions. Masks are bool, True = a real token.

Numbers match transformers' XLMRobertaModel (tests/test_encoder_parity.py). Two traps are
commented where they occur: position ids start after the padding index, and the layer norm
comes after each sublayer (post-LN), not before. Query, key and value are one fused
projection (one matmul instead of three); models/weights.py concatenates HF's three
matrices at load and splits them at export.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_IMPLS = ("sdpa", "manual")


@dataclass
class XLMRConfig:
    """Mirror of the HF config.json fields the encoder uses. Always read from the checkpoint:
    the HF class defaults (type_vocab_size=2, layer_norm_eps=1e-12) differ from xlm-roberta-base."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    pad_token_id: int = 1
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    bos_token_id: int = 0
    eos_token_id: int = 2
    classifier_dropout: float | None = None
    attention: str = "sdpa"  # ours, not in config.json: sdpa | manual (same numbers)

    REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "layer_norm_eps", "type_vocab_size")

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {self.attention!r}")

    @classmethod
    def from_hf_dict(cls, d: dict) -> "XLMRConfig":
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise ValueError(f"config.json lacks {missing}; refusing to fall back to class defaults")
        act = d.get("hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(f"hidden_act {act!r} not supported (XLM-R uses exact erf 'gelu')")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        names = {f.name for f in fields(cls)} - {"attention"}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, path: str | Path) -> "XLMRConfig":
        return cls.from_hf_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_hf_dict(self) -> dict:
        d = asdict(self)
        d.pop("attention")
        d.update(model_type="xlm-roberta", hidden_act="gelu", position_embedding_type="absolute",
                 tie_word_embeddings=True)
        return d

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """XLM-R positions (HF's create_position_ids_from_input_ids): real tokens count from
    padding_idx + 1, pads get padding_idx itself (whose embedding row is never trained)."""
    not_pad = input_ids.ne(padding_idx)  # (B, T) bool
    return torch.cumsum(not_pad, dim=1) * not_pad + padding_idx  # (B, T) int64


class Embeddings(nn.Module):
    """Word + position + the single token-type row, then LayerNorm and dropout."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        H = config.hidden_size
        self.padding_idx = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, H, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, H,
                                                padding_idx=config.pad_token_id)
        # XLM-R has one token type; we add its row to every position.
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, H)
        self.norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Trap: positions start at padding_idx + 1, not 0 (fairseq heritage); the first real
        # token of xlm-roberta-base reads row 2 of the position table, pads read row 1.
        position_ids = position_ids_from_input_ids(input_ids, self.padding_idx)  # (B, T)
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, T, H)
        x = x + self.token_type_embeddings.weight[0]  # (B, T, H)
        return self.dropout(self.norm(x))  # (B, T, H)


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v, written out: q, k, v (B, N, T, D); key_mask (B, 1, 1, T) bool,
    True = may be attended, or None. The same numbers as F.scaled_dot_product_attention."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, N, T, T): query x key
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))  # (B, N, T, T): no query reads a pad
    probs = scores.softmax(dim=-1)  # (B, N, T, T), each row sums to 1
    if dropout_p > 0:
        probs = F.dropout(probs, dropout_p)  # (B, N, T, T)
    return probs @ v  # (B, N, T, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention + output projection + residual + LayerNorm (post-LN)."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        H = config.hidden_size
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.impl = config.attention
        self.attn_dropout = config.attention_probs_dropout_prob
        self.qkv = nn.Linear(H, 3 * H)  # rows: query, key, value (HF's three matrices stacked)
        self.out = nn.Linear(H, H)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.norm = nn.LayerNorm(H, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, H); key_mask (B, 1, 1, T) bool, True = attend, or None = attend everywhere."""
        B, T, H = x.shape
        N, D = self.num_heads, self.head_dim
        qkv = self.qkv(x)  # (B, T, 3H)
        q, k, v = qkv.view(B, T, 3, N, D).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, N, T, D)
        ctx = self.attend(q, k, v, key_mask)  # (B, N, T, D)
        ctx = ctx.transpose(1, 2).reshape(B, T, H)  # (B, T, H): the heads side by side again
        # Trap: post-LN -- the norm comes after the residual sum, not before the sublayer.
        return self.norm(x + self.dropout(self.out(ctx)))  # (B, T, H)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               key_mask: torch.Tensor | None) -> torch.Tensor:
        """The attention of ``self.impl``: torch's fused sdpa or the written-out manual_attention."""
        p = self.attn_dropout if self.training else 0.0
        if self.impl == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p)  # (B, N, T, D)
        return manual_attention(q, k, v, key_mask, p)  # (B, N, T, D)


class Block(nn.Module):
    """Attention sublayer then feed-forward sublayer (H -> I -> H, exact erf GELU), each post-LN."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        H, I = config.hidden_size, config.intermediate_size
        self.attention = SelfAttention(config)
        self.ffn_in = nn.Linear(H, I)
        self.ffn_out = nn.Linear(I, H)
        self.ffn_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.ffn_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, key_mask)  # (B, T, H)
        return self.feed_forward(x)  # (B, T, H)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The position-wise sublayer: row by row, so x may be (B, T, H) or any (..., H)."""
        h = self.ffn_out(F.gelu(self.ffn_in(x)))  # (..., I) -> (..., H); gelu is the exact erf form
        return self.ffn_norm(x + self.ffn_dropout(h))  # (..., H), post-LN again


class XLMREncoder(nn.Module):
    """input_ids (B, T) + attention_mask (B, T) bool -> hidden states (B, T, H)."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))

    def set_attention(self, impl: str) -> None:
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")
        self.config.attention = impl
        for layer in self.layers:
            layer.attention.impl = impl

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, T, H); a pad's row holds values no real token depends on. With
        ``select`` (B, T) bool, inside the mask: ``h[select]``, the (M, H) selected rows in
        row-major order, for a loss that reads a few positions (the fast kernels then run the last
        layer's queries and everything after them on those rows alone)."""
        x = self.embeddings(input_ids)  # (B, T, H)
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        for layer in self.layers:
            x = layer(x, key_mask)  # (B, T, H)
        return x if select is None else x[select.bool()]  # (B, T, H) or (M, H)

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        init_weights(self, self.config.initializer_range, generator)


@torch.no_grad()
def init_weights(module: nn.Module, std: float = 0.02, generator: torch.Generator | None = None) -> None:
    """HF's initialisation: Linear/Embedding ~ N(0, std), zero biases, LayerNorm 1/0, padding row 0."""
    seen: set[int] = set()  # a tied weight (MLM decoder = word embeddings) is initialised once
    for m in module.modules():
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor):
            if id(weight) in seen:
                continue
            seen.add(id(weight))
        init_module(m, std, generator)


@torch.no_grad()
def init_module(m: nn.Module, std: float = 0.02, generator: torch.Generator | None = None) -> None:
    """Initialise one module's own parameters (not its children)."""
    if isinstance(m, nn.Linear):
        m.weight.normal_(0.0, std, generator=generator)
        if m.bias is not None:
            m.bias.zero_()
    elif isinstance(m, nn.Embedding):
        m.weight.normal_(0.0, std, generator=generator)
        if m.padding_idx is not None:
            m.weight[m.padding_idx].zero_()
    elif isinstance(m, nn.LayerNorm):
        m.weight.fill_(1.0)
        m.bias.zero_()
