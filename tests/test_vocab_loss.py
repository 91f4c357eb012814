"""models/vocab_loss.py: the chunked cross-entropy through the vocabulary projection equals the
two-line reference (loss, correct count, gradients of x, W and b), over several chunks, in fp32 and
under bf16 autocast, and the MLM task scores through it.

Legend: M scored positions, H hidden, V vocabulary.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from data.masking import IGNORE_INDEX, MaskingCollator
from models.encoder import XLMRConfig
from models.heads import XLMRForMaskedLM
from models.vocab_loss import linear_cross_entropy, linear_cross_entropy_reference
from tasks.mlm import masked_lm_loss

pytestmark = pytest.mark.usefixtures("one_thread")

M, H, V = 23, 8, 50


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, H, generator=g, requires_grad=True)  # (M, H)
    w = torch.randn(V, H, generator=g, requires_grad=True)  # (V, H)
    b = torch.randn(V, generator=g, requires_grad=True)  # (V,)
    target = torch.randint(0, V, (M,), generator=g)  # (M,)
    target[::3] = F.linear(x, w, b).argmax(-1)[::3].detach()  # some rows predicted right
    return x, w, b, target


@pytest.mark.parametrize("chunk_rows", [1, 5, M, 100])
def test_chunked_equals_reference_loss_count_and_gradients(chunk_rows):
    x, w, b, target = inputs()
    loss, correct = linear_cross_entropy(x, w, b, target, chunk_elements=chunk_rows * V)
    (0.37 * loss).backward()  # an incoming gradient that is not 1
    got = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    ref_loss, ref_correct = linear_cross_entropy_reference(x, w, b, target)
    (0.37 * ref_loss).backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    assert int(correct) == int(ref_correct) > 0
    for a, t in zip(got, (x, w, b)):
        torch.testing.assert_close(a, t.grad, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_matches_the_reference_under_autocast():
    x, w, b, target = inputs(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, correct = linear_cross_entropy(x, w, b, target, chunk_elements=7 * V)
    loss.backward()
    got = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_loss, ref_correct = linear_cross_entropy_reference(x, w, b, target)
    ref_loss.backward()
    assert all(a.dtype == torch.float32 for a in got)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-3)
    assert int(correct) == int(ref_correct)
    for a, t in zip(got, (x, w, b)):
        torch.testing.assert_close(a, t.grad, rtol=2e-2, atol=2e-2)


def test_without_gradients_only_the_loss_and_a_second_backward_is_refused():
    x, w, b, target = inputs(2)
    with torch.no_grad():
        loss, correct = linear_cross_entropy(x, w, b, target)
    assert not loss.requires_grad
    ref_loss, ref_correct = linear_cross_entropy_reference(x.detach(), w.detach(), b.detach(), target)
    torch.testing.assert_close(loss, ref_loss)
    assert int(correct) == int(ref_correct)
    loss, _ = linear_cross_entropy(x, w, b, target)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once per forward"):
        loss.backward()


def test_the_mlm_task_scores_through_the_chunked_loss_with_the_full_logits_gradients(monkeypatch):
    """masked_lm_loss = cross-entropy of the (B, T, V) logits at the labelled positions, gradients
    included, and it reaches the chunked path (a spy counts the calls)."""
    config = XLMRConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = XLMRForMaskedLM(config)
    model.init_weights(torch.Generator().manual_seed(0))
    batch = MaskingCollator(mask_id=59, vocab_size=60, mask_prob=0.3)(
        [[0, *range(4, 20), 2], [0, 7, 8, 9, 2]], torch.Generator().manual_seed(0))
    import models.heads as heads
    calls = []
    monkeypatch.setattr(heads, "linear_cross_entropy",
                        lambda *a, **k: calls.append(1) or linear_cross_entropy(*a, chunk_elements=3 * 60))
    loss, correct = masked_lm_loss(model, batch)
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    logits = model(batch["input_ids"], batch["attention_mask"])  # (B, T, V)
    ref = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    ref.backward()
    assert calls == [1]
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    chosen = batch["labels"] != IGNORE_INDEX
    assert int(correct) == int((logits.argmax(-1)[chosen] == batch["labels"][chosen]).sum())
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
