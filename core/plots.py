"""The figures the project draws (matplotlib, Agg backend: no display needed).

    plot_curve({0: {"fr": .16}, 250: {"fr": .55}, 500: {"fr": .62}}, "curve.png")

Each function returns the matplotlib Figure it saved (already closed), so tests can read its
axes: labels, tick positions and tick texts (tests/test_plots.py renders every plot here).
matplotlib is imported inside the functions: nothing else at run time needs it.
"""
from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(curve: dict[int, dict[str, float]], path: str | Path, title: str = "",
               xlabel: str = "few-shot training sentences", ylabel: str = "test entity F1 (x 100)"):
    """A few-shot curve: F1 (0..1) per language against the number of target sentences added.

    The x axis is logarithmic with ticks at exactly the sizes run (no minor ticks or labels).
    Size 0 cannot sit on a log axis: it is drawn as a dashed horizontal line per language,
    labelled "<lang> k=0 (zero-shot)", in that language's colour.
    """
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    plt = _pyplot()
    sizes = sorted(s for s in curve if s > 0)
    langs = list(dict.fromkeys(lang for scores in curve.values() for lang in scores))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for lang in langs:
        xs = [s for s in sizes if lang in curve[s]]
        line, = ax.plot(xs, [100 * curve[s][lang] for s in xs], marker="o", label=lang)
        if 0 in curve and lang in curve[0]:
            ax.axhline(100 * curve[0][lang], color=line.get_color(), linestyle="--", linewidth=1,
                       label=f"{lang} k=0 (zero-shot)")
    if sizes:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(sizes[0] / 1.25, sizes[-1] * 1.25)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
