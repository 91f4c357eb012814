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


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is several times faster than two on a busy 2-core machine
    (the threads spin-wait for each other). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
