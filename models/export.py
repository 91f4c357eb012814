"""Save our models in the HF layout: config.json, model.safetensors, tokenizer files, README.md.

    save_pretrained(model, tokenizer, out_dir, id2label=["O", "B-PER", ...],
                    extra_tensors={"crf.safetensors": crf.state_dict()}, card=ModelCard(...))

transformers' XLMRobertaModel / ForTokenClassification / ForMaskedLM.from_pretrained load the
folder and give the same outputs (tests/test_export.py); so does our load_pretrained. This is the
one export function of the project: every system (NER, relation extraction, extended or aligned
encoders) writes its label names into config.json (``id2label`` / ``label2id``, which the Hub's
widgets and ``pipeline`` show), extra head parameters as safetensors files beside the model
(never pickles), and a model card (models/model_card.py).

Each file is written atomically (temp file + rename) and config.json last, so a folder whose
config.json is new holds the new weights too.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from core.checkpoint import atomic_write_text
from models.encoder import XLMREncoder
from models.heads import XLMRForMaskedLM, XLMRForTokenClassification
from models.safetensors_io import save_file
from models.weights import to_hf_state_dict

ARCHITECTURES = {"encoder": "XLMRobertaModel", "token-classification": "XLMRobertaForTokenClassification",
                 "masked-lm": "XLMRobertaForMaskedLM"}
DEFAULT_LABEL = re.compile(r"^LABEL_(\d+)$")  # what transformers writes when it knows no names


def task_of(model: nn.Module) -> str:
    if isinstance(model, XLMRForTokenClassification):
        return "token-classification"
    if isinstance(model, XLMRForMaskedLM):
        return "masked-lm"
    if isinstance(model, XLMREncoder):
        return "encoder"
    raise TypeError(f"cannot export {type(model).__name__}")


def _label_names(id2label: Mapping[int, str] | Sequence[str]) -> list[str]:
    """Names in id order from a {id: name} mapping or a list; the ids must be 0..K-1, names unique."""
    if isinstance(id2label, Mapping):
        ids = sorted(int(i) for i in id2label)
        if ids != list(range(len(ids))):
            raise ValueError(f"id2label ids must be 0..{len(ids) - 1}, got {ids}")
        names = [id2label[i] if i in id2label else id2label[str(i)] for i in ids]
    else:
        names = list(id2label)
    if len(set(names)) != len(names):
        raise ValueError(f"id2label has duplicate names: {names}")
    return names


def save_pretrained(model: nn.Module, tokenizer, out_dir: str | Path,
                    id2label: Mapping[int, str] | Sequence[str] | None = None, config_overrides: dict | None = None,
                    card=None, extra_tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> Path:
    """Write model (+ tokenizer when given) to out_dir in the HF layout. Returns out_dir.

    id2label: the label names ({id: name} or a list in id order), for a token-classification head
    (default LABEL_0..) or any model whose outputs have classes (e.g. a relation head kept in
    extra_tensors). config_overrides: extra config.json values (e.g. the dropout to fine-tune
    with). card: a models.model_card.ModelCard, written as README.md. extra_tensors:
    {"crf.safetensors": {name: tensor}}: head parameters transformers does not know, one
    safetensors file each (read back with models.safetensors_io.load_file).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = task_of(model)
    config = model.config
    hf = config.to_hf_dict() | {"architectures": [ARCHITECTURES[task]]}
    names = _label_names(id2label) if id2label is not None else None
    if task == "token-classification":
        names = names or [f"LABEL_{i}" for i in range(model.num_labels)]
        if len(names) != model.num_labels:
            raise ValueError(f"id2label has {len(names)} names for a head of {model.num_labels} labels")
    if names is not None:
        hf["id2label"] = {str(i): name for i, name in enumerate(names)}
        hf["label2id"] = {name: i for i, name in enumerate(names)}
    hf.update(config_overrides or {})
    for filename, tensors in (extra_tensors or {}).items():
        if Path(filename).name != filename or not filename.endswith(".safetensors") or filename == "model.safetensors":
            raise ValueError(f"extra_tensors: {filename!r} must be a plain *.safetensors file name "
                             f"other than model.safetensors")
        save_file({k: v.detach() for k, v in tensors.items()}, out / filename)
    save_file(dict(to_hf_state_dict(model, config, task)), out / "model.safetensors")
    if tokenizer is not None:
        tokenizer.save(out)
    if card is not None:
        atomic_write_text(out / "README.md", card.render())
    atomic_write_text(out / "config.json", json.dumps(hf, indent=2, sort_keys=True) + "\n")
    return out


def read_label_names(folder: str | Path) -> list[str] | None:
    """The label names of an exported model from its config.json, in id order; None when the
    config has none or only transformers' placeholders (LABEL_0, LABEL_1, ...)."""
    cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    id2label = cfg.get("id2label") or {}
    if not id2label:
        return None
    names = _label_names({int(i): n for i, n in id2label.items()})
    if all(DEFAULT_LABEL.match(n) and int(DEFAULT_LABEL.match(n).group(1)) == i for i, n in enumerate(names)):
        return None
    return names


def bare_marker_share(tokenizer, sentences: list[list[str]]) -> float:
    """Share of words whose first piece is the bare word marker "▁". transformers' token-classification
    pipeline finds words by a heuristic on piece offsets and splits such a word in two (the "▁"
    and the rest), so its entities can differ there from ours."""
    bare = total = 0
    for words in sentences:
        pieces, word_index = tokenizer.encode_words(words)
        firsts = {w: p for p, w in reversed(list(zip(pieces, word_index)))}  # word -> its first piece
        bare += sum(tok == "\u2581" for tok in tokenizer.convert_ids_to_tokens(list(firsts.values())))
        total += len(words)
    return bare / max(total, 1)
