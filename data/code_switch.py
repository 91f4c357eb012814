"""Dictionary code-switching of pretraining sentences: a cross-lingual signal for the mini model.

    lexicon = load_lexicon(root, {"de": "muse_dicts/dm-bli/de-en.txt", ...})  # X <-> en, both ways
    corpus = SwitchedCorpus([("de", words), ...], lexicon, rate=0.8, tokenizer=tok, seed=42, hub="de")
    pieces = corpus.pieces(epoch)   # [[piece id, ...] per sentence], switched anew each epoch

XLM-R learns to align languages from 2.5 TB of text; a 25-minute mini model sees 1M words and
gets few shared anchors beyond names and numbers. Code-switching (as in CoSDA-ML, Qin et al.
2020, here applied to the MLM text instead of the task data) gives it some: each sentence picks
one other language, and each of its words that the bilingual dictionaries can translate is
replaced, with probability ``rate``, by a translation drawn at random. With a hub language (the
one the NER head will be trained on) every switch pairs with it: the hub's sentences switch into
any other language, every other sentence into the hub, so each switched word ties a target-language
word to its hub counterpart -- the alignment zero-shot transfer from the hub uses (on the mini:
es +3.0, it +6.7, fr +7.8 at the same rate, docs/MINI.md). Dictionaries go through
English: X -> en and en -> X are the same file read both ways, and X -> Y is X -> en -> Y. Only
unlabelled pretraining text is switched; the NER fine-tuning data stays as it is.

Pieces come from a per-word cache: a sentence's pieces are the concatenation of its words' pieces
(what ``XLMRTokenizer.encode_words`` gives in fine-tuning; on the mini's text it equals encoding
the joined sentence for all but 1 of 95,650 sentences), so re-switching an epoch costs ~1 s
instead of re-encoding everything (~10 s).
"""
from __future__ import annotations

import random
from pathlib import Path

from data.dictionaries import read_dictionary

PIVOT = "en"


def load_lexicon(root: str | Path, dicts: dict[str, str]) -> dict[tuple[str, str], dict[str, list[str]]]:
    """{(src, tgt): {word: [translations]}} for X -> en and en -> X of every ``lang: file`` (a
    dictionary from X to English, relative to ``root``). Words are lower-case."""
    lexicon: dict[tuple[str, str], dict[str, list[str]]] = {}
    for lang, rel in dicts.items():
        path = Path(root) / rel
        if not path.is_file():
            raise FileNotFoundError(f"mlm.code_switch_dicts[{lang!r}]: {path} not found "
                                    f"(paths are relative to the data root {root})")
        pairs = read_dictionary(path)
        if not pairs:
            raise ValueError(f"mlm.code_switch_dicts[{lang!r}]: no word pairs in {path}")
        to_en, from_en = lexicon.setdefault((lang, PIVOT), {}), lexicon.setdefault((PIVOT, lang), {})
        for src, tgt in pairs:
            to_en.setdefault(src, []).append(tgt)
            from_en.setdefault(tgt, []).append(src)
    return lexicon


def _match_case(word: str, model: str) -> str:
    if model.isupper() and len(model) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if model[:1].isupper() else word


def translate(word: str, src: str, tgt: str, lexicon, rng: random.Random) -> str | None:
    """A random translation of ``word`` from ``src`` to ``tgt`` (through English unless one side
    is English), in the word's case; None when the dictionaries have none."""
    current = word.lower()
    for hop in ([(src, tgt)] if PIVOT in (src, tgt) else [(src, PIVOT), (PIVOT, tgt)]):
        options = lexicon.get(hop, {}).get(current)
        if not options:
            return None
        current = options[rng.randrange(len(options))]
    return _match_case(current, word)


def switch_sentence(words: list[str], lang: str, lexicon, languages: list[str], rate: float,
                    rng: random.Random, hub: str = "") -> list[str]:
    """``words`` with each translatable word replaced, with probability ``rate``, by a translation
    into one other language of ``languages`` chosen for the whole sentence. With a ``hub``
    language every switch pairs with it: the hub's sentences switch into one of the others, every
    other sentence into the hub."""
    targets = [hub] if hub and lang != hub else [t for t in languages if t != lang]
    if not targets:
        return list(words)
    tgt = targets[rng.randrange(len(targets))]
    out = []
    for word in words:
        switched = translate(word, lang, tgt, lexicon, rng) if rng.random() < rate else None
        out.append(switched or word)
    return out


class SwitchedCorpus:
    """Sentences of known language, code-switched afresh each epoch (seeded by seed and epoch)."""

    def __init__(self, sentences: list[tuple[str, list[str]]], lexicon, rate: float, tokenizer, seed: int,
                 hub: str = ""):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"mlm.code_switch_rate must be in [0, 1], got {rate}")
        self.sentences, self.lexicon, self.rate, self.tokenizer, self.seed = sentences, lexicon, rate, tokenizer, seed
        self.languages = sorted({lang for pair in lexicon for lang in pair})
        if hub and hub not in self.languages:
            raise ValueError(f"mlm.code_switch_hub: {hub!r} has no dictionary (languages: {self.languages})")
        self.hub = hub
        self.cache: dict[str, list[int]] = {}
        self.encode_words({w for _, words in sentences for w in words})

    def encode_words(self, words) -> None:
        missing = [w for w in words if w not in self.cache]
        per_word: list[list[int]] = [[] for _ in missing]
        for piece, index in zip(*self.tokenizer.encode_words(missing)):
            per_word[index].append(piece)
        self.cache.update(zip(missing, per_word))

    def switched(self, epoch: int) -> list[tuple[str, list[str]]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        return [(lang, switch_sentence(words, lang, self.lexicon, self.languages, self.rate, rng, self.hub))
                for lang, words in self.sentences]

    def pieces(self, epoch: int) -> list[list[int]]:
        sentences = self.switched(epoch)
        self.encode_words({w for _, words in sentences for w in words})
        encoded = ([i for w in words for i in self.cache[w]] for _, words in sentences)
        return [ids for ids in encoded if ids]
