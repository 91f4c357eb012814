"""Words -> pieces -> windows of at most ``max_length`` pieces, and predictions back to words.

Legend: T subword positions of a window (``<s>`` pieces ``</s>``), W words of a sentence.

A word's label sits on its first piece; its other pieces get ``IGNORE_INDEX`` (or, with
``label_all_pieces``, the word's tag with ``B-`` turned into ``I-``). A word that yields no
piece gets ``<unk>`` so it still gets a prediction. A sentence longer than ``max_length - 2``
pieces is cut into windows that overlap by ``stride`` pieces. Each word is *owned* by exactly
one window: among the windows holding its first piece, the one where that piece is most
central. Only the owner labels the word in training and predicts it at evaluation, so
:func:`stitch` gives every word exactly one prediction.
"""
from __future__ import annotations

from dataclasses import dataclass

from data.conll import Sentence
from data.labels import IGNORE_INDEX, LabelSet


@dataclass
class Window:
    sent_id: int  # index of the sentence in the list given to build_windows
    input_ids: list[int]  # (T,) <s> pieces </s>
    labels: list[int]  # (T,) tag id or IGNORE_INDEX
    word_ids: list[int]  # (T,) word index at the first piece of each owned word, else -1

    def __len__(self) -> int:
        return len(self.input_ids)


def align_pieces(tokenizer, words: list[str], encoded: tuple[list[int], list[int]] | None = None
                 ) -> tuple[list[int], list[int]]:
    """Piece ids and, per piece, its word index; a word with no piece becomes ``<unk>``.
    ``encoded``: the tokenizer's ``encode_words(words)``, if already computed (in a batch)."""
    piece_ids, word_index = encoded if encoded is not None else tokenizer.encode_words(words)
    if len(set(word_index)) == len(words):  # every word has a piece: nothing to insert
        return list(piece_ids), list(word_index)
    by_word: list[list[int]] = [[] for _ in words]
    for piece, w in zip(piece_ids, word_index):
        by_word[w].append(piece)
    ids, index = [], []
    for w, pieces in enumerate(by_word):
        pieces = pieces or [tokenizer.unk_id]
        ids.extend(pieces)
        index.extend([w] * len(pieces))
    return ids, index


def window_spans(n_pieces: int, max_length: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) piece ranges: windows of ``max_length - 2`` pieces sharing ``stride`` pieces."""
    size = max_length - 2
    if size < 1 or not 0 <= stride < size:
        raise ValueError(f"need max_length > 2 and 0 <= stride < max_length - 2, got {max_length}, {stride}")
    if n_pieces <= size:
        return [(0, n_pieces)]
    spans, start = [], 0
    while True:
        end = min(start + size, n_pieces)
        spans.append((start, end))
        if end == n_pieces:
            return spans
        start = end - stride


def _owner(position: int, spans: list[tuple[int, int]]) -> int:
    """The window in which ``position`` is farthest from an edge (first one on ties)."""
    best, best_margin = -1, -1
    for k, (start, end) in enumerate(spans):
        if start <= position < end:
            margin = min(position - start, end - 1 - position)
            if margin > best_margin:
                best, best_margin = k, margin
    return best


def _continuation_tag(tag: str, labels: LabelSet) -> str:
    inside = "I-" + tag[2:] if tag.startswith("B-") else tag
    return inside if inside in labels else tag


def sentence_windows(sent_id: int, sentence: Sentence, tokenizer, labels: LabelSet, max_length: int,
                     stride: int, label_all_pieces: bool = False,
                     encoded: tuple[list[int], list[int]] | None = None) -> list[Window]:
    piece_ids, word_index = align_pieces(tokenizer, sentence.words, encoded)
    tag_ids = labels.ids(sentence.tags) if sentence.tags else [IGNORE_INDEX] * len(sentence.words)
    cont_ids = [labels.id(_continuation_tag(t, labels)) for t in sentence.tags] \
        if sentence.tags and label_all_pieces else tag_ids
    spans = window_spans(len(piece_ids), max_length, stride)
    first = [j == 0 or word_index[j - 1] != word_index[j] for j in range(len(piece_ids))]
    if len(spans) == 1:  # the common case: one window owns every word
        owner_of_word = dict.fromkeys(word_index, 0)
    else:
        owner_of_word = {word_index[j]: _owner(j, spans) for j in range(len(piece_ids)) if first[j]}
    windows = []
    for k, (start, end) in enumerate(spans):
        labs, wids = [IGNORE_INDEX], [-1]  # <s>
        for j in range(start, end):
            w = word_index[j]
            owned = owner_of_word[w] == k
            if first[j] and owned:
                labs.append(tag_ids[w])
                wids.append(w)
            else:
                labs.append(cont_ids[w] if (label_all_pieces and owned) else IGNORE_INDEX)
                wids.append(-1)
        ids = [tokenizer.bos_id] + piece_ids[start:end] + [tokenizer.eos_id]
        windows.append(Window(sent_id, ids, labs + [IGNORE_INDEX], wids + [-1]))  # </s>
    return windows


def build_windows(sentences: list[Sentence], tokenizer, labels: LabelSet, max_length: int = 128,
                  stride: int = 32, label_all_pieces: bool = False) -> list[Window]:
    """All windows of all sentences, in sentence order (the words of all of them tokenized in one call)."""
    encoded = tokenizer.encode_words_batch([sent.words for sent in sentences])
    out = []
    for i, (sent, enc) in enumerate(zip(sentences, encoded, strict=True)):
        out.extend(sentence_windows(i, sent, tokenizer, labels, max_length, stride, label_all_pieces, enc))
    return out


def stitch(windows: list[Window], window_predictions: list[list], n_words: list[int]) -> list[list]:
    """Per-sentence word values (tag ids, losses, ...) from per-window, per-position values.

    ``window_predictions[i][t]`` is the value at position t of ``windows[i]``; positions
    whose ``word_ids`` is -1 are ignored. Raises if a word gets no or two predictions.
    """
    out: list[list[int | None]] = [[None] * n for n in n_words]
    for window, preds in zip(windows, window_predictions, strict=True):
        row = out[window.sent_id]
        for t, w in enumerate(window.word_ids):
            if w >= 0:
                if row[w] is not None:
                    raise AssertionError(f"sentence {window.sent_id} word {w} predicted twice")
                row[w] = preds[t]
    for i, row in enumerate(out):
        if any(p is None for p in row):
            raise AssertionError(f"sentence {i}: words {[w for w, p in enumerate(row) if p is None]} "
                                 f"got no prediction")
    return out  # type: ignore[return-value]
