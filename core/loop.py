"""The one training loop every task shares: ``fit(cfg, task, run_dir)``.

A task provides ``build_model()``, ``train_batches(epoch, rank, world)`` (dicts of CPU
tensors with ``n_tokens``, the labelled tokens of the micro-batch; deterministic for
(seed, epoch) so a resumed run can skip what it already consumed), ``loss(model, batch)``
(the SUM of per-token losses, fp32), ``evaluate(model)`` and ``metric_name``.

One optimizer step = ``accum_steps`` micro-batches fetched up front. Each micro-batch's summed
loss is divided by the labelled tokens of the whole step (all ranks), so padding and uneven
micro-batches weigh every token the same; under DDP the loss is multiplied by the world size
because DDP averages gradients. The run directory gets config.yaml (the settings the loop ran
with, after any planning by the task), metrics.jsonl, last.pt (the whole train state), best.pt
(weights with the best dev metric) and, when profiling, trace.json/ops.txt.

Resume (``train.resume``) refuses a last.pt whose training-relevant settings differ (unless
``train.resume_allow_changes``), drops the metrics.jsonl records after the checkpoint's step and
the temp files of a killed save. Numerics: each step adds "loss or grad norm not finite" to a
device counter; it is read at logging steps and before every evaluation/save (no extra host sync
per step). In fp32/bf16 one such step raises ``NonFiniteError``; with the fp16 GradScaler (which
skips such steps and lowers its scale) only a log window in which every step was skipped does.
Weights that are not finite are never saved.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from core.checkpoint import (NonFiniteError, atomic_save, check_finite, check_resume_config, clean_stale_temps,
                             load_train_state, restore_train_state, save_last, set_rng_state, unwrap)
from core.distributed import all_reduce, barrier, init_distributed, local_device
from core.lazy_adamw import materialize
from core.logging import RunLogger, log_window, write_run_config
from core.optim import build_optimizer, build_scheduler, clip_grad_norm
from core.precision import autocast_context, build_grad_scaler, resolve_device, resolve_precision
from core.profiler import build_profiler

clock = time.perf_counter  # the time budget's clock (tests replace it)


def fit(cfg, task, run_dir: str | Path) -> dict:
    """Train ``task`` as ``cfg.train`` says; returns {"model", "best_metric", "metrics", "step"}."""
    t = cfg.train
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(t.device)
    dist_info = init_distributed(device)
    device = local_device(device, dist_info)
    precision = resolve_precision(t.precision, device)
    rank, world = dist_info.rank, dist_info.world
    model, optimizer, scheduler, scaler, total_steps, micro_per_epoch = build_training(task, t, device, precision,
                                                                                       rank, world)
    last_pt = run_dir / "last.pt"
    logger = RunLogger(run_dir, enabled=dist_info.is_main)
    step, epoch, batch_in_epoch, best = start_run(cfg, run_dir, logger, dist_info, model, optimizer, scheduler,
                                                  scaler, device)
    scaled = scaler.is_enabled()  # fp16: the scaler skips non-finite steps itself

    train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    profiler = build_profiler(cfg.profile, run_dir, device, enabled=dist_info.is_main)
    autocast = autocast_context(device, precision)
    logger.print(f"training {type(unwrap(model)).__name__} on {device} ({precision}, world {world}): "
                 f"{total_steps} steps x {t.accum_steps} micro-batches of {t.batch_size}"
                 + (f", resumed at step {step}" if step else ""))

    def checkpoint(evaluate: bool) -> None:
        nonlocal best, last_metrics
        check_numerics(window, count_nonfinite(window), window["steps"], step, scaled, scheduler)
        materialize(optimizer)  # on every rank, so DDP replicas stay identical
        check_finite(unwrap(model).state_dict(), f"step {step}: the weights")
        if evaluate:
            last_metrics = evaluate_and_keep_best(task, model, step, epoch, run_dir, logger, best, t.save_best,
                                                  dist_info.is_main)
            best = last_metrics.get("best_metric", best)
        save_last(last_pt, model, optimizer, scheduler, scaler, step, epoch, batch_in_epoch, best, cfg, dist_info)

    last_metrics: dict = {}
    window = {"loss": torch.zeros((), device=device), "nonfinite": torch.zeros((), device=device), "labelled": 0,
              "tokens": 0, "steps": 0, "start": time.perf_counter()}
    start, stop = clock(), False
    model.train()
    with profiler:
        while step < total_steps and not stop:
            batches = itertools.islice(task.train_batches(epoch, rank, world), batch_in_epoch, micro_per_epoch)
            steps_before = step
            for cpu_micro in chunks(batches, t.accum_steps):
                with profiler.phase("data"):
                    labelled = sum(int(b["n_tokens"]) for b in cpu_micro)  # CPU tensors: no device sync
                    window["tokens"] += sum(count_tokens(b) for b in cpu_micro)
                    micro = [to_device(b, device) for b in cpu_micro]
                loss_sum, grad_norm = train_step(train_model, task, micro, labelled, optimizer, scheduler, scaler,
                                                 autocast, device, world, t.clip_grad_norm, profiler)
                profiler.step()
                step, batch_in_epoch = step + 1, batch_in_epoch + len(micro)
                window["loss"] += loss_sum
                window["nonfinite"] += ~(torch.isfinite(loss_sum) & torch.isfinite(grad_norm))  # on device
                window["labelled"] += labelled
                window["steps"] += 1
                if step % t.log_every == 0 or step == total_steps:
                    steps_in_window = window["steps"]
                    record = log_window(window, step, total_steps, epoch, scheduler, grad_norm, logger)
                    check_numerics(window, record["nonfinite_steps"], steps_in_window, step, scaled, scheduler)
                stop = out_of_time(start, t.time_budget_minutes, device)
                evaluate = (t.eval_every and step % t.eval_every == 0) or step == total_steps or stop
                if evaluate or (t.save_every and step % t.save_every == 0):
                    checkpoint(evaluate)
                if stop:
                    logger.print(f"time budget of {t.time_budget_minutes} min reached at step {step}")
                if step == total_steps or stop:
                    break
            else:  # the epoch ran out of batches
                if step == steps_before and batch_in_epoch == 0:
                    raise ValueError(f"epoch {epoch} yields no training batches")
                epoch, batch_in_epoch = epoch + 1, 0
                if not t.eval_every and step < total_steps:
                    checkpoint(evaluate=True)
    materialize(optimizer)
    return {"model": unwrap(model), "best_metric": best, "metrics": last_metrics, "step": step}


def build_training(task, t, device, precision: str, rank: int, world: int):
    """Model, optimizer, schedule and scaler; total steps from max_steps or epochs x batches per epoch."""
    seed_everything(t.seed)  # the same initial weights on every rank
    model = task.build_model().to(device)
    optimizer = build_optimizer(model, t, sparse_embeddings=world == 1)
    micro_per_epoch = count_micro_batches(task, rank, world, device) if (world > 1 or not t.max_steps) else None
    steps_per_epoch = math.ceil(micro_per_epoch / t.accum_steps) if micro_per_epoch else None
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    scheduler = build_scheduler(optimizer, t, total_steps)
    scaler = build_grad_scaler(device, precision)
    seed_everything(t.seed + rank)  # dropout differs per rank, as with independent workers
    return model, optimizer, scheduler, scaler, total_steps, micro_per_epoch


def start_run(cfg, run_dir: Path, logger, dist_info, model, optimizer, scheduler, scaler, device):
    """Prepare the run folder: stale temp files removed; on a resume last.pt checked and loaded and
    metrics.jsonl cut back to its step; on a fresh start a fresh log and no old best.pt; then
    config.yaml. Returns (step, epoch, batch_in_epoch, best)."""
    last_pt = run_dir / "last.pt"
    state = (0, 0, 0, None)
    if dist_info.is_main:
        clean_stale_temps(run_dir)  # a save killed half-way left its temp file
    if cfg.train.resume and last_pt.is_file():
        *state, changes = resume(last_pt, cfg, model, optimizer, scheduler, scaler, device, dist_info.rank)
        logger.truncate_after(state[0])  # the records of steps after the checkpoint are re-made
        if changes:
            logger.print(f"note: resuming with changed settings (train.resume_allow_changes): {changes}")
            logger.log({"step": state[0], "resume_changes": {k: list(v) for k, v in changes.items()}})
    elif dist_info.is_main:  # a fresh log, and no best.pt of an earlier run to be tested by mistake
        logger.truncate_after(-1)
        (run_dir / "best.pt").unlink(missing_ok=True)
    if dist_info.is_main:
        write_run_config(cfg, run_dir)
    return tuple(state)


def resume(last_pt: Path, cfg, model, optimizer, scheduler, scaler, device, rank: int):
    """Check last.pt's settings against ``cfg``, load it into the live objects and this rank's RNG;
    returns (step, epoch, batch_in_epoch, best, the allowed setting changes)."""
    state = load_train_state(last_pt, map_location=device)
    changes = check_resume_config(state["config"], cfg, last_pt)
    restore_train_state(state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                        restore_rng=False)
    rngs = state["extra"].get("rng_per_rank")
    set_rng_state(rngs[rank] if rngs and rank < len(rngs) else state["rng"])
    return state["step"], state["epoch"], state["batch_in_epoch"], state["best_metric"], changes


def count_nonfinite(window) -> int:
    """Steps of the current log window whose loss or grad norm was not finite (one host sync, all ranks)."""
    return int(all_reduce(window["nonfinite"].clone()).item())


def check_numerics(window, nonfinite: int, steps: int, step: int, scaled: bool, scheduler) -> None:
    """Raise NonFiniteError when the window's non-finite steps mean the run diverged: any of them in
    fp32/bf16 (the update already used them), all of them under the fp16 GradScaler (which skips a
    few overflowing steps by design)."""
    window["nonfinite"].zero_()
    if nonfinite == 0 or (scaled and nonfinite < steps):
        return
    raise NonFiniteError(
        f"step {step}: the loss or gradient norm was NaN/infinite in {nonfinite} of the last {steps} steps "
        f"(lr {scheduler.get_last_lr()[0]:.3g}); training stopped. last.pt and best.pt keep the last "
        f"checkpoint before it (weights are never saved non-finite); lower train.lr or check the data")


def train_step(model, task, micro: list[dict], labelled: int, optimizer, scheduler, scaler, autocast, device,
               world: int, clip: float, profiler) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over the micro-batches (``labelled`` tokens on this rank).

    Returns (summed loss, grad norm) as device tensors.
    """
    total = all_reduce(torch.tensor(float(labelled), device=device)).clamp_min(1.0)  # labelled tokens, all ranks
    loss_sum = torch.zeros((), device=device)
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        sync = contextlib.nullcontext() if last or world == 1 else model.no_sync()
        with sync:
            with profiler.phase("loss"), forward_phase(model, profiler), autocast:
                summed = task.loss(model, batch).float()  # () sum over this micro-batch's tokens
            with profiler.phase("backward"):
                scaler.scale(summed * (world / total)).backward()
        loss_sum += summed.detach()
    with profiler.phase("optimizer"):
        scaler.unscale_(optimizer)  # clip the true gradients (no-op unless fp16)
        grad_norm = clip_grad_norm(unwrap(model).parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


@contextlib.contextmanager
def forward_phase(model, profiler):
    """Label the model's own forward "forward" inside the task's "loss" range (profiling only)."""
    if not profiler.enabled:
        yield
        return
    ranges = []
    module = unwrap(model)
    pre = module.register_forward_pre_hook(lambda *_: ranges.append(torch.profiler.record_function("forward").__enter__()))
    post = module.register_forward_hook(lambda *_: ranges.pop().__exit__(None, None, None))
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def evaluate_and_keep_best(task, model, step, epoch, run_dir, logger, best, save_best, is_main) -> dict:
    """Rank 0 evaluates; best.pt keeps the weights with the highest ``task.metric_name``."""
    metrics: dict = {}
    if is_main:
        model.eval()
        with torch.no_grad():
            metrics = dict(task.evaluate(unwrap(model)))
        model.train()
        value = float(metrics[task.metric_name])
        if best is None or value > best:
            best = value
            if save_best:
                check_finite(unwrap(model).state_dict(), f"step {step}: best.pt")
                atomic_save({"model": unwrap(model).state_dict(), "step": step, task.metric_name: value},
                            Path(run_dir) / "best.pt")
        metrics["best_metric"] = best
        logger.log({"step": step, "epoch": epoch, **metrics})
        logger.print(f"eval step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    barrier()
    return metrics


def count_micro_batches(task, rank: int, world: int, device) -> int:
    """Micro-batches per epoch (epoch 0); under DDP the minimum over ranks keeps them in lockstep."""
    batches = task.train_batches(0, rank, world)
    n = len(batches) if hasattr(batches, "__len__") else sum(1 for _ in batches)
    n = torch.tensor(n, device=device)
    all_reduce(n, op=torch.distributed.ReduceOp.MIN)
    if int(n) == 0:
        raise ValueError("the task yields no training batches")
    return int(n)


def count_tokens(batch: dict) -> int:
    """Input tokens of a CPU batch (attention mask), else its labelled tokens."""
    mask = batch.get("attention_mask")
    return int(batch["n_tokens"]) if mask is None else int(mask.sum())


def chunks(iterable, size: int):
    """Lists of ``size`` consecutive items (the last one may be shorter)."""
    iterator = iter(iterable)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to ``device`` (pinned + non_blocking on CUDA); other values as they are."""
    def move(value):
        if not torch.is_tensor(value) or value.device == device:
            return value
        if device.type == "cuda" and not value.is_pinned():
            value = value.pin_memory()
        return value.to(device, non_blocking=True)
    return {k: move(v) for k, v in batch.items()}


def out_of_time(start: float, budget_minutes: float, device) -> bool:
    if budget_minutes <= 0:
        return False
    flag = torch.tensor(float(clock() - start > 60 * budget_minutes), device=device)
    return bool(all_reduce(flag, op=torch.distributed.ReduceOp.MAX) > 0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
