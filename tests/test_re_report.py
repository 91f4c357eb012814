"""scripts/re_report.py thirds_table: the rarest / middle / most frequent thirds by training count (no_relation
left out), their mean per-class F1 per run, and the count of relations with any F1, on a hand-made case."""
from __future__ import annotations


def test_thirds_table_groups_by_training_count():
    from scripts.re_report import thirds_table

    def pc(f1s):
        counts = {"no_relation": 999, "a": 5, "b": 1, "c": 30, "d": 20, "e": 10, "f": 40, "g": 50}
        return {k: {"f1": f1s.get(k, 0.0), "train_count": n, "support": 1} for k, n in counts.items()}

    table = thirds_table({"ce": pc({"no_relation": 90.0, "b": 3.0, "c": 12.0, "g": 60.0}),
                          "focal": pc({"a": 6.0, "f": 30.0})})
    lines = table.splitlines()
    assert lines[0] == "| mean per-class test F1 | ce | focal |"
    assert lines[2] == "| rarest third (2 relations, 1-5 training examples) | 1.5 | 3.0 |"  # b, a
    assert lines[3] == "| middle third (3 relations, 10-30 training examples) | 4.0 | 0.0 |"  # e, d, c
    assert lines[4] == "| most frequent third (2 relations, 40-50 training examples) | 30.0 | 15.0 |"  # f, g
    assert lines[5] == "| relations with test F1 > 0 (of 7) | 3 | 2 |"
