"""Every figure the project draws (core/plots.py) is rendered here and its axes are checked."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def _texts(labels):
    return [t.get_text() for t in labels]


def test_fewshot_curve_ticks_only_at_the_sizes_and_a_zero_shot_line(tmp_path):
    from core.plots import plot_curve

    curve = {0: {"fr": 0.16, "de": 0.74}, 250: {"fr": 0.55, "de": 0.73}, 500: {"fr": 0.62, "de": 0.74},
             1000: {"fr": 0.70, "de": 0.75}, 4000: {"fr": 0.80, "de": 0.75}}
    fig = plot_curve(curve, tmp_path / "c.png", title="t", xlabel="fr training sentences")
    assert (tmp_path / "c.png").stat().st_size > 5000
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [250, 500, 1000, 4000]
    assert _texts(ax.get_xticklabels()) == ["250", "500", "1000", "4000"]
    assert list(ax.xaxis.get_minorticklocs()) == []  # no 3x10^2-style minor labels over the major ones
    assert _texts(ax.get_xticklabels(minor=True)) == []
    assert ax.get_xlabel() == "fr training sentences" and ax.get_ylabel() == "test entity F1 (x 100)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"fr", "de", "fr k=0 (zero-shot)", "de k=0 (zero-shot)"}
    zero = lines["fr k=0 (zero-shot)"]
    assert list(zero.get_ydata()) == [pytest.approx(16.0)] * 2 and zero.get_linestyle() == "--"
    assert zero.get_color() == lines["fr"].get_color()
    assert list(lines["fr"].get_xdata()) == [250, 500, 1000, 4000]
    assert list(lines["fr"].get_ydata()) == pytest.approx([55.0, 62.0, 70.0, 80.0])


def test_curve_without_zero_shot_has_no_reference_line(tmp_path):
    from core.plots import plot_curve

    fig = plot_curve({250: {"fr": 0.5}, 500: {"fr": 0.6}}, tmp_path / "c.png")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["fr"]
    assert _texts(ax.get_xticklabels()) == ["250", "500"] and list(ax.xaxis.get_minorticklocs()) == []
    assert ax.get_xlabel() == "few-shot training sentences"


def _scores(f1):
    return {"precision": f1, "recall": f1, "f1": f1, "support": 10,
            "per_type": {"PER": {"precision": f1, "recall": f1, "f1": f1, "support": 10}}}


def test_write_curve_puts_k0_in_the_table_and_the_figure(tmp_path):
    from core.config import load_config
    from core.results import write_curve

    cfg = load_config(overrides=["train.name=fs", "data.eval_langs=[fr]", "data.fewshot_lang=fr"])
    payload = write_curve(tmp_path, cfg, {0: {"fr": _scores(0.2)}, 250: {"fr": _scores(0.5)}})
    assert payload["curve"] == {"0": {"fr": 0.2}, "250": {"fr": 0.5}}
    md = (tmp_path / "results.md").read_text()
    assert "| fs k=0 | 20.0 |" in md and "zero-shot reference" in md
    assert json.loads((tmp_path / "results.json").read_text())["rows"]["fs k=250"] == {"fr": 0.5}
    assert (tmp_path / "curve.png").stat().st_size > 5000
