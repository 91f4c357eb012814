"""The alignment loss and its regulariser on hand cases; the regulariser is zero at f = f0."""
import math

import pytest
import torch

from models.align_loss import alignment_l2, alignment_loss, anchor_regulariser, info_nce

pytestmark = pytest.mark.usefixtures("one_thread")


def test_l2_and_regulariser_by_hand():
    src = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    tgt = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    assert alignment_l2(src, tgt).item() == 4.0 + 25.0  # ||(0, 2)||^2 + ||(-3, -4)||^2
    anchor = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    frozen = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert anchor_regulariser(anchor, frozen).item() == 1.0 + 4.0
    out = alignment_loss(src, tgt, anchor, frozen, lam=0.5)
    assert out["loss"].item() == 29.0 + 0.5 * 5.0 and out["align"].item() == 29.0 and out["reg"].item() == 5.0


def test_regulariser_is_zero_at_f0_with_zero_gradient():
    anchor = torch.randn(5, 7, requires_grad=True)
    reg = anchor_regulariser(anchor, anchor.detach().clone())
    reg.backward()
    assert reg.item() == 0.0 and torch.count_nonzero(anchor.grad) == 0
    frozen = torch.randn(5, 7, requires_grad=True)
    anchor_regulariser(anchor, frozen).backward()
    assert frozen.grad is None  # f0 is never trained


def test_info_nce_by_hand():
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tgt = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # cosines: [[1, 1/sqrt2], [0, 1/sqrt2]]
    t = 0.5
    c = 1 / math.sqrt(2)
    logits = torch.tensor([[1.0, c], [0.0, c]]) / t
    row = -(logits[0, 0] - torch.logsumexp(logits[0], 0)) - (logits[1, 1] - torch.logsumexp(logits[1], 0))
    col = -(logits[0, 0] - torch.logsumexp(logits[:, 0], 0)) - (logits[1, 1] - torch.logsumexp(logits[:, 1], 0))
    assert info_nce(src, tgt, temperature=t).item() == pytest.approx((row + col).item(), rel=1e-6)
    with pytest.raises(ValueError, match="align.loss must be one of"):
        alignment_loss(src, tgt, src, src, kind="cosine")
