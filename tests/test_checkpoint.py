"""Train-state checkpoints: atomic writes, RNG round trips, unwrapped state dicts."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from core.checkpoint import (atomic_save, load_train_state, restore_train_state, rng_state, save_train_state,
                             set_rng_state, unwrap)
from core.config import load_config


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temp file is gone too


def test_rng_state_round_trip():
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


class Wrapper(nn.Module):  # what DDP looks like from outside: the model under .module
    def __init__(self, module):
        super().__init__()
        self.module = module


def test_saved_model_is_unwrapped(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    compiled = torch.compile(model)  # wraps without compiling until called
    for wrapped in (Wrapper(model), compiled, Wrapper(compiled)):
        assert unwrap(wrapped) is model
        save_train_state(tmp_path / "w.pt", model=wrapped)
        assert sorted(load_train_state(tmp_path / "w.pt")["model"]) == ["0.bias", "0.weight", "1.bias", "1.weight"]


def test_train_state_round_trip(tmp_path):
    from core.optim import build_optimizer, build_scheduler

    cfg = load_config(None, ["train.lr=0.1"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    opt = build_optimizer(model, cfg.train)
    sched = build_scheduler(opt, cfg.train, 10)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(3):
        model(torch.tensor([1, 2, 3])).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    save_train_state(tmp_path / "s.pt", model=model, optimizer=opt, scheduler=sched, scaler=scaler, step=3, epoch=1,
                     batch_in_epoch=5, best_metric=0.5, config=cfg)
    expected_draw = torch.rand(2)

    torch.manual_seed(123)
    fresh = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    fresh_opt = build_optimizer(fresh, cfg.train)
    fresh_sched = build_scheduler(fresh_opt, cfg.train, 10)
    state = load_train_state(tmp_path / "s.pt")
    restore_train_state(state, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched, scaler=scaler)
    assert torch.equal(torch.rand(2), expected_draw)  # RNG continues where the saved run was
    assert (state["step"], state["epoch"], state["batch_in_epoch"], state["best_metric"]) == (3, 1, 5, 0.5)
    assert state["config"]["train"]["lr"] == 0.1
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert fresh_sched.last_epoch == 3 and fresh_sched.get_last_lr() == sched.get_last_lr()
    for p, q in zip(model.parameters(), fresh.parameters()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], fresh_opt.state[q][key])


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_train_state(tmp_path / "nope.pt")


def test_atomic_write_text_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    from pathlib import Path

    from core.checkpoint import atomic_write_text

    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n" and sorted(p.name for p in target.parent.iterdir()) == ["config.json"]

    def half_written(self, text, encoding=None):  # the disk fills after half the text
        with open(self, "w", encoding=encoding) as f:
            f.write(text[: len(text) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", half_written)
    with pytest.raises(OSError):
        atomic_write_text(target, "third, longer text\n")
    assert target.read_text() == "second\n"  # the old file is intact, and no temp file is left
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]
