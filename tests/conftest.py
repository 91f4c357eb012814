"""Shared fixtures: the public data root and a fixed seed."""
from __future__ import annotations

import pytest
import torch

from core.paths import data_root as _data_root


@pytest.fixture
def data_root():
    root = _data_root()
    if not (root / "panx").is_dir():
        pytest.skip(f"public data not found at {root} (set XLT_DATA_ROOT)")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
