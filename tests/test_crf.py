"""CRF: brute force on small cases, float64 gradcheck, parity with pytorch-crf, BIO constraints."""
import itertools

import pytest
import torch

from models.crf import CRF, IMPOSSIBLE, bio_allowed

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def random_batch(B, W, K, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randn(B, W, K, generator=gen, dtype=dtype)  # (B, W, K)
    tags = torch.randint(K, (B, W), generator=gen)  # (B, W)
    lengths = torch.randint(1, W + 1, (B,), generator=gen)
    lengths[0] = W
    mask = torch.arange(W)[None] < lengths[:, None]  # (B, W)
    return emissions, tags, mask, lengths


def path_score(crf, emissions, path, trans, start):
    score = start[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        score = score + trans[path[t - 1], path[t]] + emissions[t, path[t]]
    return score + crf.end_transitions[path[-1]]


def brute_force(crf, emissions, length, constrained):
    """log Z and best path of one sentence by enumerating all K^length paths."""
    start, trans, _ = crf._scores(constrained, emissions.dtype)
    paths = list(itertools.product(range(crf.num_tags), repeat=length))
    scores = torch.stack([path_score(crf, emissions[:length], p, trans, start) for p in paths])
    return torch.logsumexp(scores, 0), list(paths[int(scores.argmax())])


@pytest.mark.parametrize("labels", [None, LABELS])
def test_partition_and_viterbi_equal_brute_force(labels):
    K = 5
    crf = CRF(K, labels=labels, constrain_training=labels is not None)
    with torch.no_grad():
        crf.transitions.normal_()  # larger than the default init so paths differ clearly
    emissions, tags, mask, lengths = random_batch(4, 5, K, seed=1)
    nll = crf(emissions, tags, mask, reduction="none")  # (B,)
    best = crf.decode(emissions, mask)  # (B, W)
    start, trans, _ = crf._scores(labels is not None, torch.float32)
    for b in range(4):
        n = int(lengths[b])
        log_z, path = brute_force(crf, emissions[b], n, constrained=labels is not None)
        gold = path_score(crf, emissions[b], tags[b, :n].tolist(), trans, start)
        assert torch.allclose(nll[b], log_z - gold, atol=1e-4)
        assert best[b, :n].tolist() == path
        assert (best[b, n:] == -1).all()


def test_gradcheck_float64():
    from models.crf import _log_partition, _path_score
    emissions, tags, mask, _ = random_batch(3, 5, 4, dtype=torch.float64, seed=2)
    gen = torch.Generator().manual_seed(6)
    params = [torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in ((4,), (4, 4), (4,))]
    inputs = [emissions.requires_grad_(True)] + [p.requires_grad_(True) for p in params]

    def nll(em, start, trans, end):  # (B,)
        return _log_partition(em, mask, start, trans, end) - _path_score(em, tags, mask, start, trans, end)

    assert torch.autograd.gradcheck(nll, inputs)


@pytest.mark.parametrize("B,W,K", [(8, 12, 5), (16, 30, 9), (5, 1, 3)])
def test_equals_pytorch_crf(B, W, K):
    torchcrf = pytest.importorskip("torchcrf")
    ours = CRF(K)
    ref = torchcrf.CRF(K, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    emissions, tags, mask, lengths = random_batch(B, W, K, seed=3)
    emissions.requires_grad_(True)
    for reduction in ("none", "sum", "mean"):
        assert torch.allclose(ours(emissions, tags, mask, reduction=reduction),
                              -ref(emissions, tags, mask, reduction=reduction), rtol=1e-5, atol=1e-4)
    grads = torch.autograd.grad(ours(emissions, tags, mask), [emissions, *ours.parameters()])
    ref_grads = torch.autograd.grad(-ref(emissions, tags, mask, reduction="mean"),
                                    [emissions, *ref.parameters()], allow_unused=True)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, torch.zeros_like(g) if r is None else r, atol=1e-5)  # W=1: no transitions
    best = ours.decode(emissions, mask)
    assert [best[b, :lengths[b]].tolist() for b in range(B)] == ref.decode(emissions, mask)


def test_masked_tags_are_ignored_and_padding_emissions_do_not_matter():
    crf = CRF(4)
    emissions, tags, mask, _ = random_batch(6, 7, 4, seed=4)
    other = emissions.masked_fill(~mask.unsqueeze(2), 1e3)  # huge values on padding
    ignored = tags.masked_fill(~mask, -100)
    assert torch.allclose(crf(emissions, tags, mask), crf(other, ignored, mask))
    assert torch.equal(crf.decode(emissions, mask), crf.decode(other, mask))


def test_bio_constraints():
    allowed, start = bio_allowed(LABELS)
    assert start.tolist() == [True, True, False, True, False]
    assert not allowed[0, 2] and not allowed[1, 4] and allowed[1, 2] and allowed[2, 2] and allowed[4, 0]
    crf = CRF(5, labels=LABELS)
    with torch.no_grad():
        crf.transitions.zero_()
        crf.start_transitions.zero_()
    emissions = torch.full((1, 3, 5), -5.0)
    emissions[0, :, 2] = 5.0  # I-PER everywhere is best without constraints
    assert crf.decode(emissions).tolist() == [[1, 2, 2]]  # B-PER I-PER I-PER
    tags = torch.tensor([[2, 2, 2]])
    free = crf(emissions, tags)  # constraints not used in training by default
    crf.constrain_training = True
    assert crf(emissions, tags) > free - IMPOSSIBLE / 2  # the invalid gold path now costs ~1e4


def test_autocast_runs_in_fp32():
    crf = CRF(5)
    emissions, tags, mask, _ = random_batch(4, 6, 5, seed=5)
    ref = crf(emissions, tags, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crf(emissions.bfloat16(), tags, mask)
    assert out.dtype == torch.float32
    assert torch.allclose(out, crf(emissions.bfloat16().float(), tags, mask), atol=1e-5)
    assert torch.isfinite(ref)
