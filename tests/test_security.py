"""No file the project reads runs code, bad checkpoints are one named line, and config-supplied
names and paths stay inside their folders."""
from __future__ import annotations

import pytest
import torch

from core.checkpoint import CheckpointError, load_train_state
from core.config import ConfigError, load_config
from core.paths import run_dir
from core.task import restore_best
from test_loop import ToyTask

pytestmark = pytest.mark.usefixtures("one_thread")


class Planted:
    """Unpickling this object opens (creates) ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _toy_run(tmp_path, monkeypatch, *extra):
    import train

    monkeypatch.setitem(train.TASKS, "toy", ToyTask)
    config = tmp_path / "toy.yaml"
    config.write_text("task: toy\ntrain:\n  batch_size: 8\n  epochs: 1\n  precision: fp32\n")
    args = [str(config), f"train.out_dir={tmp_path}/{{name}}", "train.lazy_embedding_min_rows=0", *extra]
    return train, args


def test_resume_refuses_a_last_pt_that_would_run_code(tmp_path, monkeypatch, capsys):
    train, args = _toy_run(tmp_path, monkeypatch)
    assert train.main(args) == 0
    last = tmp_path / "toy" / "last.pt"
    state = torch.load(last, weights_only=True)
    marker = tmp_path / "pwned"
    torch.save({**state, "extra": {"payload": Planted(marker)}}, last)
    capsys.readouterr()
    assert train.main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "last.pt: refused" in err and "could run code" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_train_state(last)
    torch.save({"model": Planted(marker)}, tmp_path / "toy" / "best.pt")
    with pytest.raises(CheckpointError, match="refused"):
        restore_best(ToyTask(None).build_model(), tmp_path / "toy")
    assert not marker.exists()


def test_truncated_last_pt_is_one_named_line(tmp_path, monkeypatch, capsys):
    train, args = _toy_run(tmp_path, monkeypatch)
    assert train.main(args) == 0
    last = tmp_path / "toy" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    capsys.readouterr()
    assert train.main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {last}: truncated or corrupt checkpoint") and len(err.strip().splitlines()) == 1
    last.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_train_state(last)


def test_the_saved_train_state_loads_with_weights_only(tmp_path, monkeypatch):
    train, args = _toy_run(tmp_path, monkeypatch, "train.epochs=2")
    assert train.main(args) == 0
    state = torch.load(tmp_path / "toy" / "last.pt", weights_only=True)  # raises if anything needs code
    assert state["config"]["train"]["batch_size"] == 8 and torch.is_tensor(state["rng"]["python"]["words"])


@pytest.mark.parametrize("override,message", [
    ("train.name=../../x", "train.name"), ("train.name=a/b", "train.name"), ("train.name=.hidden", "train.name"),
    ("train.out_dir='{name.__class__}'", "train.out_dir"), ("train.out_dir='runs/{name!r}'", "train.out_dir"),
    ("train.out_dir='runs/{0}'", "train.out_dir")])
def test_names_and_out_dir_that_escape_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_empty_name_would_write_into_runs_itself(tmp_path, monkeypatch, capsys):
    train, args = _toy_run(tmp_path, monkeypatch, "train.name=")
    assert train.main(args) == 2
    assert "train.name is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]  # nothing written


def test_run_dir_is_confined_below_out_dir_root(tmp_path):
    cfg = load_config(None, [f"train.out_dir={tmp_path}/runs/{{name}}", "train.name=ok"])
    assert run_dir(cfg.train) == tmp_path / "runs" / "ok"
    cfg.train.name = "../escape"  # set behind the loader's back: run_dir still refuses it
    with pytest.raises(ConfigError, match="train.name"):
        run_dir(cfg.train)
    cfg.train.out_dir = "{name.__class__}"
    with pytest.raises(ConfigError, match="train.out_dir"):
        run_dir(cfg.train)


def test_train_py_names_the_key_of_an_escaping_name(tmp_path, monkeypatch, capsys):
    train, args = _toy_run(tmp_path, monkeypatch, "train.name=../../x")
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "'train.name'" in err and "Traceback" not in err
    assert not (tmp_path.parent.parent / "x").exists()
