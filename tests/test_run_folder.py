"""One run per folder: the lock, no silent overwrite of a finished run, checksums caught before any
step, a resume without best.pt, Ctrl-C, a failed save, train.keep and the end-of-run report."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError
from core.config import ConfigError, load_config
from core.loop import fit
from test_loop import ToyTask, final_weights, toy_config

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]

RESULTS_MD = ("# toy\n\nTest entity F1 (x 100), best dev F1 50.0:\n\n| set-up | de |\n|---|---:|\n| toy | 42.0 |\n\n"
              "| lang | type | P | R | F1 | support |\n|---|---|---:|---:|---:|---:|\n| de | PER | 1 | 1 | 1 | 1 |\n")


class FinishingToyTask(ToyTask):
    """The toy tagger with what a real task leaves at the end: results.md and an exported model/."""

    def run(self, cfg, run_dir):
        result = super().run(cfg, run_dir)
        (run_dir / "model").mkdir(exist_ok=True)
        (run_dir / "model" / "model.safetensors").write_bytes(b"\0" * 2000)
        (run_dir / "results.md").write_text(RESULTS_MD)
        return result


class SignalledToyTask(ToyTask):
    """Sends this process SIGINT (a real Ctrl-C, ``presses`` times) while computing a loss of step ``at``."""

    at, presses = 5, 1

    def loss(self, model, batch):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.at:
            for _ in range(self.presses):
                os.kill(os.getpid(), signal.SIGINT)
        return super().loss(model, batch)


def _train(tmp_path, monkeypatch, task=FinishingToyTask, epochs=1):
    import train

    monkeypatch.setitem(train.TASKS, "toy", task)
    config = tmp_path / "toy.yaml"
    config.write_text(f"task: toy\ntrain:\n  batch_size: 4\n  epochs: {epochs}\n  precision: fp32\n  lr: 0.05\n")
    return train, [str(config), f"train.out_dir={tmp_path}/{{name}}", "train.lazy_embedding_min_rows=0"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_finished_run_is_not_overwritten_without_a_flag(tmp_path, monkeypatch, capsys):
    train, args = _train(tmp_path, monkeypatch)
    run = tmp_path / "toy"
    assert train.main(args) == 0
    out = capsys.readouterr().out  # the end of the run: the test table and where things are
    assert "| toy | 42.0 |" in out and "| lang | type |" not in out
    assert f"results.md:   {run / 'results.md'}" in out and f"model:        {run / 'model'}" in out
    assert f"{run} holds " in out and "last.pt" in out
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert train.main(args) == 2
    err = _one_error_line(capsys)
    assert str(run) in err and "--overwrite" in err and "--resume" in err and "train.name" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing touched
    assert train.main(args + ["--resume", "--overwrite"]) == 2  # contradictory flags
    capsys.readouterr()
    assert train.main(args + ["--resume"]) == 0  # re-reports the finished run
    (run / "stale.txt").write_text("from the earlier run")
    assert train.main(args + ["--overwrite"]) == 0  # empties the folder, trains again
    assert not (run / "stale.txt").exists() and (run / "results.md").is_file()


def test_a_second_run_in_a_locked_folder_exits_2_naming_the_holder(tmp_path, monkeypatch, capsys):
    train, args = _train(tmp_path, monkeypatch)
    run = tmp_path / "toy"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom core.run_folder import lock_run_folder\n"
                               f"lock_run_folder({str(run)!r}); print('locked', flush=True); time.sleep(60)"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert train.main(args) == 2
        err = _one_error_line(capsys)
        assert f"error: {run} is in use by another run (pid {holder.pid})" in err
        assert not (run / "last.pt").exists() and not (run / "config.yaml").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock; the lock file stays behind
        holder.wait()
    assert (run / ".lock").read_text().strip() == str(holder.pid)
    assert train.main(args) == 0  # a stale lock file does not block
    assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_bit_flipped_best_pt_is_caught_before_training_and_a_deleted_one_is_remade(tmp_path, monkeypatch, capsys):
    train, args = _train(tmp_path, monkeypatch, task=ToyTask, epochs=1)
    run = tmp_path / "toy"
    assert train.main(args) == 0
    best = run / "best.pt"
    data = bytearray(best.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(b ^ 0xFF for b in data[middle:middle + 400])
    best.write_bytes(bytes(data))
    last_before, log_before = (run / "last.pt").read_bytes(), (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert train.main(args + ["train.epochs=2", "--resume-force"]) == 2  # 8 more steps would run
    err = _one_error_line(capsys)
    assert f"error: {best}: checksum mismatch" in err and "delete it and run again with --resume" in err
    assert (run / "last.pt").read_bytes() == last_before and (run / "metrics.jsonl").read_text() == log_before
    best.unlink()  # as the message says
    assert train.main(args + ["train.epochs=2", "--resume-force"]) == 0
    out = capsys.readouterr().out
    assert "best.pt was missing; re-made from last.pt's weights (step 8)" in out
    assert torch.load(best, weights_only=True)["step"] >= 8 and torch.load(run / "last.pt")["step"] == 16


def test_fit_checks_best_pt_before_the_remaining_steps(tmp_path):
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.epochs=2")
    fit(cfg, ToyTask(cfg), tmp_path / "run")
    best = tmp_path / "run" / "best.pt"
    best.write_bytes(best.read_bytes()[:-100])  # truncated
    more = toy_config(tmp_path, "train.batch_size=4", "train.epochs=3", "train.resume=true",
                      "train.resume_allow_changes=true")
    task = ToyTask(more)
    with pytest.raises(CheckpointError, match=r"best.pt: truncated or corrupt checkpoint.*--resume"):
        fit(more, task, tmp_path / "run")
    assert task.evaluated == 0 and torch.load(tmp_path / "run" / "last.pt")["step"] == 16


def test_ctrl_c_saves_last_pt_at_a_step_boundary_and_resume_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    train, args = _train(tmp_path, monkeypatch, task=SignalledToyTask, epochs=2)
    args.append("train.lazy_embedding_decay=false")  # lazy rows: an extra save materialises, equal to rounding only
    monkeypatch.setattr(SignalledToyTask, "at", 10**9)
    assert train.main(args + ["train.name=full"]) == 0
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    monkeypatch.setattr(SignalledToyTask, "at", 6)  # while computing step 6's loss
    capsys.readouterr()
    assert train.main(args) == 130
    err = _one_error_line(capsys)
    assert f"interrupted at step 6 of 16; saved {tmp_path / 'toy' / 'last.pt'}; continue with: python train.py " \
           f"{args[0]}" in err and err.strip().endswith("--resume")
    saved = torch.load(tmp_path / "toy" / "last.pt", weights_only=True)
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (6, 0, 6)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert train.main(args) == 2  # starting again without a flag would throw the 6 steps away
    assert "holds an unfinished run" in _one_error_line(capsys)
    monkeypatch.setattr(SignalledToyTask, "at", 10**9)
    assert train.main(args + ["--resume"]) == 0
    resumed = torch.load(tmp_path / "toy" / "last.pt", weights_only=True)["model"]
    for name in full:
        assert torch.equal(full[name], resumed[name]), name


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(tmp_path, monkeypatch, capsys):
    train, args = _train(tmp_path, monkeypatch, task=SignalledToyTask)
    monkeypatch.setattr(SignalledToyTask, "at", 3)
    monkeypatch.setattr(SignalledToyTask, "presses", 2)
    assert train.main(args) == 130
    err = _one_error_line(capsys)
    assert err.startswith("interrupted; no checkpoint was saved yet")
    assert not (tmp_path / "toy" / "last.pt").exists()


def test_a_failed_save_is_one_error_line_and_keeps_the_old_last_pt(tmp_path, monkeypatch, capsys):
    import core.checkpoint

    train, args = _train(tmp_path, monkeypatch, task=ToyTask)
    assert train.main(args) == 0
    last = tmp_path / "toy" / "last.pt"
    before = last.read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *a, **k):
        if "optimizer" in obj:  # last.pt; best.pt is written first and succeeds
            real_save(obj, f, *a, **k)
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(core.checkpoint.torch, "save", disk_full)
    capsys.readouterr()
    assert train.main(args + ["train.epochs=2", "--resume-force"]) == 2
    err = _one_error_line(capsys)
    assert f"error: {last}: could not be written ([Errno 28] No space left on device)" in err and "kept" in err
    assert last.read_bytes() == before and not list(last.parent.glob(".*.tmp"))
    monkeypatch.setattr(core.checkpoint.torch, "save", real_save)
    assert train.main(args + ["train.epochs=2", "--resume-force"]) == 0  # the kept last.pt still resumes


def test_keep_model_removes_the_checkpoints_after_the_export(tmp_path, monkeypatch, capsys):
    train, args = _train(tmp_path, monkeypatch)
    run = tmp_path / "toy"
    assert train.main(args + ["train.keep=model"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.yaml", "metrics.jsonl", "model", "results.md"]
    assert "train.keep=model: removed 4 checkpoint files (last.pt, best.pt and checksums)\n" in out
    holds = [line for line in out.splitlines() if line.startswith(f"{run} holds ")]
    assert len(holds) == 1 and "model/ 2.0 KB" in holds[0] and ".pt" not in holds[0]
    assert train.main(args + ["--resume"]) == 2
    assert "checkpoints were removed (train.keep: model)" in _one_error_line(capsys)


def test_stale_settings_are_gone(tmp_path):
    with pytest.raises(ConfigError, match="'data.num_workers' is no longer a setting"):
        load_config(None, ["data.num_workers=2"])
    old_run = tmp_path / "config.yaml"  # a run folder's config.yaml from before: the old default still loads
    old_run.write_text("data:\n  num_workers: 0\n")
    assert not hasattr(load_config(old_run).data, "num_workers")
    from core.checkpoint import RESUME_IGNORED
    assert "train.keep" in RESUME_IGNORED and not any("num_workers" in key for key in RESUME_IGNORED)


def test_keep_model_removes_only_checkpoints_beside_an_exported_model(tmp_path, capsys):
    from core.run_folder import finish_run_folder

    for folder in ("k250", "k500", "stage"):  # few-shot sizes export model/; a pipeline stage does not
        (tmp_path / folder).mkdir()
        for name in ("last.pt", "last.pt.sha256", "best.pt", "best.pt.sha256"):
            (tmp_path / folder / name).write_bytes(b"x")
    (tmp_path / "k250" / "model").mkdir()
    (tmp_path / "k500" / "model").mkdir()
    lines = finish_run_folder(tmp_path, keep="model")
    assert lines[0] == ("train.keep=model: removed 8 checkpoint files (last.pt, best.pt and checksums); "
                        "kept stage/best.pt, stage/last.pt (no exported model/ beside them)")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("**/*") if p.is_file()) == \
        ["stage/best.pt", "stage/best.pt.sha256", "stage/last.pt", "stage/last.pt.sha256"]
