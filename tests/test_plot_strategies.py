"""scripts/plot_strategies.py: rows from fake run folders (seeds averaged, a few-shot size picked,
one-language full runs side by side, literal cells), the table, and the figure's axes and bars."""
import json

import pytest

from scripts.plot_strategies import main, plot_strategies, source_row, strategy_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_run(root, name, row=None, curve=None):
    run = root / name
    run.mkdir()
    payload = {"name": name, "curve": curve} if curve else {"name": name, "rows": {name: row}}
    (run / "results.json").write_text(json.dumps(payload))
    return str(run)


@pytest.fixture
def runs(tmp_path):
    return {
        "zs": [fake_run(tmp_path, "zs1", {"de": 0.70, "en": 0.30}), fake_run(tmp_path, "zs2", {"de": 0.80, "en": 0.40})],
        "few": [fake_run(tmp_path, "few", curve={"250": {"fr": 0.4, "de": 0.6}, "4000": {"fr": 0.7, "de": 0.65}})],
        "full": [fake_run(tmp_path, "full_de", {"de": 0.9}), fake_run(tmp_path, "full_en", {"en": 0.5})],
    }


def test_rows_average_seeds_pick_the_fewshot_size_and_join_full_runs(runs):
    rows = strategy_rows([("zero-shot", runs["zs"]), ("few-shot", runs["few"]), ("full", runs["full"]),
                          ("older", ["de=77.9,fr=83.1"])], fewshot_k=4000)
    assert rows["zero-shot"] == pytest.approx({"de": 0.75, "en": 0.35})
    assert rows["few-shot"] == {"fr": 0.7, "de": 0.65}
    assert rows["full"] == {"de": 0.9, "en": 0.5}
    assert rows["older"] == pytest.approx({"de": 0.779, "fr": 0.831})
    with pytest.raises(ValueError, match="no few-shot size 1000"):
        source_row(runs["few"][0], 1000)
    with pytest.raises(ValueError, match="lang=F1"):
        source_row("de=high", 4000)


def test_missing_run_is_an_error_unless_skipped(runs, tmp_path):
    gone = str(tmp_path / "not_run")
    with pytest.raises(FileNotFoundError, match="not_run"):
        strategy_rows([("full", runs["full"] + [gone])])
    skipped = []
    rows = strategy_rows([("full", runs["full"] + [gone])], skip_missing=True, log=skipped.append)
    assert rows["full"] == {"de": 0.9, "en": 0.5} and "not_run" in skipped[0]


def test_figure_has_the_axis_labels_and_one_bar_per_cell(runs, tmp_path):
    rows = strategy_rows([("zero-shot", runs["zs"]), ("full", runs["full"]), ("few-shot", runs["few"])])
    fig = plot_strategies(rows, tmp_path / "s.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "test language" and ax.get_ylabel() == "test entity F1 (x 100)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["de", "en", "fr"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero-shot", "full", "few-shot"]
    heights = sorted(round(p.get_height(), 1) for p in ax.patches)
    assert heights == sorted([75.0, 35.0, 90.0, 50.0, 65.0, 70.0])
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_command_prints_the_table(runs, tmp_path, capsys):
    main(["--out", str(tmp_path / "f.png"), "--strategy", "zero-shot", *runs["zs"], "--strategy", "full", *runs["full"]])
    out = capsys.readouterr().out
    assert "| zero-shot | 75.0 | 35.0 |" in out and "| full | 90.0 | 50.0 |" in out
    assert (tmp_path / "f.png").is_file()
