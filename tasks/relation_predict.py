"""Relation prediction: batched logits, a finished run's predictor, and evaluate.py's ``--predict``.

Legend: N examples, B examples of a batch, K relations.

    pred = RelationPredictor.load("runs/mini_re_klue")
    pred.predict_one("이순신은 조선의 장군이다.", (0, 2), (5, 6), "PER", "ORG")  # -> (label, {label: p})
    predict_csv("runs/mini_re_klue", "rows.csv", "preds.csv")          # KLUE-layout rows -> id, pred_label, probs

``predict_logits`` is also the task's evaluation path (tasks/relation.py).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch
from torch import nn

from data.batching import LengthBucketSampler
from data.markers import MarkerEncoder
from data.relation import Entity, RelationExample, check_example, read_klue_csv, type_pair
from data.relation_batch import MODEL_INPUTS, collate_relations
from models.re_decoding import apply_constraint, with_prior_offset
from models.re_export import HEAD_FILE, META_FILE
from models.re_head import RelationClassifier


@torch.inference_mode()
def predict_logits(model: nn.Module, items: list, pad_id: int, batch_size: int = 64,
                   precision: str = "auto") -> torch.Tensor:
    """(N, K) fp32 logits of encoded examples, in their order (batched by length)."""
    from core.distributed import unwrap
    from core.precision import autocast_context, resolve_precision

    model = unwrap(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    autocast = autocast_context(device, resolve_precision(precision, device))
    sampler = LengthBucketSampler([len(it) for it in items], batch_size, shuffle=False)
    out = torch.zeros(len(items), model.num_labels)  # (N, K)
    for index in sampler.batches():
        batch = collate_relations([items[i] for i in index], None, pad_id)
        with autocast:
            logits = model(*(batch[k].to(device) for k in MODEL_INPUTS))  # (B, K)
        out[torch.tensor(index)] = logits.float().cpu()
    model.train(was_training)
    return out


def write_predictions(path: Path, examples: list[RelationExample], probs: torch.Tensor, names: list[str],
                      with_gold: bool = False) -> None:
    """KLUE's submission layout: id, pred_label, probs (all class probabilities as a JSON list);
    with_gold adds gold_label (the run's own test part, read by scripts/re_report.py pr)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "pred_label", "probs"] + (["gold_label"] if with_gold else []))
        for ex, row in zip(examples, probs.tolist()):
            w.writerow([ex.guid, names[max(range(len(row)), key=row.__getitem__)],
                        json.dumps([round(p, 6) for p in row])] + ([ex.label] if with_gold else []))


class RelationPredictor:
    """A finished run's exported model (models/re_export.py): relation probabilities for new sentences,
    decoded as the run chose (constraint, prior offset, temperature)."""

    def __init__(self, model: RelationClassifier, tokenizer, meta: dict):
        self.model, self.tokenizer, self.meta = model.eval(), tokenizer, meta
        self.names = meta["labels"]
        self.encoder = MarkerEncoder(tokenizer, meta["marker"], meta["max_length"], meta["type_words"],
                                     meta["special_ids"])
        table = meta.get("constraint")
        self.constraint = {p: torch.tensor(row) for p, row in table.items()} if table else None

    @classmethod
    def load(cls, run_dir: str | Path) -> "RelationPredictor":
        from models import load_pretrained
        from models.safetensors_io import load_file

        out = Path(run_dir) / "model"
        if not (out / META_FILE).is_file():
            raise FileNotFoundError(f"no trained relation model in {out} (missing {META_FILE}): train first")
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
        encoder, tokenizer = load_pretrained(str(out), task="encoder")
        model = RelationClassifier(encoder, len(meta["labels"]), meta["pooling"], 0.0, meta.get("mlp_hidden", 0))
        head = load_file(out / HEAD_FILE)
        missing, unexpected = model.load_state_dict(head, strict=False)
        if unexpected or [k for k in missing if not k.startswith("encoder.")]:
            raise ValueError(f"{out / HEAD_FILE}: unexpected {unexpected}, missing {missing}")
        return cls(model, tokenizer, meta)

    def probs(self, examples: list[RelationExample]) -> torch.Tensor:
        """(N, K) probabilities with the run's decoding (constraint, prior offset, temperature)."""
        logits = predict_logits(self.model, [self.encoder.encode(e) for e in examples], self.tokenizer.pad_id)
        if self.constraint is not None:
            logits = apply_constraint(logits, [type_pair(e) for e in examples], self.constraint)
        logits = with_prior_offset(logits, self.meta.get("prior_offset", 0.0))
        return torch.softmax(logits / self.meta.get("temperature", 1.0), -1)

    def predict_one(self, sentence: str, subj_span: tuple[int, int], obj_span: tuple[int, int],
                    subj_type: str = "", obj_type: str = "") -> tuple[str, dict[str, float]]:
        """Spans are (start, end) character offsets, end INCLUSIVE (KLUE's convention)."""
        (s0, s1), (o0, o1) = subj_span, obj_span
        ex = RelationExample("one", sentence, Entity(sentence[s0:s1 + 1], s0, s1, subj_type),
                             Entity(sentence[o0:o1 + 1], o0, o1, obj_type), "")
        check_example(ex, None, None)
        row = self.probs([ex])[0].tolist()
        return self.names[max(range(len(row)), key=row.__getitem__)], dict(zip(self.names, row))


def predict_csv(run_dir: str | Path, in_csv: str | Path, out_csv: str | Path) -> int:
    """KLUE-layout rows (label optional) -> out_csv with id, pred_label, probs; returns the row count."""
    predictor = RelationPredictor.load(run_dir)
    examples = read_klue_csv(in_csv, None)
    write_predictions(Path(out_csv), examples, predictor.probs(examples), predictor.names)
    return len(examples)


def is_relation_run(run_dir: str | Path) -> bool:
    """True when run_dir's config.yaml says ``task: relation`` (evaluate.py's --predict dispatch)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    try:
        return path.is_file() and (yaml.safe_load(path.read_text()) or {}).get("task") == "relation"
    except yaml.YAMLError:
        return False


def predict_cli(run_dir: str | Path, in_csv: str, out_csv: str | None) -> int:
    """``evaluate.py RUN --predict rows.csv --out preds.csv`` for a relation run; exit code 2 on bad input."""
    from data.relation import RelationDataError

    try:
        n = predict_csv(run_dir, in_csv, out_csv or "/dev/stdout")
    except (FileNotFoundError, RelationDataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{n} rows -> {out_csv or 'stdout'}", file=sys.stderr)
    return 0
