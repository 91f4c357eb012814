"""Cross-entropy through a vocabulary projection, without the (M, V) logits in memory.

Legend: M positions scored (the masked ones), H hidden, V vocabulary.

The MLM loss is ``cross_entropy(x @ W^T + b, target)`` with W the (V, H) word embeddings (tied).
Autograd keeps the (M, V) logits' log-softmax for backward and builds an (M, V) gradient: at
xlm-roberta-base's 250,002 pieces, 32 x 256 pieces a batch and 15% masked, each is 1.2 GB in fp32,
more than the rest of the head and the last layers together.

``linear_cross_entropy`` gives the same loss and gradients and never holds more than ``chunk``
rows of logits: it walks the M rows in chunks, and since the loss is the last thing computed, it
takes each chunk's gradient right there, in the forward (softmax - one-hot, times W for x, times
x for W and b). Backward only scales the stored gradients by the incoming one. What stays between
forward and backward: dx (M, H), dW (V, H) and db (V,), the sizes autograd would allocate for the
gradients anyway. ``linear_cross_entropy_reference`` is the two-line version it is tested against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2**24  # logits per chunk: 64 MB in fp32 (about 60 rows at V = 280k, all rows of a mini batch)


def linear_cross_entropy_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                                   target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed fp32 cross-entropy, number of correct argmaxes) of logits x W^T + b; x (M, H), target (M,)."""
    logits = F.linear(x, weight, bias)  # (M, V)
    return F.cross_entropy(logits.float(), target, reduction="sum"), (logits.argmax(-1) == target).sum()


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         target: torch.Tensor, chunk_elements: int = CHUNK_ELEMENTS
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's numbers, the (M, V) logits one chunk of rows at a time."""
    rows = max(1, chunk_elements // weight.shape[0])
    want = tuple(torch.is_grad_enabled() and t is not None and t.requires_grad for t in (x, weight, bias))
    if not any(want):  # evaluation: the loss and the count only
        loss, correct, _ = _chunked(x, weight, bias, target, rows, want)
        return loss, correct
    return ChunkedLinearCrossEntropy.apply(x, weight, bias, target, rows, want)


def _chunked(x, weight, bias, target, rows: int, want: tuple[bool, bool, bool]):
    """(loss, correct, [dx, dw, db]): the loss's sum and count, and its gradients where ``want``."""
    want_x, want_w, want_b = want
    dx = torch.zeros_like(x) if want_x else None  # (M, H)
    dw = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None  # (V, H)
    db = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if want_b else None  # (V,)
    loss = torch.zeros((), dtype=torch.float32, device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], rows):
        xc, tc = x[start:start + rows], target[start:start + rows]  # (C, H), (C,)
        logits = F.linear(xc, weight, bias)  # (C, V), autocast's dtype where it is on
        correct += (logits.argmax(-1) == tc).sum()
        logp = logits.float().log_softmax(-1)  # (C, V) fp32, as the reference's cross_entropy
        loss -= logp.gather(1, tc.unsqueeze(1)).sum()
        if not any(want):
            continue
        d = logp.exp_()  # (C, V) softmax; d loss / d logits = softmax - one-hot
        d[torch.arange(len(tc), device=d.device), tc] -= 1.0
        d = d.to(logits.dtype)  # (C, V) in the product's dtype, as autograd's backward of the linear
        if want_x:
            dx[start:start + rows] = d @ weight.to(d.dtype)  # (C, H)
        if want_w:
            dw += (d.t() @ xc.to(d.dtype)).float()  # (V, H)
        if want_b:
            db += d.float().sum(0)  # (V,)
    return loss, correct, [dx, dw, db]


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """forward: loss and correct over row chunks, with the loss's gradients taken per chunk;
    backward: those gradients times the incoming scalar gradient (once: they are scaled in place)."""

    @staticmethod
    def forward(ctx, x, weight, bias, target, rows: int, want: tuple[bool, bool, bool]):
        loss, correct, grads = _chunked(x, weight, bias, target, rows, want)
        ctx.grads, ctx.dtypes = grads, (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):
        if ctx.grads is None:
            raise RuntimeError("linear_cross_entropy: backward runs once per forward (its gradients are scaled in place)")
        out = [None if g is None else g.mul_(grad_loss).to(dtype) for g, dtype in zip(ctx.grads, ctx.dtypes)]
        ctx.grads = None
        return out[0], out[1], out[2], None, None, None
