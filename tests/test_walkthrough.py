"""The walkthrough (docs/book/02_encoder.py) on the tiny checkpoint: what it prints, pinned, and its
prediction path scoring a fitted and a wrong prediction."""
from __future__ import annotations

import contextlib
import copy
import io
import runpy
from pathlib import Path

import pytest
import torch

BOOK = Path(__file__).resolve().parent.parent / "docs" / "book"
CHAPTER = BOOK / "02_encoder.py"

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    """The chapter's namespace after it ran once on the tiny checkpoint (one thread, as conftest's
    one_thread), with what it printed under "printed"."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setenv("MPLBACKEND", "Agg")
        mp.setenv("BOOK_OUT", str(tmp_path_factory.mktemp("book_out")))
        mp.delenv("XLT_BOOK_MODEL", raising=False)
        mp.syspath_prepend(str(BOOK))
        torch.manual_seed(0)
        namespace = runpy.run_path(str(CHAPTER), run_name="__main__")
    torch.set_num_threads(threads)
    namespace["printed"] = printed.getvalue()
    return namespace


def test_walkthrough_numbers(chapter):
    ns = chapter
    assert ns["logits"].shape == (1, 10, 7) and ns["weights"].shape == (1, 2, 10, 10)
    # What the chapter prints, pinned for the seeded tiny checkpoint (one thread, eval mode).
    assert float(ns["loss"].detach()) == pytest.approx(1.88460, abs=1e-4)
    assert float(ns["new_loss"]) == pytest.approx(1.81632, abs=1e-4)
    assert ns["predicted_tags"] == ["O"] * 6 + ["B-ORG", "O"]  # Paris as an ORG: no entity right
    assert ns["scores"]["precision"] == 0.0 and ns["scores"]["f1"] == 0.0
    # Block 5 prints pieces, not indices into them.
    line = next(li for li in ns["printed"].splitlines() if li.startswith("head 0:"))
    assert line.startswith("head 0: '▁Angela' attends most to [('") and "▁" in line.split("to", 1)[1]
    # The stitched prediction is the argmax at each word's first piece, found here without stitch().
    first = ns["batch"]["word_ids"][0] >= 0  # (T,) bool
    labels = ns["labels"]
    assert [labels.tag(i) for i in ns["new_logits"][0, first].argmax(-1).tolist()] == ns["predicted_tags"]


def test_walkthrough_scoring_of_a_fitted_and_a_wrong_prediction(chapter):
    """The chapter's training step continued until the sentence is learnt: the same prediction
    path then scores 1.0, and a prediction that misses Paris scores P 1, R 0.5."""
    from core.metrics import entity_scores
    from data.windows import stitch

    ns = chapter
    model, optimizer = copy.deepcopy((ns["model"], ns["optimizer"]))  # the chapter's own stay as they are
    batch = ns["batch"]
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(ns["input_ids"], ns["attention_mask"]).flatten(0, 1),
                                                 batch["labels"].flatten(), ignore_index=ns["IGNORE_INDEX"],
                                                 reduction="sum")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        predicted = model(ns["input_ids"], ns["attention_mask"]).argmax(-1)  # (1, T)
    (word_tags,) = stitch([ns["window"]], predicted.tolist(), [len(ns["sentence"].words)])
    predicted_tags = [ns["labels"].tag(i) for i in word_tags]
    assert predicted_tags == ns["sentence"].tags
    assert entity_scores([ns["sentence"].tags], [predicted_tags])["f1"] == 1.0
    missed = list(ns["sentence"].tags)
    missed[6] = "O"  # Paris not found
    wrong = entity_scores([ns["sentence"].tags], [missed])
    assert (wrong["precision"], wrong["recall"]) == (1.0, 0.5) and wrong["f1"] == pytest.approx(2 / 3)
    assert wrong["per_type"]["LOC"]["recall"] == 0.0 and wrong["per_type"]["PER"]["f1"] == 1.0


def test_predict_tags_takes_plain_word_lists_with_default_labels_and_windows(chapter):
    """The one-call tagging the chapter ends with: word lists, PAN-X labels and DataConfig's windows
    by default, the same tags as the explicit call with Sentence objects, labels and a data config."""
    from core.config import DataConfig
    from data.conll import Sentence
    from data.labels import build_label_set
    from tasks.ner import predict_tags, score

    ns = chapter
    words = [ns["sentence"].words, ["Paris", "ist", "groß"], ns["sentence"].words * 20]  # the last: 3 windows
    explicit = predict_tags(ns["model"], [Sentence(w, []) for w in words], ns["tokenizer"], build_label_set(),
                            DataConfig(), precision="fp32")
    assert predict_tags(ns["model"], words, ns["tokenizer"], precision="fp32") == explicit
    assert ns["library_tags"][0] == ns["predicted_tags"] == explicit[0]
    assert [len(t) for t in explicit] == [len(w) for w in words]
    gold = [ns["sentence"]]
    assert score(ns["model"], gold, ns["tokenizer"], precision="fp32") == \
        score(ns["model"], gold, ns["tokenizer"], build_label_set(), DataConfig(), precision="fp32")
