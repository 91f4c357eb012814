"""Decoding of relation logits, fitted on the dev part and scored on the test part.

Legend: B examples, K relations (index 0 = no_relation).

    d = calibrate_and_score(dev_logits, test_logits, gold_dev, gold_test, pairs_dev, pairs_test,
                            constraint, type_constraint=True, prior_correction=True, temperature=True)
    d["variants"]["constraint+prior"]["micro_f1"]; d["final_logits"]   # the configured variant

Three decodings, each measured with and without: the type constraint masks relations whose
(subject type, object type) pair never took them in training; the prior offset is added to the
no_relation logit (tuned on dev for micro-F1); the temperature (fitted on dev for NLL) rescales
the logits before AUPRC. Micro-F1 leaves no_relation out (core/metrics.py).
"""
from __future__ import annotations

from collections import Counter

import torch

from core.metrics import klue_auprc, relation_micro_f1


def allowed_relations(pairs: list[str], labels: list[int], num_labels: int, no_relation: int = 0) -> dict:
    """{type pair: (K,) bool}: the relations seen with that (subject type, object type) pair in training.
    no_relation is always allowed; a pair never seen in training allows everything (see apply_constraint)."""
    table: dict[str, torch.Tensor] = {}
    for pair, label in zip(pairs, labels):
        row = table.setdefault(pair, torch.zeros(num_labels, dtype=torch.bool))
        row[label] = True
    for row in table.values():
        row[no_relation] = True
    return table


def apply_constraint(logits: torch.Tensor, pairs: list[str], table: dict) -> torch.Tensor:
    """logits (B, K) with the relations the pair never took in training set to -inf."""
    allowed = torch.stack([table.get(p, torch.ones(logits.size(1), dtype=torch.bool)) for p in pairs])  # (B, K)
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


def with_prior_offset(logits: torch.Tensor, offset: float, no_relation: int = 0) -> torch.Tensor:
    """logits (B, K) with ``offset`` added to the no_relation column (negative: predict relations more often)."""
    out = logits.clone()
    out[:, no_relation] += offset
    return out


def tune_prior_offset(logits: torch.Tensor, gold: torch.Tensor, score, grid=None, no_relation: int = 0) -> float:
    """The offset of the grid with the best score(gold, pred) on held-out (dev) logits; ties go to the
    offset nearest 0."""
    grid = grid if grid is not None else [x / 4 for x in range(-24, 25)]  # -6 .. 6 in steps of 0.25
    best = max(grid, key=lambda b: (score(gold, with_prior_offset(logits, b, no_relation).argmax(-1)), -abs(b)))
    return float(best)


def fit_temperature(logits: torch.Tensor, gold: torch.Tensor) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) on held-out logits (a log-spaced grid
    0.25 .. 8, then a finer one around the best point): deterministic, no optimiser state."""
    logits = logits.float()
    finite = torch.where(torch.isfinite(logits), logits, torch.full_like(logits, -1e4))

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(finite / t, gold))

    grid = torch.logspace(-2, 3, 41, base=2.0).tolist()  # 0.25 .. 8
    best = min(grid, key=nll)
    fine = (best * torch.logspace(-0.125, 0.125, 21, base=2.0)).tolist()
    return float(min(fine, key=nll))


def scores(logits: torch.Tensor, gold: list[int]) -> dict:
    """{"micro_f1", "auprc", "auprc_without_positives"} of logits (N, K) against gold labels (N,), in 0..100."""
    probs = torch.softmax(logits, -1).numpy()
    auprc = klue_auprc(probs, gold, logits.size(1))
    return {"micro_f1": relation_micro_f1(gold, logits.argmax(-1).numpy()), "auprc": auprc["auprc"],
            "auprc_without_positives": auprc["without_positives"]}


def calibrate_and_score(dev: torch.Tensor, test: torch.Tensor, gold_dev: list[int], gold_test: list[int],
                        pairs_dev: list[str], pairs_test: list[str], constraint: dict, type_constraint: bool,
                        prior_correction: bool, temperature: bool) -> dict:
    """Fit the temperature and the prior offset on the dev logits (N_dev, K); score every decoding
    variant on the test logits (N_test, K). ``final_logits`` is the variant the three flags choose,
    divided by the temperature when ``temperature``."""
    dev_c = apply_constraint(dev, pairs_dev, constraint)
    test_c = apply_constraint(test, pairs_test, constraint)
    gold = torch.tensor(gold_dev)
    f1 = lambda g, p: relation_micro_f1(g.numpy(), p.numpy())  # noqa: E731
    offset = tune_prior_offset(dev, gold, f1)
    offset_c = tune_prior_offset(dev_c, gold, f1)
    fitted = fit_temperature(dev, gold)
    variants = {"raw": test, "constraint": test_c, "prior": with_prior_offset(test, offset),
                "constraint+prior": with_prior_offset(test_c, offset_c)}
    out = {name: scores(v, gold_test) for name, v in variants.items()}
    for name, v in variants.items():
        out[name]["auprc_calibrated"] = scores(v / fitted, gold_test)["auprc"]
    chosen = ("constraint+prior" if prior_correction else "constraint") if type_constraint else \
        ("prior" if prior_correction else "raw")
    final = variants[chosen] / (fitted if temperature else 1.0)
    return {"variants": out, "chosen": chosen, "temperature": fitted, "prior_offset": offset,
            "prior_offset_constrained": offset_c, "final_logits": final, "dev_raw": scores(dev, gold_dev)}


def per_class_f1(gold: list[int], pred: list[int], names: list[str], train_gold: list[int]) -> dict:
    """{relation: {"f1", "support", "train_count"}} (no_relation left out)."""
    train_counts = Counter(train_gold)
    out = {}
    for k, name in enumerate(names[1:], start=1):
        hit = sum(g == p == k for g, p in zip(gold, pred))
        found, wanted = sum(p == k for p in pred), sum(g == k for g in gold)
        prec, rec = (hit / found if found else 0.0), (hit / wanted if wanted else 0.0)
        out[name] = {"f1": 100 * (2 * prec * rec / (prec + rec) if prec + rec else 0.0), "support": wanted,
                     "train_count": train_counts.get(k, 0)}
    return out
