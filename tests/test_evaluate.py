"""Entity scores against seqeval and brute force; evaluate.py's tables and predict mode."""
from __future__ import annotations

import random

import pytest
from seqeval.metrics import classification_report

from core.metrics import confusion, entity_f1, entity_scores

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_pinned_small_example():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    s = entity_scores(true, pred)
    assert (s["precision"], s["recall"], s["support"]) == (2 / 3, 2 / 3, 3)
    assert s["per_type"]["ORG"] == {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    assert s["per_type"]["LOC"]["f1"] == 0.0 and s["per_type"]["PER"]["f1"] == 1.0
    assert confusion(true, pred, TAGS)[5] == [0, 0, 0, 1, 0, 0, 0]  # gold B-LOC predicted B-ORG


def test_matches_seqeval_on_random_sequences():
    rng = random.Random(0)
    true = [[rng.choice(TAGS) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(TAGS) for t in seq] for seq in true]
    s = entity_scores(true, pred)
    assert s["f1"] == pytest.approx(s["seqeval_f1"], abs=1e-12)
    assert s["precision"] == pytest.approx(s["seqeval_precision"], abs=1e-12)
    assert s["recall"] == pytest.approx(s["seqeval_recall"], abs=1e-12)
    assert entity_f1(true, pred) == pytest.approx(s["f1"], abs=1e-12)
    report = classification_report(true, pred, output_dict=True, zero_division=0)
    for etype, row in s["per_type"].items():
        assert row["f1"] == pytest.approx(report[etype]["f1-score"], abs=1e-12)
        assert row["support"] == report[etype]["support"]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        entity_f1([["O", "O"]], [["O"]])
