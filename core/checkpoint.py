"""The whole train state in one file, written atomically.

    save_train_state(run_dir / "last.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                     scaler=scaler, step=step, epoch=epoch, batch_in_epoch=k, best_metric=best, config=cfg)
    state = load_train_state(run_dir / "last.pt")
    restore_train_state(state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)

The model entry is the state_dict of the unwrapped module (no ``module.`` from DDP, no
``_orig_mod.`` from torch.compile). RNG states of python, numpy, torch (and CUDA when
present) are saved and restored so a resumed run draws the same dropout masks. The file is
written to a temporary name in the same folder and renamed over the old one, so a crash
mid-write never leaves a truncated checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and torch.compile (``._orig_mod``)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, then os.replace (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_train_state(path: str | Path, *, model: nn.Module, optimizer=None, scheduler=None, scaler=None,
                     step: int = 0, epoch: int = 0, batch_in_epoch: int = 0, best_metric: float | None = None,
                     config=None, extra: dict | None = None) -> Path:
    """Write everything needed to continue training exactly where it stopped."""
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best_metric": best_metric,
        "rng": rng_state(),
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
        "extra": extra or {},
    }
    return atomic_save(state, path)


def load_train_state(path: str | Path, map_location="cpu") -> dict:
    """The dict save_train_state wrote (RNG states included; nothing is applied yet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # Our own files: python/numpy RNG states are plain objects, so weights_only is off.
    return torch.load(path, map_location=map_location, weights_only=False)


def restore_train_state(state: dict, *, model: nn.Module, optimizer=None, scheduler=None, scaler=None,
                        restore_rng: bool = True) -> None:
    """Load the saved states into live objects (model first, so the optimizer maps onto its params)."""
    unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_rng:
        set_rng_state(state["rng"])


def save_last(path, model, optimizer, scheduler, scaler, step, epoch, batch_in_epoch, best, cfg, dist_info):
    """last.pt from rank 0, with every rank's RNG state so each resumes its own dropout stream."""
    rngs = [rng_state()]
    if dist_info.world > 1:
        rngs = [None] * dist_info.world
        dist.all_gather_object(rngs, rng_state())
    if dist_info.is_main:
        save_train_state(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=step,
                         epoch=epoch, batch_in_epoch=batch_in_epoch, best_metric=best, config=cfg,
                         extra={"rng_per_rank": rngs})
    if dist_info.world > 1:
        dist.barrier()
