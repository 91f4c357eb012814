"""Keeping a time-budgeted run on schedule on a CPU that other jobs share.

Both helpers are driven by tick(n): called when the next batch is requested, with n the number
of sequences in the batch just processed, so the interval between ticks is one whole training
step (forward, backward, optimizer) at the settings chosen at the previous tick.

- ThreadTuner: one intra-op thread can be several times faster than two when the cores are
  oversubscribed (each thread waits on its preempted peer); alone, two are faster. It probes
  the other thread counts now and then and keeps the fastest per sequence.
- BatchPacer: sizes each batch so a step takes about ``target_seconds``. The learning-rate
  schedule counts steps, so steps of a fixed duration make the schedule end at the budget
  whether the machine gets faster or slower, while the batch (tokens per step) absorbs the load.
"""
from __future__ import annotations

import math
import time

import torch


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else math.inf


class ThreadTuner:
    """Every ``every`` ticks each other thread count runs ``probe`` timed steps (after one untimed
    step to settle) and the count with the lowest median seconds per sequence is kept."""

    DECIDE = 0  # a plan entry: compare the medians and pick

    def __init__(self, choices: list[int], every: int = 200, probe: int = 3, clock=time.perf_counter):
        self.choices, self.every, self.probe, self.clock = choices, every, probe, clock
        self.current = torch.get_num_threads() if torch.get_num_threads() in choices else choices[-1]
        self.samples: dict[int, list[float]] = {n: [] for n in choices}  # last `probe` seconds/sequence
        self.plan: list[int] = []  # thread counts for the coming ticks, then DECIDE
        self.ticks, self.last, self.settling = 0, None, True
        self.decisions: list[tuple[int, int]] = []  # (tick, thread count chosen)

    def use(self, threads: int) -> None:
        self.settling = threads != self.current
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.current = threads

    def tick(self, sequences: int = 1) -> None:
        now = self.clock()
        if self.last is not None and not self.settling and sequences:
            rate = (now - self.last) / sequences
            self.samples[self.current] = (self.samples[self.current] + [rate])[-self.probe:]
        self.last, self.ticks, self.settling = now, self.ticks + 1, False
        if not self.plan and self.ticks % self.every == 0:
            self.plan = [n for n in self.choices if n != self.current for _ in range(self.probe + 1)]
            self.plan.append(self.DECIDE)
        if not self.plan:
            return
        nxt = self.plan.pop(0)
        if nxt == self.DECIDE:
            nxt = min(self.choices, key=lambda n: _median(self.samples[n]))
            self.decisions.append((self.ticks, nxt))
        self.use(nxt)


class BatchPacer:
    """Sequences per batch so that a step takes about ``target_seconds``: the target divided by the
    median seconds per sequence of the last ``window`` steps, clamped to [min_size, max_size]."""

    def __init__(self, target_seconds: float, base_size: int, min_size: int, max_size: int, window: int = 5,
                 clock=time.perf_counter):
        self.target, self.base, self.min_size, self.max_size = target_seconds, base_size, min_size, max_size
        self.window, self.clock = window, clock
        self.rates: list[float] = []  # seconds per sequence of recent steps
        self.last = None
        self.sizes: list[int] = []  # every size handed out (for the summary)

    def tick(self, sequences: int) -> None:
        now = self.clock()
        if self.last is not None and sequences:
            self.rates = (self.rates + [(now - self.last) / sequences])[-self.window:]
        self.last = now

    def next_size(self) -> int:
        size = self.base if not self.rates else round(self.target / _median(self.rates))
        size = min(self.max_size, max(self.min_size, size))
        self.sizes.append(size)
        return size
