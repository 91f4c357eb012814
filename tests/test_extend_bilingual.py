"""EXTEND row 6 (configs/mini_bilingual_deru.yaml): the MLM task reads a text file as the extend task
does (markup lines dropped, so ``heldout_every`` holds out the same lines), and the config's budget."""
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
