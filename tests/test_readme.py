"""The README's Python snippets run: the one under "Getting xlm-roberta-base" against a tiny
local checkpoint in a folder named xlm-roberta-base (the resolver looks there first)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parent.parent / "README.md"


def section_snippets(title: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def test_getting_xlm_roberta_base_snippet_runs(tmp_path, monkeypatch):
    from data.conll import Sentence
    from tasks.ner import write_tiny_checkpoint

    sentences = [Sentence("Angela Merkel besucht Paris und Berlin".split(), []),
                 Sentence("Der Rhein fliesst durch Koeln".split(), [])] * 30
    write_tiny_checkpoint(tmp_path / "xlm-roberta-base", sentences, vocab_size=80)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (snippet,) = section_snippets("Getting xlm-roberta-base")
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    ids, mask, logits = scope["input_ids"], scope["attention_mask"], scope["logits"]
    tok = scope["tok"]
    assert ids[0, 0] == tok.bos_id and ids[0, -1] == tok.eos_id and mask.dtype == torch.bool and mask.all()
    assert logits.shape == (1, ids.shape[1], 7) and scope["tag_ids"].shape == (4,)
    pieces = tok.convert_ids_to_tokens(ids[0, scope["first"]].tolist())
    assert all(p.startswith("\u2581") for p in pieces)  # each is the first piece of its word
    config = json.loads((tmp_path / "my-ner/config.json").read_text())
    assert config["id2label"]["1"] == "B-PER"
