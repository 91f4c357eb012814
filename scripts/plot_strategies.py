"""The study's comparison at a glance: test F1 per language for each transfer strategy, as a table and
grouped bars.

    python scripts/plot_strategies.py --out strategies.png          # the mini runs under their usual names
    python scripts/plot_strategies.py --out s.png \\
        --strategy "zero-shot (train de)" runs/mini_zeroshot_de_s42 runs/mini_zeroshot_de_s1 \\
        --strategy "few-shot (de 5k + fr 4000)" de=63.2,fr=71.3 \\
        --strategy "full (train = test language)" runs/mini_full_de runs/mini_full_en

A strategy is a label and its sources: run folders (their results.json; a few-shot run gives its
``--fewshot-k`` row) and/or literal cells ``lang=F1,...`` (F1 x 100, for rows of runs not on this
machine; label them). A language's cell is the mean over the sources that have it (seeds of one
set-up, or the one-language full runs side by side). Prints the markdown table (rows: strategy,
columns: test language) and writes the figure (matplotlib, Agg).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.gather_results import f1_table  # noqa: E402

LANGS = ["de", "en", "nl", "es", "fr", "it"]
DEFAULT_STRATEGIES = [  # label, sources: the mini configs' runs (RESULTS.md "Four strategies")
    ("zero-shot (train de)", ["runs/mini_zeroshot_de_s42", "runs/mini_zeroshot_de_s1", "runs/mini_zeroshot_de_s2"]),
    ("few-shot (de 5k + fr 4000)", ["runs/mini_fewshot_fr"]),
    ("multilingual (train de+fr)", ["runs/mini_multilingual_defr"]),
    ("full (train = test language)", [f"runs/mini_full_{lang}" for lang in LANGS]),
]


def source_row(source: str, fewshot_k: int) -> dict[str, float]:
    """{lang: F1 in [0, 1]} of one source: a run folder or literal ``lang=F1x100,...`` cells."""
    path = Path(source)
    if "=" in source and not path.exists():
        cells = {}
        for item in filter(None, source.split(",")):
            lang, _, value = item.partition("=")
            try:
                cells[lang.strip()] = float(value) / 100
            except ValueError:
                raise ValueError(f"{source!r}: expected lang=F1 cells like de=76.4,en=32.5") from None
        return cells
    results = path / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"{results}: no results.json (run not finished, or not on this machine)")
    payload = json.loads(results.read_text())
    if "curve" in payload:  # a few-shot run: one row per size
        curve = payload["curve"]
        if str(fewshot_k) not in curve:
            raise ValueError(f"{results}: no few-shot size {fewshot_k} (has {', '.join(curve)})")
        return dict(curve[str(fewshot_k)])
    rows = list(payload["rows"].values())
    if len(rows) != 1:
        raise ValueError(f"{results}: expected one row, found {len(rows)}")
    return dict(rows[0])


def strategy_rows(strategies: list[tuple[str, list[str]]], fewshot_k: int = 4000,
                  skip_missing: bool = False, log=print) -> dict[str, dict[str, float]]:
    """{label: {lang: mean F1 over the sources that have lang}}."""
    table = {}
    for label, sources in strategies:
        rows = []
        for source in sources:
            try:
                rows.append(source_row(source, fewshot_k))
            except FileNotFoundError as err:
                if not skip_missing:
                    raise
                log(f"skipped: {err}")
        cells = {}
        for lang in dict.fromkeys(lang for row in rows for lang in row):
            values = [row[lang] for row in rows if lang in row]
            cells[lang] = sum(values) / len(values)
        if cells:
            table[label] = cells
    return table


def plot_strategies(rows: dict[str, dict[str, float]], path: str | Path, langs: list[str] | None = None,
                    title: str = ""):
    """Grouped bars: one group per test language, one bar per strategy (missing cells left empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = langs or [lang for lang in LANGS if any(lang in cells for cells in rows.values())]
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for s, (label, cells) in enumerate(rows.items()):
        xs = [i + (s - (len(rows) - 1) / 2) * width for i, lang in enumerate(langs) if lang in cells]
        ax.bar(xs, [100 * cells[lang] for lang in langs if lang in cells], width, label=label)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_xlabel("test language")
    ax.set_ylabel("test entity F1 (x 100)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below: never over a bar
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", nargs="+", action="append", metavar=("LABEL", "SOURCE"),
                        help="a label, then run folders and/or lang=F1,... cells")
    parser.add_argument("--fewshot-k", type=int, default=4000, help="few-shot size whose row a few-shot run gives")
    parser.add_argument("--out", default="strategies.png")
    parser.add_argument("--title", default="")
    parser.add_argument("--skip-missing", action="store_true", help="leave out runs without results.json")
    args = parser.parse_args(argv)
    strategies = [(s[0], s[1:]) for s in args.strategy] if args.strategy else DEFAULT_STRATEGIES
    for label, sources in strategies:
        if not sources:
            parser.error(f"--strategy {label!r} has no sources")
    try:
        rows = strategy_rows(strategies, args.fewshot_k, args.skip_missing, log=lambda m: print(m, file=sys.stderr))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    langs = [lang for lang in LANGS if any(lang in cells for cells in rows.values())]
    sys.stdout.write(f1_table(rows, langs))
    plot_strategies(rows, args.out, langs, args.title)
    print(f"\nfigure: {args.out}")


if __name__ == "__main__":
    main()
