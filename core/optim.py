"""AdamW parameter groups, learning-rate schedules and gradient clipping.

    optimizer = build_optimizer(model, cfg.train)             # decay / no-decay groups
    scheduler = build_scheduler(optimizer, cfg.train, total_steps)
    grad_norm = clip_grad_norm(model.parameters(), cfg.train.clip_grad_norm)

Weight decay follows the Hugging Face convention: every parameter decays except biases and
the weights of normalisation layers. With ``train.lazy_embedding_decay`` each large,
untied ``nn.Embedding`` (at least ``train.lazy_embedding_min_rows`` rows) is switched to
sparse gradients and updated row-lazily by ``core.lazy_adamw.LazyAdamW`` -- same numbers as
plain AdamW, without touching the rows no batch has used.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.lazy_adamw import LazyAdamW

NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.RMSNorm)


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get no weight decay: biases and normalisation weights."""
    names = set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name == "bias" or isinstance(module, NORM_LAYERS) or "layernorm" in module_name.lower().replace("_", ""):
                names.add(full)
    return names


def lazy_embeddings(model: nn.Module, min_rows: int) -> list[nn.Embedding]:
    """The embeddings worth updating row-lazily: big and not tied to any other parameter."""
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    return [m for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings >= min_rows
            and uses.get(id(m.weight)) == 1 and m.max_norm is None]


def build_optimizer(model: nn.Module, train_cfg, sparse_embeddings: bool = True) -> torch.optim.Optimizer:
    """AdamW (``LazyAdamW`` when lazy embeddings apply) with decay and no-decay groups.

    ``sparse_embeddings=False`` keeps dense embedding gradients (e.g. under DDP, which
    all-reduces dense buckets) while the optimizer still updates only touched rows.
    """
    skip_decay = no_decay_names(model)
    lazy = lazy_embeddings(model, train_cfg.lazy_embedding_min_rows) if train_cfg.lazy_embedding_decay else []
    lazy_ids = {id(m.weight) for m in lazy}
    decay, no_decay, lazy_params = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in lazy_ids:
            lazy_params.append(p)
        else:
            (no_decay if name in skip_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=train_cfg.lr, betas=tuple(train_cfg.adam_betas), eps=train_cfg.adam_eps)
    if train_cfg.fused_adamw and fused_supported(model):
        kwargs["fused"] = True
    if not lazy_params:
        return torch.optim.AdamW([g for g in groups if g["params"]], **kwargs)
    for module in lazy:
        module.sparse = sparse_embeddings
    groups.append({"params": lazy_params, "weight_decay": train_cfg.weight_decay, "lazy_rows": True})
    optimizer = LazyAdamW([g for g in groups if g["params"]], **kwargs)
    for module in lazy:
        optimizer.attach(module)  # rows a forward reads are brought up to date first
    return optimizer


def fused_supported(model: nn.Module) -> bool:
    """torch's fused AdamW runs on CPU and CUDA floating-point parameters."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in model.parameters())


def lr_lambda(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The multiplier of the base learning rate after ``step`` optimizer steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps  # the first step already trains (HF starts at 0)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"train.schedule must be linear, cosine or constant, got {schedule!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg, total_steps: int):
    """Linear warmup over ``warmup_ratio * total_steps``, then linear / cosine decay or constant."""
    warmup_steps = int(round(train_cfg.warmup_ratio * total_steps))
    lr_lambda(0, total_steps, warmup_steps, train_cfg.schedule)  # fail early on a bad schedule name
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_lambda(step, total_steps, warmup_steps, train_cfg.schedule))


@torch.no_grad()
def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` that also accepts sparse gradients (coalesced in place).

    Returns the total L2 norm before clipping as a 0-d fp32 tensor (no host sync);
    ``max_norm <= 0`` only measures.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()  # duplicates summed, so the norm of the values is the norm
    grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in params]
    same_dtype = len({g.dtype for g in grads}) == 1
    norms = torch._foreach_norm(grads) if same_dtype else [torch.linalg.vector_norm(g) for g in grads]
    dtype = torch.float64 if any(n.dtype == torch.float64 for n in norms) else torch.float32
    total = torch.linalg.vector_norm(torch.stack([n.to(grads[0].device, dtype) for n in norms]))  # ()
    if max_norm > 0:
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        if same_dtype:
            torch._foreach_mul_(grads, coef.to(grads[0].device, grads[0].dtype))
        else:
            for g in grads:
                g.mul_(coef.to(g.device, g.dtype))
    return total
