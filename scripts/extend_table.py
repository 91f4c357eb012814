"""The vocabulary-extension table (RESULTS.md, "Vocabulary extension") from the runs that made it.

    python scripts/extend_table.py                 # reads runs/ (names as in docs/EXTEND.md)
    python scripts/extend_table.py --runs /path/to/runs

Rows: the mini as it is; + continual MLM without extension (control); EXTEND random; EXTEND mean;
each with its MLM run (runs/mini_extend_ru_<row>/extend_summary.json: held-out ru <unk> rate,
pieces per word, MLM loss) and its NER runs (zero-shot de -> ru and de: runs/mini_extend_zs_<row>;
supervised ru: runs/mini_extend_sup_<row>; row 1's zero-shot is the baseline mini_zeroshot_de_s*).
Every NER row is seed 42 (row 1: runs/mini_zeroshot_de_s42; the mean over its seeds is printed
below the table). A missing run prints as "-".
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROWS = [("1. mini as it is", "", "mini_zeroshot_de_s42", "mini_extend_sup_base"),
        ("2. + continual MLM, no extension (control)", "mini_extend_ru_control", "mini_extend_zs_control",
         "mini_extend_sup_control"),
        ("3. EXTEND, random init", "mini_extend_ru_random", "mini_extend_zs_random", "mini_extend_sup_random"),
        ("4. EXTEND, mean init", "mini_extend_ru_mean", "mini_extend_zs_mean", "mini_extend_sup_mean"),
        ("5. EXTEND random, frozen encoder + BiLSTM-CRF", "mini_extend_ru_random", "mini_extend_zs_random_bilstm",
         "mini_extend_sup_random_bilstm")]


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def f1(results: dict | None, lang: str) -> str:
    if not results or lang not in results.get("test", {}):
        return "-"
    return f"{100 * results['test'][lang]['f1']:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs")
    runs = Path(parser.parse_args().runs)
    control = load(runs / "mini_extend_ru_control" / "extend_summary.json")
    print("| row | ru <unk> (of pieces / words) | ru pieces/word | held-out ru MLM loss | zero-shot de -> ru | "
          "supervised ru | de |")
    print("|---|---|---|---|---|---|---|")
    for label, mlm, zero, sup in ROWS:
        summary = load(runs / mlm / "extend_summary.json") if mlm else None
        if summary:
            seg, loss = summary["heldout_after"], f"{summary['heldout_mlm_loss']:.2f}"
        elif not mlm and control:  # row 1: the base tokenizer, the base model's loss before any continual MLM
            seg, loss = control["heldout_before"], f"{control['before_mlm']['mlm_loss']:.2f}"
        else:
            seg, loss = None, "-"
        unk = f"{seg['unk_piece_rate']:.3f} / {seg['unk_word_rate']:.3f}" if seg else "-"
        ppw = f"{seg['pieces_per_word']:.2f}" if seg else "-"
        z, s = load(runs / zero / "results.json"), load(runs / sup / "results.json")
        print(f"| {label} | {unk} | {ppw} | {loss} | {f1(z, 'ru')} | {f1(s, 'ru')} | {f1(z, 'de')} |")
    seeds = [r for r in (load(runs / f"mini_zeroshot_de_s{k}" / "results.json") for k in (42, 1, 2)) if r]
    if seeds:  # row 1's zero-shot over the baseline's seeds (the other rows: seed 42, as row 1 above)
        mean = {lang: sum(r["test"][lang]["f1"] for r in seeds) / len(seeds) for lang in ("ru", "de")}
        print(f"\nrow 1 zero-shot over {len(seeds)} seed(s) of mini_zeroshot_de: ru {100 * mean['ru']:.1f}, "
              f"de {100 * mean['de']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
