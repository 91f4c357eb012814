"""Entity-level NER scores (seqeval, conlleval rules) and a token confusion matrix.

Scores are micro-averaged over entities: an entity counts as correct only when its type and
both boundaries match. seqeval's default mode follows conlleval (an ``I-X`` after ``O``
starts an entity), which is what XTREME and the study report.
"""
from __future__ import annotations

from collections import Counter

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities


def entity_f1(true: list[list[str]], pred: list[list[str]]) -> float:
    """Micro entity F1 over sentences of tag strings (0.0 when there are no entities at all)."""
    _check(true, pred)
    return float(f1_score(true, pred, zero_division=0))


def entity_scores(true: list[list[str]], pred: list[list[str]]) -> dict:
    """{"precision", "recall", "f1", "support", "per_type": {TYPE: {precision, recall, f1, support}}}."""
    _check(true, pred)
    gold = Counter(t for t, _, _ in _entities(true))
    found = Counter(t for t, _, _ in _entities(pred))
    hit = Counter(t for t, _, _ in set(_entities(true)) & set(_entities(pred)))
    per_type = {}
    for etype in sorted(set(gold) | set(found)):
        per_type[etype] = _prf(hit[etype], found[etype], gold[etype])
    scores = _prf(sum(hit.values()), sum(found.values()), sum(gold.values()))
    # the same numbers through seqeval itself, so a difference would show up in the tests
    scores["seqeval_f1"] = float(f1_score(true, pred, zero_division=0))
    scores["seqeval_precision"] = float(precision_score(true, pred, zero_division=0))
    scores["seqeval_recall"] = float(recall_score(true, pred, zero_division=0))
    scores["per_type"] = per_type
    return scores


def confusion(true: list[list[str]], pred: list[list[str]], tags: list[str]) -> list[list[int]]:
    """Token-level counts: row = gold tag, column = predicted tag, in the order of ``tags``."""
    _check(true, pred)
    index = {t: i for i, t in enumerate(tags)}
    matrix = [[0] * len(tags) for _ in tags]
    for ts, ps in zip(true, pred):
        for t, p in zip(ts, ps):
            matrix[index[t]][index[p]] += 1
    return matrix


def _entities(seqs: list[list[str]]) -> list[tuple[str, int, int]]:
    """(type, sentence-offset start, end) of every entity; offsets are global so sentences never merge."""
    out, offset = [], 0
    for seq in seqs:
        out.extend((t, offset + s, offset + e) for t, s, e in get_entities(list(seq)))
        offset += len(seq) + 1
    return out


def _prf(hit: int, found: int, gold: int) -> dict:
    p = hit / found if found else 0.0
    r = hit / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": gold}


def _check(true, pred) -> None:
    if len(true) != len(pred) or any(len(t) != len(p) for t, p in zip(true, pred)):
        raise ValueError("gold and predicted tag sequences differ in number or length")
