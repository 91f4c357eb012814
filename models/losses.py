"""Classification losses for relation extraction, computed in fp32 even under autocast.

Legend: B examples, K classes.

    loss = relation_loss(logits, labels, gamma=2.0, alpha=0.25, smoothing=0.1)  # () summed over B

One formula covers cross-entropy, label smoothing and focal loss (Lin et al. 2017):

    loss_i = w[y_i] * sum_k q_ik * alpha_k * (1 - p_ik) ** gamma * -log p_ik

with p = softmax(logits), q the target (one-hot, or (1 - eps) one-hot + eps / K with label
smoothing eps), alpha a scalar or a per-class (K,) vector, w optional class weights (indexed by
the gold class, as ``F.cross_entropy(weight=...)``). gamma = 0, alpha = 1, eps = 0 is exactly
cross-entropy; gamma = 0, alpha = 1 is torch's label-smoothed cross-entropy.
"""
from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F

LOSSES = ("ce", "focal")


def relation_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 0.0,
                  alpha: float | list[float] | torch.Tensor = 1.0, smoothing: float = 0.0,
                  class_weights: torch.Tensor | None = None, reduction: str = "sum") -> torch.Tensor:
    """logits (B, K), labels (B,) long -> () for sum/mean, (B,) for none."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        K = logits.size(-1)
        log_p = F.log_softmax(logits, dim=-1)  # (B, K)
        target = F.one_hot(labels, K).float()  # (B, K)
        if smoothing:
            target = target * (1.0 - smoothing) + smoothing / K
        per_class = -log_p  # (B, K)
        if gamma:
            per_class = per_class * (1.0 - log_p.exp()).clamp_min(0.0).pow(gamma)
        alpha_t = torch.as_tensor(alpha, dtype=torch.float32, device=logits.device)
        if alpha_t.dim() and alpha_t.numel() != K:
            raise ValueError(f"alpha has {alpha_t.numel()} entries, expected a scalar or {K}")
        loss = (target * per_class * alpha_t).sum(-1)  # (B,)
        if class_weights is not None:
            loss = loss * class_weights.float().to(logits.device)[labels]
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be sum, mean or none, got {reduction!r}")


def class_weights_from_counts(labels: list[int], num_classes: int, power: float = 0.5) -> torch.Tensor:
    """(K,) weights proportional to count ** -power (power 1: inverse frequency, 0.5: inverse square
    root), normalised so the training examples' mean weight is 1; unseen classes get the largest."""
    counts = Counter(labels)
    raw = torch.tensor([float(counts.get(k, 0)) for k in range(num_classes)])
    w = raw.clamp_min(1.0).pow(-power)  # (K,)
    mean = (w * raw).sum() / raw.sum().clamp_min(1.0)
    return w / mean
