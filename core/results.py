"""Result tables in the study's layout: rows = training set-up, columns = evaluation languages.

Every task that scores languages writes ``results.json`` (with a ``"rows"`` mapping: set-up ->
{lang: test F1}) and ``results.md`` through ``write_results``; a few-shot run writes one row per
size and ``curve.png`` through ``write_curve`` (the figure itself is drawn by core/plots.py).
``gather`` makes one table from many such runs; ``python evaluate.py --gather runs/*`` (and
scripts/gather_results.py) tabulates runs of every kind, these in the same F1 table.

This is engine code (core/) because every task reports through it; it imports nothing from
models/, data/ or tasks/.
"""
from __future__ import annotations

import json
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


def write_results(run_dir: str | Path, cfg, scores: dict[str, dict], best_dev: float) -> dict:
    """results.json + results.md for one trained model; returns the json payload."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = cfg.train.name
    row = {lang: s["f1"] for lang, s in scores.items()}
    payload = {"name": name, "train_langs": cfg.data.train_langs, "mix": cfg.data.mix,
               "best_dev_f1": best_dev, "rows": {name: row}, "test": scores}
    (run_dir / "results.json").write_text(json.dumps(payload, indent=2))
    md = f"# {name}\n\nTest entity F1 (x 100), best dev F1 {100 * best_dev:.1f}:\n\n"
    md += f1_table(payload["rows"], cfg.data.eval_langs) + "\n" + per_type_table(scores)
    (run_dir / "results.md").write_text(md)
    return payload


def write_curve(run_dir: str | Path, cfg, curve: dict[int, dict[str, dict]]) -> dict:
    """A few-shot curve: results.json/.md with one row per size, and curve.png.

    Size 0 (``data.fewshot_sizes: [0, 250, ...]``: the base set alone, trained by the few-shot
    task itself with the same seed and budget) is the zero-shot reference: a row of the table and
    a horizontal line in the figure, so the size where few-shot overtakes it can be read off.
    """
    from core.plots import plot_curve

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name, lang = cfg.train.name, cfg.data.fewshot_lang
    rows = {f"{name} k={size}": {k: s["f1"] for k, s in scores.items()} for size, scores in curve.items()}
    payload = {"name": name, "fewshot_lang": lang, "rows": rows,
               "curve": {str(size): {k: s["f1"] for k, s in scores.items()} for size, scores in curve.items()}}
    (run_dir / "results.json").write_text(json.dumps(payload, indent=2))
    md = f"# {name}: few-shot {lang}\n\n" + f1_table(rows, cfg.data.eval_langs)
    if 0 in curve:
        md += "\nk=0 is the zero-shot reference (the base training set alone), the dashed lines of the curve.\n"
    (run_dir / "results.md").write_text(md + "\n![curve](curve.png)\n")
    f1 = {size: {k: s["f1"] for k, s in scores.items()} for size, scores in curve.items()}
    plot_curve(f1, run_dir / "curve.png", title=f"{name}: {lang} sentences added", xlabel=f"{lang} training sentences")
    return payload


def gather(run_dirs: list[str | Path]) -> str:
    """One markdown table from the results.json files of many runs (folders without one are listed)."""
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
