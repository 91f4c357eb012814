"""The whole train state in one file, written atomically and read without running code.

    save_train_state(run_dir / "last.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                     scaler=scaler, step=step, epoch=epoch, batch_in_epoch=k, best_metric=best, config=cfg)
    state = load_train_state(run_dir / "last.pt")          # torch.load(weights_only=True)
    check_resume_config(state["config"], cfg, path)         # refuses changed training settings
    restore_train_state(state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)

The model entry is the state_dict of the unwrapped module (no ``module.`` from DDP, no
``_orig_mod.`` from torch.compile). RNG states of python, numpy, torch (and CUDA when
present) are saved as tensors and plain numbers, and the config as a plain dict, so the file
loads with ``weights_only=True``: a checkpoint that needs any other object (a planted
``__reduce__``) is refused with a ``CheckpointError`` instead of executing it. The file is
written to a temporary name in the same folder and renamed over the old one, so a crash
mid-write never leaves a truncated checkpoint (``clean_stale_temps`` removes the temp file
of a save that was killed). Weights that are not finite are never written (``NonFiniteError``).
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.config import ConfigError

# Settings that may differ between a run and its resume: where it writes, how often it logs or
# saves, when the wall clock stops it, profiling. Everything else changes what the steps compute
# (data, model, optimizer, schedule, eval sets, max_steps/epochs) and needs train.resume_allow_changes.
RESUME_IGNORED = ("train.resume", "train.resume_allow_changes", "train.name", "train.out_dir", "train.log_every",
                  "train.save_every", "train.time_budget_minutes", "profile.", "data.root", "data.num_workers",
                  "mlm.time_budget_minutes", "mlm.budget_reserve_seconds", "mlm.adaptive_threads")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unsafe (needs code to load), truncated or corrupt."""


class ResumeConfigError(ConfigError):
    """A resume whose training-relevant settings differ from the ones saved in last.pt."""


class NonFiniteError(RuntimeError):
    """A loss, gradient norm or weight that is NaN or infinite."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and torch.compile (``._orig_mod``)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def rng_state() -> dict:
    """Every RNG state as tensors and plain numbers (loadable with weights_only=True)."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["words"].tolist()), py["gauss"]))
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text (utf-8) to a temp file in the same folder, then os.replace: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temp files atomic_save leaves when a process is killed mid-write; returns them."""
    folder = Path(folder)
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_finite(state_dict: dict, what: str) -> None:
    """NonFiniteError naming the first tensor of ``state_dict`` with a NaN or infinite value."""
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"{what}: {name} holds NaN or infinite values; not saved")


def save_train_state(path: str | Path, *, model: nn.Module, optimizer=None, scheduler=None, scaler=None,
                     step: int = 0, epoch: int = 0, batch_in_epoch: int = 0, best_metric: float | None = None,
                     config=None, extra: dict | None = None) -> Path:
    """Write everything needed to continue training exactly where it stopped (finite weights only)."""
    weights = unwrap(model).state_dict()
    check_finite(weights, str(path))
    state = {
        "model": weights,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "best_metric": best_metric,
        "rng": rng_state(),
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
        "extra": extra or {},
    }
    return atomic_save(state, path)


def safe_load(path: str | Path, map_location="cpu", mmap: bool = False):
    """torch.load with weights_only=True; an unsafe, truncated or corrupt file is a CheckpointError
    (one line naming the file) instead of a traceback, and nothing in it is executed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no central directory
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (not a complete torch.save archive); "
                              f"delete it or start without --resume")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:  # weights_only refused a global: the file wants to run code
        lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "global" in line]
        raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain values "
                              f"(loading it could run code): {lines[0] if lines else 'weights-only load failed'}") \
            from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first}); delete it or start "
                              f"without --resume") from None


def load_train_state(path: str | Path, map_location="cpu") -> dict:
    """The dict save_train_state wrote (RNG states included; nothing is applied yet)."""
    state = safe_load(path, map_location)
    missing = [k for k in ("model", "step", "epoch", "batch_in_epoch", "rng", "config") if k not in state] \
        if isinstance(state, dict) else ["(not a dict)"]
    if missing:
        raise CheckpointError(f"{path}: not a train state written by save_train_state (missing {missing})")
    return state


def flatten(config: dict) -> dict:
    """{"task": "ner", "train": {"lr": 1}} -> {"task": "ner", "train.lr": 1} (sections only; a dict
    setting such as data.layout stays one value)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            out[key] = value
    return out


def config_changes(saved: dict, current) -> dict[str, tuple]:
    """{dotted key: (saved, now)} for every training-relevant setting that differs. A key the schema
    gained since last.pt was written counts only if it is set away from its default; a key the
    schema lost cannot be set any more and is not compared."""
    from core.config import Config

    now = flatten(dataclasses.asdict(current) if dataclasses.is_dataclass(current) else current)
    before = flatten(saved or {})
    defaults = flatten(dataclasses.asdict(Config()))
    changes = {}
    for key in sorted(now):
        if any(key == skip or (skip.endswith(".") and key.startswith(skip)) for skip in RESUME_IGNORED):
            continue
        old = before[key] if key in before else defaults.get(key, "<absent>")
        if old != now[key]:
            changes[key] = (before.get(key, "<absent>"), now[key])
    return changes


def check_resume_config(saved: dict, cfg, path: str | Path) -> dict[str, tuple]:
    """Refuse (ResumeConfigError naming the keys) a resume whose settings differ from last.pt's,
    unless cfg.train.resume_allow_changes; returns the differences."""
    changes = config_changes(saved, cfg)
    if changes and not cfg.train.resume_allow_changes:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in changes.items()))
        raise ResumeConfigError(f"{path} was trained with other settings ({listed}); resume with the saved "
                                f"settings, or allow the change with --resume-force "
                                f"(train.resume_allow_changes=true)")
    return changes


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
