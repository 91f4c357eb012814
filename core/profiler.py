"""One profiler object for the loop: a no-op unless ``profile.enabled``.

    profiler = build_profiler(cfg.profile, run_dir, device)
    with profiler:
        for step ...:
            with profiler.phase("forward"):     # also data, loss, backward, optimizer
                ...
            profiler.step()                     # advances the wait/warmup/active schedule

When the active window closes it writes run_dir/trace.json (open in https://ui.perfetto.dev
or chrome://tracing) and run_dir/ops.txt (operators sorted by self CPU time, or self CUDA
time on a GPU). See docs/ENGINE.md for how to read both.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

PHASES = ("data", "forward", "loss", "backward", "optimizer")


class Profiler:
    """Wraps torch.profiler with the config's schedule; every method is cheap when disabled."""

    def __init__(self, enabled: bool, run_dir: str | Path, device: torch.device, wait: int = 1,
                 warmup: int = 1, active: int = 3, record_shapes: bool = False):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.on_cuda = device.type == "cuda"
        self.written = False
        self._prof = None
        if enabled:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.on_cuda else [])
            self._prof = profile(activities=activities, record_shapes=record_shapes,
                                 schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
                                 on_trace_ready=self._write)

    def _write(self, prof) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(self.run_dir / "trace.json"))
        sort_by = "self_cuda_time_total" if self.on_cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort_by, row_limit=40)
        (self.run_dir / "ops.txt").write_text(table + "\n")
        self.written = True

    def phase(self, name: str):
        """A labelled range in the trace (a null context when disabled)."""
        return record_function(name) if self.enabled else contextlib.nullcontext()

    def step(self) -> None:
        if self._prof is not None:
            self._prof.step()

    def __enter__(self):
        if self._prof is not None:
            self._prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._prof is not None:
            self._prof.__exit__(*exc)


def build_profiler(profile_cfg, run_dir: str | Path, device: torch.device, enabled: bool = True) -> Profiler:
    """The run's profiler (``enabled=False`` e.g. on ranks other than 0)."""
    return Profiler(profile_cfg.enabled and enabled, run_dir, device, profile_cfg.wait, profile_cfg.warmup,
                    profile_cfg.active, profile_cfg.record_shapes)
