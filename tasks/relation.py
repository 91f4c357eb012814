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
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from torch import nn

from core.metrics import klue_auprc, relation_micro_f1, type_pair_scores
from core.paths import data_root
from data.batching import LengthBucketSampler
from data.markers import KLUE_TYPE_WORDS, MarkerEncoder, marker_tokens
from data.relation import (CONLL04_RELATIONS, CONLL04_TYPES, KLUE_TYPES, NO_RELATION, RelationExample,
                           kbp37_label_names, read_conll04, read_kbp37, read_klue_csv, read_klue_json,
                           read_relation_names, sample_negatives, split_klue_dev)
from models.losses import class_weights_from_counts, relation_loss
from models.re_head import (RelationClassifier, allowed_relations, apply_constraint, fit_temperature,
                            tune_prior_offset, with_prior_offset)

HEAD_FILE, META_FILE = "re_head.safetensors", "relation.json"


def type_pair(ex: RelationExample) -> str:
    return f"{ex.subj.type or '-'}-{ex.obj.type or '-'}"


# ---- data -------------------------------------------------------------------------------------------
def load_splits(r, root: Path, seed: int) -> tuple[dict[str, list[RelationExample]], list[str], list[str], list[str]]:
    """({"train", "dev", "test"}: examples, label names, entity types, bad-row messages)."""
    bad: list[str] = []

    def keep(result):
        examples, skipped = result
        bad.extend(skipped)
        return examples

    opts = {"skip_bad_rows": r.skip_bad_rows, "return_bad": True}
    if r.dataset == "klue":
        names = read_relation_names(root / r.klue_relations)
        reader = read_klue_json if r.klue_train.endswith(".json") else read_klue_csv
        train = keep(reader(root / r.klue_train, names, **opts))
        test, dev, rest = split_klue_dev(keep(read_klue_csv(root / r.klue_dev, names, **opts)), r.klue_test_size,
                                         r.klue_dev_size, r.klue_split_seed)
        shared = {e.guid for e in train} & {e.guid for e in test + dev + rest}
        if shared:
            raise ValueError(f"{len(shared)} guids are in both the training file and dev.csv, e.g. {min(shared)}")
        splits = {"train": train + (rest if r.klue_rest_to_train else []), "dev": dev, "test": test}
        types = list(KLUE_TYPES)
    elif r.dataset == "kbp37":
        train = keep(read_kbp37(root / "kbp37/train.txt", **opts))
        names = kbp37_label_names(train)
        splits = {"train": train, **{s: keep(read_kbp37(root / f"kbp37/{s}.txt", names, **opts))
                                     for s in ("dev", "test")}}
        types = [""]
    else:
        names = [NO_RELATION, *CONLL04_RELATIONS]
        splits = {s: keep(read_conll04(root / f"conll04/conll04_{s}.json", **opts)) for s in ("train", "dev", "test")}
        splits["train"] = sample_negatives(splits["train"], r.negatives_per_positive, seed)
        types = list(CONLL04_TYPES)
    if r.max_train_examples and len(splits["train"]) > r.max_train_examples:
        splits["train"] = random.Random(seed).sample(splits["train"], r.max_train_examples)
    for split, cap in (("dev", r.max_dev_examples), ("test", r.max_test_examples)):
        if cap and len(splits[split]) > cap:
            splits[split] = random.Random(seed).sample(splits[split], cap)
    return splits, names, types, bad


def collate_relations(items: list, labels: list[int] | None, pad_id: int) -> dict[str, torch.Tensor]:
    """Encoded examples -> input_ids (B, T), attention_mask (B, T) bool, subj/obj_marker (B,),
    subj/obj_mask (B, T) bool (the entity's own pieces; its marker when it has none), labels (B,), n_tokens."""
    B, T = len(items), max(len(it) for it in items)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    subj_mask = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    obj_mask = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    for b, it in enumerate(items):
        input_ids[b, :len(it)] = torch.tensor(it.input_ids)
        attention_mask[b, :len(it)] = True
        for mask, (start, end), marker in ((subj_mask, it.subj_span, it.subj_marker),
                                           (obj_mask, it.obj_span, it.obj_marker)):
            if end > start:
                mask[b, start:end] = True
            else:
                mask[b, marker] = True
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "subj_mask": subj_mask, "obj_mask": obj_mask,
             "subj_marker": torch.tensor([it.subj_marker for it in items]),  # (B,)
             "obj_marker": torch.tensor([it.obj_marker for it in items]),  # (B,)
             "n_tokens": torch.tensor(B)}
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)  # (B,)
    return batch


MODEL_INPUTS = ("input_ids", "attention_mask", "subj_marker", "obj_marker", "subj_mask", "obj_mask")


@torch.inference_mode()
def predict_logits(model: nn.Module, items: list, pad_id: int, batch_size: int = 64,
                   precision: str = "auto") -> torch.Tensor:
    """(N, K) fp32 logits of encoded examples, in their order (batched by length)."""
    from core.precision import autocast_context, resolve_precision

    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    autocast = autocast_context(device, resolve_precision(precision, device))
    sampler = LengthBucketSampler([len(it) for it in items], batch_size, shuffle=False)
    out = torch.zeros(len(items), model.num_labels)
    for index in sampler.batches():
        batch = collate_relations([items[i] for i in index], None, pad_id)
        with autocast:
            logits = model(*(batch[k].to(device) for k in MODEL_INPUTS))  # (B, K)
        out[torch.tensor(index)] = logits.float().cpu()
    model.train(was_training)
    return out


def scores(logits: torch.Tensor, gold: list[int]) -> dict:
    probs = torch.softmax(logits, -1).numpy()
    auprc = klue_auprc(probs, gold, logits.size(1))
    return {"micro_f1": relation_micro_f1(gold, logits.argmax(-1).numpy()), "auprc": auprc["auprc"],
            "auprc_without_positives": auprc["without_positives"]}


# ---- the task ---------------------------------------------------------------------------------------
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
        """Fit the temperature and the prior offset on dev; score every decoding variant on test."""
        r = self.cfg.relation
        dev, test = self.logits(model, "dev"), self.logits(model, "test")
        dev_c = apply_constraint(dev, self.pairs["dev"], self.constraint)
        test_c = apply_constraint(test, self.pairs["test"], self.constraint)
        gold_dev = torch.tensor(self.gold["dev"])
        f1 = lambda g, p: relation_micro_f1(g.numpy(), p.numpy())  # noqa: E731
        offset = tune_prior_offset(dev, gold_dev, f1)
        offset_c = tune_prior_offset(dev_c, gold_dev, f1)
        temperature = fit_temperature(dev, gold_dev)
        variants = {"raw": test, "constraint": test_c, "prior": with_prior_offset(test, offset),
                    "constraint+prior": with_prior_offset(test_c, offset_c)}
        out = {name: scores(v, self.gold["test"]) for name, v in variants.items()}
        for name, v in variants.items():
            out[name]["auprc_calibrated"] = scores(v / temperature, self.gold["test"])["auprc"]
        chosen = ("constraint+prior" if r.prior_correction else "constraint") if r.type_constraint else \
            ("prior" if r.prior_correction else "raw")
        final = variants[chosen] / (temperature if r.temperature else 1.0)
        return {"variants": out, "chosen": chosen, "temperature": temperature, "prior_offset": offset,
                "prior_offset_constrained": offset_c, "final_logits": final,
                "dev_raw": scores(dev, self.gold["dev"])}

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
        meta = {"labels": self.names, "dataset": cfg.relation.dataset, "marker": cfg.relation.marker,
                "pooling": cfg.relation.pooling, "max_length": cfg.relation.max_length,
                "type_words": self.encoder.type_words, "special_ids": self.special_ids,
                "mlp_hidden": cfg.relation.mlp_hidden, "temperature": d["temperature"] if cfg.relation.temperature
                else 1.0, "prior_offset": (d["prior_offset_constrained"] if cfg.relation.type_constraint
                                           else d["prior_offset"]) if cfg.relation.prior_correction else 0.0,
                "constraint": {p: row.tolist() for p, row in self.constraint.items()}
                if cfg.relation.type_constraint else None}
        export(run_dir / "model", model, self.tokenizer, meta, card(cfg, result))
        return {k: v for k, v in result.items() if isinstance(v, (int, float, str))}


def per_class_f1(gold: list[int], pred: list[int], names: list[str], train_gold: list[int]) -> dict:
    """{relation: {"f1", "support", "train_count"}} on the test part (no_relation left out)."""
    from collections import Counter

    train_counts = Counter(train_gold)
    out = {}
    for k, name in enumerate(names[1:], start=1):
        hit = sum(g == p == k for g, p in zip(gold, pred))
        found, wanted = sum(p == k for p in pred), sum(g == k for g in gold)
        prec, rec = (hit / found if found else 0.0), (hit / wanted if wanted else 0.0)
        out[name] = {"f1": 100 * (2 * prec * rec / (prec + rec) if prec + rec else 0.0), "support": wanted,
                     "train_count": train_counts.get(k, 0)}
    return out


def write_predictions(path: Path, examples: list[RelationExample], probs: torch.Tensor, names: list[str],
                      with_gold: bool = False) -> None:
    """KLUE's submission layout: id, pred_label, probs (all class probabilities as a JSON list);
    with_gold adds gold_label (the run's own test part, read by scripts/re_report.py pr)."""
    import csv

    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "pred_label", "probs"] + (["gold_label"] if with_gold else []))
        for ex, row in zip(examples, probs.tolist()):
            w.writerow([ex.guid, names[max(range(len(row)), key=row.__getitem__)],
                        json.dumps([round(p, 6) for p in row])] + ([ex.label] if with_gold else []))


# ---- model ------------------------------------------------------------------------------------------
def load_model(cfg, num_labels: int, marker_list: list[str]):
    """(RelationClassifier, tokenizer, special_ids): the encoder of model.name_or_path, its vocabulary
    grown by the marker tokens the style needs (new embedding rows), the pooling and the MLP."""
    from models import load_pretrained

    r = cfg.relation
    torch.manual_seed(cfg.train.seed)
    encoder, tok = load_pretrained(cfg.model.name_or_path, task="encoder", attention=cfg.model.attention,
                                   from_scratch=cfg.model.from_scratch)
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


def export(out: Path, model: RelationClassifier, tokenizer, meta: dict, model_card=None) -> Path:
    """The encoder in the HF layout (id2label = the relations), the pooling + MLP weights as
    re_head.safetensors, relation.json (markers, pooling, decoding), README.md."""
    from models.export import save_pretrained

    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    head = {k: v.detach().float().contiguous() for k, v in model.head_state_dict().items()}
    save_pretrained(model.encoder, tokenizer, out, id2label=meta["labels"], card=model_card,
                    extra_tensors={HEAD_FILE: head})  # config.json last: the folder is complete when it is new
    return out


def card(cfg, result: dict):
    import shlex
    import sys

    from models.model_card import ModelCard

    r = cfg.relation
    lang = {"klue": ["ko"]}.get(r.dataset, ["en"])
    return ModelCard(
        title=cfg.train.name, languages=lang, tags=["relation-extraction"], pipeline_tag="text-classification",
        summary=(f"Sentence-level relation extraction on {r.dataset}: {r.marker} markers, {r.pooling} pooling, "
                 f"an MLP over the pooled entities (re_head.safetensors), {len(result['per_class_f1']) + 1} labels "
                 f"(id2label in config.json). The encoder alone loads in transformers; the head needs this repository."),
        training=f"Loss {r.loss} (gamma {r.focal_gamma}, smoothing {r.label_smoothing}), max_length {r.max_length}, "
                 f"examples {result['examples']}; decoding: {result['chosen']}.",
        scores={"test part": {"micro F1 (no_relation excluded)": result["test_micro_f1"] / 100,
                              "AUPRC": result["test_auprc"] / 100}},
        command="python train.py " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name == "train.py" else "",
        usage_here="```python\nfrom tasks.relation import RelationPredictor\n"
                   "pred = RelationPredictor.load(RUN_DIR)\npred.predict_one(sentence, (s0, s1), (o0, o1), 'PER', 'ORG')\n```",
        limits=["Mini-scale research model; scores are on a seeded test part, see RESULTS.md."])


def add_marker_tokens(encoder: nn.Module, tokenizer, tokens: list[str]):
    """(grown tokenizer, {token: id}): the marker tokens as special tokens of the tokenizer (so the
    exported tokenizer.json cuts them out of raw text, as transformers does) and new embedding rows
    through models/extend.py, each the mean of the base pieces of its spelled-out name
    ("[/SUBJ-PER]" -> "subj per")."""
    from models.extend import grow_vocabulary

    V = encoder.embeddings.word_embeddings.num_embeddings
    grown, ids = tokenizer.add_special_tokens(tokens)
    if ids != list(range(V, V + len(tokens))):
        raise ValueError(f"marker ids {ids[:3]}.. do not follow the {V} embedding rows")
    sources = [tokenizer.encode(t.strip("[]").replace("/", "").replace("-", " ").lower(), add_special_tokens=False)
               for t in tokens]
    grow_vocabulary(encoder, len(tokens), init="mean", sources=sources)
    return grown, dict(zip(tokens, ids))


# ---- a trained run: prediction ------------------------------------------------------------------------
class RelationPredictor:
    """A finished run's exported model: relation probabilities for new sentences.

        pred = RelationPredictor.load("runs/mini_re_klue")
        pred.predict_one("이순신은 조선의 장군이다.", (0, 2), (5, 6), "PER", "ORG")  # -> (label, {label: p})
    """

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

        out = Path(run_dir) / "model"
        if not (out / META_FILE).is_file():
            raise FileNotFoundError(f"no trained relation model in {out} (missing {META_FILE}): train first")
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
        encoder, tokenizer = load_pretrained(str(out), task="encoder")
        model = RelationClassifier(encoder, len(meta["labels"]), meta["pooling"], 0.0, meta.get("mlp_hidden", 0))
        from models.safetensors_io import load_file

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
        from data.relation import Entity, check_example

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
    import sys

    from data.relation import RelationDataError

    try:
        n = predict_csv(run_dir, in_csv, out_csv or "/dev/stdout")
    except (FileNotFoundError, RelationDataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{n} rows -> {out_csv or 'stdout'}", file=sys.stderr)
    return 0
