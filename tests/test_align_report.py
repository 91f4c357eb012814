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


def test_flores_news_files_leave_out_newstest2012_and_pair_de_fr_through_english(data_root):
    from scripts.align_report import news_files

    de_fr = news_files(data_root, "de", "fr")
    assert [a.name for a, _ in de_fr] == ["news-test2008.de", "newssyscomb2009.de", "newstest2009.de",
                                          "newstest2010.de", "newstest2011.de", "newstest2013.de"]
    assert all(a.parent.name == "wmt_de-en" and b.parent.name == "wmt_fr-en" and a.stem == b.stem for a, b in de_fr)
    assert news_files(data_root, "fr", "de") == [(b, a) for a, b in de_fr]
    for src, tgt in (("de", "en"), ("en", "fr")):
        files = news_files(data_root, src, tgt)
        assert len(files) == {"de": 13, "en": 8}[src]
        assert not any("newstest2012" in p.name for f in files for p in f)
        assert all(a.suffix == "." + src and b.suffix == "." + tgt for a, b in files)


def test_flores_is_the_tail_of_the_corpus_it_is_aligned_with(data_root):
    from data.parallel import flores
    from scripts.align_report import flores_with_news

    everything, test = flores_with_news(data_root, "de", "fr")
    assert len(test) == 1012 and len(everything) == 13570 + 1012  # the six news sets + FLORES devtest
    assert everything.src[-1012:] == flores(data_root, "de", "fr").src == test.src
    assert everything.tgt[-1012:] == test.tgt
    assert everything.src[0][:3] == ["Lebensmittel", "schuld", "an"]  # news-test2008 line 1, both sides
    assert everything.tgt[0][:3] == ["L'inflation", ",", "en"]


def test_plot_and_table_keep_the_sets_every_run_has(tmp_path, capsys):
    import json

    from scripts.align_report import main

    full, flores_only = fake_run(0.5), fake_run(1.0)
    for x in (full, flores_only):
        for l in x["layers"]:
            for key in ("csls_t2s", "nn_s2t", "nn_t2s"):
                for s in x["sets"].values():
                    s[str(l)].setdefault(key, 0.0)
    del flores_only["sets"]["newstest2012-de-en"]
    files = [tmp_path / "a.json", tmp_path / "b.json"]
    for f, x in zip(files, (full, flores_only)):
        f.write_text(json.dumps(x))
    main(["table", *map(str, files)])
    out, err = capsys.readouterr()
    assert "**multi30k-de-en**" in out and "newstest2012" not in out
    assert "b has no newstest2012-de-en: left out" in err
    assert "| 4 | 0.500 / 0.000 \\| 0.000 / 0.000 | 1.000 / 0.000 \\| 0.000 / 0.000 |" in out


def test_ner_table_means_and_paired_changes(tmp_path, capsys):
    import json

    from scripts.align_report import main

    groups = []
    for label, scores in (("base", [(0.70, 0.20), (0.72, 0.30)]), ("l2", [(0.71, 0.25), (0.70, 0.26)])):
        dirs = []
        for seed, (de, fr) in zip((42, 1), scores):
            d = tmp_path / f"{label}_s{seed}"
            d.mkdir()
            (d / "results.json").write_text(json.dumps({"name": d.name, "test": {"de": {"f1": de}, "fr": {"f1": fr}}}))
            dirs.append(str(d))
        groups.append(f"{label}=" + ",".join(dirs))
    main(["ner", *groups])
    out = capsys.readouterr().out
    assert "| base | 2 | 71.0 | 25.0 |" in out and "| l2 | 2 | 70.5 | 25.5 |" in out
    assert "| l2 - base | | -0.5 | +0.5 |" in out
    assert "| l2 - base, seed by seed | | -2.0..+1.0 | -4.0..+5.0 |" in out
