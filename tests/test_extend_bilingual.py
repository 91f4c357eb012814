"""EXTEND row 6 (configs/mini_bilingual_deru.yaml): the MLM task reads a text file as the extend task
does (markup lines dropped, so ``heldout_every`` holds out the same lines), and the config's budget;
the convergence figure (scripts/plot_extend_convergence.py) on synthetic run folders."""
from __future__ import annotations

import pytest

from core.config import load_config
from data.text import split_heldout
from data.text_sources import drop_markup, read_source
from tasks.extend import gather
from tasks.mlm import plan_pieces, pretraining_text

pytestmark = pytest.mark.usefixtures("one_thread")

# an ELTeC-like file: "### file" headers between novels, a WikiExtractor <doc> pair, an HTML escape
LINES = ["### 001 Shinel .xml", "Шинель", "В департаменте... но лучше не называть.", "### 002 Nos .xml",
         "<doc id=\"1\" url=\"x\" title=\"y\">", "Нос", "Майор Ковалев &amp; цирюльник", "</doc>",
         "Иван   Яковлевич", "### 003", "Конец"]
KEPT = ["Шинель", "В департаменте... но лучше не называть.", "Нос", "Майор Ковалев & цирюльник",
        "Иван Яковлевич", "Конец"]


def test_drop_markup_keeps_the_lines_read_source_keeps(tmp_path):
    (tmp_path / "ru.txt").write_text("\n".join(LINES) + "\n\n", encoding="utf-8")
    assert read_source(tmp_path, "ru.txt") == KEPT
    assert drop_markup(["### 1 a", "<doc x>", "</doc>", "#hashtag", "a ### b", "<docs>"]) == ["#hashtag", "a ### b",
                                                                                            "<docs>"]


def test_mlm_and_extend_read_a_text_file_to_the_same_lines_and_hold_out_the_same(tmp_path):
    (tmp_path / "ru.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    mlm = load_config(None, ["task=mlm", f"data.root={tmp_path}", "mlm.text_files=[ru.txt]"])
    ext = load_config(None, ["task=extend", f"data.root={tmp_path}", "extend.text_files=[ru.txt]"])
    assert pretraining_text(mlm) == {"ru.txt": KEPT} == gather(ext, "ner_splits", "text_files")
    # every 2nd line held out: with the headers kept the held-out lines would be headers and others
    train_text, heldout = split_heldout(pretraining_text(mlm), 2)
    assert heldout == ["Шинель", "Нос", "Иван Яковлевич"]
    assert (train_text, heldout) == split_heldout(gather(ext, "ner_splits", "text_files"), 2)


def test_bilingual_config_is_the_mini_recipe_on_de_ru_training_text_for_the_mini_plus_extension_pieces(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg, mini, extend = (load_config(f"configs/{name}.yaml")
                         for name in ("mini_bilingual_deru", "mini_pretrain", "mini_extend_ru"))
    assert cfg.task == "mlm" and cfg.mlm.ner_splits == {"de": "train", "ru": "train"}
    assert cfg.mlm.text_files == extend.extend.text_files and cfg.mlm.heldout_every == extend.mlm.heldout_every
    assert cfg.mlm.pieces_budget == mini.mlm.pieces_budget + extend.mlm.pieces_budget == 11_330_000
    assert cfg.mlm.code_switch_rate == 0.0  # no Russian MUSE dictionary in ../shared/data/muse_dicts
    for key in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "seq_length",
                "dropout", "export_dropout", "mask_prob"):
        assert getattr(cfg.mlm, key) == getattr(mini.mlm, key), key
    for key in ("batch_size", "lr", "warmup_ratio", "schedule", "weight_decay", "adam_betas", "adam_eps",
                "clip_grad_norm", "precision", "seed"):
        assert getattr(cfg.train, key) == getattr(mini.train, key), key
    plan_pieces(cfg)
    assert cfg.train.max_steps == 5533  # ceil(11,330,000 / (16 x 128))


def fake_run(folder, records, batch=16, seq=128, summary=None, phase=None):
    """A run folder as train.py leaves it: config.yaml, metrics.jsonl (+ extend_summary.json, new_rows/)."""
    import json

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"train:\n  batch_size: {batch}\n  accum_steps: 1\nmlm:\n  seq_length: {seq}\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary is not None:
        (folder / "extend_summary.json").write_text(json.dumps(summary))
    if phase is not None:
        (folder / "new_rows").mkdir()
        (folder / "new_rows" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in phase))
    return folder


def test_convergence_curves_from_run_folders(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import plot_extend_convergence as conv

    train_record = {"step": 50, "loss": 9.0, "lr": 1e-4}
    extension = fake_run(tmp_path / "ext", [train_record, {"step": 100, "mlm_loss": 5.0, "mlm_acc": 0.2},
                                            {"step": 200, "mlm_loss": 4.0}],
                         summary={"before_mlm": {"mlm_loss": 9.5}, "new_rows_steps": 50},
                         phase=[{"step": 50, "mlm_loss": 7.0}])
    scratch = fake_run(tmp_path / "scratch", [{"step": 200, "mlm_loss": 8.0}, {"step": 400, "mlm_loss": 6.5}],
                       batch=4, seq=256)
    per_step = 16 * 128
    assert conv.curve(extension) == [(0, 9.5), (50 * per_step, 7.0), (150 * per_step, 5.0), (250 * per_step, 4.0)]
    assert conv.curve(scratch) == [(200 * 1024, 8.0), (400 * 1024, 6.5)]
    out = tmp_path / "img" / "conv.png"
    assert conv.main(["--curve", f"mean init={extension}", "--curve", f"a=b={scratch}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| mean init | 9.500 | 4.000 | 4.000 | 512,000 |" in printed and "| a=b | 8.000 | 6.500 |" in printed
    assert out.read_bytes().startswith(b"\x89PNG") and not list(out.parent.glob(".*tmp*"))


@pytest.mark.parametrize("make, message", [
    (lambda d: d.mkdir(), "config.yaml: missing"),
    (lambda d: fake_run(d, []), "metrics.jsonl: no record with mlm_loss"),
    (lambda d: (fake_run(d, [{"step": 1, "mlm_loss": 2.0}]) / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "ml'),
     "metrics.jsonl:2: not a JSON record"),
])
def test_convergence_bad_run_folder_is_one_error_line(tmp_path, capsys, make, message):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import plot_extend_convergence as conv

    make(tmp_path / "run")
    out = tmp_path / "conv.png"
    assert conv.main(["--curve", f"x={tmp_path / 'run'}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert conv.main(["--curve", "no label", "--out", str(out)]) == 2
