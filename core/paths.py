"""Where data, caches and runs live: one place to resolve them.

The data root holds PAN-X and the other public sets (here ``../shared/data``); it is
never copied into the repository. Set ``XLT_DATA_ROOT`` to point elsewhere.
The cache holds downloaded checkpoints and data files (``XLT_CACHE``, default
``~/.cache/xlt``).
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The folder with the public data sets: $XLT_DATA_ROOT, else ../shared/data."""
    env = os.environ.get("XLT_DATA_ROOT")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    """Our download cache: $XLT_CACHE, else ~/.cache/xlt."""
    env = os.environ.get("XLT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xlt"


def confined(root: str | Path, relative: str | Path, key: str) -> Path:
    """``root / relative``, refused unless it names something strictly inside ``root``.

    For paths that come from a config or a server (run names, download layouts): an empty
    path (which would be ``root`` itself), an absolute path, or a ``..`` part is a
    ``ConfigError`` naming ``key``. Symlinks already inside ``root`` are followed and must
    stay inside it too.
    """
    from core.config import ConfigError  # core.config does not import this module

    text = str(relative)
    parts = Path(text).parts
    if not text.strip() or not parts or text.strip() in (".", "./"):
        raise ConfigError(f"{key}: empty path; it would name {root} itself")
    if Path(text).is_absolute() or "\\" in text or ".." in parts or "\x00" in text:
        raise ConfigError(f"{key}: {text!r} must be a relative path inside {root} (no '..', no absolute path)")
    root_resolved = Path(root).resolve()
    target = (Path(root) / text).resolve()
    if target == root_resolved or root_resolved not in target.parents:
        raise ConfigError(f"{key}: {text!r} leaves {root} (resolves to {target})")
    return Path(root) / text


def run_dir(train) -> Path:
    """The run folder ``train.out_dir`` names (``runs/{name}``), with ``{name}`` confined to the folder
    before it: an empty name, ``..`` or a path separator is a ConfigError naming ``train.name``; the
    only placeholder out_dir may hold is ``{name}`` (no attribute access, no format spec)."""
    import string

    from core.config import ConfigError

    out_dir, name = train.out_dir, train.name
    fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(out_dir) if f is not None]
    if any(f != "name" or spec or conv for f, spec, conv in fields):
        raise ConfigError(f"train.out_dir: only the placeholder {{name}} is allowed, got {out_dir!r}")
    if not fields:
        return Path(out_dir)
    if not name.strip():
        raise ConfigError(f"train.name is empty: the run would write into {out_dir.split('{')[0] or '.'} itself")
    if "/" in name or "\\" in name:
        raise ConfigError(f"train.name: {name!r} must be one folder name (no path separators)")
    prefix = out_dir.split("{", 1)[0]
    root = prefix if prefix.endswith("/") else os.path.dirname(prefix)
    return confined(root or ".", out_dir[len(root):].format(name=name), "train.name")
