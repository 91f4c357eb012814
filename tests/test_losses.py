"""Losses: gamma=0/alpha=1 is cross-entropy, values pinned on a hand-computed case, fp32 under autocast."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import class_weights_from_counts, relation_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gamma0_alpha1_equals_cross_entropy():
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 0])
    assert torch.allclose(relation_loss(logits, labels), F.cross_entropy(logits, labels, reduction="sum"))
    assert torch.allclose(relation_loss(logits, labels, smoothing=0.1, reduction="mean"),
                          F.cross_entropy(logits, labels, label_smoothing=0.1))
    w = torch.tensor([0.5, 1.0, 2.0, 3.0])
    assert torch.allclose(relation_loss(logits, labels, class_weights=w),
                          F.cross_entropy(logits, labels, weight=w, reduction="sum"))


def test_focal_hand_computed():
    # logits [ln 3, 0] -> p = [0.75, 0.25]; gold 0: (1 - .75)^2 * -ln .75 * alpha .25
    logits, labels = torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0])
    expected = 0.25 * 0.25 ** 2 * -math.log(0.75)
    assert relation_loss(logits, labels, gamma=2.0, alpha=0.25).item() == pytest.approx(expected, rel=1e-6)
    # per-class alpha picks the gold class's entry; gold 1: (1 - .25)^1 * -ln .25 * 0.6
    got = relation_loss(logits, torch.tensor([1]), gamma=1.0, alpha=[0.4, 0.6]).item()
    assert got == pytest.approx(0.6 * 0.75 * -math.log(0.25), rel=1e-6)
    # focal + smoothing 0.2 (K=2: targets .9/.1), gamma 1
    got = relation_loss(logits, labels, gamma=1.0, smoothing=0.2).item()
    assert got == pytest.approx(0.9 * 0.25 * -math.log(0.75) + 0.1 * 0.75 * -math.log(0.25), rel=1e-6)


def test_focal_downweights_easy_examples():
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.5, 0.0]])
    y = torch.tensor([0])
    ratio = lambda x: (relation_loss(x, y, gamma=2.0) / relation_loss(x, y)).item()  # noqa: E731
    assert ratio(easy) < ratio(hard) < 1.0


def test_fp32_under_autocast_and_bad_alpha():
    logits = torch.randn(4, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = relation_loss(logits, torch.tensor([0, 1, 2, 0]), gamma=2.0)
    assert loss.dtype == torch.float32
    with pytest.raises(ValueError, match="alpha has 2 entries"):
        relation_loss(logits, torch.tensor([0, 1, 2, 0]), alpha=[1.0, 2.0])


def test_class_weights_mean_one_over_training_examples():
    labels = [0] * 8 + [1] * 2
    w = class_weights_from_counts(labels, 3, power=1.0)
    assert (w[torch.tensor(labels)].mean()).item() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(4.0) and w[2] >= w[1]
