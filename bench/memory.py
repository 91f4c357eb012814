"""Resident memory and the CPU's name, for the benchmarks (Linux /proc; not a test).

    with PeakMemory() as mem:
        work()
    print(mem.growth)   # MB above the RSS at entry; mem.base, mem.peak in MB too
    status_mb("VmHWM")  # this process's RSS high-water mark in MB (any /proc/self/status field in kB)
"""
from __future__ import annotations

import threading
import time


def rss_mb() -> float:
    """Resident set size of this process in MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def status_mb(key: str) -> float:
    """The ``key`` field of /proc/self/status (VmHWM, VmRSS, RssAnon, ...) in MB; NaN when absent.

    VmHWM is this process's own RSS high-water mark (ru_maxrss would survive exec); writing "5"
    to /proc/self/clear_refs resets it.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("?" where there is none), for a benchmark's header."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    except OSError:
        return "?"


class PeakMemory:
    """Samples RSS every ``interval`` seconds on a thread while the block runs."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval

    def __enter__(self):
        self.base = self.peak = rss_mb()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def growth(self) -> float:
        return self.peak - self.base
