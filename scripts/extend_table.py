"""The vocabulary-extension table (RESULTS.md, "Vocabulary extension") from the runs that made it.

    python scripts/extend_table.py                 # reads runs/ (names as in docs/EXTEND.md)
    python scripts/extend_table.py --runs /path/to/runs

Rows: the mini as it is; + continual MLM without extension (control); EXTEND random; EXTEND mean;
EXTEND random with the frozen-encoder BiLSTM-CRF head; the bilingual de+ru mini pretrained from
scratch (B-BERT); EXTEND with the wechsel and focus inits; EXTEND with Russian and Korean pieces in
one run (configs/mini_extend_ruko.yaml, runs/mini_extend_ruko). Each with its MLM run
(runs/mini_extend_ru_<row>/extend_summary.json: held-out ru <unk> rate, pieces per word, MLM loss)
and its NER runs (zero-shot de -> ru and de: runs/mini_extend_zs_<row>; supervised ru:
runs/mini_extend_sup_<row>; row 1's zero-shot is the baseline mini_zeroshot_de_s42/_s1/_s2). Seed 42
is the run without a suffix, seeds 1 and 2 add ``_s1`` / ``_s2``. Each F1 cell is the mean over the
seeds present with their count, ``68.1 (3)``; the per-seed values follow the table. Row 6's
segmentation columns are measured here with its own tokenizer on the extension's held-out Russian
lines (configs/mini_extend_ru.yaml's text and ``mlm.heldout_every``); its MLM loss is on its own
tokenizer and held-out de+ru text, so it compares with no other row. Row 9's segmentation is
measured the same way; its MLM loss is on held-out ru+ko text. A missing run prints as "-".
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEEDS = (("42", ""), ("1", "_s1"), ("2", "_s2"))  # seed, run-name suffix
BILINGUAL = "mini_bilingual_deru"
TWO_LANGUAGES = "mini_extend_ruko"
# label, MLM run, zero-shot run (seed 42 name), supervised run (seed 42 name)
ROWS = [("1. mini as it is", "", "mini_zeroshot_de_s42", "mini_extend_sup_base"),
        ("2. + continual MLM, no extension (control)", "mini_extend_ru_control", "mini_extend_zs_control",
         "mini_extend_sup_control"),
        ("3. EXTEND, random init", "mini_extend_ru_random", "mini_extend_zs_random", "mini_extend_sup_random"),
        ("4. EXTEND, mean init", "mini_extend_ru_mean", "mini_extend_zs_mean", "mini_extend_sup_mean"),
        ("5. EXTEND random, frozen encoder + BiLSTM-CRF", "mini_extend_ru_random", "mini_extend_zs_random_bilstm",
         "mini_extend_sup_random_bilstm"),
        ("6. bilingual de+ru mini from scratch (B-BERT)", BILINGUAL, "mini_extend_zs_bilingual",
         "mini_extend_sup_bilingual"),
        ("7. EXTEND, wechsel init", "mini_extend_ru_wechsel", "mini_extend_zs_wechsel", "mini_extend_sup_wechsel"),
        ("8. EXTEND, focus init", "mini_extend_ru_focus", "mini_extend_zs_focus", "mini_extend_sup_focus"),
        ("9. EXTEND ru+ko in one run, mean init", TWO_LANGUAGES, "mini_extend_zs_ruko", "mini_extend_sup_ruko")]


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def seed_name(name: str, suffix: str) -> str:
    """The run of one seed: row 1's baseline runs carry _s42 for seed 42, the others no suffix."""
    if name.endswith("_s42"):
        return name if not suffix else name[: -len("_s42")] + suffix
    return name + suffix


def seed_scores(runs: Path, name: str, lang: str) -> dict[str, float]:
    """{seed: test F1 x 100} of the runs of ``name`` that exist and tested ``lang``."""
    scores = {}
    for seed, suffix in SEEDS:
        results = load(runs / seed_name(name, suffix) / "results.json")
        if results and lang in results.get("test", {}):
            scores[seed] = 100 * results["test"][lang]["f1"]
    return scores


def cell(scores: dict[str, float]) -> str:
    if not scores:
        return "-"
    return f"{sum(scores.values()) / len(scores):.1f} ({len(scores)})"


def bilingual_segmentation(runs: Path, name: str) -> dict | None:
    """Run ``name``'s tokenizer (row 6, row 9) on the extension's held-out Russian lines (those of rows 1-4)."""
    model_dir = runs / name / "model"
    if not (model_dir / "sentencepiece.bpe.model").is_file():
        return None
    from core.config import load_config
    from data.extend_vocab import segmentation_stats
    from data.text import split_heldout
    from data.tokenizer import XLMRTokenizer
    from tasks.extend import gather

    cfg = load_config(str(ROOT / "configs" / "mini_extend_ru.yaml"))
    _, heldout = split_heldout(gather(cfg, "ner_splits", "text_files"), cfg.mlm.heldout_every)
    return segmentation_stats(XLMRTokenizer.from_pretrained(model_dir, backend="spm"), heldout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs")
    runs = Path(parser.parse_args().runs)
    control = load(runs / "mini_extend_ru_control" / "extend_summary.json")
    print("| row | ru <unk> (of pieces / words) | ru pieces/word | held-out ru MLM loss | zero-shot de -> ru | "
          "supervised ru | de |")
    print("|---|---|---|---|---|---|---|")
    details = []
    for label, mlm, zero, sup in ROWS:
        seg, loss = None, "-"
        if mlm in (BILINGUAL, TWO_LANGUAGES):  # a tokenizer of its own: segmentation measured here
            seg = bilingual_segmentation(runs, mlm)
            summary = load(runs / mlm / ("mlm_summary.json" if mlm == BILINGUAL else "extend_summary.json"))
            loss = f"({summary['heldout_mlm_loss']:.2f})" if summary else "-"
        elif mlm:
            summary = load(runs / mlm / "extend_summary.json")
            if summary:
                seg, loss = summary["heldout_after"], f"{summary['heldout_mlm_loss']:.2f}"
        elif control:  # row 1: the base tokenizer, the base model's loss before any continual MLM
            seg, loss = control["heldout_before"], f"{control['before_mlm']['mlm_loss']:.2f}"
        unk = f"{seg['unk_piece_rate']:.3f} / {seg['unk_word_rate']:.3f}" if seg else "-"
        ppw = f"{seg['pieces_per_word']:.2f}" if seg else "-"
        zs_ru, zs_de, sup_ru = seed_scores(runs, zero, "ru"), seed_scores(runs, zero, "de"), seed_scores(runs, sup, "ru")
        print(f"| {label} | {unk} | {ppw} | {loss} | {cell(zs_ru)} | {cell(sup_ru)} | {cell(zs_de)} |")
        for column, scores in (("zero-shot ru", zs_ru), ("supervised ru", sup_ru), ("de", zs_de)):
            if scores:
                values = ", ".join(f"s{seed} {value:.1f}" for seed, value in scores.items())
                spread = f"; range {max(scores.values()) - min(scores.values()):.1f}" if len(scores) > 1 else ""
                details.append(f"- row {label.split('.')[0]} {column}: {values}{spread}")
    print("\nF1 cells: mean over the fine-tuning seeds present (their count). Row 6's MLM loss (in brackets) is "
          "on its own tokenizer and held-out de+ru text, row 9's on held-out ru+ko text.\n\nPer seed:")
    print("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
