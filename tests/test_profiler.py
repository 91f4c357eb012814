"""core/profiler.py: the phase summary's exact arithmetic, operator groups, the export after the loop
(never inside a step), and no stale trace left by an earlier run."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from core.config import load_config
from core.profiler import OUTPUTS, Profiler, build_profiler, operator_group, phase_summary


def _event(key, cpu_total=0.0, self_cpu=0.0, count=1):
    return SimpleNamespace(key=key, count=count, cpu_time_total=cpu_total, self_cpu_time_total=self_cpu,
                           self_device_time_total=0.0)


def test_phase_summary_splits_a_step_exactly():
    events = [_event("ProfilerStep*", 20000, 50, count=2), _event("data", 1000), _event("loss", 8000),
              _event("forward", 5000), _event("backward", 6000), _event("optimizer", 2000),
              _event("aten::mm", 6500, 6000), _event("aten::addmm", 2000, 2000),
              _event("aten::_fused_adamw_", 1000, 1000), _event("aten::native_layer_norm", 1000, 1000)]
    lines = phase_summary(events).splitlines()
    assert lines[0] == "profile of 2 steps: 10.0 ms per step (CPU wall time of each range)"
    rows = {line[:16].strip(): line[16:].split() for line in lines[3:9]}
    assert rows == {"data": ["0.50", "5.0"], "forward": ["2.50", "25.0"], "loss (head)": ["1.50", "15.0"],
                    "backward": ["3.00", "30.0"], "optimizer": ["1.00", "10.0"], "other": ["1.50", "15.0"]}
    table = next(i for i, line in enumerate(lines) if line.startswith("operators (self CPU time)"))
    groups = [line.split()[:3] for line in lines[table + 1:]]
    assert groups[0] == ["matmul", "4.00", "80.0"] and sorted(groups[1:]) == [["normalisation", "0.50", "10.0"],
                                                                              ["optimizer", "0.50", "10.0"]]
    assert lines[table + 1].endswith("aten::mm 3.00, aten::addmm 1.00")


@pytest.mark.parametrize("name,group", [
    ("aten::mm", "matmul"), ("aten::addmm", "matmul"), ("aten::bmm", "matmul"), ("aten::linear", "matmul"),
    ("mkldnn::_linear_pointwise", "matmul"), ("OneDnnLinearBackward", "matmul"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"), ("aten::_fused_adamw_", "optimizer"),
    ("aten::native_layer_norm_backward", "normalisation"), ("aten::_log_softmax", "loss and softmax"),
    ("aten::copy_", "memory and indexing"), ("aten::embedding_dense_backward", "memory and indexing"),
    ("aten::gelu", "elementwise"), ("aten::add_", "elementwise"), ("AddmmBackward0", "other")])
def test_operator_groups(name, group):
    assert operator_group(name) == group


def test_the_export_comes_after_the_loop_and_never_inside_a_step(tmp_path, monkeypatch, capsys):
    real = torch.profiler.profile.export_chrome_trace

    def slow_export(self, path):
        time.sleep(0.5)
        return real(self, path)

    monkeypatch.setattr(torch.profiler.profile, "export_chrome_trace", slow_export)
    profiler = Profiler(True, tmp_path, torch.device("cpu"), wait=1, warmup=1, active=2)
    step_seconds = []
    with profiler:
        for _ in range(5):
            with profiler.phase("data"):
                time.sleep(0.03)
            with profiler.phase("loss"), profiler.phase("forward"):
                torch.ones(8, 8) @ torch.ones(8, 8)
            start = time.perf_counter()
            profiler.step()
            step_seconds.append(time.perf_counter() - start)
        assert not (tmp_path / "trace.json").exists() and not profiler.written  # the window closed at step 4
    # the 4th step() closed the window; the 0.5 s export was in none (the 1st starts the profiler: slow)
    assert max(step_seconds[1:]) < 0.4
    assert all((tmp_path / name).is_file() for name in OUTPUTS)
    summary = (tmp_path / "profile_summary.txt").read_text()
    assert summary.startswith("profile of 2 steps: ") and summary in capsys.readouterr().out
    data_ms = float(next(line for line in summary.splitlines() if line.startswith("data ")).split()[1])
    assert data_ms >= 30.0


def test_an_earlier_runs_trace_is_removed_when_a_later_run_does_not_profile(tmp_path):
    for name in OUTPUTS:
        (tmp_path / name).write_text("old")
    off = load_config(None, ["profile.enabled=false"]).profile
    build_profiler(off, tmp_path, torch.device("cpu"), enabled=False)  # another rank: not its files
    assert all((tmp_path / name).exists() for name in OUTPUTS)
    profiler = build_profiler(off, tmp_path, torch.device("cpu"))
    with profiler:
        profiler.step()
    assert not any((tmp_path / name).exists() for name in OUTPUTS)
