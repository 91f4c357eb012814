"""Checkpoint files: written atomically with a checksum, read without running code.

    atomic_save(obj, run_dir / "best.pt")                  # temp file + fsync + rename, then best.pt.sha256
    state = load_train_state(run_dir / "last.pt")          # torch.load(weights_only=True), then the checksum
    check_resume_config(state["config"], cfg, path)         # refuses changed training settings

The train state itself (model, optimizer, scaler, scheduler, counters, RNG) is
``core.train_state.TrainState``; this module holds the file mechanics under it. RNG states of
python, numpy, torch (and CUDA when present) are saved as tensors and plain numbers, and the
config as a plain dict, so a train state loads with ``weights_only=True``: a checkpoint that needs
any other object (a planted ``__reduce__``) is refused with a ``CheckpointError`` instead of
executing it. Every file is written to a temporary name in the same folder and renamed over the
old one, so a crash or a full disk mid-write never leaves a truncated checkpoint (the old one is
kept; ``clean_stale_temps`` removes the temp file of a save that was killed). Its sha256 goes to
``<file>.sha256`` beside it, and ``safe_load`` compares it after reading: torch does not check
the archive's CRCs, so without it a flipped bit would load silently. Weights that are not finite
are never written (``NonFiniteError``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from core.config import ConfigError

# Settings that may differ between a run and its resume: where it writes, how often it logs or
# saves, when the wall clock stops it, profiling. Everything else changes what the steps compute
# (data, model, optimizer, schedule, eval sets, max_steps/epochs) and needs train.resume_allow_changes.
RESUME_IGNORED = ("train.resume", "train.resume_allow_changes", "train.name", "train.out_dir", "train.log_every",
                  "train.save_every", "train.time_budget_minutes", "train.keep", "profile.", "data.root",
                  "mlm.time_budget_minutes", "mlm.budget_reserve_seconds", "mlm.adaptive_threads")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unsafe (needs code to load), truncated or corrupt."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint that could not be written (disk full, file-size limit, ...); the old file is kept."""


class ResumeConfigError(ConfigError):
    """A resume whose training-relevant settings differ from the ones saved in last.pt."""


class NonFiniteError(RuntimeError):
    """A loss, gradient norm or weight that is NaN or infinite."""


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


def checksum_path(path: str | Path) -> Path:
    """Where the sha256 of a checkpoint lives: ``last.pt`` -> ``last.pt.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, os.replace (atomic on POSIX); then its
    sha256 to ``<path>.sha256`` (written before the rename, replaced right after it). A failed write
    (disk full, file-size limit, an object that cannot be pickled) is a ``CheckpointSaveError`` naming
    the file; the previous file and its checksum are kept and no temp file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    side_tmp = Path(f"{tmp}.sha256.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        side_tmp.write_text(f"{file_sha256(tmp)}  {path.name}\n", encoding="utf-8")
        os.replace(tmp, path)
        os.replace(side_tmp, checksum_path(path))
    except (OSError, RuntimeError, pickle.PicklingError) as err:
        Path(tmp).unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CheckpointSaveError(f"{path}: could not be written ({reason}); the previous {path.name}, if any, "
                                  f"is kept; free disk space (or raise the file-size limit) and resume") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
        raise
    return path


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temp files atomic_save leaves when a process is killed mid-write; returns them."""
    folder = Path(folder)
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []  # the .sha256.tmp sidecars too
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_finite(state_dict: dict, what: str) -> None:
    """NonFiniteError naming the first tensor of ``state_dict`` with a NaN or infinite value."""
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"{what}: {name} holds NaN or infinite values; not saved")


def what_to_do(path: Path) -> str:
    """The way out of a bad checkpoint: a best.pt is re-made by a resume, a last.pt is not."""
    if path.name == "best.pt":
        return "delete it and run again with --resume (best.pt is then re-made from last.pt's weights)"
    return f"delete it (and {checksum_path(path).name}) and start the run again (--overwrite)"


_verified: set[tuple] = set()  # (path, size, mtime, inode, digest) this process has already hashed


def verify_checksum(path: str | Path) -> None:
    """CheckpointError when ``<path>.sha256`` exists and does not match the file (a file without one,
    e.g. written by another tool, is not checked). A file this process verified before and that has
    not changed since (same size, mtime and inode) is not hashed again: a resume reads last.pt three
    times."""
    path = Path(path)
    side = checksum_path(path)
    if not side.is_file():
        return
    expected = side.read_text(encoding="utf-8", errors="replace").split()[:1]
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, tuple(expected))
    if key in _verified:
        return
    if expected == [file_sha256(path)]:
        _verified.add(key)
    else:
        raise CheckpointError(f"{path}: checksum mismatch with {side.name}: the file changed after it was saved "
                              f"(disk corruption or an incomplete copy); {what_to_do(path)}")


def safe_load(path: str | Path, map_location="cpu", mmap: bool = False):
    """torch.load with weights_only=True, then the checksum (``verify_checksum``); an unsafe, truncated
    or corrupt file is a CheckpointError (one line naming the file and what to do) instead of a
    traceback, and nothing in it is executed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no central directory
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (not a complete torch.save archive); "
                              f"{what_to_do(path)}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:  # weights_only refused a global: the file wants to run code
        lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "global" in line]
        raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain values "
                              f"(loading it could run code): {lines[0] if lines else 'weights-only load failed'}") \
            from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first}); {what_to_do(path)}") from None
    verify_checksum(path)  # torch checks no CRC: a flipped bit in a tensor would load silently
    return state


def load_train_state(path: str | Path, map_location="cpu") -> dict:
    """The dict ``TrainState.save`` wrote (RNG states included; nothing is applied yet)."""
    state = safe_load(path, map_location)
    missing = [k for k in ("model", "step", "epoch", "batch_in_epoch", "rng", "config") if k not in state] \
        if isinstance(state, dict) else ["(not a dict)"]
    if missing:
        raise CheckpointError(f"{path}: not a train state written by TrainState.save (missing {missing})")
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
