"""Word and character vocabularies for the BiLSTM-CRF, and sentence -> tensor batches.

    words = Vocab.build(counts, min_count=1)             # index 0 <pad>, 1 <unk>
    chars = Vocab.build(char_counts)
    batch = encode_batch(sentences, words, chars, label_index)

Legend: B batch, W words, C characters per word (padded to the longest word in the batch).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import torch

PAD, UNK = "<pad>", "<unk>"
MAX_WORD_CHARS = 30  # longer words keep their first 30 characters


@dataclass
class Vocab:
    """Strings <-> ids; id 0 pads, id 1 is the unknown entry."""

    itos: list[str]

    def __post_init__(self):
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, counts: Counter | dict[str, int], min_count: int = 1, extra: Iterable[str] = ()) -> "Vocab":
        """Entries seen at least ``min_count`` times (most frequent first), then ``extra`` ones."""
        itos = [PAD, UNK]
        seen = set(itos)
        for item, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if count >= min_count and item not in seen:
                itos.append(item)
                seen.add(item)
        for item in extra:
            if item not in seen:
                itos.append(item)
                seen.add(item)
        return cls(itos)

    def __len__(self) -> int:
        return len(self.itos)

    def index(self, item: str) -> int:
        return self.stoi.get(item, 1)

    def encode(self, items: Iterable[str]) -> list[int]:
        return [self.stoi.get(item, 1) for item in items]


def word_key(word: str, lowercase: bool) -> str:
    """The key under which a word is looked up in the word vocabulary (digits folded to 0)."""
    word = word.lower() if lowercase else word
    return "".join("0" if ch.isdigit() else ch for ch in word)


def count_words(sentences, lowercase: bool) -> Counter:
    return Counter(word_key(w, lowercase) for s in sentences for w in s.words)


def count_chars(sentences) -> Counter:
    return Counter(ch for s in sentences for w in s.words for ch in w)


def encode_batch(sentences, words: Vocab, chars: Vocab, label_index: dict[str, int] | None,
                 lowercase: bool = False) -> dict[str, torch.Tensor]:
    """Padded tensors for a list of sentences (objects with .words and, if labelled, .tags).

    words (B, W) long, chars (B, W, C) long, mask (B, W) bool, lengths (B,) long, tags (B, W) long
    (0 on padding) when ``label_index`` is given, and n_tokens (the number of real words).
    """
    B = len(sentences)
    W = max(len(s.words) for s in sentences)
    C = min(MAX_WORD_CHARS, max(len(w) for s in sentences for w in s.words))
    word_ids = torch.zeros(B, W, dtype=torch.long)  # (B, W)
    char_ids = torch.zeros(B, W, max(C, 1), dtype=torch.long)  # (B, W, C)
    tags = torch.zeros(B, W, dtype=torch.long)  # (B, W)
    lengths = torch.tensor([len(s.words) for s in sentences], dtype=torch.long)  # (B,)
    for b, sent in enumerate(sentences):
        word_ids[b, :len(sent.words)] = torch.tensor(words.encode(word_key(w, lowercase) for w in sent.words))
        for j, word in enumerate(sent.words):
            ids = chars.encode(word[:MAX_WORD_CHARS]) or [1]
            char_ids[b, j, :len(ids)] = torch.tensor(ids)
        if label_index is not None:
            tags[b, :len(sent.tags)] = torch.tensor([label_index[t] for t in sent.tags])
    batch = {"words": word_ids, "chars": char_ids, "lengths": lengths,
             "mask": torch.arange(W)[None] < lengths[:, None], "n_tokens": int(lengths.sum())}
    if label_index is not None:
        batch["tags"] = tags
    return batch
