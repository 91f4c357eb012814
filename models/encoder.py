"""The XLM-R encoder written out by hand: embeddings, self-attention, post-LN blocks.

Shapes: B batch, T subword positions, H hidden, N heads, D head dim (H = N * D), V vocabulary,
L layers. Masks are bool, True = a real token.

Numbers match transformers' XLMRobertaModel (tests/test_encoder_parity.py). Two traps are
commented where they occur: position ids start after the padding index, and the layer norm
comes after each sublayer (post-LN), not before. Query, key and value are one fused
projection (one matmul instead of three); models/weights.py concatenates HF's three
matrices at load and splits them at export. On the CPU a padded batch skips its pads: every
position-wise layer runs on the R real tokens only (``Packing``); attention alone sees (B, T).
With ``select`` (the positions a loss reads) the last layer computes its queries and everything
after them for the M selected rows only; keys and values still come from all R.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_IMPLS = ("sdpa", "manual")
# On the CPU, train with fast_dropout and the manual attention (see SelfAttention.forward), and run
# fp32 linear layers on oneDNN (Linear); False = torch's F.dropout, sdpa and F.linear everywhere
# (bench/profile_step.py --compare flips it).
CPU_TRAINING_KERNELS = True


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


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout from 16-bit random numbers, four per draw of torch's 64-bit generator: on the CPU
    several times faster than F.dropout (whose bernoulli_ runs on one thread). An element is zeroed
    with probability round(p * 65536) / 65536 (p to within 1e-5) and the kept ones are scaled so
    the expectation is exact. Accelerators (and CPU_TRAINING_KERNELS = False) use F.dropout."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not CPU_TRAINING_KERNELS or p >= 1.0:
        return F.dropout(x, p, training)
    n, drop = x.numel(), round(p * 65536)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
    keep = torch.ge(bits.view(torch.int16)[:n].view(x.shape), drop - 32768,
                    out=torch.empty_like(x))  # 1 = kept, in x's dtype; P(kept) = 1 - drop / 65536
    return ScaleKept.apply(x, keep, 65536 / (65536 - drop))


class ScaleKept(torch.autograd.Function):
    """y = x * keep * scale, keep a 0/1 mask in x's dtype; the gradient the same way. One fused
    pass each way (addcmul). Why not ``x.mul(bool_mask)`` or ``masked_fill_``: on the CPU a bool
    operand takes a slow unvectorized path, several times the cost of these passes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.addcmul(x.new_zeros(()), x, keep, value=scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.addcmul(grad.new_zeros(()), grad, keep, value=ctx.scale), None, None


class Dropout(nn.Dropout):
    """nn.Dropout through fast_dropout (same module, same state dict: none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def _has_onednn_linear() -> bool:
    try:  # builds without oneDNN have no such op
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _has_onednn_linear()

# oneDNN keeps the kernels it compiles for each matrix shape (its "primitives") in an LRU cache of
# 1,024 by default. A packed batch has a new row count R almost every batch, and each R makes ~10
# primitives (bf16 training: forward and backward of every linear shape), so the default cache
# cycles and batches keep recompiling. With 4,096 entries, prediction on 20,000 PAN-X sentences
# compiles its 1,918 primitives once instead of 5,657 times (~1 s saved per pass of 13-15 s), for
# ~300 KB per cached primitive (docs/ENCODER.md, RESULTS.md "Session 7"). oneDNN reads the variable
# once, when it makes its first primitive (so before any model runs); a value the user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "4096")


def onednn_fp32(x: torch.Tensor) -> bool:
    """Route an fp32 CPU linear through oneDNN? Torch's own fp32 linear calls MKL's sgemm; on the
    AMD Zen 4 CPU we measured, oneDNN's fp32 kernel runs the forward and input-gradient products
    10-30% faster (the weight gradient stays on MKL, which wins there). Same fp32 arithmetic, other
    summation order. Under autocast, and off the CPU, torch's linear as usual."""
    return (CPU_TRAINING_KERNELS and x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() > 0
            and not torch.is_autocast_enabled("cpu") and ONEDNN_LINEAR)


class OneDnnLinear(torch.autograd.Function):
    """y = x W^T + b with oneDNN's fp32 kernel forward and for dx; dW on MKL (torch.mm)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # (M, K)
        ctx.save_for_backward(x2, weight)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        y = torch.ops.mkldnn._linear_pointwise(x2, weight, bias, "none", [], "")  # (M, N)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x2, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])  # (M, N)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.mkldnn._linear_pointwise(g2, weight.t(), None, "none", [], "").view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            gw = torch.mm(g2.t(), x2)  # (N, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)  # (N,)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear, through OneDnnLinear where onednn_fp32 says so."""
    if onednn_fp32(x):
        return OneDnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) through ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def manual_for_training(q: torch.Tensor, dropout_p: float) -> bool:
    """Take the manual attention while training on the CPU with dropout or in bf16: there torch's
    sdpa has no fast kernel (with dropout it falls back to a math path that runs bf16 products in
    fp32; its flash backward is slow in bf16), the manual path is ~2x faster per layer.
    Inference keeps sdpa's flash kernel."""
    return (CPU_TRAINING_KERNELS and q.device.type == "cpu" and q.requires_grad
            and (dropout_p > 0 or q.dtype == torch.bfloat16))


class Embeddings(nn.Module):
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
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Trap: positions start at padding_idx + 1, not 0 (fairseq heritage).
        position_ids = position_ids_from_input_ids(input_ids, self.padding_idx)  # (B, T)
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, T, H)
        x = x + self.token_type_embeddings.weight[0]  # (B, T, H)
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention + output projection + residual + LayerNorm (post-LN)."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        H = config.hidden_size
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.impl = config.attention
        self.attn_dropout = config.attention_probs_dropout_prob
        self.qkv = Linear(H, 3 * H)  # rows: query, key, value (HF's three matrices stacked)
        self.out = Linear(H, H)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.norm = nn.LayerNorm(H, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                packing: "Packing | None" = None, queries: "Packing | None" = None) -> torch.Tensor:
        """x (B, T, H), or (R, H) = the R real tokens when ``packing`` is given; key_mask
        (B, 1, 1, T) bool, True = attend, or None when nothing is padded. Returns x's shape, or
        (M, H) for the M positions of ``queries`` (a ``packing.subset``): keys and values still
        come from every real token, queries and everything after them from those M rows only."""
        N, D = self.num_heads, self.head_dim
        if queries is None:
            qkv = self.qkv(x)  # (B, T, 3H) or (R, 3H)
            if packing is not None:
                qkv = packing.unpack(qkv)  # (B, T, 3H), zeros at the pads
            B, T, _ = qkv.shape
            q, k, v = qkv.view(B, T, 3, N, D).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, N, T, D)
        else:
            H, (w, b) = N * D, (self.qkv.weight, self.qkv.bias)
            kv = packing.unpack(linear(x, w[H:], b[H:]))  # (B, T, 2H), zeros at the pads
            x = x.index_select(0, queries.rows)  # (M, H): the residual stream of the selected rows
            q = queries.unpack(linear(x, w[:H], b[:H]))  # (B, T, H), zeros off the selection
            B, T, _ = q.shape
            q = q.view(B, T, N, D).transpose(1, 2)  # (B, N, T, D)
            k, v = kv.view(B, T, 2, N, D).permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, N, T, D)
        p = self.attn_dropout if self.training else 0.0
        if self.impl == "sdpa" and not manual_for_training(q, p):
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p)  # (B, N, T, D)
        else:
            ctx = manual_attention(q, k, v, key_mask, p, self.training)  # (B, N, T, D)
        ctx = ctx.transpose(1, 2).reshape(B, T, -1)  # (B, T, H)
        if queries is not None or packing is not None:
            ctx = (packing if queries is None else queries).pack(ctx)  # (R, H) or (M, H)
        # Trap: post-LN -- the norm comes after the residual sum.
        return self.norm(x + self.dropout(self.out(ctx)))  # x's shape


def manual_attention(q, k, v, key_mask, dropout_p: float, training: bool) -> torch.Tensor:
    """The readable path: softmax(q k^T / sqrt(D) + bias) v, q k v (B, N, T, D), the masked keys'
    bias -inf. The bias goes in as baddbmm's added input, so the mask costs no pass of its own
    over the (B, N, T, T) scores (forward or backward). Same numbers as sdpa."""
    B, N, T, D = q.shape
    bias = torch.zeros(B, 1, 1, T, dtype=q.dtype, device=q.device)  # (B, 1, 1, T)
    if key_mask is not None:
        bias.masked_fill_(~key_mask, float("-inf"))
    bias = bias.expand(B, N, 1, T).reshape(B * N, 1, T)  # (B * N, 1, T)
    q, k, v = (t.reshape(B * N, T, D) for t in (q, k, v))  # (B * N, T, D) each
    scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=1 / math.sqrt(D))  # (B * N, T, T)
    probs = fast_dropout(scores.softmax(dim=-1), dropout_p, training)  # (B * N, T, T)
    return torch.bmm(probs, v).view(B, N, T, D)  # (B, N, T, D)


class Block(nn.Module):
    """Attention sublayer then feed-forward sublayer (H -> I -> H, exact erf GELU), each post-LN."""

    def __init__(self, config: XLMRConfig):
        super().__init__()
        H, I = config.hidden_size, config.intermediate_size
        self.attention = SelfAttention(config)
        self.ffn_in = Linear(H, I)
        self.ffn_out = Linear(I, H)
        self.ffn_dropout = Dropout(config.hidden_dropout_prob)
        self.ffn_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                packing: "Packing | None" = None, queries: "Packing | None" = None) -> torch.Tensor:
        x = self.attention(x, key_mask, packing, queries)  # (B, T, H), (R, H) or (M, H)
        h = self.ffn_out(F.gelu(self.ffn_in(x)))  # x's shape; gelu is the exact erf form
        return self.ffn_norm(x + self.ffn_dropout(h))  # x's shape


class Packing:
    """The real tokens of a padded batch as one (R, ...) tensor, and back.

    Pads never influence a real token (their keys are masked and nothing reads them), so every
    position-wise layer can skip them: R = mask.sum() rows instead of B * T. The same numbers
    at the real positions, up to float rounding; the unpacked output is zero at the pads."""

    def __init__(self, mask: torch.Tensor):
        self.B, self.T = mask.shape  # mask (B, T) bool, True = a real token
        self.mask = mask
        self.index = mask.flatten().nonzero().squeeze(1)  # (R,) flat positions of the real tokens
        self.rows = None  # for a subset: (M,) its positions' rows in the packing it was taken from

    def subset(self, select: torch.Tensor) -> "Packing":
        """The Packing of ``select`` (B, T) bool, which must lie inside this one's mask; its
        ``rows`` (M,) say where each selected position sits among this packing's R rows."""
        if bool((select & ~self.mask).any()):
            raise ValueError("select marks a position outside attention_mask (a pad)")
        sub = Packing(select)
        sub.rows = (self.mask.flatten().cumsum(0) - 1).index_select(0, sub.index)  # (M,)
        return sub

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(0, 1).index_select(0, self.index)  # (B, T, ...) -> (R, ...)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        full = x.new_zeros(self.B * self.T, *x.shape[1:]).index_copy_(0, self.index, x)  # (B * T, ...)
        return full.view(self.B, self.T, *x.shape[1:])  # (R, ...) -> (B, T, ...)


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
        """Hidden states (B, T, H); with ``select`` (B, T) bool, inside the mask, only the selected
        positions' (M, H), in row-major order (= ``h[select]``). On the CPU the last layer then
        runs its queries, output projection, norms and FFN on those M rows alone: a loss that reads
        a few positions (MLM's masked pieces, NER's labelled ones) does not pay for the others."""
        x = self.embeddings(input_ids)  # (B, T, H)
        key_mask, packing, queries = None, None, None
        mask = None if attention_mask is None else attention_mask.bool()  # (B, T)
        if x.device.type != "cpu":
            # Looking for pads would stall the host on an accelerator: the mask always goes in.
            key_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, T)
        elif select is not None or (mask is not None and not bool(mask.all())):
            # On the CPU (an unpadded batch takes sdpa's fastest, maskless kernel): the linear
            # layers and norms (~95% of the work) run on the R real tokens only; attention alone
            # sees the padded (B, T) layout.
            mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask
            packing = Packing(mask)
            key_mask = None if packing.index.numel() == mask.numel() else mask[:, None, None, :]  # (B, 1, 1, T)
            queries = None if select is None else packing.subset(select.bool())
            x = packing.pack(x)  # (R, H)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, key_mask, packing, queries if i == last else None)  # (B, T, H), (R, H); last (M, H)
        if queries is not None:
            return x  # (M, H)
        x = x if packing is None else packing.unpack(x)  # (B, T, H), zeros at the pads
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
