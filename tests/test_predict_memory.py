"""predict_words goes through the sentences in parts: the same tags and losses for every part size,
and no part holds more than ``chunk`` sentences' windows (memory flat in the input size)."""
from __future__ import annotations

import pytest

import tasks.ner as ner
from data.conll import Sentence

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ("Angela Merkel besucht das Rathaus in Paris . Der Bürgermeister von Berlin spricht mit "
         "Journalisten der Zeitung über den Besuch in Frankreich und die Stadt Hamburg").split()
TAGS = ["B-PER", "I-PER"] + ["O"] * 4 + ["B-LOC"] + ["O"] * 4 + ["B-LOC"] + ["O"] * 14


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from models import load_pretrained

    sentences = [Sentence(WORDS[i:] + WORDS[:i], TAGS[i:] + TAGS[:i]) for i in range(len(WORDS))]
    folder = ner.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", sentences * 8, vocab_size=120, seed=0)
    model, tok = load_pretrained(str(folder), task="token-classification", num_labels=7)
    return model, tok, sentences


def test_every_part_size_gives_the_same_tags_and_losses(tiny):
    from core.config import DataConfig

    model, tok, sentences = tiny
    cfg = DataConfig(max_length=12, stride=4)  # long sentences take several windows
    whole = ner.predict_words(model, sentences, tok, data_cfg=cfg, chunk=10**6)
    assert whole[1] is not None  # gold tags given: per-word losses come back
    for chunk in (1, 3, 7):
        parts = ner.predict_words(model, sentences, tok, data_cfg=cfg, chunk=chunk)
        assert parts[0] == whole[0]
        assert [x for row in parts[1] for x in row] == pytest.approx([x for row in whole[1] for x in row], abs=1e-5)
    assert len(whole[0]) == len(sentences) and all(len(t) == len(s.words) for t, s in zip(whole[0], sentences))


def test_no_part_holds_more_than_chunk_sentences(tiny, monkeypatch):
    model, tok, sentences = tiny
    seen = []
    real = ner.build_windows

    def spy(sents, *args, **kwargs):
        seen.append(len(sents))
        return real(sents, *args, **kwargs)

    monkeypatch.setattr(ner, "build_windows", spy)
    tags, losses = ner.predict_words(model, sentences * 3, tok, chunk=5)
    assert max(seen) == 5 and sum(seen) == 3 * len(sentences)
    assert len(tags) == 3 * len(sentences) and losses is not None
