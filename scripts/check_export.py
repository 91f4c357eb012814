"""What a transformers user gets from an exported NER run, next to what this repository gets.

    python scripts/check_export.py runs/mini_zeroshot_de_s42 [--lang de] [--sentences 2000]

Loads RUN/model with transformers (transformers is a test/check-only dependency here), prints
its tag names and the pipeline's output on one sentence (per piece and grouped), then tags the
run's dev sentences (the fixed-seed sample training scored) three ways and scores each against
the gold entities, as character spans of the words joined by spaces:
  ours Viterbi (CRF head) or argmax (linear head) — evaluate.py --predict;
  ours argmax over the same emissions — what a CRF-head model gives without its CRF;
  transformers' pipeline("token-classification", aggregation_strategy="first").
Everything runs in fp32, one sentence at a time for the pipeline.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EXAMPLE = "Angela Merkel besucht mit Emmanuel Macron die Vereinten Nationen in New York ."


def span_f1(gold: list[set], pred: list[set]) -> float:
    hit = sum(len(g & p) for g, p in zip(gold, pred))
    n_gold, n_pred = sum(map(len, gold)), sum(map(len, pred))
    return 2 * hit / (n_gold + n_pred) if n_gold + n_pred else 0.0


def char_spans(words: list[str], tags: list[str]) -> set:
    from data.text_input import entity_spans

    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    return {(starts[a], starts[b - 1] + len(words[b - 1]), t) for a, b, t in entity_spans(tags)}


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from data.sampling import downsample
    from data.sources import load_split
    from evaluate import load_trained
    from tasks.ner import predict_tags

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--lang", default="", help="dev language (default: the run's first training language)")
    parser.add_argument("--sentences", type=int, default=0, help="0: the run's data.max_eval_sentences sample")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = Path(args.run_dir)
    model, tokenizer, labels, cfg = load_trained(run)
    hf_model = AutoModelForTokenClassification.from_pretrained(run / "model")
    print(f"config.json id2label: {hf_model.config.id2label}")
    ner_tokens = pipeline("token-classification", model=hf_model, tokenizer=AutoTokenizer.from_pretrained(run / "model"),
                          device="cpu")
    ner = pipeline("token-classification", model=hf_model, tokenizer=ner_tokens.tokenizer,
                   aggregation_strategy="first", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(f"\npipeline(...)({EXAMPLE!r}):")
        for e in ner_tokens(EXAMPLE):
            print(f"  {e['word']!r:16} {e['entity']:6} {float(e['score']):.3f}")
        print("pipeline(..., aggregation_strategy='first'):")
        for e in ner(EXAMPLE):
            print(f"  {EXAMPLE[e['start']:e['end']]!r:28} {e['entity_group']:4} {float(e['score']):.3f}")
    lang = args.lang or cfg.data.train_langs[0]
    n = args.sentences or cfg.data.max_eval_sentences
    dev = load_split(cfg.data, lang, "dev")
    dev = downsample(dev, n, cfg.train.seed) if n else dev
    gold = [char_spans(s.words, s.tags) for s in dev]
    crf = hasattr(model, "crf")
    ours = predict_tags(model, dev, tokenizer, labels, cfg.data, precision="fp32")
    argmax = predict_tags(model.tagger if crf else model, dev, tokenizer, labels, cfg.data, precision="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [{(e["start"], e["end"], e["entity_group"]) for e in ner(" ".join(s.words))} for s in dev]
    argmax_spans = [char_spans(s.words, t) for s, t in zip(dev, argmax)]
    out = {"run": str(run), "dev": f"{lang}, {len(dev)} sentences", "head": "crf" if crf else "linear",
           "f1_ours": span_f1(gold, [char_spans(s.words, t) for s, t in zip(dev, ours)]),
           "f1_ours_argmax": span_f1(gold, argmax_spans), "f1_transformers_pipeline": span_f1(gold, theirs),
           "sentences_pipeline_equals_our_argmax": sum(a == b for a, b in zip(argmax_spans, theirs)) / len(dev)}
    print("\n" + json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
