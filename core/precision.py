"""Device and numeric precision: chosen once, used by one autocast context.

    device = resolve_device(cfg.train.device)               # cpu | cuda
    precision = resolve_precision(cfg.train.precision, device)  # fp32 | bf16 | fp16
    with autocast_context(device, precision):
        loss = task.loss(model, batch)                      # losses themselves are reduced in fp32
    scaler = build_grad_scaler(device, precision)           # active for fp16 only

``auto`` picks bf16 where the hardware runs it natively (CUDA with bf16 support; a CPU with
AMX or AVX512-BF16, detected through oneDNN or /proc/cpuinfo, never assumed), fp16 with a
GradScaler on older CUDA GPUs, fp32 otherwise.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available")
    return device


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmuls (AMX or AVX512-BF16)."""
    try:
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True
    except (AttributeError, RuntimeError):
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set(cpuinfo.read_text(errors="ignore").split())
        return bool(flags & {"amx_bf16", "avx512_bf16"})
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The concrete precision (fp32 | bf16 | fp16) for ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_supports_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs CUDA (it trains with a GradScaler); use bf16 or fp32 on CPU")
    return precision


def autocast_context(device: torch.device | str, precision: str):
    """The one autocast context of a run (a no-op context for fp32)."""
    device = torch.device(device)
    if precision == "auto":
        precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def build_grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 (bf16 has fp32's exponent range)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
