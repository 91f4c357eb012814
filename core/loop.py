"""The one training loop every task shares: ``fit(cfg, task, run_dir)``.

A task provides ``build_model()``, ``train_batches(epoch, rank, world)`` (dicts of CPU
tensors with ``n_tokens``, the labelled tokens of the micro-batch; deterministic for
(seed, epoch) so a resumed run can skip what it already consumed), ``loss(model, batch)``
(the SUM of per-token losses, fp32), ``evaluate(model)`` and ``metric_name``.

The loop advances one ``core.train_state.TrainState`` (model, optimizer, schedule, scaler, step,
epoch, micro-batches consumed, best metric) and saves it as last.pt. One optimizer step =
``accum_steps`` micro-batches fetched up front. Each micro-batch's summed loss is divided by the
labelled tokens of the whole step (all ranks), so padding and uneven micro-batches weigh every
token the same; under DDP the loss is multiplied by the world size because DDP averages gradients.
The run directory gets config.yaml (the settings the loop ran with, after any planning by the
task), metrics.jsonl, last.pt (the whole train state), best.pt (weights with the best dev metric),
each with a ``.sha256`` beside it, and, when profiling, trace.json/ops.txt.

Resume (``train.resume``) refuses a last.pt whose training-relevant settings differ (unless
``train.resume_allow_changes``), checks best.pt before any step (a missing one is re-made from
last.pt's weights), drops the metrics.jsonl records after the checkpoint's step and the temp files
of a killed save. Ctrl-C (SIGINT) is read at the next step boundary: last.pt is saved there and
``TrainingInterrupted`` raised (a second Ctrl-C interrupts at once, saving nothing). Numerics: each
step adds "loss or grad norm not finite" to a device counter; it is read at logging steps and
before every evaluation/save (no extra host sync per step). In fp32/bf16 one such step raises
``NonFiniteError``; with the fp16 GradScaler (which skips such steps and lowers its scale) only a
log window in which every step was skipped does. Weights that are not finite are never saved.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from core.checkpoint import (NonFiniteError, atomic_save, check_finite, check_resume_config, checksum_path,
                             clean_stale_temps, load_train_state, rng_state, safe_load, set_rng_state)
from core.distributed import all_reduce, any_rank, barrier, init_distributed, local_device, unwrap, world_size
from core.lazy_adamw import materialize
from core.logging import RunLogger, log_window, write_run_config
from core.optim import build_optimizer, build_scheduler, clip_grad_norm
from core.precision import autocast_context, build_grad_scaler, resolve_device, resolve_precision
from core.profiler import Profiler, build_profiler
from core.train_state import TrainState

clock = time.perf_counter  # the time budget's clock (tests replace it)
NO_PROFILER = Profiler(False, ".", torch.device("cpu"))


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after last.pt was saved at a step boundary (``path``, ``step``)."""

    def __init__(self, path: Path, step: int, total_steps: int):
        super().__init__(f"interrupted at step {step} of {total_steps}; saved {path}")
        self.path, self.step = path, step


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
    state, total_steps, micro_per_epoch = build_training(task, t, device, precision, rank, world)
    last_pt = run_dir / "last.pt"
    logger = RunLogger(run_dir, enabled=dist_info.is_main)
    resumed = start_run(cfg, run_dir, logger, dist_info, state, device)
    scaled = state.scaler.is_enabled()  # fp16: the scaler skips non-finite steps itself

    model = state.model
    train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    profiler = build_profiler(cfg.profile, run_dir, device, enabled=dist_info.is_main)
    autocast = autocast_context(device, precision)
    logger.print(f"training {type(model).__name__} on {device} ({precision}, world {world}): "
                 f"{total_steps} steps x {t.accum_steps} micro-batches of {t.batch_size}"
                 + (f", resumed at step {state.step}" if resumed else ""))
    if resumed and t.save_best and state.best is not None and best_missing(run_dir, device):
        remake_best(task, state, run_dir, logger, dist_info.is_main)

    def checkpoint(evaluate: bool) -> None:
        nonlocal last_metrics
        check_numerics(window, count_nonfinite(window), window["steps"], state.step, scaled, state.scheduler)
        materialize(state.optimizer)  # on every rank, so DDP replicas stay identical
        check_finite(model.state_dict(), f"step {state.step}: the weights")
        if evaluate:
            last_metrics = evaluate_and_keep_best(task, model, state.step, state.epoch, run_dir, logger, state.best,
                                                  t.save_best, dist_info.is_main)
            state.best = last_metrics.get("best_metric", state.best)
        state.save(last_pt, config=cfg)

    last_metrics: dict = {}
    window = {"loss": torch.zeros((), device=device), "nonfinite": torch.zeros((), device=device), "labelled": 0,
              "tokens": 0, "steps": 0, "start": time.perf_counter()}
    start, stop = clock(), False
    model.train()
    with interrupt_flag() as ctrl_c, profiler:
        while state.step < total_steps and not stop:
            batches = itertools.islice(task.train_batches(state.epoch, rank, world), state.batch_in_epoch,
                                       micro_per_epoch)
            steps_before = state.step
            for cpu_micro in chunks(batches, t.accum_steps):
                with profiler.phase("data"):
                    labelled = sum(int(b["n_tokens"]) for b in cpu_micro)  # CPU tensors: no device sync
                    window["tokens"] += sum(count_tokens(b) for b in cpu_micro)
                    micro = [to_device(b, device) for b in cpu_micro]
                loss_sum, grad_norm = train_step(state, task, micro, labelled, autocast, t.clip_grad_norm, profiler,
                                                 model=train_model)  # state.step += 1
                profiler.step()
                window["loss"] += loss_sum
                window["nonfinite"] += ~(torch.isfinite(loss_sum) & torch.isfinite(grad_norm))  # on device
                window["labelled"] += labelled
                window["steps"] += 1
                logging_step = state.step % t.log_every == 0 or state.step == total_steps
                if logging_step:
                    steps_in_window = window["steps"]
                    record = log_window(window, state.step, total_steps, state.epoch, state.scheduler, grad_norm,
                                        logger)
                    check_numerics(window, record["nonfinite_steps"], steps_in_window, state.step, scaled,
                                   state.scheduler)
                stop = out_of_time(start, t.time_budget_minutes, device)
                interrupted = ctrl_c.pressed(world, logging_step, device)
                evaluate = (t.eval_every and state.step % t.eval_every == 0) or state.step == total_steps or stop
                if evaluate or interrupted or (t.save_every and state.step % t.save_every == 0):
                    checkpoint(evaluate)
                if interrupted and state.step < total_steps:
                    raise TrainingInterrupted(last_pt, state.step, total_steps)
                if stop:
                    logger.print(f"time budget of {t.time_budget_minutes} min reached at step {state.step}")
                if state.step == total_steps or stop:
                    break
            else:  # the epoch ran out of batches
                if state.step == steps_before and state.batch_in_epoch == 0:
                    raise ValueError(f"epoch {state.epoch} yields no training batches")
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if not t.eval_every and state.step < total_steps:
                    checkpoint(evaluate=True)
    materialize(state.optimizer)
    return {"model": model, "best_metric": state.best, "metrics": last_metrics, "step": state.step}


def build_training(task, t, device, precision: str, rank: int, world: int):
    """The TrainState at step 0 (model, optimizer, schedule, scaler); total steps from max_steps or
    epochs x batches per epoch; micro-batches per epoch (None when max_steps alone decides)."""
    seed_everything(t.seed)  # the same initial weights on every rank
    model = task.build_model().to(device)
    optimizer = build_optimizer(model, t, sparse_embeddings=world == 1)
    micro_per_epoch = count_micro_batches(task, rank, world, device) if (world > 1 or not t.max_steps) else None
    steps_per_epoch = math.ceil(micro_per_epoch / t.accum_steps) if micro_per_epoch else None
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    scheduler = build_scheduler(optimizer, t, total_steps)
    scaler = build_grad_scaler(device, precision)
    seed_everything(t.seed + rank)  # dropout differs per rank, as with independent workers
    return TrainState(model, optimizer, scheduler, scaler), total_steps, micro_per_epoch


def start_run(cfg, run_dir: Path, logger, dist_info, state: TrainState, device) -> bool:
    """Prepare the run folder: stale temp files removed; on a resume last.pt checked (settings,
    checksum) and loaded into ``state``, best.pt checked, metrics.jsonl cut back to the saved step;
    on a fresh start a fresh log and no old best.pt; then config.yaml. Returns whether it resumed."""
    last_pt, best_pt = run_dir / "last.pt", run_dir / "best.pt"
    if dist_info.is_main:
        clean_stale_temps(run_dir)  # a save killed half-way left its temp file
    resumed = bool(cfg.train.resume and last_pt.is_file())
    if resumed:
        saved = load_train_state(last_pt, map_location=device)
        changes = check_resume_config(saved["config"], cfg, last_pt)
        if dist_info.is_main and cfg.train.save_best and best_pt.is_file():
            safe_load(best_pt, mmap=True)  # a corrupt best.pt is found now, not after the remaining steps
        state.restore(saved, dist_info.rank)
        del saved
        logger.truncate_after(state.step)  # the records of steps after the checkpoint are re-made
        if changes:
            logger.print(f"note: resuming with changed settings (train.resume_allow_changes): {changes}")
            logger.log({"step": state.step, "resume_changes": {k: list(v) for k, v in changes.items()}})
    elif dist_info.is_main:  # a fresh log, and no best.pt of an earlier run to be tested by mistake
        logger.truncate_after(-1)
        for stale in (best_pt, checksum_path(best_pt)):
            stale.unlink(missing_ok=True)
    if dist_info.is_main:
        write_run_config(cfg, run_dir)
    return resumed


def best_missing(run_dir: Path, device) -> bool:
    """Whether best.pt is missing (on any rank: every rank gets the same answer)."""
    return any_rank(not (run_dir / "best.pt").is_file(), device)


def remake_best(task, state: TrainState, run_dir: Path, logger, is_main: bool) -> None:
    """best.pt from the resumed weights when a resume finds none although last.pt has a best metric
    (the file was deleted, e.g. after it was reported corrupt): they are evaluated now, become the
    best so far, and later evaluations must beat them. The RNG states are put back, so the steps that
    follow are those of an uninterrupted run."""
    rngs = rng_state()
    materialize(state.optimizer)
    metrics = evaluate_and_keep_best(task, state.model, state.step, state.epoch, run_dir, logger, None, True,
                                     is_main)
    set_rng_state(rngs)
    state.best = metrics.get("best_metric")
    logger.print(f"note: {run_dir / 'best.pt'} was missing; re-made from last.pt's weights (step {state.step}); "
                 f"a better earlier checkpoint, if there was one, is lost")


class interrupt_flag:
    """While training: Ctrl-C (SIGINT) sets a flag that the loop reads after the step it interrupts;
    a second Ctrl-C raises KeyboardInterrupt at once. Only the main thread can own a signal handler;
    elsewhere the flag never sets. Under torchrun every rank gets the signal and the ranks agree at
    the next logging step (one all-reduce there), so they save the same step."""

    def __init__(self):
        self.set = False
        self.previous = None

    def _handler(self, signum, frame) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True
        print("interrupt: saving last.pt after this step (Ctrl-C again to stop at once, without saving)",
              flush=True)  # stdout, with the progress lines: stderr gets only the final line

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def pressed(self, world: int, logging_step: bool, device) -> bool:
        """Whether to stop now: this process's flag alone, or under DDP any rank's at a logging step."""
        if world > 1 and not logging_step:
            return False
        return any_rank(self.set, device)


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


def train_step(state: TrainState, task, micro: list[dict], labelled: int | None = None,
               autocast=contextlib.nullcontext(), clip: float = 0.0, profiler: Profiler = NO_PROFILER,
               model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over the micro-batches (``labelled`` tokens on this rank, all micro-batches;
    None = the sum of their ``n_tokens``), under the ``autocast`` context, gradients clipped to norm
    ``clip`` (0 = off). ``model`` runs the forward: the DDP wrapper of ``state.model`` under torchrun
    (``state.model`` when None). Advances ``state.step`` and ``state.batch_in_epoch``; returns (summed
    loss, pre-clip grad norm) as device tensors.
    """
    model = state.model if model is None else model
    labelled = sum(int(b["n_tokens"]) for b in micro) if labelled is None else labelled
    world = world_size()
    device = next(unwrap(model).parameters()).device
    if world == 1:  # a Python number: a device tensor made from one would cost a host sync every step
        total = max(float(labelled), 1.0)
    else:  # labelled tokens, all ranks
        total = all_reduce(torch.tensor(float(labelled), device=device)).clamp_min(1.0)
    loss_sum = torch.zeros((), device=device)
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        sync = contextlib.nullcontext() if last or world == 1 else model.no_sync()
        with sync:
            with profiler.phase("loss"), forward_phase(model, profiler), autocast:
                summed = task.loss(model, batch).float()  # () sum over this micro-batch's tokens
            with profiler.phase("backward"):
                state.scaler.scale(summed * (world / total)).backward()
        loss_sum += summed.detach()
    with profiler.phase("optimizer"):
        state.scaler.unscale_(state.optimizer)  # clip the true gradients (no-op unless fp16)
        grad_norm = clip_grad_norm(unwrap(model).parameters(), clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.scheduler.step()
        state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.batch_in_epoch += len(micro)
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
    return any_rank(clock() - start > 60 * budget_minutes, device)  # every step: no host sync in one process


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
