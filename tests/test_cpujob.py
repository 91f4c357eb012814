"""scripts/cpujob: one thread per queued job, waits while every core is taken, passes the exit code."""
from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cpujob"


def run(args, slots: Path, timeout: float = 20):
    env = dict(os.environ, XLT_SLOTS=str(slots))
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def assert_waits(marker: Path, slots: Path) -> None:
    """cpujob touch MARKER does not run within 3 s (it waits in the queue)."""
    try:
        run(["touch", str(marker)], slots, timeout=3)
        raise AssertionError("cpujob ran its command instead of waiting")
    except subprocess.TimeoutExpired:
        pass
    assert not marker.exists()


def test_one_thread_and_exit_code(tmp_path):
    out = run(["bash", "-c", "echo $OMP_NUM_THREADS $MKL_NUM_THREADS; exit 7"], tmp_path)
    assert out.stdout.split() == ["1", "1"] and out.returncode == 7
    assert run([], tmp_path).returncode == 2  # usage


def test_waits_while_every_core_is_held(tmp_path):
    held = []
    for i in range(len(os.sched_getaffinity(0))):  # every core (nproc) taken, as running jobs would
        f = open(tmp_path / f"slot{i}", "w")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(f)
    marker = tmp_path / "ran"
    assert_waits(marker, tmp_path)
    for f in held:
        f.close()  # the cores are free again: the job runs
    assert run(["touch", str(marker)], tmp_path).returncode == 0 and marker.exists()


def test_first_come_first_served(tmp_path):
    """Free cores, but an older live waiter in the queue: the newcomer waits for it (no jumping)."""
    (tmp_path / "queue").mkdir()
    older = tmp_path / "queue" / f"{1:019d}-{os.getpid()}"  # an old ticket of a live process (us)
    older.touch()
    marker = tmp_path / "ran"
    assert_waits(marker, tmp_path)
    dead = tmp_path / "queue" / f"{2:019d}-999999999"  # a killed waiter's ticket is skipped
    dead.touch()
    older.unlink()
    assert run(["touch", str(marker)], tmp_path).returncode == 0 and marker.exists()
    assert not any((tmp_path / "queue").iterdir())  # tickets cleaned up
