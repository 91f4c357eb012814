"""Progress lines on stdout (rank 0 only) and metrics.jsonl in the run directory.

    logger = RunLogger(run_dir, enabled=info.is_main)
    logger.log({"step": 10, "loss": 0.52, ...})          # one JSON line
    logger.progress(step, total, loss, lr, tokens_per_s, elapsed)   # step 10/300 | loss ... | ETA 4m12s
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

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

    def print(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def progress(self, step: int, total: int, loss: float, lr: float, tokens_per_s: float,
                 steps_per_s: float) -> None:
        eta = (total - step) / steps_per_s if steps_per_s > 0 else float("nan")
        self.print(f"step {step}/{total} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s | "
                   f"ETA {format_seconds(eta) if eta == eta else '?'}")


def log_window(window, step, total, epoch, scheduler, grad_norm, logger) -> None:
    """The only host sync of the loop: average loss and throughput since the last log line."""
    stats = torch.stack([window["loss"].float().cpu(), torch.tensor(float(window["labelled"])),
                         torch.tensor(float(window["tokens"]))])
    stats = all_reduce(stats.to(window["loss"].device)).cpu()
    elapsed = max(time.perf_counter() - window["start"], 1e-9)
    loss = (stats[0] / stats[1].clamp_min(1)).item()
    lr = scheduler.get_last_lr()[0]
    tokens_per_s = stats[2].item() / elapsed
    logger.progress(step, total, loss, lr, tokens_per_s, window["steps"] / elapsed)
    logger.log({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": float(grad_norm),
                "tokens_per_s": tokens_per_s})
    window.update(loss=torch.zeros_like(window["loss"]), labelled=0, tokens=0, steps=0, start=time.perf_counter())
