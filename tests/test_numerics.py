"""Numerics of the loop: a diverging run stops with a named error and saves nothing NaN; bf16 and
fp16 (+ GradScaler) on the CPU; the time budget with a mocked clock.

Legend: B sentences, T positions, K tags.
"""
from __future__ import annotations

import json

import pytest
import torch

import core.loop
from core.checkpoint import NonFiniteError
from core.loop import fit, train_step
from core.train_state import TrainState
from test_loop import ToyTask, final_weights, toy_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _all_finite(path):
    state = torch.load(path, weights_only=True)
    return all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_diverging_run_raises_and_never_saves_nan_weights(tmp_path):
    """lr 1e6: weight decay alone multiplies the weights by -9999 per step; the loss turns inf/NaN."""
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.lr=1e6", "train.warmup_ratio=0", "train.log_every=4",
                     "train.save_every=1", "train.eval_every=1", "train.epochs=4")
    with pytest.raises(NonFiniteError, match=r"NaN/infinite .* train.lr"):
        fit(cfg, ToyTask(cfg), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("last.pt", "best.pt"):  # saved at every finite step before the divergence, never after
        assert _all_finite(run / name), name
    assert not list(run.glob(".*.tmp"))


def test_train_py_exits_3_on_divergence(tmp_path, monkeypatch, capsys):
    import train

    monkeypatch.setitem(train.TASKS, "toy", ToyTask)
    config = tmp_path / "toy.yaml"
    config.write_text("task: toy\ntrain:\n  batch_size: 4\n  epochs: 4\n  precision: fp32\n  log_every: 2\n")
    args = [str(config), f"train.out_dir={tmp_path}/{{name}}", "train.lazy_embedding_min_rows=0", "train.lr=1e6"]
    assert train.main(args) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: step ") and "NaN/infinite" in err and "Traceback" not in err


def test_bf16_autocast_on_cpu_trains_close_to_fp32_but_not_equal(tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=6", f"train.precision={precision}")
        runs[precision] = final_weights(fit(cfg, ToyTask(cfg), tmp_path / precision))
    weight = "classifier.weight"
    assert runs["bf16"][weight].dtype == torch.float32  # autocast: the master weights stay fp32
    assert not torch.equal(runs["bf16"][weight], runs["fp32"][weight])  # the matmuls really ran in bf16
    torch.testing.assert_close(runs["bf16"][weight], runs["fp32"][weight], rtol=0, atol=0.05)


def _one_step(cfg, scaler, clip):
    task = ToyTask(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    from core.optim import build_optimizer, build_scheduler
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, 10)
    micro = list(task.train_batches(0))[:2]
    labelled = sum(b["n_tokens"] for b in micro)
    loss, norm = train_step(TrainState(model, optimizer, scheduler, scaler), task, micro, labelled,
                            torch.autocast("cpu", enabled=False), clip)
    return model, float(norm)


def test_fp16_grad_scaler_unscales_before_clipping(tmp_path):
    """A power-of-two loss scale is exact: with the scaler on, the clipped update and the logged
    grad norm equal the unscaled run's; clipping the scaled gradients would not."""
    cfg = toy_config(tmp_path, "train.clip_grad_norm=0.05", "train.weight_decay=0")
    plain, plain_norm = _one_step(cfg, torch.amp.GradScaler("cpu", enabled=False), 0.05)
    scaled, scaled_norm = _one_step(cfg, torch.amp.GradScaler("cpu", enabled=True, init_scale=2.0 ** 12), 0.05)
    assert plain_norm > 0.05  # clipping is active
    assert scaled_norm == pytest.approx(plain_norm, rel=1e-6)
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def _fp16_on_cpu(monkeypatch, init_scale: float):
    """fp16 autocast + an enabled GradScaler on the CPU (train.precision=fp16 is CUDA-only in configs)."""
    monkeypatch.setattr(core.loop, "resolve_precision", lambda precision, device: "fp16")
    monkeypatch.setattr(core.loop, "build_grad_scaler",
                        lambda device, precision: torch.amp.GradScaler("cpu", enabled=True, init_scale=init_scale))


def test_fp16_overflowing_steps_are_skipped_not_fatal(tmp_path, monkeypatch):
    """Scale 2^21 overflows the fp16 backward: the scaler skips the first steps (4 here), halving the
    scale each time, then trains; the run goes on (a few skipped steps are the GradScaler's normal work)."""
    _fp16_on_cpu(monkeypatch, 2.0 ** 21)
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=8", "train.log_every=8")
    result = fit(cfg, ToyTask(cfg), tmp_path / "fp16")
    records = [json.loads(line) for line in (tmp_path / "fp16" / "metrics.jsonl").read_text().splitlines()]
    skipped = records[0]["nonfinite_steps"]  # counted and reported: 4 here (Zen 4, torch 2.13)
    assert records[0]["step"] == 8 and 1 <= skipped < 8 and result["step"] == 8
    assert torch.load(tmp_path / "fp16" / "last.pt", weights_only=True)["scaler"]["scale"] == 2.0 ** (21 - skipped)


def test_fp16_persistent_overflow_is_fatal(tmp_path, monkeypatch):
    _fp16_on_cpu(monkeypatch, 2.0 ** 16)
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=8", "train.log_every=4", "train.lr=1e6",
                     "train.warmup_ratio=0")
    with pytest.raises(NonFiniteError, match="4 of the last 4 steps"):
        fit(cfg, ToyTask(cfg), tmp_path / "fp16")


def test_time_budget_stops_at_the_step_the_clock_says(tmp_path, monkeypatch, capsys):
    """A clock that advances 1 s per reading: start = 0, the check after step n reads n; a 0.1-minute
    budget (6 s) stops after step 7, with the final evaluation and last.pt."""
    ticks = iter(range(1000))
    monkeypatch.setattr(core.loop, "clock", lambda: float(next(ticks)))
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.epochs=10", "train.time_budget_minutes=0.1")
    task = ToyTask(cfg)
    result = fit(cfg, task, tmp_path / "budget")
    assert result["step"] == 7
    assert torch.load(tmp_path / "budget" / "last.pt", weights_only=True)["step"] == 7
    records = [json.loads(line) for line in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "neg_loss" in r] == [7]  # 8 steps/epoch: the budget's eval only
    assert "time budget of 0.1 min reached at step 7" in capsys.readouterr().out
