"""One profiler object for the loop: a no-op unless ``profile.enabled``.

    profiler = build_profiler(cfg.profile, run_dir, device)
    with profiler:
        for step ...:
            with profiler.phase("forward"):     # also data, loss, backward, optimizer
                ...
            profiler.step()                     # advances the wait/warmup/active schedule

The active window is written when the ``with`` block ends, after the last step, so the export
never counts in a step's time or throughput: run_dir/trace.json (open in https://ui.perfetto.dev
or chrome://tracing), run_dir/ops.txt (operators sorted by self CPU time, or self CUDA time on a
GPU) and run_dir/profile_summary.txt, also printed: ms per step and % for each phase, then the
operators grouped by kind (matmul, attention, normalisation, ...) with the top ones of each.
``build_profiler`` removes these three files from an earlier run first, so a run that does not
profile never leaves an old trace beside its new results. How to read them: docs/ENGINE.md,
section "Profiling".
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

PHASES = ("data", "forward", "loss", "backward", "optimizer")
OUTPUTS = ("trace.json", "ops.txt", "profile_summary.txt")

# Operator groups of the summary: the first pattern that matches an operator's name wins; the rest is "other".
OPERATOR_GROUPS = (
    ("attention", r"scaled_dot_product|flash|efficient_attention|_attention"),
    ("matmul", r"::(mm|addmm|bmm|baddbmm|matmul|linear|_addmm_activation)\b|mkldnn.*(linear|matmul)|OneDnnLinear|"
               r"gemm"),
    ("optimizer", r"adam|_foreach_|lazy_adamw"),
    ("normalisation", r"layer_norm|rms_norm|batch_norm"),
    ("loss and softmax", r"cross_entropy|nll_loss|log_softmax|softmax|logsumexp"),
    ("memory and indexing", r"copy_|::to\b|_to_copy|contiguous|clone|empty|zero_|fill_|::cat\b|index|gather|scatter|"
                            r"embedding|masked_select|nonzero|::where\b|::view|reshape|transpose|permute|::select\b"),
    ("elementwise", r"::(add|mul|div|sub|gelu|relu|tanh|dropout|native_dropout|sum|mean|pow|sqrt|rsqrt|exp|"
                    r"neg|abs|clamp|ne|eq|lt|gt|bernoulli)"),
)


class Profiler:
    """Wraps torch.profiler with the config's schedule; every method is cheap when disabled."""

    def __init__(self, enabled: bool, run_dir: str | Path, device: torch.device, wait: int = 1,
                 warmup: int = 1, active: int = 3, record_shapes: bool = False):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.on_cuda = device.type == "cuda"
        self.written = False
        self.summary = ""
        self._prof = None
        self._ready = None  # the torch profiler once its active window closed; written at __exit__
        if enabled:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.on_cuda else [])
            self._prof = profile(activities=activities, record_shapes=record_shapes,
                                 schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
                                 on_trace_ready=self._keep)

    def _keep(self, prof) -> None:
        self._ready = prof

    def _write(self, prof) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(self.run_dir / "trace.json"))
        sort_by = "self_cuda_time_total" if self.on_cuda else "self_cpu_time_total"
        events = prof.key_averages()
        (self.run_dir / "ops.txt").write_text(events.table(sort_by=sort_by, row_limit=40) + "\n")
        self.summary = phase_summary(events, device_time=self.on_cuda)
        (self.run_dir / "profile_summary.txt").write_text(self.summary)
        print(self.summary, end="", flush=True)
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

    def __exit__(self, exc_type, *exc) -> None:
        if self._prof is None:
            return
        self._prof.__exit__(exc_type, *exc)
        if self._ready is not None and (exc_type is None or issubclass(exc_type, Exception)):
            self._write(self._ready)  # not on Ctrl-C: stopping stays quick


def build_profiler(profile_cfg, run_dir: str | Path, device: torch.device, enabled: bool = True) -> Profiler:
    """The run's profiler (``enabled=False`` e.g. on ranks other than 0). On the writing rank, the
    profiler outputs of an earlier run in run_dir are removed first, whether this run profiles or not."""
    if enabled:
        for name in OUTPUTS:
            (Path(run_dir) / name).unlink(missing_ok=True)
    return Profiler(profile_cfg.enabled and enabled, run_dir, device, profile_cfg.wait, profile_cfg.warmup,
                    profile_cfg.active, profile_cfg.record_shapes)


def phase_summary(events, device_time: bool = False, top: int = 3) -> str:
    """The text of profile_summary.txt from ``key_averages()`` rows (objects with ``key``, ``count``,
    ``cpu_time_total``, ``self_cpu_time_total``, ``self_device_time_total``; times in us).

    A step is a ``ProfilerStep#N`` range (``ProfilerStep*`` once averaged, with a count); phases are
    the CPU wall time of their ranges, per step.
    ``forward`` is nested in ``loss``, so the loss row is the loss range minus forward (the task's
    head and loss); ``other`` is the rest of the step (Python between the ranges). Operators are
    grouped by OPERATOR_GROUPS on self time (self CUDA time with ``device_time``).
    """
    by_key = {e.key: e for e in events}
    step_rows = [e for e in events if e.key.startswith("ProfilerStep")]
    n_steps = sum(e.count for e in step_rows)
    steps = n_steps or 1
    total = sum(e.cpu_time_total for e in step_rows) or sum(by_key[p].cpu_time_total for p in PHASES if p in by_key)
    phase_us = {p: by_key[p].cpu_time_total if p in by_key else 0.0 for p in PHASES}
    phase_us["loss"] = max(phase_us["loss"] - phase_us["forward"], 0.0)
    phase_us["other"] = max(total - sum(phase_us.values()), 0.0)
    pct = lambda us: 100.0 * us / total if total else 0.0  # noqa: E731
    lines = [f"profile of {n_steps} steps: {total / steps / 1e3:.1f} ms per step (CPU wall time of each range)",
             "", f"{'phase':<16}{'ms/step':>10}{'%':>8}"]
    names = {"loss": "loss (head)", "other": "other"}
    for p in (*PHASES, "other"):
        lines.append(f"{names.get(p, p):<16}{phase_us[p] / steps / 1e3:>10.2f}{pct(phase_us[p]):>8.1f}")
    lines.append("loss (head) = the loss range minus the model's forward; other = between the ranges")

    skip = set(PHASES) | {e.key for e in step_rows}
    groups: dict[str, list] = {}
    for e in events:
        if e.key in skip:
            continue
        us = e.self_device_time_total if device_time else e.self_cpu_time_total
        if us > 0:
            groups.setdefault(operator_group(e.key), []).append((us, e.key))
    clock = "self CUDA time" if device_time else "self CPU time"
    op_total = sum(us for ops in groups.values() for us, _ in ops) or 1.0
    lines += ["", f"{'operators (' + clock + ')':<28}{'ms/step':>10}{'%':>8}  top operators (ms/step)"]
    for name, ops in sorted(groups.items(), key=lambda kv: -sum(us for us, _ in kv[1])):
        us = sum(u for u, _ in ops)
        tops = ", ".join(f"{key} {u / steps / 1e3:.2f}" for u, key in sorted(ops, reverse=True)[:top])
        lines.append(f"{name:<28}{us / steps / 1e3:>10.2f}{100.0 * us / op_total:>8.1f}  {tops}")
    return "\n".join(lines) + "\n"


def operator_group(name: str) -> str:
    """The OPERATOR_GROUPS name of an operator (``aten::mm`` -> matmul), else "other"."""
    for group, pattern in OPERATOR_GROUPS:
        if re.search(pattern, name):
            return group
    return "other"
