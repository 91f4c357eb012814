"""Evaluate, inspect, use and export a trained NER run; print the tables of any run.

    python evaluate.py RUN_DIR --langs de,en,es,nl          # F1 matrix + per-type P/R/F1 (test split)
    python evaluate.py RUN_DIR --langs de --errors          # + worst tokens, confusion matrix, worst sentences
    python evaluate.py RUN_DIR --predict in.txt --out out.conll    # one tag per word (CoNLL)
    python evaluate.py RUN_DIR --predict in.txt --out out.jsonl    # entities with character offsets
    cat in.txt | python evaluate.py RUN_DIR --predict - --format jsonl
    python evaluate.py RUN_DIR --export                     # rewrite RUN_DIR/model with today's exporter
    python evaluate.py --gather runs/*  > results/all.md      # a table per kind of task (scripts/gather_results.py)
    python evaluate.py runs/mini_re_klue                    # a relation or alignment run: its results table
    python evaluate.py runs/mini_re_klue --predict rows.csv --out preds.csv   # relation runs tag KLUE-layout CSV rows

Scoring prints its progress to stderr (language, sentences done, sentences/s; a few lines per
language). Relation-extraction and alignment runs are scored when they train; for them
``evaluate.py RUN`` prints the table of their results.json.

Input of --predict (data/text_input.py; ``--input-format auto`` decides from the file, with a note
on stderr when it reads one word a line): ``text``, one sentence a line, words split on
whitespace; ``conll``, a CoNLL file with tags (``index TOKEN TAG``, ``TOKEN TAG``, or more columns
with the tag last, as CoNLL-2003's ``TOKEN POS CHUNK TAG``: the words are read, the tags kept
aside, never read as words); ``words``, one word a line with blank lines between sentences (a file
whose lines are all single tokens is read so, never as one-word sentences). Every word gets
exactly one prediction; ``--out`` says on stderr what it wrote, and is refused when it names the
input file. Bad input (not UTF-8, empty, a folder, a malformed CoNLL line), an unknown ``--langs``
language and a broken model folder are one ``error:`` line naming the file (and line) or the
value, with exit code 2.

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
import time
from collections import defaultdict
from pathlib import Path

import torch

from core.checkpoint import CheckpointError  # also: a model folder that cannot be loaded
from core.config import ConfigError, load_config
from core.metrics import confusion, entity_scores
from core.results import f1_table, per_type_table
from data.conll import ConllError, Sentence, write_conll
from data.labels import build_label_set
from data.sampling import downsample
from data.sources import load_split
from data.text_input import INPUT_FORMATS, InputError, InputSentence, check_utf8, entity_spans, read_input, \
    to_jsonl_records
from models.tagger import CRFTagger
from scripts.gather_results import RunResults, gather_runs, run_table
from tasks.ner import MissingCheckpointError, predict_words

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
    return model, tokenizer, labels, run_config(run_dir)


def run_config(run_dir: str | Path):
    """The run's merged config: RUN/config.yaml (a few-shot size k*/: its parent's), else the defaults."""
    run_dir = Path(run_dir)
    found = [p for p in (run_dir / "config.yaml", run_dir.parent / "config.yaml") if p.is_file()]  # few-shot: k*/
    return load_config(found[0]) if found else load_config()


def check_langs(langs: list[str], cfg, run_dir: Path) -> None:
    """Every language of --langs must have a file layout in the run's config (data.layout)."""
    unknown = [lang for lang in langs if lang not in cfg.data.layout]
    if unknown:
        raise InputError(f"--langs: unknown language {', '.join(map(repr, unknown))}; {run_dir} knows "
                         f"{', '.join(sorted(cfg.data.layout))} (data.layout; add one with "
                         f"data.layout.xx=path/{{lang}}/{{split}}.conllu when training)")


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


def predict_scored(run, sentences: list[Sentence], lang: str, lines: int = 4):
    """predict_words over ``sentences`` in up to ``lines`` parts (at least 200 sentences each), with a
    progress line per part on stderr: language, sentences done, sentences per second."""
    part = max(200, math.ceil(len(sentences) / lines))
    pred, losses, start = [], [], time.perf_counter()
    for first in range(0, len(sentences), part):
        tags, part_losses = predict_words(run[0], sentences[first:first + part], *run[1:])
        pred += tags
        losses = None if part_losses is None or losses is None else losses + part_losses
        done = min(first + part, len(sentences))
        rate = done / max(time.perf_counter() - start, 1e-9)
        print(f"{lang}: {done:,}/{len(sentences):,} sentences, {rate:,.0f} sentences/s", file=sys.stderr, flush=True)
    return pred, losses


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
    parser = argparse.ArgumentParser(description="Evaluate, use or export a trained NER run; print any run's table.")
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
    parser.add_argument("--gather", action="store_true", help="tables from many runs' results.json, one per kind")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.gather:
        sys.stdout.write(gather_runs(args.run_dir))
        return 0
    if len(args.run_dir) != 1:
        parser.error("give exactly one RUN_DIR (or --gather with several)")
    run_dir = Path(args.run_dir[0])
    try:
        check_predict_paths(args.predict, args.out)
        task = RunResults(run_dir).task
        if task == "relation":
            return relation_run(run_dir, args)
        if task not in ("", "ner"):  # align, bilstm_crf, zeroresource, mlm, extend: scored while training
            return print_run_table(run_dir, args, task)
        cfg = run_config(run_dir)
        langs = args.langs.split(",") if args.langs else cfg.data.eval_langs
        check_langs(langs, cfg, run_dir)
        sentences = read_input(args.predict, args.input_format) if args.predict else None  # input errors first
        model, tokenizer, labels = load_model_dir(run_dir / "model")  # load_trained without reading cfg again
    except (MissingCheckpointError, CheckpointError, InputError, ConllError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _run(args, run_dir, sentences, model, tokenizer, labels, cfg, langs)
    except (FileNotFoundError, ConllError, InputError) as err:  # data files of --langs, the --out folder
        print(f"error: {err}", file=sys.stderr)
        return 2


def check_predict_paths(predict: str | None, out: str | None) -> None:
    """--predict names a file (or -), and --out never the same file: the input is never overwritten."""
    if predict is None or predict == "-":
        return
    if Path(predict).is_dir():
        raise InputError(f"--predict {predict}: a folder; give one file (or - for standard input)")
    if out and Path(out).resolve() == Path(predict).resolve():
        raise InputError(f"--out {out} is the --predict input; write the predictions to another file "
                         f"(the input is left as it is)")


def relation_run(run_dir: Path, args) -> int:
    """A relation-extraction run: --predict tags KLUE-layout CSV rows (tasks/relation.py); without
    --predict, the table of its results.json."""
    if not args.predict:
        return print_run_table(run_dir, args, "relation")
    if args.predict == "-":
        raise InputError("--predict -: a relation run reads a CSV file (KLUE layout), not standard input; "
                         "give the file's path")
    check_utf8(args.predict)
    from tasks import relation

    return relation.predict_cli(run_dir, args.predict, args.out)


def print_run_table(run_dir: Path, args, task: str) -> int:
    """The results table of a run evaluate.py does not re-score (relation, alignment, ...)."""
    asked = [flag for flag, given in (("--predict", args.predict), ("--export", args.export), ("--errors", args.errors),
                                      ("--langs", args.langs)) if given]
    if asked:
        raise InputError(f"{' '.join(asked)}: not for a {task!r} run ({run_dir}); evaluate.py re-scores NER runs, "
                         f"and tags with NER and relation runs")
    run = RunResults(run_dir)
    if run.results is None:
        raise InputError(f"{run_dir} ({task} run): {run.reason}")
    print(f"## {run_dir.name} ({task} run, from results.json)\n\n" + run_table(run.kind, [run]), end="")
    return 0


def _run(args, run_dir: Path, sentences, model, tokenizer, labels, cfg, langs: list[str]) -> int:
    run = (model, tokenizer, labels, cfg.data, args.batch_size, cfg.train.precision)
    if args.export:
        info = export(run_dir, model, tokenizer, labels, cfg, args.command)
        print(json.dumps({"model": str(run_dir / "model"), **info}, indent=2))
        return 0
    if sentences is not None:
        fmt = args.format or ("jsonl" if (args.out or "").endswith(".jsonl") else "conll")
        pred, probs = predict(run, sentences, with_scores=fmt == "jsonl")
        write_predictions(args.out, fmt, sentences, pred, probs)
        if args.out:
            entities = sum(len(entity_spans(tags)) for tags in pred)
            print(f"wrote {args.out} ({fmt}): {len(sentences):,} sentences, "
                  f"{sum(len(s.spans) for s in sentences):,} words, {entities:,} entities", file=sys.stderr)
        return 0
    scores, name, reports = {}, run_dir.name, []
    for lang in langs:
        sentences = load_split(cfg.data, lang, args.split)
        cap = args.max_sentences or {"test": cfg.data.max_test_sentences, "dev": cfg.data.max_eval_sentences}.get(
            args.split, 0)  # by default the same fixed-seed sample the run was scored on
        sentences = downsample(sentences, cap, cfg.train.seed) if cap else sentences
        pred, losses = predict_scored(run, sentences, lang)
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
