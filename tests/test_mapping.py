"""Mapping: Procrustes recovers a random rotation from noisy pairs; refinement repairs a bad seed;
dictionaries read both formats; the adversarial map (+ refinement) recovers a rotation unseeded."""
import math

import pytest
import torch

from data.dictionaries import gold_translations, identical_pairs, index_pairs, read_dictionary
from data.word_vectors import center_and_normalize, skipgram_pairs
from models.mapping import adversarial_init, mutual_csls_pairs, procrustes, refine


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


def rotated_copy(n=400, dim=20, noise=0.02, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))  # random orthogonal (E, E)
    src = center_and_normalize(torch.randn(n, dim, generator=gen))
    tgt = src @ q + noise * torch.randn(n, dim, generator=gen)
    return src, tgt, q


def test_procrustes_recovers_a_random_orthogonal_matrix():
    src, tgt, q = rotated_copy()
    w = procrustes(src, tgt)
    assert torch.allclose(w @ w.t(), torch.eye(20), atol=1e-5)
    assert (w - q).abs().max() < 0.05


def test_refinement_repairs_a_small_noisy_seed():
    src, tgt, q = rotated_copy(noise=0.01, seed=1)
    seed_pairs = torch.tensor([[i, i] for i in range(25)] + [[i, i + 1] for i in range(100, 108)])  # 8 wrong pairs
    w0 = procrustes(src[seed_pairs[:, 0]], tgt[seed_pairs[:, 1]])
    w, pairs = refine(src, tgt, w0, steps=3, k=5, log=lambda *_: None)
    assert (w - q).abs().max() < (w0 - q).abs().max()
    assert (w - q).abs().max() < 0.05
    assert (pairs[:, 0] == pairs[:, 1]).float().mean() > 0.99
    assert len(mutual_csls_pairs(src @ q, tgt, k=5)) > 390


def clustered_rotation(seed=2, sizes=(4, 8, 12, 16, 24), spread=0.3, degrees=60.0, dim=3):
    """Clusters of unequal size (a distribution an orthogonal map can be read from) and a rotation
    by ``degrees`` about a random axis: tgt = src @ q exactly."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen)
    a = a - a.t()  # skew-symmetric: exp(a) is a rotation
    q = torch.linalg.matrix_exp(a / torch.linalg.matrix_norm(a, 2) * math.radians(degrees))  # (E, E)
    centres = torch.randn(len(sizes), dim, generator=gen)
    src = torch.cat([c + spread * torch.randn(n, dim, generator=gen) for c, n in zip(centres, sizes)])
    src = center_and_normalize(src)
    return src, src @ q, q


def precision_at_1(src, tgt, w):
    """Share of source rows whose cosine nearest target row is their own image."""
    return ((src @ w) @ tgt.t()).argmax(1).eq(torch.arange(len(src))).float().mean().item()


def test_adversarial_then_refinement_recovers_a_rotation():
    """Without any seed dictionary. The control: refinement started from the identity (what a
    trainer that does nothing returns) stays wrong, so the adversarial step is what finds q."""
    src, tgt, q = clustered_rotation()
    start = (torch.eye(3) - q).abs().max()
    idle, _ = refine(src, tgt, torch.eye(3), steps=3, k=5, log=lambda *_: None)
    assert start > 0.6 and (idle - q).abs().max() > 0.5 and precision_at_1(src, tgt, idle) < 0.2
    w = adversarial_init(src, tgt, epochs=1, iterations=600, hidden=16, log=lambda *_: None)
    sv = torch.linalg.svdvals(w)  # near orthogonal (beta = 0.01 lets it drift to 1.17 / 0.88 here)
    assert sv.max() < 1.25 and sv.min() > 0.8
    assert (w - q).abs().max() < start / 2  # moved most of the way towards q
    w, _ = refine(src, tgt, w, steps=3, k=5, log=lambda *_: None)
    assert (w - q).abs().max() < 1e-3 and precision_at_1(src, tgt, w) == 1.0


def test_dictionaries(tmp_path):
    (tmp_path / "a.txt").write_text("Haus house\nhaus home\n\n")  # a malformed line: tests/test_readers.py
    (tmp_path / "b.dict").write_text("house @ haus\n")
    assert read_dictionary(tmp_path / "a.txt") == [("haus", "house"), ("haus", "home")]
    assert read_dictionary(tmp_path / "a.txt", reverse=True)[0] == ("house", "haus")
    assert read_dictionary(tmp_path / "b.dict") == [("haus", "house")]
    assert identical_pairs(["berlin", "und", "0", "x"], ["berlin", "0", "x", "and"]) == [("berlin", "berlin")]
    pairs = [("haus", "house"), ("haus", "home"), ("auto", "car")]
    idx, dropped = index_pairs(pairs, {"haus": 0, "auto": 1}, {"house": 5, "car": 7})
    assert idx.tolist() == [[0, 5], [1, 7]] and dropped == 1
    gold, coverage = gold_translations(pairs, {"haus": 0}, {"house": 5, "home": 6})
    assert gold == {0: {5, 6}} and coverage == 0.5


def test_skipgram_pairs_stay_inside_sentences():
    ids = torch.tensor([1, 2, 3, 4, 5])
    sent = torch.tensor([0, 0, 0, 1, 1])
    center, context = skipgram_pairs(ids, sent, window=2, keep=torch.ones(6), gen=torch.Generator().manual_seed(0))
    pairs = set(zip(center.tolist(), context.tolist()))
    assert pairs <= {(1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1), (4, 5), (5, 4)}
    assert {(4, 5), (5, 4), (1, 2), (2, 1)} <= pairs  # neighbours are always within the window
