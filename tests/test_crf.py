"""CRF: both kernels against brute force over every path (random transitions, start and end
scores, mixed lengths down to 1), reference == fast for values and gradients, float64 gradcheck,
parity with pytorch-crf, BIO constraints."""
import itertools

import pytest
import torch

from models import crf_fast
from models.crf import CRF, IMPOSSIBLE, bio_allowed, log_partition, path_score, viterbi

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
KERNELS = ["reference", "fast"]

pytestmark = pytest.mark.usefixtures("one_thread")


def random_batch(B, W, K, dtype=torch.float32, seed=0, lengths=None):
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randn(B, W, K, generator=gen, dtype=dtype)  # (B, W, K)
    tags = torch.randint(K, (B, W), generator=gen)  # (B, W)
    if lengths is None:
        lengths = torch.randint(1, W + 1, (B,), generator=gen)
        lengths[0] = W
    lengths = torch.as_tensor(lengths)
    mask = torch.arange(W)[None] < lengths[:, None]  # (B, W)
    return emissions, tags, mask, lengths


def random_crf(K, labels=None, kernels="reference", seed=0, scale=1.0):
    """A CRF whose start, end and transition scores are all drawn large enough to change the answer."""
    crf = CRF(K, labels=labels, constrain_training=labels is not None, kernels=kernels)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
            p.copy_(scale * torch.randn(p.shape, generator=gen))
    return crf


def brute_force_scores(emissions, length, start, trans, end):
    """Every one of the K^length paths of one sentence and its score, written out from the definition."""
    K = emissions.shape[1]
    paths = torch.tensor(list(itertools.product(range(K), repeat=length)))  # (P, n)
    score = start[paths[:, 0]] + emissions[0, paths[:, 0]]  # (P,)
    for t in range(1, length):
        score = score + trans[paths[:, t - 1], paths[:, t]] + emissions[t, paths[:, t]]
    return paths, score + end[paths[:, -1]]


def constrained_scores(crf, constrained):
    """start, trans, end as the brute force sees them: forbidden BIO moves at IMPOSSIBLE."""
    start, trans, end = crf.start_transitions, crf.transitions, crf.end_transitions
    if constrained:
        allowed, start_allowed = bio_allowed(crf.labels)
        start = start.masked_fill(~start_allowed, IMPOSSIBLE)
        trans = trans.masked_fill(~allowed, IMPOSSIBLE)
    return start, trans, end


MIXED_LENGTHS = [5, 1, 3, 2, 4, 1]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("labels", [None, LABELS])
def test_loss_gradients_and_viterbi_equal_brute_force(kernels, labels):
    # random start/end/transitions and lengths 1..5 in one batch: an end score applied at the
    # padded last position, or a start score missing for one-word sentences, changes the answer
    K = 5
    crf = random_crf(K, labels, kernels, seed=1)
    emissions, tags, mask, lengths = random_batch(6, 5, K, seed=1, lengths=MIXED_LENGTHS)
    emissions.requires_grad_(True)
    nll = crf(emissions, tags, mask, reduction="none")  # (B,)
    params = [emissions, crf.start_transitions, crf.transitions, crf.end_transitions]
    grads = torch.autograd.grad(nll.sum(), params)
    best = crf.decode(emissions, mask)  # (B, W)
    start, trans, end = constrained_scores(crf, constrained=labels is not None)
    want_nll = []
    for b, n in enumerate(lengths.tolist()):
        paths, scores = brute_force_scores(emissions[b], n, start, trans, end)
        gold = (paths == tags[b, :n]).all(1)  # (P,) the gold path's row
        want_nll.append(torch.logsumexp(scores, 0) - scores[gold].squeeze(0))
        # decoding always applies the constraints
        _, decode_scores = brute_force_scores(emissions[b], n, *constrained_scores(crf, labels is not None))
        assert best[b, :n].tolist() == paths[int(decode_scores.argmax())].tolist()
        assert (best[b, n:] == -1).all()
    want_nll = torch.stack(want_nll)
    want_grads = torch.autograd.grad(want_nll.sum(), params)  # every length > 1 somewhere in the batch
    torch.testing.assert_close(nll, want_nll, rtol=1e-5, atol=1e-4)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_a_one_word_sentence_is_start_plus_emission_plus_end():
    crf = random_crf(3, seed=2)
    emissions = torch.randn(1, 1, 3)
    for kernels in KERNELS:
        crf.kernels = kernels
        scores = crf.start_transitions + emissions[0, 0] + crf.end_transitions  # (K,)
        torch.testing.assert_close(crf(emissions, torch.tensor([[1]]), reduction="none"),
                                   (torch.logsumexp(scores, 0) - scores[1]).unsqueeze(0))
        assert crf.decode(emissions).tolist() == [[int(scores.argmax())]]


@pytest.mark.parametrize("labels", [None, LABELS])
@pytest.mark.parametrize("B,W", [(7, 9), (3, 1), (5, 33)])
def test_fast_equals_reference_values_and_gradients(labels, B, W):
    K = 5
    ref = random_crf(K, labels, "reference", seed=3, scale=2.0)
    fast = random_crf(K, labels, "fast", seed=3, scale=2.0)
    emissions, tags, mask, _ = random_batch(B, W, K, seed=B + W)
    emissions = (3 * emissions).requires_grad_(True)
    for reduction in ("none", "sum", "mean"):
        torch.testing.assert_close(fast(emissions, tags, mask, reduction=reduction),
                                   ref(emissions, tags, mask, reduction=reduction), rtol=1e-5, atol=1e-4)
    grads = torch.autograd.grad(fast(emissions, tags, mask), [emissions, *fast.parameters()])
    ref_grads = torch.autograd.grad(ref(emissions, tags, mask), [emissions, *ref.parameters()],
                                    materialize_grads=True)  # W = 1: no transition is used
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    assert torch.equal(fast.decode(emissions, mask), ref.decode(emissions, mask))


def test_kernels_reach_the_chosen_functions(monkeypatch):
    assert CRF(3).kernels == "fast" and CRF(3, kernels="auto").kernels == "fast"
    with pytest.raises(ValueError, match="kernels"):
        CRF(3, kernels="fused")
    calls = []
    for module, name in ((crf_fast, "log_partition"), (crf_fast, "viterbi")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, _n=name: calls.append(_n) or _o(*a))
    emissions, tags, mask, _ = random_batch(2, 4, 3)
    CRF(3, kernels="reference")(emissions, tags, mask)
    CRF(3, kernels="reference").decode(emissions, mask)
    assert calls == []
    CRF(3, kernels="fast")(emissions, tags, mask)
    CRF(3, kernels="fast").decode(emissions, mask)
    assert calls == ["log_partition", "viterbi"]


@pytest.mark.parametrize("partition", [log_partition, crf_fast.log_partition])
def test_gradcheck_float64(partition):
    emissions, tags, mask, _ = random_batch(4, 5, 4, dtype=torch.float64, seed=2, lengths=[5, 1, 3, 4])
    gen = torch.Generator().manual_seed(6)
    params = [torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in ((4,), (4, 4), (4,))]
    inputs = [emissions.requires_grad_(True)] + [p.requires_grad_(True) for p in params]

    def nll(em, start, trans, end):  # (B,)
        return partition(em, mask, start, trans, end) - path_score(em, tags, mask, start, trans, end)

    assert torch.autograd.gradcheck(nll, inputs)


def test_viterbi_functions_agree_on_ties_free_random_batches():
    gen = torch.Generator().manual_seed(11)
    for W in (1, 2, 3, 8, 17):
        emissions, _, mask, _ = random_batch(9, W, 6, seed=W)
        start, trans, end = (torch.randn(s, generator=gen) for s in ((6,), (6, 6), (6,)))
        assert torch.equal(viterbi(emissions, mask, start, trans, end),
                           crf_fast.viterbi(emissions, mask, start, trans, end))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("B,W,K", [(8, 12, 5), (16, 30, 9), (5, 1, 3)])
def test_equals_pytorch_crf(kernels, B, W, K):
    torchcrf = pytest.importorskip("torchcrf")
    ours = random_crf(K, kernels=kernels, seed=B)
    ref = torchcrf.CRF(K, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    emissions, tags, mask, lengths = random_batch(B, W, K, seed=3)
    emissions.requires_grad_(True)
    for reduction in ("none", "sum", "mean"):
        assert torch.allclose(ours(emissions, tags, mask, reduction=reduction),
                              -ref(emissions, tags, mask, reduction=reduction), rtol=1e-5, atol=1e-4)
    grads = torch.autograd.grad(ours(emissions, tags, mask), [emissions, *ours.parameters()],
                                materialize_grads=True)
    ref_grads = torch.autograd.grad(-ref(emissions, tags, mask, reduction="mean"),
                                    [emissions, *ref.parameters()], allow_unused=True)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, torch.zeros_like(g) if r is None else r, atol=1e-5)  # W=1: no transitions
    best = ours.decode(emissions, mask)
    assert [best[b, :lengths[b]].tolist() for b in range(B)] == ref.decode(emissions, mask)


@pytest.mark.parametrize("kernels", KERNELS)
def test_masked_tags_are_ignored_and_padding_emissions_do_not_matter(kernels):
    crf = random_crf(4, kernels=kernels, seed=4)
    emissions, tags, mask, _ = random_batch(6, 7, 4, seed=4)
    other = emissions.masked_fill(~mask.unsqueeze(2), 1e3)  # huge values on padding
    ignored = tags.masked_fill(~mask, -100)
    assert torch.allclose(crf(emissions, tags, mask), crf(other, ignored, mask))
    assert torch.equal(crf.decode(emissions, mask), crf.decode(other, mask))


@pytest.mark.parametrize("kernels", KERNELS)
def test_bio_constraints(kernels):
    allowed, start = bio_allowed(LABELS)
    assert start.tolist() == [True, True, False, True, False]
    assert not allowed[0, 2] and not allowed[1, 4] and allowed[1, 2] and allowed[2, 2] and allowed[4, 0]
    crf = CRF(5, labels=LABELS, kernels=kernels)
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


@pytest.mark.parametrize("kernels", KERNELS)
def test_autocast_runs_in_fp32(kernels):
    crf = CRF(5, kernels=kernels)
    emissions, tags, mask, _ = random_batch(4, 6, 5, seed=5)
    ref = crf(emissions, tags, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crf(emissions.bfloat16(), tags, mask)
    assert out.dtype == torch.float32
    assert torch.allclose(out, crf(emissions.bfloat16().float(), tags, mask), atol=1e-5)
    assert torch.isfinite(ref)
