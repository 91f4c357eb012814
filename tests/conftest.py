"""Shared fixtures: the public data root and a fixed seed."""
from __future__ import annotations

import os

import pytest
import torch

from core.paths import data_root as _data_root


def require_data(root) -> None:
    """Skip a test that needs the public data when it is missing; in CI (``CI=true``, which CI
    services set) fail instead, so a green CI run cannot have tested nothing."""
    if (root / "panx").is_dir():
        return
    message = f"public data not found at {root} (set XLT_DATA_ROOT)"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}; CI=true, so a missing data set is a failure, not a skip", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def data_root():
    root = _data_root()
    require_data(root)
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
