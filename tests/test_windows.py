"""Word/piece alignment, windows with stride, and stitching predictions back to words."""
from __future__ import annotations

import random

import pytest

from data.conll import Sentence
from data.labels import IGNORE_INDEX, build_label_set
from data.windows import align_pieces, build_windows, stitch, window_spans


class ChunkTokenizer:
    """Stand-in tokenizer: a word becomes pieces of 3 characters (ids 10..99); a zero-width space none.
    tests/test_ner_task.py and tests/test_ner_decoding.py use it too."""

    bos_id, pad_id, eos_id, unk_id = 0, 1, 2, 3
    vocab_size = 100

    def encode_words(self, words):
        ids, index = [], []
        for w, word in enumerate(words):
            text = word.replace("\u200b", "")
            for i in range(0, len(text), 3):
                ids.append(10 + sum(map(ord, text[i:i + 3])) % 90)
                index.append(w)
        return ids, index

    def encode_words_batch(self, sentences):
        return [self.encode_words(words) for words in sentences]


TOK = ChunkTokenizer()
LABELS = build_label_set()


def test_label_on_first_piece_and_unk_for_empty_word():
    sent = Sentence(["Rotterdam", "\u200b", "ist"], ["B-LOC", "O", "O"])
    ids, index = align_pieces(TOK, sent.words)
    assert index == [0, 0, 0, 1, 2] and ids[3] == TOK.unk_id
    (win,) = build_windows([sent], TOK, LABELS, max_length=16, stride=2)
    assert win.input_ids[0] == TOK.bos_id and win.input_ids[-1] == TOK.eos_id
    assert win.labels == [IGNORE_INDEX, 5, IGNORE_INDEX, IGNORE_INDEX, 0, 0, IGNORE_INDEX]
    assert win.word_ids == [-1, 0, -1, -1, 1, 2, -1]
    (all_pieces,) = build_windows([sent], TOK, LABELS, max_length=16, stride=2, label_all_pieces=True)
    assert all_pieces.labels == [IGNORE_INDEX, 5, 6, 6, 0, 0, IGNORE_INDEX]  # B-LOC then I-LOC
    assert all_pieces.word_ids == win.word_ids


def test_window_spans_overlap_by_stride_and_cover():
    assert window_spans(5, max_length=8, stride=2) == [(0, 5)]
    assert window_spans(14, max_length=8, stride=2) == [(0, 6), (4, 10), (8, 14)]
    assert window_spans(11, max_length=8, stride=2) == [(0, 6), (4, 10), (8, 11)]
    with pytest.raises(ValueError):
        window_spans(10, max_length=8, stride=6)


@pytest.mark.parametrize("max_length,stride", [(8, 0), (8, 3), (12, 5), (40, 16), (512, 128)])
def test_long_sentence_every_word_exactly_one_prediction(max_length, stride):
    rng = random.Random(max_length * 31 + stride)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 8))) for _ in range(300)]
    words[17] = "\u200b"  # no pieces -> <unk>
    tags = [rng.choice(LABELS.tags) for _ in words]
    sents = [Sentence(["kurz"], ["O"]), Sentence(words, tags), Sentence(["a", "b"], ["B-PER", "I-PER"])]
    windows = build_windows(sents, TOK, LABELS, max_length=max_length, stride=stride)
    assert all(len(w) <= max_length for w in windows)
    assert sum(w.sent_id == 1 for w in windows) > 1 or max_length == 512
    # "predict" each position's gold label: stitching must give back every word's gold tag once
    preds = [[lab if lab != IGNORE_INDEX else -7 for lab in w.labels] for w in windows]
    words_out = stitch(windows, preds, [len(s.words) for s in sents])
    assert words_out == [LABELS.ids(s.tags) for s in sents]
    # training labels: each word labelled in exactly one window (its owner)
    assert sum(lab != IGNORE_INDEX for w in windows for lab in w.labels) == sum(len(s.words) for s in sents)


def test_owner_is_the_most_central_window():
    sent = Sentence([f"w{i}" for i in range(14)], ["O"] * 14)  # 1 piece per word ("w1" < 3 chars)
    windows = build_windows([sent], TOK, LABELS, max_length=8, stride=2)  # spans (0,6) (4,10) (8,14)
    owned = [[w for w in win.word_ids if w >= 0] for win in windows]
    # piece 4 is at margin 1 in window 0 and margin 0 in window 1 -> window 0; piece 5 -> window 1
    assert owned == [[0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12, 13]]


def test_stitch_rejects_missing_predictions():
    sent = Sentence(["a", "b"], ["O", "O"])
    windows = build_windows([sent], TOK, LABELS, max_length=8, stride=2)
    with pytest.raises(AssertionError, match="no prediction"):
        stitch(windows, [[0] * len(w) for w in windows], [3])
