"""Save our models in the HF layout: config.json, model.safetensors, tokenizer files.

transformers' XLMRobertaModel / ForTokenClassification / ForMaskedLM.from_pretrained load the
folder and give the same outputs (tests/test_export.py); so does our load_pretrained.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from models.encoder import XLMREncoder
from models.heads import XLMRForMaskedLM, XLMRForTokenClassification
from models.safetensors_io import save_file
from models.weights import to_hf_state_dict

ARCHITECTURES = {"encoder": "XLMRobertaModel", "token-classification": "XLMRobertaForTokenClassification",
                 "masked-lm": "XLMRobertaForMaskedLM"}


def task_of(model: nn.Module) -> str:
    if isinstance(model, XLMRForTokenClassification):
        return "token-classification"
    if isinstance(model, XLMRForMaskedLM):
        return "masked-lm"
    if isinstance(model, XLMREncoder):
        return "encoder"
    raise TypeError(f"cannot export {type(model).__name__}")


def save_pretrained(model: nn.Module, tokenizer, out_dir: str | Path, id2label: dict[int, str] | None = None,
                    config_overrides: dict | None = None) -> Path:
    """Write model (+ tokenizer when given) to out_dir in the HF layout. Returns out_dir.

    id2label: tag names for a token-classification head (default LABEL_0..). config_overrides:
    extra config.json values (e.g. the dropout to fine-tune with).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = task_of(model)
    config = model.config
    hf = config.to_hf_dict() | {"architectures": [ARCHITECTURES[task]]}
    if task == "token-classification":
        labels = id2label or {i: f"LABEL_{i}" for i in range(model.num_labels)}
        hf["id2label"] = {str(i): name for i, name in labels.items()}
        hf["label2id"] = {name: i for i, name in labels.items()}
    hf.update(config_overrides or {})
    save_file(dict(to_hf_state_dict(model, config, task)), out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save(out)
    return out
