"""Progress lines on stdout (rank 0 only) and metrics.jsonl in the run directory.

    logger = RunLogger(run_dir, enabled=info.is_main)
    logger.log({"step": 10, "loss": 0.52, ...})          # one JSON line
    logger.progress(step, total, loss, lr, tokens_per_s, elapsed)   # step 10/300 | loss ... | ETA 4m12s
    logger.truncate_after(step)                          # on resume: drop the records of later steps
    write_run_config(cfg, run_dir)                       # config.yaml: the settings the run trains with
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

from core.checkpoint import atomic_write_text
from core.distributed import all_reduce


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class RunLogger:
    """Appends JSON records to run_dir/metrics.jsonl and prints progress (no-op when disabled)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.perf_counter() - self.start, 3), **record}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Keep only the records of steps <= ``step`` (all of them removed for step < 0), rewritten
        atomically: a resumed run re-makes the steps after its checkpoint, and each appears once."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by the kill
                continue
            if step >= 0 and int(record.get("step", 0)) <= step:
                kept.append(line + "\n")
        tmp = self.path.with_name(f".{self.path.name}.truncate.tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)

    def print(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def progress(self, step: int, total: int, loss: float, lr: float, tokens_per_s: float,
                 steps_per_s: float) -> None:
        eta = (total - step) / steps_per_s if steps_per_s > 0 else float("nan")
        self.print(f"step {step}/{total} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s | "
                   f"ETA {format_seconds(eta) if eta == eta else '?'}")


def log_window(window, step, total, epoch, scheduler, grad_norm, logger) -> dict:
    """The only host sync of the loop: average loss and throughput since the last log line, and the
    number of steps whose loss or grad norm was not finite (all ranks). Returns the record."""
    nonfinite = window.get("nonfinite", torch.zeros(()))
    stats = torch.stack([window["loss"].float().cpu(), torch.tensor(float(window["labelled"])),
                         torch.tensor(float(window["tokens"])), nonfinite.float().cpu()])
    stats = all_reduce(stats.to(window["loss"].device)).cpu()
    elapsed = max(time.perf_counter() - window["start"], 1e-9)
    loss = (stats[0] / stats[1].clamp_min(1)).item()
    lr = scheduler.get_last_lr()[0]
    tokens_per_s = stats[2].item() / elapsed
    logger.progress(step, total, loss, lr, tokens_per_s, window["steps"] / elapsed)
    record = {"step": step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": float(grad_norm),
              "tokens_per_s": tokens_per_s}
    if stats[3] > 0:
        record["nonfinite_steps"] = int(stats[3])
    logger.log(record)
    window.update(loss=torch.zeros_like(window["loss"]), labelled=0, tokens=0, steps=0, start=time.perf_counter())
    return {**record, "nonfinite_steps": int(stats[3])}


def write_run_config(cfg, run_dir: str | Path) -> Path:
    """run_dir/config.yaml: the merged settings as the run trains with them (after a task's planning,
    e.g. mlm's max_steps), with train.resume/resume_allow_changes off so the file reproduces the run."""
    data = dataclasses.asdict(cfg)
    data["train"].update(resume=False, resume_allow_changes=False)
    return atomic_write_text(Path(run_dir) / "config.yaml", yaml.safe_dump(data, sort_keys=False))
