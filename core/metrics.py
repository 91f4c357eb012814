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


# ---- relation extraction (KLUE-RE's definitions) ----------------------------------------------
def relation_micro_f1(gold, pred, no_relation: int = 0) -> float:
    """Micro-F1 x 100 over every label except ``no_relation`` (KLUE-RE): a prediction counts when it
    is not no_relation; it is right when it equals the gold label; gold no_relation rows add no recall."""
    import numpy as np

    gold, pred = np.asarray(gold), np.asarray(pred)
    if gold.shape != pred.shape:
        raise ValueError(f"gold {gold.shape} and pred {pred.shape} differ")
    hit = int(((gold == pred) & (gold != no_relation)).sum())
    found, wanted = int((pred != no_relation).sum()), int((gold != no_relation).sum())
    return 100.0 * _prf(hit, found, wanted)["f1"]


def precision_recall_points(y_true, scores):
    """(precision, recall) of one binary problem at every distinct score, as sklearn's
    precision_recall_curve gives them (recall decreasing, ending at precision 1, recall 0)."""
    import numpy as np

    y, s = np.asarray(y_true, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    precision, recall = tps / (tps + fps), tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def klue_auprc(probs, gold, num_classes: int | None = None) -> dict:
    """KLUE-RE's AUPRC: per class one-vs-rest, the trapezoid area under the precision-recall points
    (not average precision), averaged over the classes, x 100.

    A class without a positive in ``gold`` has no recall and is left out of the average; it is
    listed under "without_positives". Returns {"auprc", "per_class": {class: area x 100}, "without_positives"}.
    """
    import numpy as np

    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    K = num_classes or probs.shape[1]
    per_class, missing = {}, []
    for c in range(K):
        positives = gold == c
        if not positives.any():
            missing.append(c)
            continue
        precision, recall = precision_recall_points(positives, probs[:, c])
        per_class[c] = 100.0 * float(-np.trapezoid(precision, recall))  # recall decreases: area is -trapz
    score = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"auprc": score, "per_class": per_class, "without_positives": missing}


def type_pair_scores(pairs: list[str], gold, pred, no_relation: int = 0) -> dict:
    """Per entity-type pair ("PER-ORG"): examples, gold relations, predicted relations, micro-F1 x 100
    (no_relation excluded) and the no_relation <-> relation confusions (false positives / negatives)."""
    import numpy as np

    gold, pred = np.asarray(gold), np.asarray(pred)
    out = {}
    for pair in sorted(set(pairs)):
        rows = np.array([p == pair for p in pairs])
        g, p = gold[rows], pred[rows]
        out[pair] = {"n": int(rows.sum()), "gold_relations": int((g != no_relation).sum()),
                     "pred_relations": int((p != no_relation).sum()),
                     "f1": relation_micro_f1(g, p, no_relation),
                     "false_relation": int(((g == no_relation) & (p != no_relation)).sum()),
                     "missed_relation": int(((g != no_relation) & (p == no_relation)).sum()),
                     "wrong_relation": int(((g != no_relation) & (p != no_relation) & (g != p)).sum())}
    return out
