"""The relation-extraction task: encoder + entity markers + pooling + MLP, KLUE-RE / KBP37 / CoNLL04.

Legend: B examples, T subword positions, K relations.

    task = build_task(cfg)            # reads and checks the data, loads the encoder, marks every example
    task.run(cfg, run_dir)            # fit, restore best-dev weights, fit decoding on dev, test, export

The loss is the SUM over the batch's examples (``n_tokens`` = examples; the loop divides by the
step's count). Model selection uses dev micro-F1 (no_relation excluded). After training, on the
dev part: the temperature (for AUPRC) and the no_relation logit offset (prior shift) are fitted;
the test part is then scored raw, with the type constraint, with the prior offset and with both;
``relation.type_constraint`` / ``relation.prior_correction`` / ``relation.temperature`` say which
one the headline ``test_micro_f1`` / ``test_auprc`` use (all variants are in results.json).

The parts live beside it: readers data/relation.py and data/relation_splits.py, markers
data/markers.py, collation data/relation_batch.py, marker rows models/marker_vocab.py, the model
models/re_head.py, decoding models/re_decoding.py, export and card models/re_export.py, the
predictor and ``evaluate.py --predict`` tasks/relation_predict.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from core.metrics import type_pair_scores
from core.paths import data_root
from data.batching import LengthBucketSampler
from data.markers import KLUE_TYPE_WORDS, MarkerEncoder, marker_tokens
from data.relation import type_pair
from data.relation_batch import MODEL_INPUTS, collate_relations
from data.relation_splits import load_splits
from models.losses import class_weights_from_counts, relation_loss
from models.marker_vocab import add_marker_tokens
from models.re_decoding import allowed_relations, calibrate_and_score, per_class_f1, scores
from models.re_export import export, relation_card
from models.re_head import RelationClassifier
from models.vocab_check import check_vocab_match
from tasks.relation_predict import (RelationPredictor, is_relation_run, predict_cli, predict_csv,  # noqa: F401
                                    predict_logits, write_predictions)

__all__ = ["RelationTask", "build_task", "load_model", "load_splits", "type_pair", "collate_relations",
           "MODEL_INPUTS", "predict_logits", "add_marker_tokens", "RelationPredictor", "predict_csv",
           "is_relation_run", "predict_cli"]


class RelationTask:
    metric_name = "dev_micro_f1"

    def __init__(self, cfg, splits, names, types, bad, model, tokenizer, special_ids):
        r = cfg.relation
        self.cfg, self.names, self.types, self.bad = cfg, names, types, bad
        self.tokenizer, self.special_ids, self._first_model = tokenizer, special_ids, model
        self.label_id = {n: i for i, n in enumerate(names)}
        type_words = r.type_words or (KLUE_TYPE_WORDS if r.dataset == "klue" else {})
        self.encoder = MarkerEncoder(tokenizer, r.marker, r.max_length, type_words, special_ids)
        self.splits = splits
        self.items = {s: [self.encoder.encode(e) for e in exs] for s, exs in splits.items()}
        self.gold = {s: [self.label_id[e.label] for e in exs] for s, exs in splits.items()}
        self.pairs = {s: [type_pair(e) for e in exs] for s, exs in splits.items()}
        self.window = {s: {"truncated": sum(it.truncated for it in its), "cannot_fit": sum(it.overflow for it in its)}
                       for s, its in self.items.items()}
        self.constraint = allowed_relations(self.pairs["train"], self.gold["train"], len(names))
        K = len(names)
        self.alpha = (r.focal_alpha[0] if len(r.focal_alpha) == 1 else r.focal_alpha) if r.focal_alpha else 1.0
        self.class_weights = None if r.class_weights == "none" else class_weights_from_counts(
            self.gold["train"], K, 1.0 if r.class_weights == "inverse" else 0.5)
        self.sampler = LengthBucketSampler([len(it) for it in self.items["train"]], cfg.train.batch_size,
                                           seed=cfg.train.seed)

    def describe(self) -> str:
        counts = {s: len(v) for s, v in self.items.items()}
        return (f"relation/{self.cfg.relation.dataset}: {counts} examples, {len(self.names)} labels, "
                f"marker {self.cfg.relation.marker}, pooling {self.cfg.relation.pooling}; window (max_length "
                f"{self.cfg.relation.max_length}): {self.window}; bad rows skipped: {len(self.bad)}")

    # --- the task interface of core.loop.fit ---------------------------------------------------------
    def build_model(self) -> nn.Module:
        if self._first_model is not None:
            model, self._first_model = self._first_model, None
            return model
        return load_model(self.cfg, len(self.names), list(self.special_ids))[0]

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1):
        for index in self.sampler.batches(epoch, rank, world):
            yield collate_relations([self.items["train"][i] for i in index],
                                    [self.gold["train"][i] for i in index], self.tokenizer.pad_id)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        r = self.cfg.relation
        logits = model(*(batch[k] for k in MODEL_INPUTS))  # (B, K)
        gamma = r.focal_gamma if r.loss == "focal" else 0.0
        alpha = self.alpha if r.loss == "focal" else 1.0
        return relation_loss(logits, batch["labels"], gamma=gamma, alpha=alpha, smoothing=r.label_smoothing,
                             class_weights=self.class_weights, reduction="sum")

    def logits(self, model: nn.Module, split: str) -> torch.Tensor:
        return predict_logits(model, self.items[split], self.tokenizer.pad_id, self.cfg.train.batch_size * 2,
                              self.cfg.train.precision)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        s = scores(self.logits(model, "dev"), self.gold["dev"])
        return {"dev_micro_f1": s["micro_f1"], "dev_auprc": s["auprc"]}

    # --- after training ------------------------------------------------------------------------------
    def decode_and_score(self, model: nn.Module) -> dict:
        """Fit the temperature and the prior offset on dev; score every decoding variant on test
        (models/re_decoding.py)."""
        r = self.cfg.relation
        return calibrate_and_score(self.logits(model, "dev"), self.logits(model, "test"), self.gold["dev"],
                                   self.gold["test"], self.pairs["dev"], self.pairs["test"], self.constraint,
                                   r.type_constraint, r.prior_correction, r.temperature)

    def run(self, cfg, run_dir: str | Path) -> dict:
        from core.distributed import is_main_process
        from core.task import fit_best

        run_dir = Path(run_dir)
        print(self.describe())
        for msg in self.bad[:20]:
            print(f"skipped: {msg}")
        fitted = fit_best(cfg, self, run_dir)  # the model holds the best-dev weights (best.pt)
        model = fitted["model"]
        if not is_main_process():
            return {}
        d = self.decode_and_score(model)
        final = d.pop("final_logits")
        test = scores(final, self.gold["test"])
        result = {"dataset": cfg.relation.dataset, "best_dev_micro_f1": fitted["best_metric"],
                  "test_micro_f1": test["micro_f1"], "test_auprc": test["auprc"], **d,
                  "per_class_f1": per_class_f1(self.gold["test"], final.argmax(-1).tolist(), self.names,
                                               self.gold["train"]),
                  "type_pairs": type_pair_scores(self.pairs["test"], self.gold["test"], final.argmax(-1).numpy()),
                  "window": self.window, "bad_rows": len(self.bad),
                  "examples": {s: len(v) for s, v in self.items.items()}}
        (run_dir / "results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        write_predictions(run_dir / "test_predictions.csv", self.splits["test"], torch.softmax(final, -1),
                          self.names, with_gold=True)
        export(run_dir / "model", model, self.tokenizer, self.export_meta(d), relation_card(cfg, result))
        return {k: v for k, v in result.items() if isinstance(v, (int, float, str))}

    def export_meta(self, d: dict) -> dict:
        """relation.json: what RelationPredictor needs to mark, pool and decode as this run did."""
        r = self.cfg.relation
        return {"labels": self.names, "dataset": r.dataset, "marker": r.marker, "pooling": r.pooling,
                "max_length": r.max_length, "type_words": self.encoder.type_words, "special_ids": self.special_ids,
                "mlp_hidden": r.mlp_hidden, "temperature": d["temperature"] if r.temperature else 1.0,
                "prior_offset": (d["prior_offset_constrained"] if r.type_constraint else d["prior_offset"])
                if r.prior_correction else 0.0,
                "constraint": {p: row.tolist() for p, row in self.constraint.items()} if r.type_constraint else None}


# ---- model ------------------------------------------------------------------------------------------
def load_model(cfg, num_labels: int, marker_list: list[str]):
    """(RelationClassifier, tokenizer, special_ids): the encoder of model.name_or_path, its vocabulary
    grown by the marker tokens the style needs (new embedding rows), the pooling and the MLP."""
    from models import load_pretrained, resolve_kernels

    r = cfg.relation
    torch.manual_seed(cfg.train.seed)
    encoder, tok = load_pretrained(cfg.model.name_or_path, task="encoder", attention=cfg.model.attention,
                                   from_scratch=cfg.model.from_scratch,
                                   kernels=resolve_kernels(cfg.model.kernels, cfg.train.device))
    check_vocab_match(encoder.config.vocab_size, tok, "model.name_or_path", cfg.model.name_or_path)
    tokenizer, special_ids = add_marker_tokens(encoder, tok, list(marker_list)) if marker_list else (tok, {})
    model = RelationClassifier(encoder, num_labels, r.pooling, r.head_dropout, r.mlp_hidden)
    return model, tokenizer, special_ids


def build_task(cfg) -> RelationTask:
    r = cfg.relation
    root = Path(cfg.data.root) if cfg.data.root else data_root()
    splits, names, types, bad = load_splits(r, root, cfg.train.seed)
    name = cfg.model.name_or_path
    if cfg.model.tiny_random and not (Path(name) / "config.json").is_file():
        from data.conll import Sentence
        from tasks.ner import write_tiny_checkpoint

        text = [Sentence(e.sentence.split(), []) for e in {e.sentence: e for e in splits["train"]}.values()]
        write_tiny_checkpoint(name, text, seed=cfg.train.seed)
    if (name.startswith((".", "/", "runs")) or Path(name).exists()) and not (Path(name) / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint at {name} (model.name_or_path): expected config.json there")
    model, tokenizer, special_ids = load_model(cfg, len(names), marker_tokens(r.marker, types))
    return RelationTask(cfg, splits, names, types, bad, model, tokenizer, special_ids)
