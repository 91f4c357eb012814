"""One run per folder: a lock while it runs, no silent overwrite of a finished run, and what it holds.

    claim_run_folder(run_dir, resume=False, overwrite=False)   # before any file is written; locked until exit
    ...train, test, export...
    finish_run_folder(run_dir, keep="all", result=result)      # prints the test table, the paths, the sizes

The lock is an ``flock`` on ``run_dir/.lock`` held until the process ends (however it ends: the
kernel drops it with the file descriptor, so a killed run leaves no stale lock). A second run with
the same ``train.name`` meanwhile is refused naming the folder and the holder's pid. A folder that
holds a finished run (a result file or an exported model/) or an unfinished one (a last.pt) is only
trained again with ``--resume`` (which continues or re-reports it) or ``--overwrite`` (which
empties it first). ``train.keep: model`` deletes the checkpoints (last.pt, best.pt and their
checksums) of every folder of the run that holds an exported model/ once the run has ended well:
the few GB a base-size run needs only while it trains.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from core.config import ConfigError

LOCK_NAME = ".lock"
# Files a run writes only once it has trained, tested or exported: their presence means "finished".
FINISHED_MARKERS = ("results.json", "results.md", "model", "mlm_summary.json", "extend_summary.json")
CHECKPOINTS = ("last.pt", "best.pt", "last.pt.sha256", "best.pt.sha256")

_held: dict[Path, int] = {}  # run folder -> descriptor of its lock file, held by this process


class RunFolderError(ConfigError):
    """A run folder that must not be written: in use by another run, or holding a run and no flag."""


def finished_markers(run_dir: str | Path) -> list[str]:
    """The names in ``run_dir`` that show a finished run (empty when none, or no folder)."""
    run_dir = Path(run_dir)
    return [name for name in FINISHED_MARKERS if (run_dir / name).exists()]


def check_not_finished(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """RunFolderError when ``run_dir`` holds a finished run, or an unfinished one (a last.pt), and
    neither flag says what to do with it."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in its folder and --overwrite empties it: pass one")
    done = finished_markers(run_dir)
    if overwrite:
        return
    if not done:
        saved = sorted(run_dir.glob("**/last.pt")) if run_dir.is_dir() else []
        if saved and not resume:  # an interrupted run: starting again would throw its steps away
            raise RunFolderError(f"{run_dir} holds an unfinished run ({saved[0]}); pass --resume to continue it, "
                                 f"--overwrite to start again from scratch, or give this run another train.name")
        return
    if not resume:
        raise RunFolderError(f"{run_dir} holds a finished run ({', '.join(done)}); pass --overwrite to train it "
                             f"again from scratch, --resume to continue or re-report it, or give this run "
                             f"another train.name")
    if not list(run_dir.glob("**/last.pt")):
        raise RunFolderError(f"{run_dir} holds a finished run whose checkpoints were removed (train.keep: model); "
                             f"nothing to resume: pass --overwrite to train it again, or another train.name")


def lock_run_folder(run_dir: str | Path) -> Path:
    """Create ``run_dir`` and hold an exclusive lock on it until the process ends (or
    ``unlock_run_folder``); RunFolderError naming the folder and the holder's pid when another
    process holds it. Returns the lock file."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    if run_dir.resolve() in _held:
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderError(f"{run_dir} is in use by another run (pid {holder}); wait for it to end, or give "
                             f"this run another train.name") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[run_dir.resolve()] = fd
    return path


def unlock_run_folder(run_dir: str | Path) -> None:
    """Release this process's lock on ``run_dir`` (the lock file stays; it holds no state)."""
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def claim_run_folder(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Lock ``run_dir`` for this run, then check it again under the lock (a run that finished
    meanwhile is not overwritten); ``overwrite`` empties it (all but the lock). Returns the folder."""
    run_dir = Path(run_dir)
    check_not_finished(run_dir, resume, overwrite)
    lock_run_folder(run_dir)
    check_not_finished(run_dir, resume, overwrite)
    if overwrite:
        for entry in run_dir.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return run_dir


def remove_checkpoints(run_dir: str | Path) -> list[Path]:
    """Delete last.pt, best.pt and their checksums in every folder of the run (``run_dir`` and its
    sub-folders, e.g. the few-shot sizes) that holds an exported model/; returns what went."""
    run_dir = Path(run_dir)
    exported = sorted({p.parent for p in [run_dir / "model", *run_dir.glob("**/model")] if p.is_dir()})
    removed = sorted(folder / name for folder in exported for name in CHECKPOINTS if (folder / name).is_file())
    for path in removed:
        path.unlink()
    return removed


def folder_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def contents_line(run_dir: str | Path) -> str:
    """'runs/x holds 1.2 GB: last.pt 800.0 MB, model/ 400.0 MB, ...' (largest first, hidden files left out)."""
    run_dir = Path(run_dir)
    entries = [(folder_size(p), p.name + ("/" if p.is_dir() else "")) for p in run_dir.iterdir()
               if not p.name.startswith(".")]
    entries.sort(key=lambda e: (-e[0], e[1]))
    total = sum(size for size, _ in entries)
    return f"{run_dir} holds {human_size(total)}: " + ", ".join(f"{name} {human_size(size)}" for size, name in entries)


def results_table(results_md: Path) -> str:
    """The head of results.md: its title, the line above the first table, and that table."""
    blocks = results_md.read_text(encoding="utf-8").strip().split("\n\n")
    shown = []
    for block in blocks:
        shown.append(block)
        if block.lstrip().startswith("|"):
            break
    return "\n\n".join(shown)


def finish_run_folder(run_dir: str | Path, keep: str = "all", result: dict | None = None, stream=None) -> list[str]:
    """The end of a successful run: with ``keep == "model"`` the checkpoints beside an exported model/
    go; then the test table (results.md), the scalar results, the paths to read next and what the folder
    holds are printed. Returns the printed lines."""
    run_dir = Path(run_dir)
    lines = []
    if keep == "model":
        removed = remove_checkpoints(run_dir)
        left = sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("**/*.pt") if p.name in CHECKPOINTS)
        lines.append(f"train.keep=model: removed {len(removed)} checkpoint files (last.pt, best.pt and checksums)"
                     + (f"; kept {', '.join(left)} (no exported model/ beside them)" if left else ""))
    results_md = run_dir / "results.md"
    if results_md.is_file():
        lines.append(results_table(results_md))
    summary = {k: v for k, v in (result or {}).items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    if summary:
        lines.append(json.dumps(summary))
    for name in ("results.md", "results.json", "model"):
        if (run_dir / name).exists():
            lines.append(f"{name + ':':14}{run_dir / name}")
    lines.append(contents_line(run_dir))
    text = "\n".join(lines)
    print(text, file=stream, flush=True)
    return lines


def interrupted_line(err: KeyboardInterrupt, argv: list[str], run_dir: str | Path) -> str:
    """The one line for Ctrl-C: what was saved, and the command that continues the run."""
    import shlex

    kept = [a for a in argv if a not in ("--resume", "--resume-force", "--overwrite")]
    command = shlex.join(["python", "train.py", *kept, "--resume"])
    if str(err).startswith("interrupted at step"):  # core.loop.TrainingInterrupted: saved at a step boundary
        return f"{err}; continue with: {command}"
    if list(Path(run_dir).glob("**/last.pt")):
        return f"interrupted; the steps since the last save of {run_dir}/last.pt are lost; continue with: {command}"
    return "interrupted; no checkpoint was saved yet"
