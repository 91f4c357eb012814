"""Pooling heads: shapes, masks (pieces outside the span never matter), brute-force values."""
from __future__ import annotations

import pytest
import torch

from models.encoder import XLMRConfig, XLMREncoder
from models.pooling import POOLINGS, EntityPooler, span_max, span_mean
from models.re_head import RelationClassifier

pytestmark = pytest.mark.usefixtures("one_thread")
B, T, H = 3, 7, 8


def inputs():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(B, T, H, generator=g)
    subj_mask = torch.zeros(B, T, dtype=torch.bool)
    obj_mask = torch.zeros(B, T, dtype=torch.bool)
    subj_mask[0, 1:3], subj_mask[1, 2], subj_mask[2, 4:7] = True, True, True
    obj_mask[0, 4:6], obj_mask[1, 5:7], obj_mask[2, 1] = True, True, True
    return h, torch.tensor([0, 1, 3]), torch.tensor([3, 4, 0]), subj_mask, obj_mask


@pytest.mark.parametrize("mode", POOLINGS)
def test_shapes_and_masks(mode):
    h, sm, om, smask, omask = inputs()
    pooler = EntityPooler(mode, H)
    out = pooler(h, sm, om, smask, omask)
    assert out.shape == (B, pooler.out_dim) == (B, H if mode == "cls" else 2 * H)
    if mode in ("mean", "max", "attention"):  # positions outside both spans do not matter
        outside = ~(smask | omask)
        noisy = h.masked_fill(outside.unsqueeze(-1), 1e4)
        assert torch.allclose(pooler(noisy, sm, om, smask, omask), out)


def test_values_by_brute_force():
    h, sm, om, smask, omask = inputs()
    for b in range(B):
        assert torch.allclose(span_mean(h, smask)[b], h[b][smask[b]].mean(0))
        assert torch.equal(span_max(h, omask)[b], h[b][omask[b]].max(0).values)
    start = EntityPooler("start", H)(h, sm, om, smask, omask)
    assert torch.equal(start[1], torch.cat([h[1, 1], h[1, 4]]))
    assert torch.equal(EntityPooler("cls", H)(h, sm, om, smask, omask), h[:, 0])


def test_attention_pooling_starts_as_mean_and_follows_its_query():
    h, sm, om, smask, omask = inputs()
    pooler = EntityPooler("attention", H)
    mean = EntityPooler("mean", H)(h, sm, om, smask, omask)
    assert torch.allclose(pooler(h, sm, om, smask, omask), mean, atol=1e-6)  # zero query: uniform weights
    with torch.no_grad():
        pooler.subj_attention.query.copy_(h[2, 5] * 1e3)  # a sharp query picks its own piece
    assert torch.allclose(pooler(h, sm, om, smask, omask)[2, :H], h[2, 5], atol=1e-4)


def test_classifier_logits_shape_and_head_weights():
    cfg = XLMRConfig(vocab_size=50, hidden_size=H, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=40)
    model = RelationClassifier(XLMREncoder(cfg), num_labels=5, pooling="attention").eval()
    ids = torch.randint(4, 50, (B, T))
    _, sm, om, smask, omask = inputs()
    logits = model(ids, torch.ones(B, T, dtype=torch.bool), sm, om, smask, omask)
    assert logits.shape == (B, 5)
    assert set(model.head_state_dict()) == {"pooler.subj_attention.query", "pooler.obj_attention.query",
                                            "mlp.0.weight", "mlp.0.bias", "mlp.3.weight", "mlp.3.bias"}


@pytest.mark.parametrize("mode", POOLINGS)
def test_classifier_reads_only_the_pooled_positions_with_the_full_numbers(mode):
    """The encoder returns only the positions the pooling reads (``EntityPooler.reads``); logits and
    gradients equal pooling over the full hidden states, with a padded row in the batch."""
    cfg = XLMRConfig(vocab_size=50, hidden_size=H, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=40)
    torch.manual_seed(0)
    model = RelationClassifier(XLMREncoder(cfg), num_labels=5, pooling=mode).eval()
    if mode == "attention":  # a non-zero query, so the span weights are not uniform
        torch.nn.init.normal_(model.pooler.subj_attention.query), torch.nn.init.normal_(model.pooler.obj_attention.query)
    ids = torch.randint(4, 50, (B, T), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 6:] = False  # row 1's spans and markers end at 5
    ids[~mask] = 1
    _, sm, om, smask, omask = inputs()
    smask[1], omask[1] = torch.tensor([0, 0, 1, 0, 0, 0, 0]).bool(), torch.tensor([0, 0, 0, 0, 1, 1, 0]).bool()
    read = model.pooler.reads(sm, om, smask, omask)
    want_read = {"cls": [[0, 0], [1, 0], [2, 0]], "start": [[0, 0], [0, 3], [1, 1], [1, 4], [2, 0], [2, 3]]}
    if mode in want_read:
        assert read.nonzero().tolist() == want_read[mode]
    else:
        assert torch.equal(read, smask | omask)
    logits = model(ids, mask, sm, om, smask, omask)  # (B, K)
    h = model.encoder(ids, mask)  # (B, T, H): the full computation
    want = model.mlp(model.pooler(h, sm, om, smask, omask))
    assert torch.allclose(logits, want, atol=1e-6, rtol=0)
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(logits.square().sum(), params, allow_unused=True)
    ref = torch.autograd.grad(want.square().sum(), params, allow_unused=True)
    for a, b in zip(got, ref):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, atol=1e-5, rtol=1e-5))
