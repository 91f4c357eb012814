"""Entity scores against seqeval and brute force; evaluate.py's tables and predict mode."""
from __future__ import annotations

import json
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


def _scores(f1):
    return {"precision": f1, "recall": f1, "f1": f1, "support": 10,
            "per_type": {"PER": {"precision": f1, "recall": f1, "f1": f1, "support": 10}}}


def test_results_files_and_gather_table(tmp_path):
    from core.config import load_config
    from evaluate import main
    from core.results import write_curve, write_results

    cfg = load_config(overrides=["train.name=zs", "data.eval_langs=[de, en]"])
    write_results(tmp_path / "zs", cfg, {"de": _scores(0.8123), "en": _scores(0.31)}, best_dev=0.8)
    assert json.loads((tmp_path / "zs/results.json").read_text())["rows"] == {"zs": {"de": 0.8123, "en": 0.31}}
    assert "| zs | 81.2 | 31.0 |" in (tmp_path / "zs/results.md").read_text()
    few = load_config(overrides=["train.name=fs", "data.eval_langs=[fr]", "data.fewshot_lang=fr"])
    write_curve(tmp_path / "fs", few, {250: {"fr": _scores(0.5)}, 500: {"fr": _scores(0.6)}})
    assert (tmp_path / "fs/curve.png").stat().st_size > 1000
    (tmp_path / "empty").mkdir()
    from core.results import gather
    table = gather([tmp_path / "zs", tmp_path / "fs", tmp_path / "empty"])
    assert table.splitlines()[:5] == ["| set-up | de | fr | en |", "|---|---:|---:|---:|", "| zs | 81.2 | - | 31.0 |",
                                      "| fs k=250 | - | 50.0 | - |", "| fs k=500 | - | 60.0 | - |"]
    assert "No results yet: " + str(tmp_path / "empty") in table
    assert main(["--gather", str(tmp_path / "zs")]) == 0


def test_read_input_tells_text_from_conll(tmp_path):
    from evaluate import read_input

    (tmp_path / "a.txt").write_text("Angela Merkel besucht Paris .\n\nDas ist gut\n")
    assert [s.words for s in read_input(tmp_path / "a.txt")] == [["Angela", "Merkel", "besucht", "Paris", "."],
                                                                 ["Das", "ist", "gut"]]
    (tmp_path / "b.conll").write_text("0\tParis\tB-LOC\n1\tbrennt\tO\n")
    assert read_input(tmp_path / "b.conll")[0].tags == ["B-LOC", "O"]


def test_error_report_ranks_tokens_and_sentences():
    from data.conll import Sentence
    from evaluate import error_report

    sents = [Sentence(["Paris", "ist"], ["B-LOC", "O"]), Sentence(["Paris", "Hilton"], ["B-PER", "I-PER"])]
    pred = [["B-LOC", "O"], ["B-LOC", "O"]]
    losses = [[0.1, 0.05], [2.0, 1.5]]
    report = error_report(sents, pred, losses, TAGS, top=2)
    assert "| Paris | 2.10 | 2 |\n| Hilton | 1.50 | 1 |" in report
    assert "| B-PER | 0 | 0 | 0 | 0 | 0 | 1 | 0 |" in report
    assert report.index("loss 3.50") < report.index("loss 0.15")
