"""Benchmark: the whole zero-shot German experiment, ours against the transformers Trainer recipe.

    python bench/e2e.py --small                      # ~1,000 sentences: a few minutes, for repeated runs
    python bench/e2e.py                              # the full experiment (20,000 German sentences, 3 epochs)
    python bench/e2e.py --precisions fp32,bf16 --reps 1

What a user of the study would otherwise run is transformers' ``Trainer`` with
``XLMRobertaForTokenClassification``: tokenize-and-align-labels on the first piece of each word
(other pieces -100), ``DataCollatorForTokenClassification``, 3 epochs, batch 16, weight decay 0.05,
evaluation on the German dev set after each epoch, seqeval entity F1, the best-dev epoch kept and
tested on every language. Ours is ``python train.py configs/mini_zeroshot_de.yaml`` with the same
settings and a linear head (``model.head=linear``: the like-for-like row; the config's default CRF
head scores higher and would not compare the loops).

Both sides start from the same checkpoint (runs/mini_pretrain/model, the offline mini), read the
same sentences (the project's readers and fixed-seed caps, so the two see identical data), use the
same learning rate, warm-up, schedule, seed and precision, and each runs in its own subprocess;
the wall time is the whole run: data preparation, training, every evaluation, test, and for ours
also the export of model/ (the Trainer recipe writes its best checkpoint too). Training tokens/s =
real (non-pad) training pieces x epochs / training seconds. Runs alternate the order; the ratio is
reference wall time / ours.

Differences that remain and are printed: the recipe truncates at 128 pieces, so words past the cut
get no prediction and are left out of its test score; ours splits long sentences into overlapping
windows and predicts every word.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = "configs/mini_zeroshot_de.yaml"
LANGS = ["de", "en", "es", "nl"]  # PAN-X test languages both sides read from the same files


def settings(small: bool) -> dict:
    """The recipe's settings; --small caps the data so that a run takes a few minutes."""
    s = dict(epochs=3, batch_size=16, weight_decay=0.05, lr=6e-4, warmup_ratio=0.1, seed=42, max_length=128,
             max_train=0, max_dev=2000, max_test=0)
    if small:
        s.update(max_train=1000, max_dev=300, max_test=300)
    return s


def our_overrides(s: dict, precision: str, out_dir: str) -> list[str]:
    return ["model.head=linear", f"train.epochs={s['epochs']}", f"train.batch_size={s['batch_size']}",
            "train.accum_steps=1", f"train.weight_decay={s['weight_decay']}", f"train.lr={s['lr']}",
            f"train.warmup_ratio={s['warmup_ratio']}", f"train.seed={s['seed']}", f"train.precision={precision}",
            f"data.max_length={s['max_length']}", f"data.max_train_sentences={s['max_train']}",
            f"data.max_eval_sentences={s['max_dev']}", f"data.max_test_sentences={s['max_test']}",
            f"data.eval_langs=[{','.join(LANGS)}]", "data.train_langs=[de]", "train.name=e2e_ours",
            f"train.out_dir={out_dir}/{{name}}"]


def run_ours(s: dict, precision: str, model: str, workdir: Path) -> dict:
    cmd = [sys.executable, "train.py", CONFIG, *our_overrides(s, precision, str(workdir)),
           f"model.name_or_path={model}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: ours failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    run_dir = workdir / "e2e_ours"
    results = json.loads((run_dir / "results.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    f1 = {lang: 100 * results["test"][lang]["f1"] for lang in LANGS}
    return {"wall": wall, "tokens_per_s": statistics.median(rates) if rates else float("nan"), "f1": f1,
            "dev": 100 * results["best_dev_f1"]}


# ---------------------------------------------------------------- the reference recipe (its own process)

def reference_main(s: dict, precision: str, model: str, out: Path) -> None:
    """The Trainer recipe as the study's user writes it; prints one JSON line of results."""
    t_start = time.perf_counter()
    import numpy as np
    import torch
    from seqeval.metrics import f1_score
    from transformers import (DataCollatorForTokenClassification, Trainer, TrainerCallback, TrainingArguments,
                              XLMRobertaForTokenClassification, XLMRobertaTokenizerFast)

    from core.config import load_config
    from data.labels import build_label_set
    from data.sampling import downsample
    from data.sources import load_split

    torch.manual_seed(s["seed"])
    data_cfg = load_config(ROOT / CONFIG).data
    labels = build_label_set()
    tags = [labels.tag(i) for i in range(len(labels))]
    tag_id = {t: i for i, t in enumerate(tags)}

    def cap(sents, n):
        return downsample(sents, n, s["seed"]) if n else sents

    train = cap(load_split(data_cfg, "de", "train"), s["max_train"])
    dev = cap(load_split(data_cfg, "de", "dev"), s["max_dev"])
    tests = {lang: cap(load_split(data_cfg, lang, "test"), s["max_test"]) for lang in LANGS}
    tok = XLMRobertaTokenizerFast(tokenizer_file=str(Path(model) / "tokenizer.json"))

    def tokenize_and_align_labels(sentences):
        enc = tok([x.words for x in sentences], is_split_into_words=True, truncation=True,
                  max_length=s["max_length"])
        rows = []
        for b, sent in enumerate(sentences):
            previous, label_ids = None, []
            for w in enc.word_ids(b):
                label_ids.append(-100 if w is None or w == previous else tag_id[sent.tags[w]])
                previous = w
            rows.append({"input_ids": enc["input_ids"][b], "attention_mask": enc["attention_mask"][b],
                         "labels": label_ids})
        return rows

    train_rows, dev_rows = tokenize_and_align_labels(train), tokenize_and_align_labels(dev)
    test_rows = {lang: tokenize_and_align_labels(v) for lang, v in tests.items()}
    train_pieces = sum(len(r["input_ids"]) for r in train_rows)

    def compute_metrics(pred):
        logits, gold = pred
        best = np.argmax(logits, axis=-1)
        y_true = [[tags[g] for g in row if g != -100] for row in gold]
        y_pred = [[tags[p] for p, g in zip(prow, row) if g != -100] for prow, row in zip(best, gold)]
        return {"f1": f1_score(y_true, y_pred)}

    hf_model = XLMRobertaForTokenClassification.from_pretrained(model, num_labels=len(tags), id2label=dict(enumerate(tags)),
                                                                label2id=tag_id, attn_implementation="sdpa")
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=s["epochs"], per_device_train_batch_size=s["batch_size"],
        per_device_eval_batch_size=32, learning_rate=s["lr"], weight_decay=s["weight_decay"],
        warmup_steps=s["warmup_ratio"], lr_scheduler_type="linear", max_grad_norm=1.0, seed=s["seed"],
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True,
        metric_for_best_model="f1", logging_steps=50, report_to=[], use_cpu=True,
        bf16=precision == "bf16", dataloader_num_workers=0, disable_tqdm=True)
    class EvalClock(TrainerCallback):
        """Time spent in the per-epoch evaluation and checkpoint save, kept out of tokens/s (as ours logs it)."""
        excluded, mark = 0.0, None

        def on_epoch_end(self, *a, **k):
            EvalClock.mark = time.perf_counter()

        def on_save(self, *a, **k):
            if EvalClock.mark is not None:
                EvalClock.excluded += time.perf_counter() - EvalClock.mark
                EvalClock.mark = None

    trainer = Trainer(model=hf_model, args=args, train_dataset=train_rows, eval_dataset=dev_rows,
                      data_collator=DataCollatorForTokenClassification(tok), compute_metrics=compute_metrics,
                      callbacks=[EvalClock()])
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0 - EvalClock.excluded  # steps only: dev evaluation and saves left out
    dev_f1 = trainer.evaluate()["eval_f1"]
    f1 = {}
    truncated = 0
    for lang, rows in test_rows.items():
        f1[lang] = 100 * trainer.predict(rows).metrics["test_f1"]
        truncated += sum(len(x.words) for x in tests[lang]) - sum(
            sum(1 for g in r["labels"] if g != -100) for r in rows)
    print(json.dumps({"wall_inner": time.perf_counter() - t_start, "train_seconds": train_seconds,
                      "tokens_per_s": train_pieces * s["epochs"] / train_seconds, "f1": f1,
                      "dev": 100 * dev_f1, "truncated_words": truncated}))


def run_reference(s: dict, precision: str, model: str, workdir: Path, small: bool) -> dict:
    cmd = [sys.executable, "bench/e2e.py", "--side", "reference", "--precisions", precision, "--model", model,
           "--workdir", str(workdir)] + (["--small"] if small else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: the Trainer recipe failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "wall": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="1,000 training sentences, 300 dev/test: a few minutes")
    ap.add_argument("--precisions", default="fp32", help="comma list of fp32, bf16 (bf16 only where the CPU has it)")
    ap.add_argument("--reps", type=int, default=1, help="runs of each side per precision (order alternates)")
    ap.add_argument("--model", default=str(ROOT / "runs/mini_pretrain/model"))
    ap.add_argument("--side", choices=["both", "reference"], default="both", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    s = settings(args.small)
    if not (Path(args.model) / "config.json").is_file():
        print(f"error: no checkpoint at {args.model} (--model); build the mini first: "
              f"python train.py configs/mini_pretrain.yaml", file=sys.stderr)
        return 2
    if args.side == "reference":
        reference_main(s, args.precisions, args.model, Path(args.workdir) / "trainer")
        return 0
    import torch

    from bench.memory import cpu_name
    from core.precision import cpu_supports_bf16

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {cpu_name()}, fast bf16: {cpu_supports_bf16()}")
    print(f"settings: {s}")
    for precision in args.precisions.split(","):
        if precision == "bf16" and not cpu_supports_bf16():
            print("bf16: skipped (this CPU has no AVX512-BF16/AMX; bf16 would be emulated)")
            continue
        runs = {"ours": [], "ref": []}
        for rep in range(args.reps):
            order = ("ours", "ref") if rep % 2 == 0 else ("ref", "ours")
            for side in order:
                with tempfile.TemporaryDirectory(prefix=f"e2e_{side}_") as tmp:
                    result = (run_ours(s, precision, args.model, Path(tmp)) if side == "ours"
                              else run_reference(s, precision, args.model, Path(tmp), args.small))
                runs[side].append(result)
                f1 = " ".join(f"{k} {v:.1f}" for k, v in result["f1"].items())
                print(f"  {precision} {side:4s} rep {rep}: wall {result['wall']:7.1f} s | train "
                      f"{result['tokens_per_s']:7.0f} tok/s | dev {result['dev']:.1f} | test F1 {f1}", flush=True)
        wall_o = statistics.median(r["wall"] for r in runs["ours"])
        wall_r = statistics.median(r["wall"] for r in runs["ref"])
        tps_o = statistics.median(r["tokens_per_s"] for r in runs["ours"])
        tps_r = statistics.median(r["tokens_per_s"] for r in runs["ref"])
        mean_f1 = {side: statistics.mean(statistics.mean(r["f1"].values()) for r in rs) for side, rs in runs.items()}
        print(f"{precision}: whole run ours {wall_o:.1f} s, Trainer recipe {wall_r:.1f} s -> {wall_r / wall_o:.2f}x | "
              f"training tokens/s {tps_o:.0f} vs {tps_r:.0f} -> {tps_o / tps_r:.2f}x | mean test F1 over "
              f"{', '.join(LANGS)}: ours {mean_f1['ours']:.1f}, Trainer {mean_f1['ref']:.1f} | words the recipe "
              f"left untagged (truncation): {runs['ref'][0]['truncated_words']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
