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
