"""The CPU fast paths of the XLM-R encoder, beside the reference in models/encoder.py.

    from models.encoder_fast import use_kernels
    use_kernels(model, "fast")       # in place; "reference" switches back; "auto": fast when run on the CPU

Each fast module is a subclass of its reference module that adds no parameter or buffer, so
``use_kernels`` switches the class of the modules in place: parameters (and an optimizer's hold
on them), state_dict keys, checkpoints and export stay as they are. On CPU tensors they run:

- packing (FastXLMREncoder, ``Packing``): a padded batch runs every position-wise layer (linears,
  GELU, LayerNorm, dropout) on its R real tokens only, as one (R, H) tensor; attention alone
  scatters them back to the padded (B, T) layout. The pads' output rows are zeros.
- selected rows: with ``select``, the last layer computes keys and values for all R real tokens
  and its queries, output projection, norms and FFN for the M selected rows only.
- oneDNN fp32 linear (FastLinear): in fp32 outside autocast, forward and input gradient on
  oneDNN's kernel, weight gradient on MKL (torch.mm).
- fast dropout (FastDropout): the keep mask from 16-bit random numbers, four per 64-bit draw,
  drawn again in backward instead of kept.
- attention dropout and the product with v as one autograd step (DropoutBmm): the dropped
  (B * N, T, T) probabilities are made again in backward instead of kept.
- GELU and the FFN's second linear as one autograd step (GeluLinear, fp32 training): GELU's
  output, the (R, I) input of that linear, is recomputed in backward instead of kept.
- manual attention while training with dropout or in bf16 (FastSelfAttention.attend), where
  torch's sdpa has no fast CPU kernel; inference keeps sdpa (config ``attention: sdpa``).

Off the CPU each fast module runs its reference forward: an accelerator has fast kernels of its
own, and looking for pads would stall the host. ``on_cpu`` is the one predicate that decides;
tests/test_encoder_paths.py forces it to False to run those branches on CPU tensors, and proves
reference == fast, values and gradients, on every path.

Shapes as in models/encoder.py, plus R real tokens of a padded batch.
"""
from __future__ import annotations

import functools
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder import Block, SelfAttention, XLMREncoder

KERNELS = ("reference", "fast", "auto")
ONEDNN_CACHE_CAPACITY = 4096


def on_cpu(x: torch.Tensor) -> bool:
    """Whether the fast paths apply to ``x``: they are CPU kernels."""
    return x.device.type == "cpu"


# --- dropout -------------------------------------------------------------------------------------

def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout from 16-bit random numbers, four per draw of torch's 64-bit generator: on the CPU
    several times faster than F.dropout (whose bernoulli_ runs on one thread). An element is zeroed
    with probability round(p * 65536) / 65536 (p to within 1e-5) and the kept ones are scaled so
    the expectation is exact. The mask is not kept for backward: it is drawn again there from the
    generator state of the forward (RedrawnDropout). Off the CPU, and for p >= 1, F.dropout."""
    if not training or p == 0.0:
        return x
    if not on_cpu(x) or p >= 1.0:
        return F.dropout(x, p, training)
    return RedrawnDropout.apply(x, round(p * 65536))


def keep_mask(like: torch.Tensor, drop: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """1 = kept, 0 = dropped, in ``like``'s shape and dtype; P(kept) = 1 - drop / 65536."""
    n = like.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device)  # (ceil(n / 4),)
    bits.random_(-2**63, None, generator=generator)
    return torch.ge(bits.view(torch.int16)[:n].view(like.shape), drop - 32768, out=torch.empty_like(like))


def scale_kept(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """x * keep * scale in one fused pass (addcmul). Why not ``x.mul(bool_mask)`` or
    ``masked_fill_``: on the CPU a bool operand takes a slow unvectorized path, several times the
    cost of this pass."""
    return torch.addcmul(x.new_zeros(()), x, keep, value=scale)  # x's shape


class RedrawnDropout(torch.autograd.Function):
    """y = x * keep * scale, the gradient the same way; keep (x's shape, x's dtype) is drawn from
    torch's default CPU generator in forward, and drawn again in backward from the generator state
    saved before the forward draw: the same mask, with a few kilobytes saved instead of a mask as
    large as x (per encoder layer two (R, H) masks and one (B * N, T, T))."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, drop: int) -> torch.Tensor:
        ctx.rng, ctx.drop = torch.get_rng_state(), drop
        return scale_kept(x, keep_mask(x, drop), 65536 / (65536 - drop))  # x's shape

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        generator = torch.Generator()
        generator.set_state(ctx.rng)
        keep = keep_mask(grad, ctx.drop, generator)  # the forward's mask, bit for bit
        return scale_kept(grad, keep, 65536 / (65536 - ctx.drop)), None


class FastDropout(nn.Dropout):
    """nn.Dropout through fast_dropout (same module, same state dict: none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


# --- linear --------------------------------------------------------------------------------------

def _has_onednn_linear() -> bool:
    try:  # builds without oneDNN have no such op
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _has_onednn_linear()


def _onednn_fp32_is_faster() -> bool:
    """Route fp32 linears through oneDNN on this CPU? Where we measured: on an AMD Zen 4 (AVX-512)
    oneDNN's fp32 kernel runs the forward and input-gradient products 10-30% faster than torch's own
    (MKL's sgemm); on an AMD EPYC with AVX2 only, MKL trained the mini 20% faster (2 threads,
    docs/ENCODER.md). So: oneDNN where torch's CPU capability is AVX-512, MKL elsewhere. Set
    ``ONEDNN_FP32`` to choose by hand."""
    return ONEDNN_LINEAR and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


ONEDNN_FP32 = _onednn_fp32_is_faster()


def set_up_onednn_cache(capacity: int = ONEDNN_CACHE_CAPACITY) -> str:
    """Give oneDNN's primitive cache room for ``capacity`` kernels unless the user set
    ONEDNN_PRIMITIVE_CACHE_CAPACITY (theirs wins); returns the value in force.

    oneDNN compiles a kernel (a "primitive") per matrix shape and keeps the last 1,024 by default.
    Packing gives a new row count R almost every batch and each R makes ~10 primitives, so the
    default cache cycles and batches keep recompiling; with 4,096, prediction on 20,000 PAN-X
    sentences compiles its 1,918 primitives once instead of 5,657 times (docs/ENCODER.md), for
    ~300 KB per cached primitive. oneDNN reads the variable once, when it makes its first
    primitive: call this before any model runs. ``use_kernels(model, "fast")`` calls it."""
    return os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity))


def onednn_fp32(x: torch.Tensor) -> bool:
    """Route a linear through oneDNN? Torch's own fp32 CPU linear calls MKL's sgemm; where
    ``ONEDNN_FP32`` (CPUs on which oneDNN's kernel was the faster), the forward and input-gradient
    products go to oneDNN (the weight gradient stays on MKL, which wins there). Same fp32
    arithmetic, another summation order. Under autocast (already oneDNN in bf16) and off the CPU: no."""
    return (ONEDNN_FP32 and on_cpu(x) and x.dtype == torch.float32 and x.numel() > 0
            and not torch.is_autocast_enabled("cpu"))


ROW_BUCKET = 64


def onednn_mm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(M, N) = x W^T + b for x (M, K) on oneDNN's fp32 kernel, M padded with zero rows up to a
    multiple of ROW_BUCKET. oneDNN compiles a kernel per shape; packed batches have a new M almost
    every step, and without the buckets a training run spends more time compiling than computing."""
    m = x.shape[0]
    pad = -m % ROW_BUCKET
    if pad:
        x = F.pad(x, (0, 0, 0, pad))  # (M + pad, K)
    y = _onednn_kernel(x, weight, bias)  # (M + pad, N)
    return y[:m] if pad else y


def _onednn_kernel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")  # (M, N)


class OneDnnLinear(torch.autograd.Function):
    """y = x W^T + b with oneDNN's fp32 kernel forward and for dx; dW on MKL (torch.mm)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # (M, K)
        ctx.save_for_backward(x2, weight)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        y = onednn_mm(x2, weight, bias)  # (M, N)
        return y.view(*x.shape[:-1], weight.shape[0])  # (..., N)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x2, weight = ctx.saved_tensors
        gx, gw, gb = linear_grads(ctx, grad.reshape(-1, grad.shape[-1]), x2, weight)
        return (None if gx is None else gx.view(ctx.x_shape)), gw, gb


def linear_grads(ctx, g2: torch.Tensor, x2: torch.Tensor | None, weight: torch.Tensor):
    """(dx, dW, db) of y = x W^T + b from g2 = dy (M, N), the ones ``ctx.needs_input_grad`` asks for:
    dx on ``_matmul_t`` (oneDNN where it applies), dW on MKL (torch.mm); x2 (M, K) is read for dW only."""
    needs = ctx.needs_input_grad
    gx = _matmul_t(g2, weight.t(), None) if needs[0] else None  # (M, K)
    gw = torch.mm(g2.t(), x2) if needs[1] else None  # (N, K)
    gb = g2.sum(0) if ctx.has_bias and needs[2] else None  # (N,)
    return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear, through OneDnnLinear where onednn_fp32 says so."""
    if onednn_fp32(x):
        return OneDnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class FastLinear(nn.Linear):
    """nn.Linear (same parameters, same state dict) through ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class GeluLinear(torch.autograd.Function):
    """y = linear(gelu(h)): the FFN's GELU and its second linear as one autograd step that saves h
    only. Autograd would keep h (for GELU's backward) and gelu(h) (the linear's input), two (M, I)
    tensors per layer, the largest activations of an encoder layer; here gelu(h) is recomputed in
    backward, one elementwise pass. fp32 outside autocast (``gelu_linear`` decides)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        h2 = h.reshape(-1, h.shape[-1])  # (M, I)
        ctx.save_for_backward(h2, weight)
        ctx.h_shape, ctx.has_bias = h.shape, bias is not None
        y = _matmul_t(F.gelu(h2), weight, bias)  # (M, H)
        return y.view(*h.shape[:-1], weight.shape[0])  # (..., H)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h2, weight = ctx.saved_tensors
        a = F.gelu(h2) if ctx.needs_input_grad[1] else None  # (M, I) recomputed, for dW only
        ga, gw, gb = linear_grads(ctx, grad.reshape(-1, grad.shape[-1]), a, weight)
        gh = None if ga is None else torch.ops.aten.gelu_backward(ga, h2).view(ctx.h_shape)  # exact erf GELU
        return gh, gw, gb


def _matmul_t(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x W^T + b for a 2-d x, on oneDNN's fp32 kernel where onednn_fp32 says so (as FastLinear)."""
    if onednn_fp32(x):
        return onednn_mm(x, weight, bias)
    return F.linear(x, weight, bias)


def gelu_linear(h: torch.Tensor, out: nn.Linear) -> torch.Tensor:
    """out(gelu(h)), through GeluLinear while training in fp32 on the CPU."""
    if on_cpu(h) and h.requires_grad and h.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"):
        return GeluLinear.apply(h, out.weight, out.bias)
    return out(F.gelu(h))


# --- attention -----------------------------------------------------------------------------------

def manual_for_training(q: torch.Tensor, dropout_p: float) -> bool:
    """Take the manual attention while training with dropout or in bf16: there torch's CPU sdpa
    has no fast kernel (with dropout it falls back to a math path that runs bf16 products in
    fp32; its flash backward is slow in bf16), the manual path is ~2x faster per layer.
    Inference keeps sdpa's flash kernel."""
    return q.requires_grad and (dropout_p > 0 or q.dtype == torch.bfloat16)


def fast_manual_attention(q, k, v, key_mask, dropout_p: float) -> torch.Tensor:
    """encoder.manual_attention with fewer passes over the (B * N, T, T) scores: the masked keys'
    -inf bias goes in as baddbmm's added input (no masked_fill over the scores, forward or
    backward), and dropout is fast_dropout. q k v (B, N, T, D); same numbers as sdpa."""
    B, N, T, D = q.shape
    bias = torch.zeros(B, 1, 1, T, dtype=q.dtype, device=q.device)  # (B, 1, 1, T)
    if key_mask is not None:
        bias.masked_fill_(~key_mask, float("-inf"))
    bias = bias.expand(B, N, 1, T).reshape(B * N, 1, T)  # (B * N, 1, T)
    q, k, v = (t.reshape(B * N, T, D) for t in (q, k, v))  # (B * N, T, D) each
    scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=1 / math.sqrt(D))  # (B * N, T, T)
    return dropout_bmm(scores.softmax(dim=-1), v, dropout_p).view(B, N, T, D)  # (B, N, T, D)


def dropout_bmm(probs: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """bmm(fast_dropout(probs, p), v), probs (B * N, T, T), v (B * N, T, D); when a backward will
    follow, on the CPU, without keeping the dropped probabilities (DropoutBmm)."""
    if p == 0.0 or p >= 1.0 or not on_cpu(probs) or not (torch.is_grad_enabled() and probs.requires_grad):
        return torch.bmm(fast_dropout(probs, p), v)  # (B * N, T, D)
    return DropoutBmm.apply(probs, v, round(p * 65536))


class DropoutBmm(torch.autograd.Function):
    """y = (probs * keep * scale) @ v, keeping probs and v only: the softmax keeps probs for its own
    backward anyway, and the mask is drawn again (as RedrawnDropout), so the dropped (B * N, T, T)
    copy that autograd would keep for the product is made again in backward instead."""

    @staticmethod
    def forward(ctx, probs: torch.Tensor, v: torch.Tensor, drop: int) -> torch.Tensor:
        ctx.rng, ctx.drop = torch.get_rng_state(), drop
        ctx.save_for_backward(probs, v)
        return torch.bmm(scale_kept(probs, keep_mask(probs, drop), 65536 / (65536 - drop)), v)  # (B * N, T, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        probs, v = ctx.saved_tensors
        generator = torch.Generator()
        generator.set_state(ctx.rng)
        keep, scale = keep_mask(probs, ctx.drop, generator), 65536 / (65536 - ctx.drop)  # the forward's mask
        dropped = scale_kept(probs, keep, scale)  # (B * N, T, T)
        grad_v = torch.bmm(dropped.transpose(1, 2), grad)  # (B * N, T, D)
        grad_probs = scale_kept(torch.bmm(grad, v.transpose(1, 2)), keep, scale)  # (B * N, T, T)
        return grad_probs, grad_v, None


class FastSelfAttention(SelfAttention):
    """SelfAttention on packed rows (``packing``), with the queries of the selected rows only
    (``queries``), and the attention implementation chosen for CPU training."""

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                packing: "Packing | None" = None, queries: "Packing | None" = None) -> torch.Tensor:
        """x (B, T, H), or (R, H) = the R real tokens when ``packing`` is given; key_mask
        (B, 1, 1, T) bool or None. Returns x's shape, or (M, H) for the M positions of ``queries``
        (a ``packing.subset``): keys and values still come from every real token, queries and
        everything after them from those M rows only."""
        if packing is None:
            return super().forward(x, key_mask)  # (B, T, H)
        N, D = self.num_heads, self.head_dim
        H = N * D
        if queries is None:
            qkv = packing.unpack(self.qkv(x))  # (R, 3H) -> (B, T, 3H), zeros at the pads
            B, T, _ = qkv.shape
            q, k, v = qkv.view(B, T, 3, N, D).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, N, T, D)
        else:
            w, b = self.qkv.weight, self.qkv.bias  # rows [:H] query, [H:] key and value
            kv = packing.unpack(linear(x, w[H:], b[H:]))  # (R, 2H) -> (B, T, 2H), zeros at the pads
            x = x.index_select(0, queries.rows)  # (M, H): the residual stream of the selected rows
            q = queries.unpack(linear(x, w[:H], b[:H]))  # (M, H) -> (B, T, H), zeros off the selection
            B, T, _ = q.shape
            q = q.view(B, T, N, D).transpose(1, 2)  # (B, N, T, D)
            k, v = kv.view(B, T, 2, N, D).permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, N, T, D)
        ctx = self.attend(q, k, v, key_mask).transpose(1, 2).reshape(B, T, H)  # (B, T, H)
        ctx = (packing if queries is None else queries).pack(ctx)  # (R, H) or (M, H)
        return self.norm(x + self.dropout(self.out(ctx)))  # post-LN, x's shape

    def attend(self, q, k, v, key_mask) -> torch.Tensor:
        p = self.attn_dropout if self.training else 0.0
        if not on_cpu(q):
            return super().attend(q, k, v, key_mask)  # (B, N, T, D)
        if self.impl == "manual" or manual_for_training(q, p):
            return fast_manual_attention(q, k, v, key_mask, p)  # (B, N, T, D)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p)  # (B, N, T, D)


class FastBlock(Block):
    """Block that passes the packing (and the last layer's selected queries) to its attention."""

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                packing: "Packing | None" = None, queries: "Packing | None" = None) -> torch.Tensor:
        x = self.attention(x, key_mask, packing, queries)  # (B, T, H), (R, H) or (M, H)
        return self.feed_forward(x)  # x's shape

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block.feed_forward with GELU's output recomputed in backward (gelu_linear)."""
        h = gelu_linear(self.ffn_in(x), self.ffn_out)  # (..., I) -> (..., H)
        return self.ffn_norm(x + self.ffn_dropout(h))  # (..., H)


# --- packing -------------------------------------------------------------------------------------

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


class FastXLMREncoder(XLMREncoder):
    """XLMREncoder whose position-wise layers skip the pads and whose last layer computes only
    the selected rows, on the CPU; elsewhere the reference forward."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """As XLMREncoder.forward (the pads' rows are zeros here); ``select`` must lie inside the
        mask (a ValueError otherwise: a pad has no row to select)."""
        if not on_cpu(input_ids):
            return super().forward(input_ids, attention_mask, select)  # (B, T, H) or (M, H)
        mask = None if attention_mask is None else attention_mask.bool()  # (B, T)
        x = self.embeddings(input_ids)  # (B, T, H)
        if select is None and (mask is None or bool(mask.all())):
            for layer in self.layers:  # nothing to skip: no key mask, sdpa's fastest kernel
                x = layer(x, None)  # (B, T, H)
            return x
        mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask  # (B, T)
        packing = Packing(mask)
        key_mask = None if packing.index.numel() == mask.numel() else mask[:, None, None, :]  # (B, 1, 1, T)
        queries = None if select is None else packing.subset(select.bool())
        x = packing.pack(x)  # (R, H)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, key_mask, packing, queries if i == last else None)  # (R, H); the last (M, H) if selected
        if queries is not None:
            return x  # (M, H)
        return packing.unpack(x)  # (B, T, H), zeros at the pads


# --- choosing the kernels ------------------------------------------------------------------------

FAST_CLASS = {XLMREncoder: FastXLMREncoder, Block: FastBlock, SelfAttention: FastSelfAttention,
              nn.Linear: FastLinear, nn.Dropout: FastDropout}
REFERENCE_CLASS = {fast: ref for ref, fast in FAST_CLASS.items()}


def resolve_kernels(kernels: str, device: str | torch.device = "auto") -> str:
    """'reference' or 'fast' for a ``model.kernels`` value. ``auto`` is fast when the model runs on
    the CPU and reference elsewhere; ``device`` is where it runs (``auto``: CUDA when available,
    else the CPU, as train.device)."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    if kernels != "auto":
        return kernels
    return "fast" if _device_type(device) == "cpu" else "reference"


def _device_type(device: str | torch.device) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def use_kernels(model: nn.Module, kernels: str = "auto", device: str | torch.device = "auto",
                announce: bool = True) -> nn.Module:
    """Switch ``model``'s XLM-R encoders (their blocks, attention and Linear layers) and all its
    nn.Dropout modules to the fast classes or back to the reference ones, in place; returns the
    model. ``auto`` as resolve_kernels. A model without an XLMREncoder is left alone. Choosing
    fast also calls set_up_onednn_cache. ``announce`` prints describe_kernels' line, once per
    process."""
    chosen = resolve_kernels(kernels, device)
    encoders = [m for m in model.modules() if isinstance(m, XLMREncoder)]
    if not encoders:
        return model
    table = FAST_CLASS if chosen == "fast" else REFERENCE_CLASS
    inside = [m for encoder in encoders for m in encoder.modules()]
    for m in inside + [m for m in model.modules() if isinstance(m, nn.Dropout)]:
        if type(m) in table:
            m.__class__ = table[type(m)]
    if chosen == "fast":
        set_up_onednn_cache()
    if announce:
        _print_once(describe_kernels(model))
    return model


def kernels_of(model: nn.Module) -> str | None:
    """'fast' or 'reference': the kernels of the model's first XLM-R encoder; None without one."""
    encoder = next((m for m in model.modules() if isinstance(m, XLMREncoder)), None)
    return None if encoder is None else "fast" if isinstance(encoder, FastXLMREncoder) else "reference"


def describe_kernels(model: nn.Module) -> str:
    """The line a run log prints, e.g. ``kernels: reference (attention sdpa)``."""
    encoder = next(m for m in model.modules() if isinstance(m, XLMREncoder))
    impl = encoder.config.attention  # set_attention keeps it and the layers' impl in step
    if kernels_of(model) == "reference":
        return f"kernels: reference (attention {impl})"
    parts = ["packing", "last layer on the selected rows"] + (["onednn fp32 linear"] if ONEDNN_FP32 else [])
    attention = "manual" if impl == "manual" else "sdpa, manual while training with dropout or in bf16"
    return f"kernels: fast (cpu: {', '.join(parts + ['fast dropout'])}; attention {attention})"


@functools.cache
def _print_once(line: str) -> None:
    print(line, flush=True)
