"""relation_micro_f1 and klue_auprc: hand-computed cases and scikit-learn (KLUE's own recipe) as oracle."""
from __future__ import annotations

import numpy as np
import pytest

from core.metrics import klue_auprc, precision_recall_points, relation_micro_f1, type_pair_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def test_micro_f1_hand_computed():
    gold = [0, 1, 2, 2, 0, 1]
    pred = [1, 1, 2, 0, 0, 2]
    # predicted relations: 4 (rows 0,1,2,5), correct 2 (rows 1,2); gold relations 4 -> P = R = F = 0.5
    assert relation_micro_f1(gold, pred) == pytest.approx(50.0)
    assert relation_micro_f1([0, 0], [0, 0]) == 0.0


def test_micro_f1_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    expected = sk.f1_score(gold, pred, average="micro", labels=list(range(1, 6))) * 100  # KLUE's definition
    assert relation_micro_f1(gold, pred) == pytest.approx(expected)


def test_pr_points_and_auprc_hand_computed():
    # scores .9 (pos) .8 (neg) .7 (pos): points (P, R) = (1, .5), (.5, .5), (2/3, 1), then (1, 0)
    precision, recall = precision_recall_points([1, 0, 1], [0.9, 0.8, 0.7])
    assert np.allclose(precision, [2 / 3, 0.5, 1.0, 1.0]) and np.allclose(recall, [1.0, 0.5, 0.5, 0.0])
    # trapezoid over recall: 0.5 * (2/3 + 1/2) / 2 + 0 + 0.5 * (1 + 1) / 2 = 0.2917 + 0.5
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    out = klue_auprc(probs, np.array([1, 0, 1]))
    assert out["per_class"][1] == pytest.approx(100 * (0.25 * (2 / 3 + 0.5) + 0.5))


def test_auprc_matches_klue_recipe_with_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    K, N = 5, 400
    logits = rng.normal(size=(N, K))
    logits[:, 0] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs = np.round(probs, 2)  # ties, as real model outputs have
    gold = rng.integers(0, K, N)
    expected = []
    for c in range(K):  # KLUE-baseline's klue_re_auprc
        precision, recall, _ = sk.precision_recall_curve(gold == c, probs[:, c])
        expected.append(sk.auc(recall, precision))
    out = klue_auprc(probs, gold)
    assert out["auprc"] == pytest.approx(np.mean(expected) * 100)
    assert out["auprc"] != pytest.approx(100 * np.mean([sk.average_precision_score(gold == c, probs[:, c])
                                                       for c in range(K)]))  # not average precision


def test_class_without_positives_is_reported_not_nan():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    out = klue_auprc(probs, np.array([0, 1]))
    assert out["without_positives"] == [2] and set(out["per_class"]) == {0, 1}
    assert np.isfinite(out["auprc"]) and out["auprc"] == pytest.approx(100.0)


def test_type_pair_confusion():
    out = type_pair_scores(["PER-ORG", "PER-ORG", "ORG-LOC"], [1, 0, 2], [1, 2, 0])
    assert out["PER-ORG"] == {"n": 2, "gold_relations": 1, "pred_relations": 2, "f1": pytest.approx(200 / 3),
                              "false_relation": 1, "missed_relation": 0, "wrong_relation": 0}
    assert out["ORG-LOC"]["missed_relation"] == 1 and out["ORG-LOC"]["f1"] == 0.0
