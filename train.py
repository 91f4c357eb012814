"""Train anything in this repo from one config file.

    python train.py configs/zeroshot_de.yaml                      # defaults < YAML < overrides
    python train.py configs/tiny_ner.yaml train.lr=3e-5 train.max_steps=10 profile.enabled=true
    python train.py configs/zeroshot_de.yaml --resume             # continue from runs/<name>/last.pt
    torchrun --nproc_per_node=2 train.py configs/zeroshot_de.yaml # DDP (gloo on CPU, nccl on CUDA)
    python train.py --list                                        # the configs, what each needs first
    python train.py tiny_ner --print-config                       # a bare name is configs/tiny_ner.yaml

``cfg.task`` picks a task builder from TASKS; every task is a ``core.task.Runnable`` and
``task.run(cfg, run_dir)`` does its whole job (fit, test, export; the tested and exported
weights are the best-dev ones from best.pt). Exit codes: 0 done; 2 a bad config, input file,
checkpoint or resume (one line naming the file or key, no traceback, printed before the long
work where it can be checked); 3 training diverged (NaN/inf loss or gradients, nothing NaN saved).
``--resume`` continues from last.pt and refuses changed training settings; ``--resume-force``
allows them (train.resume_allow_changes).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from core.catalog import resolve_config
from core.config import ConfigError, load_config
from core.distributed import is_main_process
from core.run_folder import (check_not_finished, claim_run_folder, finish_run_folder, interrupted_line,
                             unlock_run_folder)


def _builder(module: str):
    """``module.build_task``, imported only when that task is run: a task whose module is
    missing or broken breaks only itself."""
    def build(cfg):
        return importlib.import_module(module).build_task(cfg)
    build.__name__ = f"{module}.build_task"
    return build


# task name (the config's ``task``) -> its builder; each module is tasks/<file>.py with build_task(cfg)
TASKS = {name: _builder(f"tasks.{name}") for name in
         ("ner", "mlm", "bilstm_crf", "zeroresource", "relation", "align", "extend")}

# Errors a builder raises for a missing checkpoint, data file or bad setting: printed cleanly.
SETUP_ERRORS = (FileNotFoundError, ValueError, ImportError, ConfigError)


def run_dir_for(cfg) -> Path:
    from core.paths import run_dir
    return run_dir(cfg.train)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", help="YAML file, or a bare name in configs/ (tiny_ner)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-5")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--resume-force", action="store_true",
                        help="--resume even if training settings differ from last.pt's (they are listed)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train again in the folder of a finished run (its contents are deleted first)")
    parser.add_argument("--list", action="store_true", help="list the configs: header line, what each needs first")
    parser.add_argument("--print-config", action="store_true",
                        help="print the merged config (defaults < YAML < overrides) as YAML; nothing is run")
    args = parser.parse_intermixed_args(argv)  # --resume before or after the overrides
    if args.list:
        return print_config_list()
    if args.config is None:
        parser.error("give a config (a YAML file or a name in configs/; --list shows them)")

    from core.checkpoint import CheckpointError, NonFiniteError

    try:
        cfg = load_config(resolve_config(args.config), args.overrides)
        if cfg.task not in TASKS:
            raise ConfigError(f"{args.config}: 'task' must be one of {', '.join(map(repr, TASKS))}; got {cfg.task!r}")
        if args.print_config:
            import yaml

            from core.config import to_dict
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return 0
        run_dir = run_dir_for(cfg)
        cfg.train.resume = cfg.train.resume or args.resume or args.resume_force  # config.yaml keeps it false
        cfg.train.resume_allow_changes = cfg.train.resume_allow_changes or args.resume_force
        check_not_finished(run_dir, cfg.train.resume, args.overwrite)
        if cfg.train.resume:
            check_resumable(run_dir)
    except (ConfigError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    try:
        task = TASKS[cfg.task](cfg)
    except SETUP_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from core.logging import write_run_config
    from core.task import Runnable

    if not isinstance(task, Runnable):
        print(f"error: task {cfg.task!r} ({type(task).__name__}) has no run(cfg, run_dir) (core.task.Runnable)",
              file=sys.stderr)
        return 2
    if cfg.train.resume and (run_dir / "last.pt").is_file():  # after build_task: it may plan settings
        from core.checkpoint import check_resume_config, safe_load
        try:
            check_resume_config(safe_load(run_dir / "last.pt", mmap=True)["config"], cfg, run_dir / "last.pt")
        except (ConfigError, CheckpointError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:  # one run per folder: locked until this process ends; a finished run is not overwritten
        claim_run_folder(run_dir, cfg.train.resume, args.overwrite) if is_main_process() else run_dir.mkdir(
            parents=True, exist_ok=True)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if is_main_process() and not (cfg.train.resume and (run_dir / "config.yaml").is_file()):
        write_run_config(cfg, run_dir)  # fit() rewrites it after a task's planning; a resume checks first
    try:
        result = task.run(cfg, run_dir)
    except (ConfigError, CheckpointError) as err:  # e.g. a resume refused for changed settings
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as err:  # Ctrl-C: fit saved last.pt at a step boundary (core.loop.TrainingInterrupted)
        print(interrupted_line(err, sys.argv[1:] if argv is None else argv, run_dir), file=sys.stderr)
        return 130
    finally:
        unlock_run_folder(run_dir)
    if is_main_process():  # the test table, where results.md and model/ are, what the folder holds
        finish_run_folder(run_dir, cfg.train.keep, result if isinstance(result, dict) else None)
    from core.distributed import cleanup
    cleanup()
    return 0


def print_config_list() -> int:
    """``--list``: each config in configs/, the configs it needs first (in the order to run them), its header."""
    from core.catalog import list_configs

    rows = list_configs()
    width = max(len(r.name) for r in rows) + 2
    for row in rows:
        print(f"{row.name:<{width}}{row.header}")
        if row.needs or row.downloads:
            print(f"{'':<{width}}needs first: {' -> '.join(row.needs + [f'{d} (download)' for d in row.downloads])}")
        if row.problem:
            print(f"{'':<{width}}does not load: {row.problem}")
    return 0


def check_resumable(run_dir: Path) -> None:
    """Before any work: every last.pt and best.pt of the run (pipelines and few-shot sizes keep them
    per stage) must load safely (weights only), whole and with a matching checksum; no last.pt at
    all is a note (the run starts from scratch)."""
    from core.checkpoint import safe_load

    found = sorted(run_dir.glob("**/last.pt")) if run_dir.is_dir() else []
    for path in found + sorted(run_dir.glob("**/best.pt")):
        safe_load(path, mmap=True)  # CheckpointError: unsafe, truncated, corrupt or a checksum mismatch
    if not found:
        print(f"note: --resume but no {run_dir / 'last.pt'}; starting from scratch", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python train.py --list | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit must not fail again
        sys.exit(1)
