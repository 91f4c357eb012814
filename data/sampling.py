"""Which training sentences a run sees: a language mix, and nested few-shot subsets.

Both are fixed-seed and independent of torch's global RNG, so a config names its data exactly.
"""
from __future__ import annotations

import random

from data.conll import Sentence

# The study's multilingual mix (shares of the training set).
STUDY_MIX = {"de": 0.629, "fr": 0.229, "it": 0.084, "en": 0.059}


def mix_counts(available: dict[str, int], mix: dict[str, float], total: int = 0) -> dict[str, int]:
    """Sentences to take per language so the shares follow ``mix``.

    ``total`` = 0 takes the largest total that no language runs short of:
    min over languages of available / share. Rounding is largest-remainder, so the counts add up.
    """
    if not mix:
        return dict(available)
    missing = [lang for lang in mix if lang not in available]
    if missing:
        raise KeyError(f"mix names languages without training data: {missing}")
    norm = sum(mix.values())
    shares = {lang: share / norm for lang, share in mix.items() if share > 0}
    cap = min(available[lang] / share for lang, share in shares.items())
    total = min(total, int(cap)) if total else int(cap)
    raw = {lang: share * total for lang, share in shares.items()}
    counts = {lang: int(v) for lang, v in raw.items()}
    for lang in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[: total - sum(counts.values())]:
        counts[lang] += 1
    return {lang: min(c, available[lang]) for lang, c in counts.items()}


def downsample(sentences: list[Sentence], n: int, seed: int) -> list[Sentence]:
    """``n`` sentences chosen by a fixed-seed shuffle, kept in file order."""
    if n >= len(sentences):
        return list(sentences)
    keep = sorted(random.Random(seed).sample(range(len(sentences)), n))
    return [sentences[i] for i in keep]


def apply_mix(by_lang: dict[str, list[Sentence]], mix: dict[str, float], seed: int,
              total: int = 0) -> list[Sentence]:
    """Downsample each language to its share of the mix and concatenate (languages in mix order)."""
    counts = mix_counts({k: len(v) for k, v in by_lang.items()}, mix, total)
    out = []
    for i, (lang, n) in enumerate(counts.items()):
        out.extend(downsample(by_lang[lang], n, seed + i))
    return out


def nested_fewshot(sentences: list[Sentence], sizes: list[int], seed: int) -> dict[int, list[Sentence]]:
    """Subsets of the given sizes from ONE fixed-seed order: each is a prefix of the next,
    so every smaller set is contained in every larger one."""
    if any(s > len(sentences) for s in sizes):
        raise ValueError(f"few-shot sizes {sizes} exceed the {len(sentences)} sentences available")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    return {size: [sentences[i] for i in sorted(order[:size])] for size in sorted(sizes)}
