"""The one task interface every system implements, and the rule for which weights are tested.

    class MyTask:                                   # tasks/my_task.py, built by build_task(cfg)
        metric_name = "dev_f1"                      # a key of evaluate()'s dict; higher is better
        def build_model(self) -> nn.Module: ...
        def train_batches(self, epoch, rank, world): ...   # dicts of CPU tensors with "n_tokens"
        def loss(self, model, batch) -> Tensor: ...        # the SUM over the batch's n_tokens units, fp32
        def evaluate(self, model) -> dict[str, float]: ...
        def run(self, cfg, run_dir) -> dict: ...           # the whole job: fit, test, export

``train.py`` calls ``task.run(cfg, run_dir)`` for every task (``Runnable``); a task trained by the
loop is a ``Task`` and its ``run`` usually starts with ``fit_best``. A pipeline (zero-resource NER)
is a ``Runnable`` whose stages are ``Task``s. The rule for every task: the weights that are tested
and exported are the best-dev ones, read back from ``run_dir/best.pt`` (``restore_best``), and
the best dev score is the one last.pt stores (``fit``'s ``best_metric``), so a resumed or
re-resumed run reports and exports the same as an uninterrupted one: the files, not memory,
hold them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Runnable(Protocol):
    def run(self, cfg, run_dir: str | Path) -> dict: ...


@runtime_checkable
class Task(Runnable, Protocol):
    metric_name: str

    def build_model(self) -> nn.Module: ...

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1) -> Iterable[dict]: ...

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...


def restore_best(model: nn.Module, run_dir: str | Path) -> dict:
    """Load run_dir/best.pt (weights only, no code runs) into ``model``; returns its other entries
    (step, the metric). Raises FileNotFoundError naming the file when the run never evaluated."""
    from core.checkpoint import safe_load
    from core.distributed import unwrap

    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no best-dev checkpoint (the run never evaluated)")
    state = safe_load(path)
    unwrap(model).load_state_dict(state["model"])
    return {k: v for k, v in state.items() if k != "model"}


def fit_best(cfg, task, run_dir: str | Path) -> dict:
    """``core.loop.fit``, then the best-dev weights from best.pt in the returned model (the last
    weights only when ``train.save_best`` is off). The dict is fit's: "model", "best_metric" (from
    last.pt on a resume), "metrics", "step"."""
    from core.loop import fit

    result = fit(cfg, task, run_dir)
    if cfg.train.save_best:
        restore_best(result["model"], run_dir)
    return result
