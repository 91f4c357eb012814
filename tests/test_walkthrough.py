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
    assert namespace["logits"].shape[-1] == 7
    # What the walkthrough prints, pinned for the seeded tiny checkpoint (one thread, eval mode).
    assert float(namespace["loss"].detach()) == pytest.approx(1.88460, abs=1e-4)
    assert float(namespace["new_loss"]) == pytest.approx(1.81632, abs=1e-4)
    assert namespace["predicted_tags"] == ["O"] * 6 + ["B-ORG", "O"]  # Paris as an ORG: no entity right
    assert namespace["scores"]["precision"] == 0.0 and namespace["scores"]["f1"] == 0.0
    # The stitched prediction is the argmax at each word's first piece, found here without stitch().
    first = namespace["batch"]["word_ids"][0] >= 0  # (T,) bool
    labels = namespace["labels"]
    assert [labels.tag(i) for i in namespace["new_logits"][0, first].argmax(-1).tolist()] == namespace["predicted_tags"]


def test_walkthrough_scoring_of_a_fitted_and_a_wrong_prediction(tiny_checkpoint, monkeypatch):
    """The walkthrough's training step and scoring, continued until the sentence is learnt: the
    same prediction path then scores 1.0, and a prediction that misses Paris scores P 1, R 0.5."""
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    monkeypatch.setenv("XLT_WALKTHROUGH_MODEL", str(tiny_checkpoint))
    ns: dict = {"__name__": "walkthrough"}
    for i, block in enumerate(blocks[:8], start=1):
        exec(compile(block, f"WALKTHROUGH.md block {i}", "exec"), ns)
    model, optimizer, batch = ns["model"], ns["optimizer"], ns["batch"]
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(ns["input_ids"], ns["attention_mask"]).flatten(0, 1),
                                                 batch["labels"].flatten(), ignore_index=ns["IGNORE_INDEX"], reduction="sum")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        ns["new_logits"] = model(ns["input_ids"], ns["attention_mask"])
    exec(compile(blocks[8], "WALKTHROUGH.md block 9", "exec"), ns)
    assert ns["predicted_tags"] == ns["sentence"].tags
    assert ns["scores"]["f1"] == 1.0 and ns["scores"]["support"] == 2
    from core.metrics import entity_scores

    missed = list(ns["sentence"].tags)
    missed[6] = "O"  # Paris not found
    wrong = entity_scores([ns["sentence"].tags], [missed])
    assert (wrong["precision"], wrong["recall"]) == (1.0, 0.5) and wrong["f1"] == pytest.approx(2 / 3)
    assert wrong["per_type"]["LOC"]["recall"] == 0.0 and wrong["per_type"]["PER"]["f1"] == 1.0
