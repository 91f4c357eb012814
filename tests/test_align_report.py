"""The retrieval-by-layer plot renders (matplotlib Agg) with its axis labels, one line per model."""
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_run(scale):
    per_layer = {str(l): {"csls_s2t": scale * l / 4, "queries": 10} for l in range(5)}
    return {"layers": list(range(5)), "sets": {"multi30k-de-en": per_layer, "newstest2012-de-en": per_layer}}


def test_plot_layers_draws_axes_and_lines(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scripts.align_report import plot_layers

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))  # keep the figure to inspect it
    out = plot_layers([fake_run(0.5), fake_run(1.0)], ["before", "after_l2"], tmp_path / "p.png")
    assert out.is_file() and out.stat().st_size > 1000
    axes = figures[0].axes
    assert len(axes) == 2 and axes[1].get_title() == "newstest2012-de-en"
    assert all(ax.get_xlabel() == "layer" and ax.get_ylabel() == "retrieval accuracy (CSLS)" for ax in axes)
    lines = axes[0].get_lines()
    assert [l.get_label() for l in lines] == ["before", "after_l2"]
    assert list(lines[1].get_ydata()) == [0.0, 0.25, 0.5, 0.75, 1.0]
