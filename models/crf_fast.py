"""The CRF's fast kernels (``CRF(kernels="fast")``): the same log Z and best paths as models/crf.py.

Legend: B batch, W words (time), K tags.

    log_z = log_partition(emissions, mask, start, trans, end)   # (B,), differentiable
    best = viterbi(emissions, mask, start, trans, end)          # (B, W), -1 at masked positions

Two tricks, each proven equal to the reference by tests/test_crf.py:

- ``log_partition`` runs the forward algorithm in probability space with per-word normalisation
  (Rabiner's scaling: one small matmul per word, no (B, K, K) log-sum-exp) and computes its
  gradients in one shot from the forward and backward vectors in a hand-written backward pass,
  instead of letting autograd record W small steps.
- ``viterbi`` takes the max over all W-1 steps at once against precomputed (B, K, K) step scores
  and traces the back-pointers back by pointer doubling: log2(W) batched gathers instead of W-1
  sequential ones.
"""
from __future__ import annotations

import torch


class _LogPartition(torch.autograd.Function):
    """log Z (B,) by the scaled forward algorithm; the backward pass returns the marginals.

    The state vector is kept as probabilities normalised to sum 1 at every word (Rabiner's
    scaling), and log Z accumulates the logs of the normalisers and of the max-shifts, so no
    value over- or underflows; exp() only ever sees scores minus their maximum (emissions per
    word, transitions, start, end). A tag more than ~87 nats below the best at a word gets
    probability 0 there, which is below fp32 resolution anyway. The recursions run without
    autograd (one small matmul per word); the gradients are formed from them in one shot:
    d log Z / d e_t = gamma_t (unary marginals), d log Z / d trans = sum_t xi_t (pair marginals).
    """

    @staticmethod
    def forward(ctx, emissions, mask, start, trans, end):
        em = emissions.transpose(0, 1).masked_fill(~mask.t().unsqueeze(2), 0.0)  # (W, B, K)
        W, B, K = em.shape
        tiny = torch.finfo(em.dtype).tiny
        last = mask.long().sum(1) - 1  # (B,)
        em_max = em.amax(2, keepdim=True)  # (W, B, 1)
        em_exp = (em - em_max).exp()  # (W, B, K)
        trans_max = trans.max()
        trans_exp = (trans - trans_max).exp()  # (K, K)
        first = start + em[0]  # (B, K)
        first_max = first.amax(1, keepdim=True)  # (B, 1)
        probs = em.new_empty(W, B, K)  # normalised forward vectors
        norms = em.new_empty(W, B, 1)  # their normalisers
        probs[0] = (first - first_max).exp()
        prob, norm, emit = probs.unbind(0), norms.unbind(0), em_exp.unbind(0)  # views, made once
        for t in range(W):
            if t > 0:
                torch.mm(prob[t - 1], trans_exp, out=prob[t]).mul_(emit[t])
            torch.sum(prob[t], 1, keepdim=True, out=norm[t]).clamp_min_(tiny)
            prob[t].div_(norm[t])
        log_scale = norms.log()  # (W, B, 1)
        log_scale[0] += first_max
        log_scale[1:] += em_max[1:] + trans_max
        at_last = last.view(1, B, 1)
        scale_last = log_scale.cumsum(0).gather(0, at_last).view(B)  # (B,)
        probs_last = probs.gather(0, at_last.expand(1, B, K)).squeeze(0)  # (B, K)
        end_max = end.max()
        end_exp = (end - end_max).exp()  # (K,)
        closing = (probs_last * end_exp).sum(1).clamp_min(tiny)  # (B,)
        ctx.save_for_backward(mask, last, probs, norms, em_exp, trans_exp, end_exp, closing)
        return scale_last + end_max + closing.log()

    @staticmethod
    def backward(ctx, grad_z):
        mask, last, probs, norms, em_exp, trans_exp, end_exp, closing = ctx.saved_tensors
        W, B, K = probs.shape
        weight = mask.t().unsqueeze(2) * grad_z.view(1, B, 1)  # (W, B, 1)
        init = end_exp / closing.unsqueeze(1)  # (B, K) scaled backward vector at the last word
        betas = probs.new_empty(W, B, K)  # scaled so that sum_k probs * betas = 1 at every word
        betas[W - 1] = init
        trans_exp_t = trans_exp.t()
        beta, norm, emit, on = init, norms.unbind(0), em_exp.unbind(0), mask.t().unsqueeze(2).unbind(0)
        for t in range(W - 1, 0, -1):
            beta = torch.mm(emit[t] * beta, trans_exp_t).div_(norm[t])  # (B, K)
            beta = torch.where(on[t], beta, init)  # past the last word: restart
            betas[t - 1] = beta
        unary = probs * betas * weight  # (W, B, K) gamma_t, zero on padding
        g_start = unary[0].sum(0)  # (K,)
        g_end = unary.gather(0, last.view(1, B, 1).expand(1, B, K)).squeeze(0).sum(0)  # (K,)
        g_trans = torch.zeros_like(trans_exp)
        if W > 1:
            after = (betas[1:] * em_exp[1:] / norms[1:]) * weight[1:]  # (W-1, B, K)
            g_trans = probs[:-1].reshape(-1, K).t() @ after.reshape(-1, K) * trans_exp  # (K, K) sum_t xi_t
        return unary.transpose(0, 1), None, g_start, g_trans, g_end


def log_partition(emissions, mask, start, trans, end) -> torch.Tensor:
    """log Z (B,), as models.crf.log_partition, through the hand-written forward-backward."""
    return _LogPartition.apply(emissions, mask, start, trans, end)


def viterbi(emissions, mask, start, trans, end) -> torch.Tensor:
    """Best paths (B, W), as models.crf.viterbi: max-product recursion, back-trace by pointer doubling.

    The recursion runs over all W words, padding included, and each sentence's final scores are
    gathered at its own last word. Back-pointers at padded steps are made the identity, so tracing
    back from position W-1 with each sentence's best last tag passes it unchanged down to the
    sentence's last word.
    """
    em = emissions.transpose(0, 1).contiguous()  # (W, B, K)
    W, B, K = em.shape
    last = mask.long().sum(1) - 1  # (B,)
    score = (start + em[0]).unsqueeze(2)  # (B, K, 1)
    scores, pointers = [score], []
    for step in (trans + em[1:].unsqueeze(2)).unbind(0):  # W-1 x (B, K, K): trans[i, j] + e_t[j]
        best, pointer = torch.max(score + step, dim=1, keepdim=True)  # (B, 1, K) each
        score = best.transpose(1, 2)  # (B, K, 1)
        scores.append(score)
        pointers.append(pointer)
    scores = torch.stack(scores).squeeze(3)  # (W, B, K)
    final = scores.gather(0, last.view(1, B, 1).expand(1, B, K)).squeeze(0) + end  # (B, K)
    tag = final.argmax(dim=1, keepdim=True)  # (B, 1) best tag at each sentence's last word
    if W == 1:
        return tag.masked_fill(~mask, -1)
    identity = torch.arange(K, device=em.device).expand(W - 1, B, K)
    pointers = torch.cat(pointers, dim=1).transpose(0, 1)  # (W-1, B, K)
    maps = torch.where(mask.t()[1:].unsqueeze(2), pointers, identity)  # (W-1, B, K) tag at t+1 -> tag at t
    # Pointer doubling: after the round with span d, maps[t] sends the tag at min(t + 2d, W-1)
    # to the tag at t, so log2(W) batched gathers replace W-1 sequential ones.
    span = 1
    while span < W - 1:
        maps = torch.cat([maps[:-span].gather(2, maps[span:]), maps[-span:]])  # (W-1, B, K)
        span *= 2
    path = maps.gather(2, tag.view(1, B, 1).expand(W - 1, B, 1)).squeeze(2).t()  # (B, W-1)
    return torch.cat([path, tag], dim=1).masked_fill(~mask, -1)  # (B, W)
