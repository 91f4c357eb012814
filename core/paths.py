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
