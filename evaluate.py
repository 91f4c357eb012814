"""Evaluate, inspect, use and export a trained NER run.

    python evaluate.py RUN_DIR --langs de,en,es,nl          # F1 matrix + per-type P/R/F1 (test split)
    python evaluate.py RUN_DIR --langs de --errors          # + worst tokens, confusion matrix, worst sentences
    python evaluate.py RUN_DIR --predict in.txt --out out.conll    # one tag per word (CoNLL)
    python evaluate.py RUN_DIR --predict in.txt --out out.jsonl    # entities with character offsets
    cat in.txt | python evaluate.py RUN_DIR --predict - --format jsonl
    python evaluate.py RUN_DIR --export                     # rewrite RUN_DIR/model with today's exporter
    python evaluate.py --gather runs/mini_* > results/mini.md     # one table from many runs' results.json

Input of --predict (data/text_input.py; ``--input-format auto`` decides from the file, with a note
on stderr when it reads one word a line): ``text``, one sentence a line, words split on whitespace; ``conll``, a CoNLL file
(tags kept, any IOB2 tag); ``words``, one word a line with blank lines between sentences (a file
whose lines are all single tokens is read so, never as one-word sentences). Every word gets
exactly one prediction. Bad input (not UTF-8, empty, a malformed CoNLL line) and a broken model
folder are one ``error:`` line naming the file (and line) with exit code 2.

JSON lines (one object per input sentence):
``{"text": ..., "entities": [{"start", "end", "label", "text", "score"}]}``. ``start``/``end`` are
character offsets into ``text``: the input line itself for raw text, the words joined by single
spaces for CoNLL/words input. Entities are read off the IOB2 tags by the conlleval rule (an I-X
that does not continue an X starts a new entity), as transformers' pipeline groups them.
``score`` is the mean, over the entity's words, of the softmax probability the head gives the
predicted tag at the word's first piece: for a linear head this is transformers'
``aggregation_strategy="first"`` score; for a CRF head it is the emission's probability of the tag
Viterbi chose (not a CRF marginal).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import torch

from core.checkpoint import CheckpointError  # also: a model folder that cannot be loaded
from core.config import ConfigError, load_config
from core.metrics import confusion, entity_scores
from core.results import f1_table, gather, per_type_table
from data.conll import ConllError, Sentence, write_conll
from data.labels import build_label_set
from data.sampling import downsample
from data.sources import load_split
from data.text_input import INPUT_FORMATS, InputError, InputSentence, read_input, to_jsonl_records
from models.tagger import CRFTagger
from tasks.ner import MissingCheckpointError, predict_words
from tasks import relation  # --predict on a relation run (tasks/relation.py)

# ---- loading a trained model -------------------------------------------------------------------
def load_model_dir(model_dir: str | Path):
    """(model, tokenizer, labels) of an exported NER folder: XLMRForTokenClassification, or a
    CRFTagger when crf.safetensors (or an old run's crf.pt) is there. Tag names come from
    config.json's id2label (an old run's labels.json when config.json has only LABEL_i)."""
    from models import load_pretrained
    from models.export import read_label_names
    from models.safetensors_io import SafetensorsReader

    out = Path(model_dir)
    if not (out / "config.json").is_file():
        sizes = sorted(p.parent.parent.name for p in out.parent.glob("k*/model/config.json"))
        hint = f"a few-shot run has one per size: {out.parent}/{sizes[0]}, ..." if sizes else \
            "train first (python train.py CONFIG.yaml)"
        raise MissingCheckpointError(f"no trained model in {out}: {hint}")
    if (out / "bilstm.safetensors").is_file():  # model.head bilstm_crf: its emissions come from the BiLSTM
        raise CheckpointError(f"{out}: a frozen-encoder BiLSTM-CRF run (bilstm.safetensors); evaluate.py "
                              "reloads linear and CRF heads only -- its test scores are in results.json")
    try:
        names = read_label_names(out)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{out / 'config.json'}: not a model config ({err})") from None
    if names is None:  # runs exported before the tag names went into config.json
        if not (out / "labels.json").is_file():
            raise CheckpointError(f"{out / 'config.json'}: id2label holds no tag names (LABEL_0, ...) and there "
                                  f"is no labels.json: re-export the run or add the names to config.json")
        try:
            names = json.loads((out / "labels.json").read_text(encoding="utf-8"))
            labels = build_label_set(names)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{out / 'labels.json'}: not a list of tag names ({err})") from None
    else:
        labels = build_label_set(names)
    weights = out / "model.safetensors"
    try:
        with SafetensorsReader(weights) as reader:
            if "classifier.weight" not in reader.keys():
                raise CheckpointError(f"{weights}: no classifier.weight: not a token-classification model")
        model, tokenizer = load_pretrained(str(out), task="token-classification", num_labels=len(labels))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{out}: cannot load the model: {str(err).splitlines()[0]}") from None
    crf_state = _crf_state(out)
    if crf_state is not None:
        from models.crf import CRF

        model = CRFTagger(model, CRF(len(labels), labels=list(labels.tags)))
        try:
            model.crf.load_state_dict(crf_state)
        except RuntimeError as err:
            raise CheckpointError(f"{out}: the CRF does not fit {len(labels)} tags: {str(err).splitlines()[0]}") \
                from None
    return model.eval(), tokenizer, labels


def _crf_state(out: Path) -> dict | None:
    from models.safetensors_io import load_file

    if (out / "crf.safetensors").is_file():
        try:
            return load_file(out / "crf.safetensors")
        except (OSError, ValueError) as err:
            raise CheckpointError(str(err)) from None
    if (out / "crf.pt").is_file():  # runs exported before crf.safetensors; weights only, no code runs
        try:
            return torch.load(out / "crf.pt", map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: torch raises many kinds
            raise CheckpointError(f"{out / 'crf.pt'}: cannot be read with weights_only=True "
                                  f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    return None


def load_trained(run_dir: str | Path):
    """(model, tokenizer, labels, cfg) of a finished NER run (what tasks/ner.py::save_trained wrote)."""
    run_dir = Path(run_dir)
    model, tokenizer, labels = load_model_dir(run_dir / "model")
    found = [p for p in (run_dir / "config.yaml", run_dir.parent / "config.yaml") if p.is_file()]  # few-shot: k*/
    cfg = load_config(found[0]) if found else load_config()
    return model, tokenizer, labels, cfg


# ---- --predict ---------------------------------------------------------------------------------
def predict(run, sentences: list[InputSentence], with_scores: bool):
    """(tags, probabilities or None): one tag per word; the probability of each predicted tag."""
    model, tokenizer, labels, data_cfg, batch_size, precision = run
    plain = [Sentence(s.words, []) for s in sentences]
    pred, _ = predict_words(model, plain, tokenizer, labels, data_cfg, batch_size, precision)
    if not with_scores:
        return pred, None
    # the per-word loss of a given tag is -log p(tag): score the predicted tags as if gold
    _, losses = predict_words(model, [Sentence(s.words, p) for s, p in zip(plain, pred)], tokenizer, labels,
                              data_cfg, batch_size, precision)
    return pred, [[math.exp(-loss) for loss in row] for row in losses]


def write_predictions(out: str | None, fmt: str, sentences: list[InputSentence], pred, probs) -> None:
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in to_jsonl_records(sentences, pred, probs))
        if out:
            if not Path(out).parent.is_dir():
                raise InputError(f"--out {out}: no folder {Path(out).parent}")
            Path(out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return
    if out and not Path(out).parent.is_dir():
        raise InputError(f"--out {out}: no folder {Path(out).parent}")
    write_conll(out or "/dev/stdout", [Sentence(s.words, p) for s, p in zip(sentences, pred)])


# ---- error analysis ----------------------------------------------------------------------------
def error_report(sentences: list[Sentence], pred: list[list[str]], losses: list[list[float]], tags: list[str],
                 top: int = 20) -> str:
    """Tokens with the highest summed loss, the token confusion matrix, and the worst sentences."""
    by_token: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for sent, row in zip(sentences, losses):
        for word, loss in zip(sent.words, row):
            by_token[word][0] += loss
            by_token[word][1] += 1
    out = [f"### Tokens with the highest summed loss (top {top})\n", "| token | summed loss | count |",
           "|---|---:|---:|"]
    for word, (total, count) in sorted(by_token.items(), key=lambda kv: -kv[1][0])[:top]:
        out.append(f"| {word} | {total:.2f} | {count} |")
    matrix = confusion([s.tags for s in sentences], pred, tags)
    out += ["", "### Confusion matrix (rows gold, columns predicted)\n",
            "| gold \\ pred | " + " | ".join(tags) + " |", "|---|" + "---:|" * len(tags)]
    out += [f"| {tag} | " + " | ".join(str(c) for c in row) + " |" for tag, row in zip(tags, matrix)]
    out += ["", f"### Worst sentences by summed loss (top {min(top, 10)})\n"]
    worst = sorted(range(len(sentences)), key=lambda i: -sum(losses[i]))[: min(top, 10)]
    for i in worst:
        s = sentences[i]
        marked = [w if g == p else f"**{w}**[{g}->{p}]" for w, g, p in zip(s.words, s.tags, pred[i])]
        out.append(f"- loss {sum(losses[i]):.2f}: " + " ".join(marked))
    return "\n".join(out) + "\n"


# ---- entry point -------------------------------------------------------------------------------
def export(run_dir: Path, model, tokenizer, labels, cfg, command: str | None) -> dict:
    """Re-export a run's model folder with today's exporter (tag names, crf.safetensors, card)."""
    from tasks.ner import save_trained

    path = run_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else None
    return save_trained(run_dir, model, tokenizer, labels, results, cfg, command=command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate, use or export a trained NER run.")
    parser.add_argument("run_dir", nargs="*", help="a run folder (or several with --gather)")
    parser.add_argument("--langs", default="", help="comma-separated; default: the run's data.eval_langs")
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--max-sentences", type=int, default=0,
                        help="a fixed-seed sample of N sentences per language (default: the run's data.max_test/"
                             "max_eval_sentences, 0 = all)")
    parser.add_argument("--errors", action="store_true", help="worst tokens, confusion matrix, worst sentences")
    parser.add_argument("--predict", help="file to tag (raw text, CoNLL, or one word a line); - = standard input")
    parser.add_argument("--input-format", default="auto", choices=INPUT_FORMATS)
    parser.add_argument("--out", help="output of --predict (default: stdout)")
    parser.add_argument("--format", choices=["conll", "jsonl"],
                        help="output of --predict (default: jsonl if --out ends in .jsonl, else conll)")
    parser.add_argument("--export", action="store_true", help="rewrite RUN_DIR/model with today's exporter")
    parser.add_argument("--command", help="with --export: the command that trained the run, for the model card")
    parser.add_argument("--gather", action="store_true", help="one table from the runs' results.json")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.gather:
        sys.stdout.write(gather(args.run_dir))
        return 0
    if len(args.run_dir) != 1:
        parser.error("give exactly one RUN_DIR (or --gather with several)")
    run_dir = Path(args.run_dir[0])
    if args.predict and relation.is_relation_run(run_dir):  # KLUE-layout CSV rows -> id, pred_label, probs
        return relation.predict_cli(run_dir, args.predict, args.out)
    try:
        sentences = read_input(args.predict, args.input_format) if args.predict else None  # input errors first
        model, tokenizer, labels, cfg = load_trained(run_dir)
    except (MissingCheckpointError, CheckpointError, InputError, ConllError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _run(args, run_dir, sentences, model, tokenizer, labels, cfg)
    except (FileNotFoundError, ConllError, InputError) as err:  # data files of --langs, the --out folder
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args, run_dir: Path, sentences, model, tokenizer, labels, cfg) -> int:
    run = (model, tokenizer, labels, cfg.data, args.batch_size, cfg.train.precision)
    if args.export:
        info = export(run_dir, model, tokenizer, labels, cfg, args.command)
        print(json.dumps({"model": str(run_dir / "model"), **info}, indent=2))
        return 0
    if sentences is not None:
        fmt = args.format or ("jsonl" if (args.out or "").endswith(".jsonl") else "conll")
        pred, probs = predict(run, sentences, with_scores=fmt == "jsonl")
        write_predictions(args.out, fmt, sentences, pred, probs)
        return 0
    langs = args.langs.split(",") if args.langs else cfg.data.eval_langs
    scores, name, reports = {}, run_dir.name, []
    for lang in langs:
        sentences = load_split(cfg.data, lang, args.split)
        cap = args.max_sentences or {"test": cfg.data.max_test_sentences, "dev": cfg.data.max_eval_sentences}.get(
            args.split, 0)  # by default the same fixed-seed sample the run was scored on
        sentences = downsample(sentences, cap, cfg.train.seed) if cap else sentences
        pred, losses = predict_words(run[0], sentences, *run[1:])
        scores[lang] = entity_scores([s.tags for s in sentences], pred)
        if args.errors:
            reports.append(f"## {lang} ({args.split}): errors\n\n" + error_report(sentences, pred, losses,
                                                                                 list(labels.tags)))
    print(f"## {name}: {args.split} entity F1 (x 100)\n\n" + f1_table({name: {k: v['f1'] for k, v in scores.items()}},
                                                                       langs))
    print(per_type_table(scores))
    print("\n".join(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
