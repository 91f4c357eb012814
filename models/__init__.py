"""XLM-R encoder, heads and weight import.

    from models import load_pretrained
    model, tokenizer = load_pretrained("xlm-roberta-base", task="token-classification", num_labels=7)
    logits = model(input_ids, attention_mask)  # (B, T) long + (B, T) bool -> (B, T, K)

`name_or_path` is a local folder in the HF layout, a hub name found in the HF cache, or a hub
name downloaded into our cache (models/resolve.py). The architecture comes from the folder's
config.json, never from class defaults.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from models.encoder import XLMRConfig, XLMREncoder, init_module
from models.encoder_fast import KERNELS, resolve_kernels, use_kernels
from models.heads import XLMRForMaskedLM, XLMRForTokenClassification
from models.resolve import resolve_model_dir
from models.weights import TensorSource, read_state_dict

TASKS = ("encoder", "token-classification", "masked-lm")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def build_model(config: XLMRConfig, task: str = "encoder", num_labels: int | None = None,
                kernels: str = "auto") -> nn.Module:
    """The bare module for a task (weights uninitialised unless built on a real device + init_weights),
    with the encoder's ``kernels``: reference | fast | auto (models/encoder_fast.py: auto = fast
    when the machine has no CUDA device; a run passes resolve_kernels(model.kernels, train.device))."""
    if task == "encoder":
        model = XLMREncoder(config)
    elif task == "token-classification":
        if not num_labels:
            raise ValueError("task 'token-classification' needs num_labels")
        model = XLMRForTokenClassification(config, num_labels)
    elif task == "masked-lm":
        model = XLMRForMaskedLM(config)
    else:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return use_kernels(model, kernels)


def _num_labels_of(folder: Path) -> int:
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return len(cfg["id2label"]) if cfg.get("id2label") else 2  # HF's default when id2label is absent


def load_pretrained(name_or_path: str | Path, task: str = "encoder", num_labels: int | None = None,
                    dtype: torch.dtype | None = None, attention: str = "sdpa", with_tokenizer: bool = True,
                    from_scratch: bool = False, mmap: bool = True, kernels: str = "auto"):
    """(model, tokenizer) from a checkpoint folder or hub name; the model is in eval mode, on CPU.

    Weights go straight into `dtype` (default fp32): the model is built on the meta device and each
    parameter is assigned its tensor, so no second full copy ever exists. mmap=True: a tensor already
    in `dtype` is a copy-on-write view of the memory-mapped file (read on first use, as transformers
    does); mmap=False (or a dtype change) reads it with pread into fresh memory.
    A head the checkpoint lacks (a classifier on a base model) is initialised fresh.
    from_scratch=True: architecture from config.json, all weights random (no weight file needed).
    kernels: the encoder's reference or fast CPU kernels, as build_model.
    """
    folder = resolve_model_dir(name_or_path, need_weights=not from_scratch)
    config = XLMRConfig.from_json(folder / "config.json")
    config.attention = attention
    if task == "token-classification" and num_labels is None:
        num_labels = _num_labels_of(folder)
    dtype = dtype or torch.float32
    if from_scratch:
        model = build_model(config, task, num_labels, kernels).to(dtype)
        model.init_weights()
    else:
        model = _load_weights(folder, config, task, num_labels, dtype, mmap, kernels)
    model.eval()
    tokenizer = load_tokenizer(folder) if with_tokenizer else None
    return model, tokenizer


def load_tokenizer(folder: str | Path):
    """The folder's tokenizer: WordPiece when tokenizer.json is one (klue/roberta), else XLM-R's."""
    from data.tokenizer import XLMRTokenizer
    from data.wordpiece import WordPieceTokenizer, is_wordpiece_folder

    return WordPieceTokenizer.from_pretrained(folder) if is_wordpiece_folder(folder) else \
        XLMRTokenizer.from_pretrained(folder)


def _load_weights(folder: Path, config: XLMRConfig, task: str, num_labels: int | None,
                  dtype: torch.dtype, mmap: bool = True, kernels: str = "auto") -> nn.Module:
    weight_file = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weight_file is None:
        raise FileNotFoundError(f"{folder} has none of {WEIGHT_FILES}")
    return load_from_source(TensorSource(weight_file), config, task, num_labels, dtype, zero_copy=mmap,
                            kernels=kernels)


@contextmanager
def _skip_layer_init():
    """While building on the meta device, skip each layer's own reset_parameters: its random init
    of meta tensors is thrown away anyway and drags in torch._dynamo (seconds of import)."""
    classes = (nn.Linear, nn.Embedding, nn.LayerNorm)
    saved = [c.reset_parameters for c in classes]
    for c in classes:
        c.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for c, f in zip(classes, saved):
            c.reset_parameters = f


def load_from_source(source, config: XLMRConfig, task: str = "encoder", num_labels: int | None = None,
                     dtype: torch.dtype = torch.float32, zero_copy: bool = True, kernels: str = "auto") -> nn.Module:
    """Build on the meta device, then assign each tensor from `source` (models.weights.TensorSource
    or DictSource, e.g. DictSource(hf_model.state_dict())) converted to `dtype`; kernels as build_model."""
    with torch.device("meta"), _skip_layer_init():
        model = build_model(config, task, num_labels, kernels)
    try:
        state, fresh = read_state_dict(source, model, config, task, dtype, zero_copy)
    finally:
        source.close()
    model.load_state_dict(state, strict=False, assign=True)
    if isinstance(model, XLMRForMaskedLM):
        model.tie_weights()
    if fresh:
        print(f"[models] {source.path.name} has no {sorted(fresh)}: initialised fresh", file=sys.stderr)
        for module in model.modules():
            own = {n: p for n, p in module.named_parameters(recurse=False) if p.is_meta}
            for n, p in own.items():
                setattr(module, n, nn.Parameter(torch.zeros(p.shape, dtype=dtype)))  # biases stay zero
            if own:
                init_module(module, config.initializer_range)
    leftover = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if leftover:
        raise RuntimeError(f"not loaded: {leftover}")
    return model


__all__ = ["load_pretrained", "build_model", "XLMRConfig", "XLMREncoder", "XLMRForTokenClassification",
           "XLMRForMaskedLM", "TASKS", "KERNELS", "resolve_kernels", "use_kernels"]
