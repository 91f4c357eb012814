"""Solutions of the exercises of the book's chapters 01-05 (docs/book/), checked against the library."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "book"))
from _common import tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


# ---- 02. the encoder -------------------------------------------------------------------------
def test_ch02_exercise_1_parameter_count_from_the_config():
    from models import load_pretrained

    encoder, _ = load_pretrained(tiny_checkpoint(), task="encoder", with_tokenizer=False)
    c = encoder.config
    V, H, L, I, P = c.vocab_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.max_position_embeddings
    embeddings = V * H + P * H + c.type_vocab_size * H + 2 * H   # three tables + LayerNorm
    attention = (H * 3 * H + 3 * H) + (H * H + H) + 2 * H       # fused q/k/v, output, LayerNorm
    feed_forward = (H * I + I) + (I * H + H) + 2 * H           # up, down, LayerNorm
    assert embeddings + L * (attention + feed_forward) == sum(p.numel() for p in encoder.parameters())


def test_ch02_exercise_2_right_padding_changes_nothing():
    from data.batching import collate
    from data.conll import Sentence
    from data.labels import build_label_set
    from data.windows import build_windows
    from models import load_pretrained

    model, tokenizer = load_pretrained(tiny_checkpoint(), task="encoder")
    words = ["Angela", "Merkel", "besucht", "das", "Rathaus", "in", "Paris", "."]
    short, long = Sentence(words, ["O"] * 8), Sentence(words + words[:5], ["O"] * 13)
    labels = build_label_set()
    alone = collate(build_windows([short], tokenizer, labels, 128, 32), pad_id=tokenizer.pad_id)
    both = collate(build_windows([short, long], tokenizer, labels, 128, 32), pad_id=tokenizer.pad_id)
    T = alone["input_ids"].shape[1]
    assert both["input_ids"].shape[1] > T and not both["attention_mask"][0, T:].any()  # really padded
    with torch.no_grad():
        hidden_alone = model(alone["input_ids"], alone["attention_mask"])  # (1, T, H)
        hidden_both = model(both["input_ids"], both["attention_mask"])     # (2, T', H)
    torch.testing.assert_close(hidden_both[0, :T], hidden_alone[0], rtol=1e-5, atol=1e-5)
