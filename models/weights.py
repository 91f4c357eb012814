"""The explicit key map between HF XLM-R checkpoints and our modules, both directions.

Every checkpoint key is either used or deliberately ignored (listed in IGNORED); every shape is
checked; the error lists missing and unexpected keys. HF keys are read with or without the
"roberta." prefix. HF's separate query/key/value matrices become our fused qkv (rows stacked
q, k, v) at load and are split again at export.

Loading hands out a tensor in the file's dtype as a view of the memory-mapped file (zero copy,
copy-on-write); any other tensor (a dtype change, the fused qkv) is read with pread straight into a
fresh tensor of the asked dtype (through a bounce buffer of at most 64 MB when the dtype changes).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import torch

from models.encoder import XLMRConfig
from models.safetensors_io import SafetensorsReader

# Keys we read and drop on purpose: the pooler (unused by token tasks), the position_ids buffer,
# and the MLM decoder weight (tied to the word embeddings; its bias is read as lm_head.bias).
IGNORED = (r"pooler\..*", r"embeddings\.position_ids", r"lm_head\.decoder\.weight")
TIED = ("lm_head.decoder.weight",)  # our keys that alias another parameter
HEAD_PREFIXES = {"token-classification": "classifier.", "masked-lm": "lm_head."}


def encoder_key_map(config: XLMRConfig) -> dict[str, list[str]]:
    """Our encoder key -> HF key(s) without the "roberta." prefix (several keys are concatenated)."""
    m = {
        "embeddings.word_embeddings.weight": ["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": ["embeddings.position_embeddings.weight"],
        "embeddings.token_type_embeddings.weight": ["embeddings.token_type_embeddings.weight"],
        "embeddings.norm.weight": ["embeddings.LayerNorm.weight"],
        "embeddings.norm.bias": ["embeddings.LayerNorm.bias"],
    }
    for i in range(config.num_hidden_layers):
        ours, hf = f"layers.{i}.", f"encoder.layer.{i}."
        for p in ("weight", "bias"):
            m[f"{ours}attention.qkv.{p}"] = [f"{hf}attention.self.{n}.{p}" for n in ("query", "key", "value")]
            m[f"{ours}attention.out.{p}"] = [f"{hf}attention.output.dense.{p}"]
            m[f"{ours}attention.norm.{p}"] = [f"{hf}attention.output.LayerNorm.{p}"]
            m[f"{ours}ffn_in.{p}"] = [f"{hf}intermediate.dense.{p}"]
            m[f"{ours}ffn_out.{p}"] = [f"{hf}output.dense.{p}"]
            m[f"{ours}ffn_norm.{p}"] = [f"{hf}output.LayerNorm.{p}"]
    return m


def head_key_map(task: str) -> dict[str, list[str]]:
    """Our head key -> HF key(s); HF's lm_head bias exists as lm_head.bias and/or lm_head.decoder.bias."""
    if task == "token-classification":
        return {"classifier.weight": ["classifier.weight"], "classifier.bias": ["classifier.bias"]}
    if task == "masked-lm":
        return {f"lm_head.{n}.{p}": [f"lm_head.{n}.{p}"] for n in ("dense", "layer_norm") for p in ("weight", "bias")} \
            | {"lm_head.bias": ["lm_head.bias"]}
    return {}


def full_key_map(config: XLMRConfig, task: str) -> dict[str, list[str]]:
    """Our model's state_dict key -> HF keys (encoder keys prefixed "roberta." for head models)."""
    if task == "encoder":
        return encoder_key_map(config)
    enc = {f"encoder.{k}": [f"roberta.{h}" for h in v] for k, v in encoder_key_map(config).items()}
    return enc | head_key_map(task)


class TensorSource:
    """Uniform access to a checkpoint's tensors: .safetensors (our mmap reader) or .bin
    (torch.load(weights_only=True, mmap=True): no arbitrary pickle, pages read on demand)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix == ".safetensors":
            self._st = SafetensorsReader(self.path)
            self._tensors = None
        else:
            self._st = None
            self._tensors = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)

    def keys(self) -> list[str]:
        return self._st.keys() if self._st else list(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._st.shape(key) if self._st else tuple(self._tensors[key].shape)

    def get(self, key: str) -> torch.Tensor:
        return self._st.get(key) if self._st else self._tensors[key]

    def mapped_dtype(self, key: str) -> torch.dtype | None:
        """The dtype of a tensor that can be handed out as a view of the memory-mapped file."""
        t = self.get(key) if self._st is None else None
        if t is not None and not t.is_contiguous():
            return None
        return self._st.entries[key][0] if self._st else t.dtype

    def read_into(self, key: str, out: torch.Tensor) -> None:
        """Fill out (our dtype) from the checkpoint tensor: pread for safetensors, copy for .bin."""
        if self._st:
            self._st.read_into(key, out)
        else:
            out.copy_(self._tensors[key])

    def close(self) -> None:
        if self._st:
            self._st.close()
        self._tensors = None


class DictSource:
    """An in-memory state dict (e.g. a transformers model's) behind the same interface."""

    def __init__(self, tensors: dict[str, torch.Tensor], name: str = "<state dict>"):
        self._tensors, self.path = tensors, Path(name)

    def keys(self) -> list[str]:
        return list(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def get(self, key: str) -> torch.Tensor:
        return self._tensors[key]

    def read_into(self, key: str, out: torch.Tensor) -> None:
        out.copy_(self._tensors[key])

    def close(self) -> None:
        pass


def _normalise(key: str) -> str:
    """HF names appear as 'roberta.encoder...' (head models) or 'encoder...' (XLMRobertaModel)."""
    if key.startswith("roberta."):
        return key
    if key.startswith(("embeddings.", "encoder.", "pooler.")):
        return "roberta." + key
    return key


def read_state_dict(source: TensorSource, model: torch.nn.Module, config: XLMRConfig, task: str,
                    dtype: torch.dtype, zero_copy: bool = True) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a checkpoint onto `model`'s keys. Returns (state_dict in `dtype`, keys left for fresh init).

    A head that is entirely absent from the checkpoint (e.g. a classifier on top of a base model) is
    left for fresh initialisation; anything else missing, unexpected or mis-shaped is an error.
    """
    by_name = {_normalise(k): k for k in source.keys()}
    if "lm_head.bias" not in by_name and "lm_head.decoder.bias" in by_name:
        by_name["lm_head.bias"] = by_name.pop("lm_head.decoder.bias")
    else:
        by_name.pop("lm_head.decoder.bias", None)  # the same tensor as lm_head.bias (tied in HF)
    # Checkpoint keys were normalised to the "roberta." form above; so are the map's.
    key_map = {ours: [h if h.startswith(("roberta.", "classifier.", "lm_head.")) else "roberta." + h for h in hfs]
               for ours, hfs in full_key_map(config, task).items()}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in TIED}
    if set(expected) != set(key_map):  # our own modules and the map must agree
        raise RuntimeError(f"key map out of date: {sorted(set(expected) ^ set(key_map))}")

    head = HEAD_PREFIXES.get(task)
    fresh = [k for k in key_map if head and k.startswith(head)
             and not any(h in by_name for k2 in key_map if k2.startswith(head) for h in key_map[k2])]
    missing = [h for k, hfs in key_map.items() if k not in fresh for h in hfs if h not in by_name]
    used = {h for hfs in key_map.values() for h in hfs}
    ignored_heads = tuple(p for t, p in HEAD_PREFIXES.items() if t != task)
    unexpected = [k for k in by_name if k not in used and not k.startswith(ignored_heads)
                  and not any(re.fullmatch("(roberta\\.)?" + pat, k) for pat in IGNORED)]
    if missing or unexpected:
        raise KeyError(f"checkpoint {source.path} does not fit {task!r} (XLM-R, {config.num_hidden_layers} layers)."
                       f"\n  missing keys: {missing}\n  unexpected keys: {unexpected}")

    state: dict[str, torch.Tensor] = {}
    bad_shapes = []
    for ours, hfs in key_map.items():
        if ours in fresh:
            continue
        parts = [by_name[h] for h in hfs]
        shapes = [source.shape(p) for p in parts]
        got = (sum(s[0] for s in shapes),) + shapes[0][1:] if len(parts) > 1 else shapes[0]
        if any(s[1:] != shapes[0][1:] for s in shapes) or got != expected[ours]:
            bad_shapes.append(f"{' + '.join(parts)}: checkpoint {list(got)} vs model {list(expected[ours])}")
            continue
        if zero_copy and len(parts) == 1 and isinstance(source, TensorSource) \
                and source.mapped_dtype(parts[0]) == dtype:
            # The file's own pages (a private mapping: a write copies just that page, the file never
            # changes); read from disk on first use, like transformers' loader. No copy at all.
            state[ours] = source.get(parts[0])
            continue
        out = torch.empty(expected[ours], dtype=dtype)
        row = 0
        for part, shape in zip(parts, shapes):  # fused qkv: q, k, v stacked along rows
            source.read_into(part, out[row:row + shape[0]])
            row += shape[0]
        state[ours] = out
    if bad_shapes:
        raise ValueError(f"checkpoint {source.path}: shape mismatch\n  " + "\n  ".join(bad_shapes))
    return state, fresh


def to_hf_state_dict(model: torch.nn.Module, config: XLMRConfig, task: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Our state_dict -> (HF key, tensor) pairs; the fused qkv is split back into query/key/value.
    The tied MLM decoder weight is not written (HF re-ties it from the word embeddings)."""
    state = model.state_dict()
    prefix = "" if task == "encoder" else "roberta."
    for ours, hfs in full_key_map(config, task).items():
        hfs = [h if h.startswith(("roberta.", "classifier.", "lm_head.")) else prefix + h for h in hfs]
        t = state[ours]
        if len(hfs) == 1:
            yield hfs[0], t
        else:
            for h, chunk in zip(hfs, t.chunk(len(hfs), dim=0)):
                yield h, chunk
