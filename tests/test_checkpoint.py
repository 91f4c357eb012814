"""Train-state checkpoints: atomic writes with checksums, RNG round trips, unwrapped state dicts."""
from __future__ import annotations

import random
import resource

import numpy as np
import pytest
import torch
from torch import nn

from core.checkpoint import (CheckpointError, CheckpointSaveError, atomic_save, load_train_state, rng_state,
                             safe_load, set_rng_state)
from core.config import load_config
from core.distributed import unwrap
from core.train_state import TrainState


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1}, path)
    with pytest.raises(CheckpointSaveError, match=r"last.pt: could not be written \(disk full \(simulated\)\)"):
        atomic_save({"step": 2, "bad": Unpicklable()}, path)
    assert safe_load(path)["step"] == 1  # the old file, and its checksum still matches
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.sha256"]  # no temp file left


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
    assert unwrap(Wrapper(model)) is model and unwrap(model) is model
    TrainState(Wrapper(model)).save(tmp_path / "w.pt")
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
    TrainState(model, opt, sched, scaler, step=3, epoch=1, batch_in_epoch=5, best=0.5).save(tmp_path / "s.pt", cfg)
    expected_draw = torch.rand(2)

    torch.manual_seed(123)
    fresh = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    fresh_opt = build_optimizer(fresh, cfg.train)
    fresh_sched = build_scheduler(fresh_opt, cfg.train, 10)
    state = load_train_state(tmp_path / "s.pt")
    live = TrainState(fresh, fresh_opt, fresh_sched, scaler)
    live.restore(state)
    assert torch.equal(torch.rand(2), expected_draw)  # RNG continues where the saved run was
    assert (live.step, live.epoch, live.batch_in_epoch, live.best) == (3, 1, 5, 0.5)
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


def test_bit_flip_is_caught_by_the_checksum(tmp_path):
    """torch.load does not check the archive's CRCs: a flipped byte in a tensor loads silently
    unless the sha256 written beside the file is compared."""
    path = tmp_path / "best.pt"
    atomic_save({"model": {"w": torch.arange(4096, dtype=torch.float32)}, "step": 3}, path)
    assert (tmp_path / "best.pt.sha256").read_text().split() == [__import__("hashlib").sha256(
        path.read_bytes()).hexdigest(), "best.pt"]
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(b ^ 0x5A for b in data[middle:middle + 400])
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["step"] == 3  # torch alone does not notice
    with pytest.raises(CheckpointError, match=r"best.pt: checksum mismatch with best.pt.sha256.*--resume"):
        safe_load(path)
    (tmp_path / "best.pt.sha256").unlink()  # a file without a checksum (another tool's) is read as it is
    assert safe_load(path)["step"] == 3


def test_save_over_a_file_size_limit_is_one_error_and_keeps_the_old_file(tmp_path):
    """A write that hits RLIMIT_FSIZE (the disk-full case, reproducibly) fails as a CheckpointSaveError
    naming the file; the old last.pt, its checksum and no temp file remain. Python ignores SIGXFSZ, so
    the write fails with EFBIG; only the soft limit is lowered, and only around the save."""
    path = tmp_path / "last.pt"
    atomic_save({"model": {"w": torch.zeros(10)}, "step": 1}, path)
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        with pytest.raises(CheckpointSaveError) as err:
            atomic_save({"model": {"w": torch.zeros(1_000_000)}, "step": 2}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    message = str(err.value)
    assert message.startswith(f"{path}: could not be written (") and "is kept" in message and "\n" not in message
    assert path.read_bytes() == before and safe_load(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.sha256"]
