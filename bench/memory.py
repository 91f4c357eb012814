"""Peak resident memory of a block, for the benchmarks (Linux /proc; not a test).

    with PeakMemory() as mem:
        work()
    print(mem.growth)   # MB above the RSS at entry; mem.base, mem.peak in MB too
"""
from __future__ import annotations

import threading
import time


def rss_mb() -> float:
    """Resident set size of this process in MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


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
