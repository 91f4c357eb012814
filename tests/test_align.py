"""The fast_align model: parity with a loop-by-loop port of fast_align's EM (table, tension steps,
log-likelihood and Viterbi links after N iterations), a known answer on a tiny
corpus, symmetrisation and the 1-to-1 filter, AER against hand-computed values, similarity alignment."""
import math
import random

import pytest
import torch

from models.word_align import (FastAlign, aer, align_both, build_cells, grow_diag_final, one_to_one,
                               progress_printer, similarity_align, symmetrize)

pytestmark = pytest.mark.usefixtures("one_thread")


def fast_align_z(i, m, n, tension):
    """fast_align's DiagonalAlignment::ComputeZ (closed-form geometric sums), i = target position."""
    def unnorm(j):
        return math.exp(-abs(j / n - i / m) * tension)
    split = i * n / m
    floor = int(split)
    ratio = math.exp(-tension / n)
    top = n - floor
    ezt = unnorm(floor + 1) * (1 - ratio ** top) / (1 - ratio) if top else 0.0
    ezb = unnorm(floor) * (1 - ratio ** floor) / (1 - ratio) if floor else 0.0
    return ezt + ezb


def expected_prior_feature(j, m, n, tension):
    """E[h] over source positions 1..n under the diagonal prior of target word j (fast_align's ComputeDLogZ),
    summed term by term."""
    weights = [math.exp(-abs(i / n - j / m) * tension) for i in range(1, n + 1)]
    return sum(-abs(i / n - j / m) * w for i, w in zip(range(1, n + 1), weights)) / sum(weights)


def loop_fast_align(src, tgt, iterations, p0=0.08, tension=4.0, vb=False, alpha=0.01, optimize_tension=False):
    """fast_align.cc's UpdateFromPairs / Normalize(VB) and its tension steps (-o), one word at a time.

    Returns (table, Viterbi links of the last iteration, final tension, log-likelihood of each EM iteration)."""
    table = None
    log_likelihood = []
    for it in range(iterations):
        counts = {}
        final = it == iterations - 1
        links = []
        emp_feat, toks, likelihood = 0.0, 0, 0.0
        for s_words, t_words in zip(src, tgt):
            n, m = len(s_words), len(t_words)
            sent = set()
            for j, f in enumerate(t_words, 1):
                toks += 1
                z = fast_align_z(j, m, n, tension) / (1 - p0)
                cands = [None] + s_words
                probs = []
                for i, e in enumerate(cands):
                    prior = p0 if i == 0 else math.exp(-abs(i / n - j / m) * tension) / z
                    t = 1e-9 if table is None else table[(e, f)]
                    probs.append(t * prior)
                if final:
                    best = max(range(n + 1), key=lambda i: (probs[i], -i))
                    if best > 0:
                        sent.add((best - 1, j - 1))
                    continue
                total = sum(probs)
                likelihood += math.log(total)
                for i, e in enumerate(cands):
                    counts[(e, f)] = counts.get((e, f), 0.0) + probs[i] / total
                    if i > 0:
                        emp_feat += -abs(i / n - j / m) * probs[i] / total
            links.append(sent)
        if final:
            return table, links, tension, log_likelihood
        log_likelihood.append(likelihood)
        if optimize_tension and it > 0:
            emp_feat /= toks
            for _ in range(8):
                mod_feat = sum(expected_prior_feature(j, len(t), len(s), tension)
                               for s, t in zip(src, tgt) for j in range(1, len(t) + 1)) / toks
                tension += (emp_feat - mod_feat) * 20.0
                tension = min(max(tension, 0.1), 14.0)
        by_e = {}
        for (e, f), c in counts.items():
            by_e[e] = by_e.get(e, 0.0) + c + (alpha if vb else 0.0)
        if vb:
            table = {k: math.exp(torch.digamma(torch.tensor(c + alpha, dtype=torch.float64)).item()
                                 - torch.digamma(torch.tensor(by_e[k[0]], dtype=torch.float64)).item())
                     for k, c in counts.items()}
        else:
            table = {k: c / by_e[k[0]] for k, c in counts.items()}


CORPUS_SRC = [["das", "haus"], ["das", "buch"], ["ein", "buch"], ["ein", "kleines", "haus"], ["das", "kleine", "buch"]]
CORPUS_TGT = [["the", "house"], ["the", "book"], ["a", "book"], ["a", "small", "house"], ["small", "the", "book"]]


def test_prior_normaliser_equals_fast_align_closed_form():
    cells = build_cells([[0] * 7, [0] * 3], [[0] * 5, [0] * 9])
    model = FastAlign()
    for tension in (0.5, 4.0, 11.0):
        prior = model.prior(cells, tension)
        real = cells["pos"] > 0
        for c in torch.nonzero(real).squeeze(1)[::7].tolist():
            n = 7 if cells["sent"][cells["token"][c]] == 0 else 3
            m = 5 if n == 7 else 9
            i, j = int(cells["pos"][c]), int(cells["tpos"][c])
            want = (1 - 0.08) * math.exp(-abs(i / n - j / m) * tension) / fast_align_z(j, m, n, tension)
            assert prior[c].item() == pytest.approx(want, rel=1e-12)
        token_mass = torch.zeros(14, dtype=prior.dtype).index_add_(0, cells["token"], prior)
        assert torch.allclose(token_mass, torch.ones(14, dtype=prior.dtype))


def shuffled_lexicon(n_sentences=60, seed=0):
    """8 word pairs d_k <-> e_k, 3-word sentences, every second target reversed."""
    rng = random.Random(seed)
    src, tgt = [], []
    for s in range(n_sentences):
        ks = rng.sample(range(8), 3)
        src.append([f"d{k}" for k in ks])
        tgt.append([f"e{k}" for k in (ks[::-1] if s % 2 else ks)])
    return src, tgt


def monotone_corpus():
    """Translations word by word in the same order, 4-7 words: the tension rises to its upper clip (14)."""
    rng = random.Random(1)
    src = [[f"d{k}" for k in rng.sample(range(12), rng.randint(4, 7))] for _ in range(20)]
    return src, [[w.replace("d", "e") for w in s] for s in src]


def assert_model_equals_port(model, port, src, tgt):
    table, links, tension, log_likelihood = port
    V = len(model.tgt_vocab)
    for (e, f), value in table.items():
        key = (0 if e is None else model.src_vocab.ids[e] + 1) * V + model.tgt_vocab.ids[f]
        slot = int(torch.searchsorted(model.keys, torch.tensor(key)))
        assert model.keys[slot] == key and model.t[slot].item() == pytest.approx(value, rel=1e-9)
    assert len(table) == len(model.keys)
    assert model.tension == pytest.approx(tension, rel=1e-9, abs=1e-12)
    assert model.log_likelihood == pytest.approx(log_likelihood, rel=1e-12)
    assert model.align(src, tgt) == links


@pytest.mark.parametrize("optimize_tension", [False, True])
@pytest.mark.parametrize("vb", [False, True])
@pytest.mark.parametrize("corpus", ["toy", "shuffled lexicon", "monotone"])
def test_em_equals_a_loop_port_of_fast_align(vb, optimize_tension, corpus):
    # every parameter after N iterations: the table t(f | e), the tension (fast_align's -o steps after
    # every iteration from the second), the log-likelihood of each iteration, the Viterbi links
    src, tgt = {"toy": (CORPUS_SRC, CORPUS_TGT), "monotone": monotone_corpus()}.get(corpus) or shuffled_lexicon(24)
    iterations = 4 if corpus == "toy" else 6
    model = FastAlign(iterations=iterations, optimize_tension=optimize_tension, variational_bayes=vb).fit(src, tgt)
    port = loop_fast_align(src, tgt, iterations=iterations, vb=vb, optimize_tension=optimize_tension)
    assert_model_equals_port(model, port, src, tgt)
    if optimize_tension:
        assert port[2] != 4.0  # the tension really moved
        assert (port[2] == 14.0) == (corpus == "monotone")  # and stopped at the clip where it should


def test_known_answer_on_a_shuffled_lexicon():
    # 8 word pairs d_k <-> e_k, 3-word sentences, every second target reversed: EM has to beat the
    # diagonal prior with lexical evidence and then recovers every link
    src, tgt = shuffled_lexicon()
    forward, reverse = align_both(src, tgt, iterations=10)
    want = [{(i, t.index("e" + w[1:])) for i, w in enumerate(s)} for s, t in zip(src, tgt)]
    assert forward == want and reverse == want
    assert symmetrize(forward, reverse) == want
    assert FastAlign(iterations=10).fit(src, tgt).tension < 4.0  # the reversals loosen the diagonal


def test_grow_diag_final_and_one_to_one_by_hand():
    forward = {(0, 0), (1, 1), (2, 1), (3, 3)}  # each target word has one source
    reverse = {(0, 0), (1, 1), (1, 2), (3, 4)}  # each source word has one target
    # intersection {00, 11}; grow-diag adds (2,1) (neighbour of (1,1), source 2 free) and (1,2)
    # (neighbour of (1,1), target 2 free); final adds (3,3) then (3,4) (target 4 still free)
    assert grow_diag_final(forward, reverse) == {(0, 0), (1, 1), (2, 1), (1, 2), (3, 3), (3, 4)}
    assert symmetrize([forward], [reverse]) == [{(0, 0), (1, 1)}]
    assert one_to_one({(0, 0), (1, 1), (2, 1), (3, 3), (3, 4)}) == {(0, 0)}


def test_aer_by_hand():
    sure = [{(0, 0), (1, 1)}, {(0, 0)}]
    possible = [{(0, 0), (1, 1), (1, 2)}, {(0, 0), (1, 0)}]
    predicted = [{(0, 0), (1, 2), (2, 2)}, {(1, 0)}]
    # |A| = 4, |S| = 3, |A & S| = 1 ((0,0)), |A & P| = 3 ((0,0), (1,2), (1,0)): AER = 1 - 4/7
    got = aer(predicted, sure, possible)
    assert got["aer"] == pytest.approx(3 / 7) and got["precision"] == pytest.approx(3 / 4)
    assert got["recall"] == pytest.approx(1 / 3)
    assert aer(sure, sure, possible)["aer"] == 0.0


def test_similarity_align_is_the_mutual_argmax():
    sim = torch.tensor([[0.9, 0.1, 0.0],
                        [0.8, 0.7, 0.2],   # row best 0, but column 0 prefers row 0: not mutual
                        [0.0, 0.3, 0.6]])
    assert similarity_align(sim) == {(0, 0), (2, 2)}


def test_progress_reports_each_phase_in_order_and_changes_nothing():
    # every EM iteration of both directions is reported, iterations never go back within a direction,
    # and the links, table and tension are the same as without the callable
    src, tgt = shuffled_lexicon(24)
    events = []
    forward, reverse = align_both(src, tgt, lambda *event: events.append(event), iterations=4)
    assert (forward, reverse) == align_both(src, tgt, iterations=4)
    for direction in ("forward", "reverse"):
        seen = [(it, phase) for d, it, phase in events if d == direction]
        iterations = [it for it, _ in seen]
        assert iterations == sorted(iterations) and sorted(set(iterations)) == [1, 2, 3, 4]
        assert seen[0] == (1, "cells") and seen[-1] == (4, "viterbi")
        assert (3, "tension step 8/8") in seen
    assert [d for d, _, _ in events] == ["forward"] * (len(events) // 2) + ["reverse"] * (len(events) // 2)
    quiet, told = FastAlign(iterations=4).fit(src, tgt), FastAlign(iterations=4).fit(src, tgt, lambda *e: None)
    assert torch.equal(quiet.t, told.t) and quiet.tension == told.tension
    assert quiet.log_likelihood == told.log_likelihood


def test_progress_printer_prints_at_most_once_per_interval():
    now = [0.0]
    lines = []
    progress = progress_printer("[align] en-de:", 5, every=30.0, print_fn=lines.append, clock=lambda: now[0])
    for t, phase in ((10.0, "e-step"), (31.0, "tension step 1/8"), (40.0, "tension step 2/8"), (61.0, "e-step")):
        now[0] = t
        progress("forward", 2, phase)
    assert lines == ["[align] en-de: forward iteration 2/5: tension step 1/8 (31 s)",
                     "[align] en-de: forward iteration 2/5: e-step (61 s)"]
