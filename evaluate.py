"""Evaluate, inspect and use a trained NER run.

    python evaluate.py RUN_DIR --langs de,en,es,nl          # F1 matrix + per-type P/R/F1 (test split)
    python evaluate.py RUN_DIR --langs de --errors          # + worst tokens, confusion matrix, worst sentences
    python evaluate.py RUN_DIR --predict in.txt --out out.conll   # tag raw text (whitespace split) or CoNLL
    python evaluate.py --gather runs/mini_* > results/mini.md     # one table from many runs' results.json
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from core.config import load_config
from core.metrics import confusion, entity_scores
from data.conll import Sentence, read_conll, write_conll
from data.labels import build_label_set
from data.sampling import downsample
from data.sources import load_split
from scripts.gather_results import f1_table, gather, per_type_table
from tasks.ner import CRFTagger, MissingCheckpointError, predict_words


def read_input(path: str | Path) -> list[Sentence]:
    """A CoNLL file (tags kept, any IOB2 tag allowed) or raw text: one sentence a line, split on spaces."""
    path = Path(path)
    first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), "")
    if "\t" in first or (len(first.split()) == 2 and first.split()[1][:2] in ("O", "B-", "I-")):
        return read_conll(path, labels=None)
    return [Sentence(line.split(), []) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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


def load_trained(run_dir: str | Path):
    """(model, tokenizer, labels, cfg) of a finished NER run (what save_trained wrote)."""
    from models import load_pretrained

    run_dir = Path(run_dir)
    out = run_dir / "model"
    if not (out / "config.json").is_file():
        raise MissingCheckpointError(f"no trained model in {out}: train first (python train.py CONFIG.yaml)")
    found = [p for p in (run_dir / "config.yaml", run_dir.parent / "config.yaml") if p.is_file()]  # few-shot: k*/
    cfg = load_config(found[0]) if found else load_config()
    labels = build_label_set(json.loads((out / "labels.json").read_text()))
    model, tokenizer = load_pretrained(str(out), task="token-classification", num_labels=len(labels))
    if (out / "crf.pt").is_file():
        from models.crf import CRF

        model = CRFTagger(model, CRF(len(labels), labels=list(labels.tags)))
        model.crf.load_state_dict(torch.load(out / "crf.pt", weights_only=True))
    return model.eval(), tokenizer, labels, cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a trained NER run.")
    parser.add_argument("run_dir", nargs="*", help="a run folder (or several with --gather)")
    parser.add_argument("--langs", default="", help="comma-separated; default: the run's data.eval_langs")
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--max-sentences", type=int, default=0,
                        help="a fixed-seed sample of N sentences per language (default: the run's data.max_test/"
                             "max_eval_sentences, 0 = all)")
    parser.add_argument("--errors", action="store_true", help="worst tokens, confusion matrix, worst sentences")
    parser.add_argument("--predict", help="raw text (one sentence a line) or CoNLL file to tag")
    parser.add_argument("--out", help="CoNLL output of --predict (default: stdout)")
    parser.add_argument("--gather", action="store_true", help="one table from the runs' results.json")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.gather:
        sys.stdout.write(gather(args.run_dir))
        return 0
    if len(args.run_dir) != 1:
        parser.error("give exactly one RUN_DIR (or --gather with several)")
    try:
        model, tokenizer, labels, cfg = load_trained(args.run_dir[0])
    except MissingCheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run = (model, tokenizer, labels, cfg.data, args.batch_size, cfg.train.precision)
    if args.predict:
        sentences = read_input(args.predict)
        pred, _ = predict_words(run[0], sentences, *run[1:])
        tagged = [Sentence(s.words, p, s.lang) for s, p in zip(sentences, pred)]
        write_conll(args.out or "/dev/stdout", tagged)
        return 0
    langs = args.langs.split(",") if args.langs else cfg.data.eval_langs
    scores, name, reports = {}, Path(args.run_dir[0]).name, []
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
