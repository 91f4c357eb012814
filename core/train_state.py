"""The training state as one object: what the loop advances and what last.pt saves and restores.

    state = build_train_state(model, cfg.train, total_steps)     # step 0, epoch 0, no best metric yet
    for batch in task.train_batches(epoch=0):                    # core.loop.train_step: one optimizer step
        loss_sum, grad_norm = train_step(state, task, [batch])   # state.step += 1, state.batch_in_epoch += 1
    state.save(run_dir / "last.pt", config=cfg)                  # every rank calls it; rank 0 writes
    state.restore(load_train_state(run_dir / "last.pt"))         # into the live objects, RNG included

``build_train_state`` makes the optimizer (``core.optim.build_optimizer``), the schedule over
``total_steps`` (``build_scheduler``) and the scaler (``core.precision.build_grad_scaler``, enabled
for fp16 only) in one call; ``TrainState(model, optimizer, scheduler, scaler)`` takes hand-made ones.
``core.loop.fit`` is this loop with everything a run needs around it (accumulation, precision,
evaluation, logging, DDP, resume); ``tests/test_loop.py`` checks that the few lines above give
fit's weights.

What a save holds, and so what a resume restores: the weights of the plain model (never a DDP
wrapper's ``module.`` names), the optimizer's moments and step counts (LazyAdamW's pending decay
included), the schedule's position, the GradScaler's scale, the step, the epoch, how many
micro-batches of that epoch were consumed (the task re-creates the epoch's batches from its seed
and the loop skips those), the best dev metric so far, the python / numpy / torch (/ CUDA) RNG
states of every rank (dropout continues the same stream), and the config as a plain dict (a
resume compares it with the new one). The file is written atomically with a sha256 beside it
(``core.checkpoint.atomic_save``) and read with ``weights_only=True``, so loading it runs no code.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoint import atomic_save, check_finite, rng_state, set_rng_state
from core.distributed import all_gather, barrier, unwrap
from core.optim import build_optimizer, build_scheduler
from core.precision import build_grad_scaler, resolve_precision


@dataclass
class TrainState:
    """Everything a run changes as it trains. ``model`` is the plain module (the loop wraps it in
    DDP for the forward); ``best`` is the best dev metric so far (None before the first evaluation).
    ``build_train_state(model, train_cfg, total_steps, device, precision)`` builds one at step 0 with
    the run's optimizer, schedule and scaler."""
    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None  # a torch.optim.lr_scheduler.LRScheduler
    scaler: Any = None  # a torch.amp.GradScaler (disabled unless fp16)
    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of ``epoch`` already consumed
    best: float | None = None

    def state_dict(self, config=None) -> dict:
        """The checkpoint as a dict of tensors and plain values (this process's RNG under "rng")."""
        def saved(obj):
            return obj.state_dict() if obj is not None else None
        return {"model": unwrap(self.model).state_dict(), "optimizer": saved(self.optimizer),
                "scheduler": saved(self.scheduler), "scaler": saved(self.scaler),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_metric": self.best, "rng": rng_state(),
                "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
                "extra": {}}

    def save(self, path: str | Path, config=None) -> Path:
        """Write the state to ``path`` (atomic, with ``path.sha256``; finite weights only). Under
        torchrun every rank must call it: each rank's RNG state is gathered, rank 0 writes, all wait."""
        path = Path(path)
        rngs = all_gather(rng_state())
        if len(rngs) == 1 or torch.distributed.get_rank() == 0:
            state = self.state_dict(config)
            check_finite(state["model"], str(path))
            state["extra"]["rng_per_rank"] = rngs
            atomic_save(state, path)
        barrier()
        return path

    def restore(self, saved: dict, rank: int = 0) -> None:
        """Load a saved state (``core.checkpoint.load_train_state``) into the live objects: the model
        first (so the optimizer maps onto its parameters), then optimizer, schedule, scaler, counters
        and ``rank``'s RNG state (the saving rank's own when there is one for it)."""
        unwrap(self.model).load_state_dict(saved["model"])
        for name in ("optimizer", "scheduler", "scaler"):
            live = getattr(self, name)
            if live is not None and saved.get(name) is not None:
                live.load_state_dict(saved[name])
        self.step, self.epoch, self.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        self.best = saved.get("best_metric")
        rngs = saved.get("extra", {}).get("rng_per_rank")
        set_rng_state(rngs[rank] if rngs and rank < len(rngs) else saved["rng"])


def build_train_state(model: nn.Module, train_cfg, total_steps: int, device: torch.device | str = "cpu",
                      precision: str = "fp32", sparse_embeddings: bool = True) -> TrainState:
    """A TrainState at step 0: the optimizer of ``train_cfg`` (a ``core.config.TrainConfig``) over
    ``model``'s parameters, its schedule over ``total_steps`` optimizer steps, and a GradScaler for
    ``precision`` on ``device`` (resolved first: ``auto`` picks as the loop does; enabled for fp16
    only). ``sparse_embeddings=False`` keeps lazy embeddings' gradients dense (DDP)."""
    optimizer = build_optimizer(model, train_cfg, sparse_embeddings=sparse_embeddings)
    scheduler = build_scheduler(optimizer, train_cfg, total_steps)
    scaler = build_grad_scaler(device, resolve_precision(precision, device))
    return TrainState(model, optimizer, scheduler, scaler)
