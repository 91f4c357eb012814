"""Resume tells the truth: changed settings are refused by name, config.yaml is not overwritten
silently, metrics.jsonl has each step once, stale temp files go, the best metric survives."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from core.checkpoint import ResumeConfigError, config_changes
from core.config import load_config
from core.loop import fit
from test_loop import ToyTask, toy_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _train_py(tmp_path, monkeypatch):
    import train

    monkeypatch.setitem(train.TASKS, "toy", ToyTask)
    config = tmp_path / "toy.yaml"
    config.write_text("task: toy\ntrain:\n  batch_size: 4\n  epochs: 1\n  precision: fp32\n  lr: 0.05\n")
    return train, [str(config), f"train.out_dir={tmp_path}/{{name}}", "train.lazy_embedding_min_rows=0"]


def test_resume_with_changed_training_settings_is_refused_by_name(tmp_path, monkeypatch, capsys):
    train, args = _train_py(tmp_path, monkeypatch)
    assert train.main(args) == 0
    config_yaml = (tmp_path / "toy" / "config.yaml").read_text()
    last_pt = (tmp_path / "toy" / "last.pt").read_bytes()
    capsys.readouterr()
    assert train.main(args + ["train.batch_size=8", "train.lr=0.1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size: 4 -> 8" in err and "train.lr: 0.05 -> 0.1" in err and "--resume-force" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "toy" / "config.yaml").read_text() == config_yaml  # not overwritten
    assert (tmp_path / "toy" / "last.pt").read_bytes() == last_pt
    # harmless settings may change: logging, saving, the wall-clock budget, profiling
    assert train.main(args + ["train.log_every=3", "train.save_every=2", "train.time_budget_minutes=5",
                              "--resume"]) == 0
    # an explicit flag allows the change; config.yaml then says what the run continued with
    assert train.main(args + ["train.epochs=2", "--resume-force"]) == 0
    assert yaml.safe_load((tmp_path / "toy" / "config.yaml").read_text())["train"]["epochs"] == 2
    assert torch.load(tmp_path / "toy" / "last.pt", weights_only=True)["step"] == 16


def test_fit_refuses_inside_a_pipeline_too(tmp_path):
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=3")
    fit(cfg, ToyTask(cfg), tmp_path / "stage")
    again = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=3", "train.seed=7", "train.resume=true")
    with pytest.raises(ResumeConfigError, match=r"train.seed: 42 -> 7"):
        fit(again, ToyTask(again), tmp_path / "stage")


def test_config_changes_ignores_only_the_listed_keys():
    a = load_config(None, ["train.name=a"])
    b = load_config(None, ["train.name=b", "train.resume=true", "profile.enabled=true", "data.max_eval_sentences=9",
                           "data.tag_map={B-MISC: O}", "train.log_every=7"])
    changes = config_changes(dataclasses.asdict(a), b)
    assert changes == {"data.max_eval_sentences": (0, 9),  # eval caps change the results
                       "data.tag_map": ({"B-MISC": "O", "I-MISC": "O"}, {"B-MISC": "O"})}


def test_crashed_run_logs_each_step_once_and_keeps_its_best_metric(tmp_path):
    over = ["train.batch_size=2", "train.accum_steps=2", "train.epochs=2.5", "train.save_every=3",
            "train.eval_every=4", "train.log_every=1"]
    cfg = toy_config(tmp_path, *over)
    full = fit(cfg, ToyTask(cfg, dropout=0.2), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, ToyTask(cfg, dropout=0.2, crash_at=(1, 13)), tmp_path / "cut")  # in step 15
    run = tmp_path / "cut"
    assert max(json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()) > 12
    (run / ".last.pt.x1y2.tmp").write_bytes(b"a save killed half-way")
    (run / ".best.pt.x1y2.tmp").write_bytes(b"a save killed half-way")
    resumed_cfg = toy_config(tmp_path, *over, "train.resume=true")
    resumed = fit(resumed_cfg, ToyTask(cfg, dropout=0.2), run)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    drop = ("time", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in records] == \
        [{k: v for k, v in r.items() if k not in drop} for r in expected]
    assert not list(run.glob(".*.tmp"))
    assert resumed["best_metric"] == full["best_metric"]
    finished = fit(resumed_cfg, ToyTask(cfg), run)  # resuming a finished run trains nothing, reports the same
    assert finished["step"] == 20 and finished["best_metric"] == full["best_metric"]


def test_keys_the_schema_gained_since_the_save_count_only_when_set():
    saved = dataclasses.asdict(load_config(None, []))
    del saved["train"]["fused_adamw"]  # as if last.pt predates the key
    saved["train"]["retired_key"] = 1  # and the schema has lost this one since
    assert config_changes(saved, load_config(None, [])) == {}
    assert config_changes(saved, load_config(None, ["train.fused_adamw=false"])) == \
        {"train.fused_adamw": ("<absent>", False)}
