"""docs/WALKTHROUGH.md runs: its ```python blocks execute in order against a tiny random checkpoint."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parent.parent / "docs" / "WALKTHROUGH.md"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    pytest.importorskip("data.tokenizer")
    pytest.importorskip("models.export")
    from data.conll import Sentence
    from tasks.ner import write_tiny_checkpoint

    # a fixed German-ish text so the test needs neither the mini model nor the data root
    words = ("Angela Merkel besucht das Rathaus in Paris . Der Bürgermeister von Berlin spricht mit "
             "Journalisten der Zeitung über den Besuch in Frankreich und die Stadt Hamburg").split()
    sentences = [Sentence(words[i:] + words[:i], ["O"] * len(words)) for i in range(len(words))] * 8
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", sentences, vocab_size=120, seed=0)


def test_walkthrough_blocks_run_in_order(tiny_checkpoint, monkeypatch, capsys):
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 9
    monkeypatch.setenv("XLT_WALKTHROUGH_MODEL", str(tiny_checkpoint))
    namespace: dict = {"__name__": "walkthrough"}
    for i, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"WALKTHROUGH.md block {i}", "exec"), namespace)
        except Exception as err:  # name the block that broke
            raise AssertionError(f"WALKTHROUGH.md python block {i} failed: {err!r}") from err
    assert namespace["perfect"]["f1"] == 1.0
    assert float(namespace["new_loss"]) < float(namespace["loss"].detach())
    assert namespace["logits"].shape[-1] == 7
