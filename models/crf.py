"""Linear-chain CRF: NLL with a hand-written forward-backward, batched Viterbi.

    crf = CRF(num_tags, labels=["O", "B-PER", "I-PER", ...], constrain_training=False)
    nll = crf(emissions, tags, mask)            # mean over sentences
    best = crf.decode(emissions, mask)          # (B, W), -1 at masked positions

Legend: B batch, W words (time), K tags, S scan blocks.

The score of a path y is  start[y0] + e0[y0] + sum_t (trans[y_{t-1}, y_t] + e_t[y_t]) + end[y_last].
Steps t = 1..W-1 become K x K matrices M_t[i, j] = trans[i, j] + e_t[j]; a masked step is the
identity of the semiring (0 on the diagonal, IDENTITY_OFF elsewhere), so the state of the last
real word carries through the padding. The product M_1 (x) ... (x) M_{W-1} is taken as a balanced
tree (log2 W levels of batched (K, K, K) reductions) instead of W sequential small steps:
logsumexp for the partition, max for Viterbi, whose argmax midpoints are traced back top-down
with gathers on the tensor's device. Everything runs in fp32 (fp64 if given fp64), also under
autocast. Memory is B * W/2 * K^3 floats at the first level, fine for NER tag sets (K < 30).
"""
from __future__ import annotations

import torch
from torch import nn

IMPOSSIBLE = -1e4  # score of a transition the BIO constraints forbid
IDENTITY_OFF = -1e9  # off-diagonal of the identity matrix; exp() of it is exactly 0 in fp32/fp64


def bio_allowed(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, K) allowed transitions and (K,) allowed first tags for IOB2 labels.

    Forbidden: O -> I-X, B-X / I-X -> I-Y (Y != X), start -> I-X.
    """
    def entity(tag: str) -> str:
        return tag[2:] if tag[:2] in ("B-", "I-") else ""

    K = len(labels)
    allowed = torch.ones(K, K, dtype=torch.bool)  # (K, K) from, to
    start = torch.ones(K, dtype=torch.bool)  # (K,)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(labels):
            allowed[i, j] = frm[:2] in ("B-", "I-") and entity(frm) == entity(to)
    return allowed, start


class CRF(nn.Module):
    """A linear-chain CRF over K tags with start, end and transition scores."""

    def __init__(self, num_tags: int, labels: list[str] | None = None, constrain_training: bool = False):
        super().__init__()
        if labels is not None and len(labels) != num_tags:
            raise ValueError(f"{len(labels)} labels for {num_tags} tags")
        self.num_tags = num_tags
        self.labels = list(labels) if labels is not None else None
        self.constrain_training = constrain_training
        self.start_transitions = nn.Parameter(torch.empty(num_tags))  # (K,)
        self.end_transitions = nn.Parameter(torch.empty(num_tags))  # (K,)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # (K, K) from, to
        allowed, start_allowed = bio_allowed(labels) if labels is not None else (
            torch.ones(num_tags, num_tags, dtype=torch.bool), torch.ones(num_tags, dtype=torch.bool))
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("start_allowed", start_allowed, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-0.1, 0.1), as pytorch-crf."""
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={self.labels is not None}"

    def _scores(self, constrained: bool, dtype: torch.dtype):
        """start (K,), transitions (K, K), end (K,) in the compute dtype, constraints applied."""
        start = self.start_transitions.to(dtype)
        trans = self.transitions.to(dtype)
        if constrained and self.labels is not None:
            start = start.masked_fill(~self.start_allowed, IMPOSSIBLE)
            trans = trans.masked_fill(~self.allowed, IMPOSSIBLE)
        return start, trans, self.end_transitions.to(dtype)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood of ``tags``.

        emissions (B, W, K) any float dtype; tags (B, W) long (values at masked positions ignored);
        mask (B, W) bool, left-aligned, first position on. reduction: mean | sum | none (-> (B,)).
        """
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        emissions, mask = _prepare(emissions, mask)
        with torch.autocast(emissions.device.type, enabled=False):
            start, trans, end = self._scores(self.constrain_training, emissions.dtype)
            tags = tags.masked_fill(~mask, 0)  # (B, W) any valid index where masked
            nll = _log_partition(emissions, mask, start, trans, end) - _path_score(
                emissions, tags, mask, start, trans, end)  # (B,)
        if reduction == "mean":
            return nll.mean()
        return nll.sum() if reduction == "sum" else nll

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Best tag sequence (B, W) long, -1 at masked positions. BIO constraints apply if labels given."""
        emissions, mask = _prepare(emissions, mask)
        with torch.autocast(emissions.device.type, enabled=False):
            start, trans, end = self._scores(True, emissions.dtype)
            return _viterbi(emissions, mask, start, trans, end)


def _prepare(emissions: torch.Tensor, mask: torch.Tensor | None):
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, W, K), got {tuple(emissions.shape)}")
    if mask is None:
        mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
    dtype = torch.float64 if emissions.dtype == torch.float64 else torch.float32
    return emissions.to(dtype), mask.bool()


def _path_score(emissions, tags, mask, start, trans, end) -> torch.Tensor:
    """Score of the given paths (B,) by gathers."""
    B, W, K = emissions.shape
    maskf = mask.to(emissions.dtype)  # (B, W)
    emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, W)
    score = start[tags[:, 0]] + (emit * maskf).sum(1)  # (B,)
    if W > 1:
        step = trans[tags[:, :-1], tags[:, 1:]]  # (B, W-1)
        score = score + (step * maskf[:, 1:]).sum(1)
    last = mask.long().sum(1) - 1  # (B,)
    last_tag = tags.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
    return score + end[last_tag]


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


def _log_partition(emissions, mask, start, trans, end) -> torch.Tensor:
    return _LogPartition.apply(emissions, mask, start, trans, end)


def _viterbi(emissions, mask, start, trans, end) -> torch.Tensor:
    """Best paths (B, W): max-product recursion, then a back-trace by gathers on the device.

    Back-pointers at padded steps are made the identity, so tracing back from position W-1
    with each sentence's best last tag passes it unchanged down to the sentence's last word.
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
    # Back-trace by pointer doubling: after the round with span d, maps[t] sends the tag at
    # min(t + 2d, W-1) to the tag at t, so log2(W) batched gathers replace W-1 sequential ones.
    span = 1
    while span < W - 1:
        maps = torch.cat([maps[:-span].gather(2, maps[span:]), maps[-span:]])  # (W-1, B, K)
        span *= 2
    path = maps.gather(2, tag.view(1, B, 1).expand(W - 1, B, 1)).squeeze(2).t()  # (B, W-1)
    return torch.cat([path, tag], dim=1).masked_fill(~mask, -1)  # (B, W)
