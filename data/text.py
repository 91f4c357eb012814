"""Pretraining text for the mini model: gather it, hold a slice out, pack it into sequences.

    corpus = gather_text(cfg.data, cfg.mlm)          # {source name: [sentence, ...]}
    train, heldout = split_heldout(corpus, every=100)   # {source: [sentence]}, [sentence]
    seqs = pack_sequences(pieces, seq_length=128, bos_id=0, eos_id=2, generator=g)

Sources (all training-side text; evaluation text never enters):
- NER sentences of ``cfg.mlm.ner_splits`` (language -> split, read through
  ``data.sources.load_split``), words joined by spaces: PAN-X train for de/en/es/nl and the
  train part of the fixed-seed WikiNEuRal carve for fr/it (never its dev or test part).
- Plain text files ``cfg.mlm.text_files`` (relative to the data root), one sentence a line;
  the Moses escapes of the OpenNMT files (``&apos;`` ``&quot;`` ``&amp;``) are undone.

Packing is length-aware: sentences are sorted longest first and each goes into the open
sequence whose free room fits it most tightly (best fit), so sequences are nearly full and
batches need almost no padding. A packed sequence reads ``<s> s1 </s> s2 </s> ...``; a
sentence longer than a sequence is cut into pieces of ``seq_length - 2``.
"""
from __future__ import annotations

import html
import random
from pathlib import Path

import torch

from data.lines import utf8_lines
from data.sources import load_split, resolve_root


def read_text_file(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped, with HTML/Moses escapes undone."""
    lines = []
    for _, raw in utf8_lines(path):  # not UTF-8: an error naming the file and line
        line = " ".join(html.unescape(raw).split())  # also folds tabs and runs of spaces
        if line:
            lines.append(line)
    return lines


def ner_source_name(lang: str, split: str) -> str:
    return f"ner {lang} {split}"


def gather_text(data_cfg, mlm_cfg) -> dict[str, list[str]]:
    """Every pretraining sentence, grouped by source (``"panx de train"``, ``"multi30k/train.de"``)."""
    corpus: dict[str, list[str]] = {}
    for lang, split in mlm_cfg.ner_splits.items():
        if split == "test":
            raise ValueError(f"mlm.ner_splits[{lang!r}] = 'test': test text must not be pretrained on")
        corpus[ner_source_name(lang, split)] = [" ".join(s.words) for s in load_split(data_cfg, lang, split)]
    root = resolve_root(data_cfg)
    for rel in mlm_cfg.text_files:
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"mlm.text_files: {path} not found (paths are relative to the data root {root})")
        corpus[rel] = read_text_file(path)
    return corpus


def split_heldout(corpus: dict[str, list[str]], every: int) -> tuple[dict[str, list[str]], list[str]]:
    """(training corpus by source, held-out sentences): every ``every``-th sentence of each source
    (index 0, every, 2*every, ...) is held out for the MLM evaluation. ``every=0`` holds out nothing."""
    train, heldout = {}, []
    for name, sentences in corpus.items():
        train[name] = [s for i, s in enumerate(sentences) if not (every and i % every == 0)]
        heldout += [s for i, s in enumerate(sentences) if every and i % every == 0]
    return train, heldout


def encode_sentences(tokenizer, sentences: list[str]) -> list[list[int]]:
    """Piece ids of each sentence, without special tokens; empty results are dropped."""
    encoded = (tokenizer.encode(s, add_special_tokens=False) for s in sentences)
    return [ids for ids in encoded if ids]


def pack_sequences(pieces: list[list[int]], seq_length: int, bos_id: int, eos_id: int,
                   generator: torch.Generator | None = None) -> list[list[int]]:
    """Best-fit-decreasing packing of sentences (piece id lists) into ``<s> a </s> b </s> ...``.

    Every sequence has at most ``seq_length`` ids. With a generator the sentence order among
    equal lengths and the order of the returned sequences are shuffled (a new packing per epoch);
    without one the result is deterministic in input order.
    """
    room = seq_length - 1  # after <s>
    chunks = []
    for ids in pieces:  # a sentence longer than a sequence becomes several chunks
        for start in range(0, len(ids), room - 1):
            chunks.append(ids[start:start + room - 1])
    order = list(range(len(chunks)))
    seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
    if seed is not None:
        random.Random(seed).shuffle(order)
    order.sort(key=lambda i: -len(chunks[i]))  # stable: ties keep the shuffled order

    sequences: list[list[int]] = []
    open_by_free: list[list[int]] = [[] for _ in range(room + 1)]  # free room -> open sequence indices
    for i in order:
        need = len(chunks[i]) + 1  # the sentence and its </s>
        free = next((f for f in range(need, room + 1) if open_by_free[f]), None)
        if free is None:  # nothing fits: open a new sequence
            sequences.append([bos_id])
            index, free = len(sequences) - 1, room
        else:
            index = open_by_free[free].pop()
        sequences[index].extend(chunks[i])
        sequences[index].append(eos_id)
        if free - need > 1:  # room for at least a one-piece sentence and its </s>
            open_by_free[free - need].append(index)
    if seed is not None:
        random.Random(seed + 1).shuffle(sequences)
    return sequences
