"""Bilingual dictionaries (MUSE) and identical-string seeds, as word pairs and index pairs.

    pairs = read_dictionary(root / "muse_dicts/dm-bli/en-de.0-5000.txt", reverse=True)  # de -> en
    seed, missing = index_pairs(pairs, src_index, tgt_index)                            # (P, 2) long

Formats, told apart per line: ``src tgt`` / ``src<TAB>tgt`` (MUSE, dm-bli, coastalcph) and
``tgt @ src`` (hunalign-dict-muse); blank lines are skipped, any other line is an error naming
the file and line. A spec string may list several files separated by commas
and end a file with ``:reversed`` to swap the sides (en-de files serve as de-en).
"""
from __future__ import annotations

from pathlib import Path

from data.lines import TextFileError, utf8_lines


def read_dictionary(path: str | Path, reverse: bool = False, lowercase: bool = True) -> list[tuple[str, str]]:
    pairs = []
    for lineno, line in utf8_lines(path):  # not UTF-8: an error naming the file and line
        if not line.strip():
            continue
        if " @ " in line:
            tgt, src = line.split(" @ ", 1)
        else:
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) != 2:
                raise TextFileError(f"{path}:{lineno}: expected 'source target' or 'target @ source', got {line!r}")
            src, tgt = parts
        if lowercase:
            src, tgt = src.lower(), tgt.lower()
        pairs.append((tgt, src) if reverse else (src, tgt))
    return pairs


def read_spec(root: str | Path, spec: str) -> list[tuple[str, str]]:
    """Pairs from ``a.txt,b.txt:reversed`` (paths relative to ``root``), duplicates removed."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        reverse = item.endswith(":reversed")
        path = Path(root) / (item[:-len(":reversed")] if reverse else item)
        pairs += read_dictionary(path, reverse=reverse)
    return list(dict.fromkeys(pairs))


def identical_pairs(src_words: list[str], tgt_words: list[str], min_length: int = 2) -> list[tuple[str, str]]:
    """Words spelt the same on both sides (names, numbers, loans): the seed when no dictionary is used."""
    tgt = set(tgt_words)
    return [(w, w) for w in src_words if w in tgt and len(w) >= min_length and any(c.isalpha() for c in w)]


def index_pairs(pairs: list[tuple[str, str]], src_index: dict[str, int], tgt_index: dict[str, int]):
    """(P, 2) long tensor of pairs with both words in the vocabularies, and the number dropped."""
    import torch

    kept = [(src_index[s], tgt_index[t]) for s, t in pairs if s in src_index and t in tgt_index]
    return torch.tensor(kept, dtype=torch.long).view(-1, 2), len(pairs) - len(kept)


def gold_translations(pairs: list[tuple[str, str]], src_index: dict[str, int], tgt_index: dict[str, int]):
    """{source id: set of target ids} for the evaluation pairs whose source word is in the vocabulary.

    Returns (gold, coverage): as in MUSE, only pairs with both words in the vocabularies count;
    coverage is the share of the dictionary's distinct source words that remain.
    """
    gold: dict[int, set[int]] = {}
    sources = {s for s, _ in pairs}
    for s, t in pairs:
        if s in src_index and t in tgt_index:
            gold.setdefault(src_index[s], set()).add(tgt_index[t])
    return gold, len(gold) / max(len(sources), 1)
