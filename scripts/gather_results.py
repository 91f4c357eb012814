"""Result tables in the study's layout: rows = training set-up, columns = evaluation languages.

Every NER run writes results.json (with a "rows" mapping: set-up -> {lang: test F1}) and
results.md; a few-shot run also writes curve.png. Gather many runs into one table:

    python scripts/gather_results.py runs/mini_* > results/mini.md
    python evaluate.py --gather runs/mini_*            # the same
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LANG_ORDER = ["de", "fr", "it", "en", "es", "nl", "ru"]


def f1_table(rows: dict[str, dict[str, float]], langs: list[str] | None = None) -> str:
    """Markdown table of F1 x 100 with one decimal; missing cells are '-'."""
    seen = {lang for cells in rows.values() for lang in cells}
    langs = langs or sorted(seen, key=lambda x: (LANG_ORDER.index(x) if x in LANG_ORDER else 99, x))
    lines = ["| set-up | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
    for name, cells in rows.items():
        vals = [f"{100 * cells[lang]:.1f}" if lang in cells else "-" for lang in langs]
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def per_type_table(scores: dict[str, dict]) -> str:
    """Per-language, per-entity-type precision / recall / F1 (x 100) and support."""
    lines = ["| lang | type | P | R | F1 | support |", "|---|---|---:|---:|---:|---:|"]
    for lang, s in scores.items():
        for etype, row in list(s["per_type"].items()) + [("all", s)]:
            lines.append(f"| {lang} | {etype} | {100 * row['precision']:.1f} | {100 * row['recall']:.1f} | "
                         f"{100 * row['f1']:.1f} | {row['support']} |")
    return "\n".join(lines) + "\n"


def _setup_name(cfg) -> str:
    return cfg.train.name


def write_results(run_dir: Path, cfg, scores: dict[str, dict], best_dev: float) -> dict:
    """results.json + results.md for one trained model; returns the json payload."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    row = {lang: s["f1"] for lang, s in scores.items()}
    payload = {"name": _setup_name(cfg), "train_langs": cfg.data.train_langs, "mix": cfg.data.mix,
               "best_dev_f1": best_dev, "rows": {_setup_name(cfg): row}, "test": scores}
    (run_dir / "results.json").write_text(json.dumps(payload, indent=2))
    md = f"# {_setup_name(cfg)}\n\nTest entity F1 (x 100), best dev F1 {100 * best_dev:.1f}:\n\n"
    md += f1_table(payload["rows"], cfg.data.eval_langs) + "\n" + per_type_table(scores)
    (run_dir / "results.md").write_text(md)
    return payload


def write_curve(run_dir: Path, cfg, curve: dict[int, dict[str, dict]]) -> dict:
    """A few-shot curve: results.json/.md with one row per size, and curve.png."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = {f"{_setup_name(cfg)} k={size}": {lang: s["f1"] for lang, s in scores.items()}
            for size, scores in curve.items()}
    payload = {"name": _setup_name(cfg), "fewshot_lang": cfg.data.fewshot_lang, "rows": rows,
               "curve": {str(size): {lang: s["f1"] for lang, s in scores.items()} for size, scores in curve.items()}}
    (run_dir / "results.json").write_text(json.dumps(payload, indent=2))
    md = f"# {_setup_name(cfg)}: few-shot {cfg.data.fewshot_lang}\n\n" + f1_table(rows, cfg.data.eval_langs)
    (run_dir / "results.md").write_text(md + "\n![curve](curve.png)\n")
    plot_curve(curve, run_dir / "curve.png", title=f"{_setup_name(cfg)}: {cfg.data.fewshot_lang} sentences added")
    return payload


def plot_curve(curve: dict[int, dict[str, dict]], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(curve)
    langs = list(curve[sizes[0]])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for lang in langs:
        ax.plot(sizes, [100 * curve[s][lang]["f1"] for s in sizes], marker="o", label=lang)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("few-shot training sentences")
    ax.set_ylabel("test entity F1 (x 100)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gather(run_dirs: list[str | Path]) -> str:
    """One markdown table from the results.json files of many runs (folders without one are skipped)."""
    rows, skipped = {}, []
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.json"
        if path.is_file():
            rows.update(json.loads(path.read_text())["rows"])
        else:
            skipped.append(str(run_dir))
    out = f1_table(rows) if rows else "(no results.json found)\n"
    if skipped:
        out += "\nNo results yet: " + ", ".join(skipped) + "\n"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    args = parser.parse_args(argv)
    sys.stdout.write(gather(args.run_dirs))


if __name__ == "__main__":
    main()
