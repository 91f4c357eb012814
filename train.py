"""Train anything in this repo from one config file.

    python train.py configs/zeroshot_de.yaml                      # defaults < YAML < overrides
    python train.py configs/tiny_ner.yaml train.lr=3e-5 train.max_steps=10 profile.enabled=true
    python train.py configs/zeroshot_de.yaml --resume             # continue from runs/<name>/last.pt
    torchrun --nproc_per_node=2 train.py configs/zeroshot_de.yaml # DDP (gloo on CPU, nccl on CUDA)

``cfg.task`` picks a task builder from TASKS; the task either exposes ``run(cfg, run_dir)``
(pipelines such as zero-resource NER, or NER with its test pass) or is trained by
``core.loop.fit``. A builder that finds its checkpoint or data missing raises an error
naming it; that error is printed without a traceback and the exit code is 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from core.config import ConfigError, load_config, to_dict
from core.distributed import is_main_process


def _ner(cfg):
    from tasks.ner import build_task
    return build_task(cfg)


def _mlm(cfg):
    from tasks.mlm import build_task
    return build_task(cfg)


def _bilstm_crf(cfg):
    from tasks.bilstm_crf import build_task
    return build_task(cfg)


def _zeroresource(cfg):
    from tasks.zeroresource import build_task
    return build_task(cfg)


# Imports happen inside each builder, so a task whose module is missing breaks only itself.
TASKS = {"ner": _ner, "mlm": _mlm, "bilstm_crf": _bilstm_crf, "zeroresource": _zeroresource}

# Errors a builder raises for a missing checkpoint, data file or bad setting: printed cleanly.
SETUP_ERRORS = (FileNotFoundError, ValueError, ImportError, ConfigError)


def run_dir_for(cfg) -> Path:
    return Path(cfg.train.out_dir.format(name=cfg.train.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="YAML file (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-5")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    args = parser.parse_intermixed_args(argv)  # --resume before or after the overrides

    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if cfg.task not in TASKS:
        print(f"error: unknown task {cfg.task!r}; known: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    run_dir = run_dir_for(cfg)
    if args.resume and not (run_dir / "last.pt").is_file():
        print(f"note: --resume but no {run_dir / 'last.pt'}; starting from scratch", file=sys.stderr)

    try:
        task = TASKS[cfg.task](cfg)
    except SETUP_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    is_main = is_main_process()  # torchrun: rank 0 writes, every rank trains
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    cfg.train.resume = cfg.train.resume or args.resume  # fit() reads it; not written to config.yaml
    if hasattr(task, "run"):
        result = task.run(cfg, run_dir)
    else:
        from core.loop import fit
        result = fit(cfg, task, run_dir)
    summary = {k: v for k, v in result.items() if isinstance(v, (int, float, str))} if isinstance(result, dict) else {}
    if summary and is_main:
        print(json.dumps(summary))
    from core.distributed import cleanup
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
