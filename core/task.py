"""The one task interface every system implements, and the rule for which weights are tested.

    class MyTask:                                   # tasks/my_task.py, built by build_task(cfg)
        metric_name = "dev_f1"                      # a key of evaluate()'s dict; higher is better
        def build_model(self) -> nn.Module: ...
        def train_batches(self, epoch, rank, world): ...   # dicts of CPU tensors with "n_tokens"
        def loss(self, model, batch) -> Tensor: ...        # the SUM over the batch's n_tokens units, fp32
        def evaluate(self, model) -> dict[str, float]: ...
        def run(self, cfg, run_dir) -> dict: ...           # the whole job: fit, test, export

``core.loop.fit`` trains any such task; ``run`` is what ``train.py`` calls. The rule for every
task: the weights that are tested and exported are the best-dev ones, read back from
``run_dir/best.pt`` with ``restore_best`` (so a resumed run reports the same as an uninterrupted
one: the file, not memory, holds them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Task(Protocol):
    metric_name: str

    def build_model(self) -> nn.Module: ...

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1) -> Iterable[dict]: ...

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def run(self, cfg, run_dir: str | Path) -> dict: ...


def restore_best(model: nn.Module, run_dir: str | Path) -> dict:
    """Load run_dir/best.pt (weights only, no code runs) into ``model``; returns its other entries
    (step, the metric). Raises FileNotFoundError naming the file when the run never evaluated."""
    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no best-dev checkpoint (the run never evaluated)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module = getattr(model, "module", model)
    getattr(module, "_orig_mod", module).load_state_dict(state["model"])
    return {k: v for k, v in state.items() if k != "model"}
