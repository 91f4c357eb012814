"""New word pieces for a target language, merged into a base sentencepiece vocabulary.

    target = train_target_model(target_sentences, spm_vocab_size=8000)
    ext = extend_tokenizer(base_tok, target, new_pieces=6000, base_text=base_sentences,
                           select="score", usage_text=target_sentences)
    ext.tokenizer           # the grown XLMRTokenizer: base ids unchanged, new ids after <mask>
    segmentation_stats(ext.tokenizer, heldout_sentences)   # <unk> rate and pieces per word

Steps (Wang et al. 2020 add the target WordPiece vocabulary's new entries to M-BERT's; here the
vocabulary is a sentencepiece unigram model, so the new pieces also need scores):
1. Train a unigram model on target text, with the base model's normalisation (nmt_nfkc).
2. Candidates: its ordinary pieces the base vocabulary lacks, each keeping its own log-probability
   as its score -- within the target script the merged model then segments as the target model
   does, and pieces the two share (``▁``, punctuation, digits) keep the base score.
3. Protection: every distinct word of the base-language text is segmented by the base and by the
   merged model; a word the base read without <unk> must come out identical, so each new piece in
   a changed segmentation is dropped, until nothing changes. Words that were <unk> before (e.g.
   Cyrillic names in German text) may change: reading them is the point of the extension.
4. Selection of ``new_pieces`` survivors: ``score`` (highest log-probability first) or ``used``
   (the pieces the merged model uses on ``usage_text``, most used first; a piece it never uses
   cannot lower pieces per word). Too few survivors is an error naming the key. The report counts
   the chosen pieces per Unicode script: with the text of several languages in one target model,
   that is what each language got.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from data.spm_proto import NORMAL, read_model
from data.tokenizer import XLMRTokenizer

SELECTIONS = ("score", "used")


class ExtensionError(ValueError):
    """A vocabulary extension that cannot be done as configured (names the config key)."""


@dataclass
class Extension:
    tokenizer: XLMRTokenizer
    pieces: list[tuple[str, float]]  # the new pieces in id order
    report: dict = field(default_factory=dict)


def train_target_model(sentences: list[str], spm_vocab_size: int, input_sentence_size: int = 2_000_000,
                       character_coverage: float = 0.9995, num_threads: int = 1) -> XLMRTokenizer:
    """A unigram model of the target text (in memory), with the base conventions (nmt_nfkc)."""
    return XLMRTokenizer.train(sentences, spm_vocab_size, None, input_sentence_size=input_sentence_size,
                               character_coverage=character_coverage, num_threads=num_threads)


def candidate_pieces(base: XLMRTokenizer, target: XLMRTokenizer) -> list[tuple[str, float]]:
    """The target model's ordinary pieces the base lacks, highest score first, with their scores."""
    have = {p.piece for p in read_model(base.sp.serialized_model_proto())[0]}
    pieces = [p for p in read_model(target.sp.serialized_model_proto())[0] if p.type == NORMAL and p.piece not in have]
    return [(p.piece, p.score) for p in sorted(pieces, key=lambda p: -p.score)]


def distinct_words(sentences: list[str]) -> Counter:
    return Counter(w for s in sentences for w in s.split())


def protect_base(base: XLMRTokenizer, candidates: list[tuple[str, float]], words: list[str],
                 max_rounds: int = 20) -> tuple[list[tuple[str, float]], list[str], int]:
    """(kept candidates, dropped pieces, words checked): drop every new piece that changes the
    segmentation of a word the base reads without <unk>."""
    before = base.encode_batch(words)
    readable = [i for i, ids in enumerate(before) if base.unk_id not in ids]
    words = [words[i] for i in readable]
    before = [before[i] for i in readable]
    kept, dropped = list(candidates), []
    for _ in range(max_rounds):
        merged = base.add_pieces(kept)
        after = merged.encode_batch(words)
        first_new = base.vocab_size
        culprits = {i for b, a in zip(before, after) if a != b for i in a if i >= first_new}
        if not culprits:
            return kept, dropped, len(words)
        bad = {merged.id_to_token(i) for i in culprits}
        dropped += sorted(bad)
        kept = [p for p in kept if p[0] not in bad]
    raise ExtensionError(f"protecting the base segmentation did not settle in {max_rounds} rounds")


def piece_usage(tokenizer: XLMRTokenizer, words: Counter, first_new: int) -> Counter:
    """How often each new id is used when ``tokenizer`` segments the words (weighted by count)."""
    items = list(words.items())
    used: Counter = Counter()
    for (_, count), ids in zip(items, tokenizer.encode_batch([w for w, _ in items])):
        for i in ids:
            if i >= first_new:
                used[i] += count
    return used


def check_reextension(base: XLMRTokenizer, target: XLMRTokenizer, new_pieces: int, key: str) -> None:
    """An already-grown base whose grown pieces the target text proposes again (the same language
    extended twice) is an error: extend the original base model instead."""
    grown = set(base.convert_ids_to_tokens(base.new_ids()))
    proposed = {p.piece for p in read_model(target.sp.serialized_model_proto())[0] if p.type == NORMAL}
    overlap = sorted(grown & proposed)
    if grown and len(overlap) > 0.05 * max(new_pieces, 1):
        raise ExtensionError(f"{key}: the base tokenizer was already extended with {len(grown)} pieces and "
                             f"{len(overlap)} of the target model's pieces are among them (e.g. {overlap[:5]}): "
                             "extend the original base model instead")


def extend_tokenizer(base: XLMRTokenizer, target: XLMRTokenizer, new_pieces: int, base_text: list[str],
                     select: str = "score", usage_text: list[str] | None = None,
                     keys: dict[str, str] | None = None) -> Extension:
    """Grow ``base`` by ``new_pieces`` pieces of ``target`` that keep ``base_text`` segmented as before."""
    keys = {"new_pieces": "new_pieces", "select": "select", "base": "base tokenizer"} | (keys or {})
    if base.sp is None:
        raise ExtensionError(f"{keys['base']}: no sentencepiece.bpe.model (extension edits the sentencepiece model)")
    if select not in SELECTIONS:
        raise ExtensionError(f"{keys['select']} must be one of {SELECTIONS}, got {select!r}")
    if new_pieces <= 0:
        raise ExtensionError(f"{keys['new_pieces']} must be > 0, got {new_pieces}")
    check_reextension(base, target, new_pieces, keys["base"])
    candidates = candidate_pieces(base, target)
    base_words = distinct_words(base_text)
    kept, dropped, checked = protect_base(base, candidates, list(base_words))
    if select == "used":
        merged = base.add_pieces(kept)
        usage = piece_usage(merged, distinct_words(usage_text or []), base.vocab_size)
        by_id = {merged.id_to_token(i): n for i, n in usage.items()}
        kept = sorted((p for p in kept if by_id.get(p[0], 0) > 0), key=lambda p: -by_id[p[0]])
    if len(kept) < new_pieces:
        raise ExtensionError(
            f"{keys['new_pieces']}={new_pieces}, but the target text gives only {len(kept)} usable new pieces "
            f"({len(candidates)} the base lacks, {len(dropped)} dropped to keep base text unchanged"
            + (", unused ones left out" if select == "used" else "")
            + "): lower it, or raise the target model's size / give more text")
    chosen = kept[:new_pieces]
    chosen, more_dropped, _ = protect_base(base, chosen, list(base_words))  # the final set, checked again
    dropped += more_dropped
    if len(chosen) < new_pieces:
        raise ExtensionError(f"{keys['new_pieces']}={new_pieces}: only {len(chosen)} pieces survive the final check")
    chosen = sorted(chosen, key=lambda p: -p[1])  # id order: most probable first
    report = {"target_pieces": target.sp.get_piece_size(), "candidates": len(candidates),
              "dropped_for_base_text": len(dropped), "dropped_examples": dropped[:20],
              "base_words_checked": checked, "new_pieces": len(chosen), "select": select,
              "new_pieces_by_script": dict(Counter(piece_script(p) for p, _ in chosen).most_common())}
    return Extension(base.add_pieces(chosen), chosen, report)


def piece_script(piece: str) -> str:
    """The Unicode script of a piece's first letter, as the first word of its character name
    (``CYRILLIC``, ``HANGUL``, ``LATIN``, ``RUNIC``...), or ``other`` for a piece without a letter."""
    for ch in piece:
        if ch.isalpha():
            return unicodedata.name(ch, "other other").split()[0]
    return "other"


def segmentation_stats(tokenizer: XLMRTokenizer, sentences: list[str]) -> dict:
    """<unk> rate (of pieces and of words) and pieces per word of whitespace words."""
    words = distinct_words(sentences)
    items = list(words.items())
    n_words = sum(words.values())
    pieces = unk_pieces = unk_words = 0
    for (_, count), ids in zip(items, tokenizer.encode_batch([w for w, _ in items])):
        pieces += count * len(ids)
        unks = sum(i == tokenizer.unk_id for i in ids)
        unk_pieces += count * unks
        unk_words += count * (unks > 0)
    return {"words": n_words, "pieces_per_word": pieces / max(n_words, 1),
            "unk_piece_rate": unk_pieces / max(pieces, 1), "unk_word_rate": unk_words / max(n_words, 1)}


def base_text_unchanged(base: XLMRTokenizer, grown: XLMRTokenizer, sentences: list[str]) -> dict:
    """Sentence-level check: every sentence the base reads without <unk> has identical ids."""
    before, after = base.encode_batch(sentences), grown.encode_batch(sentences)
    readable = [(b, a) for b, a in zip(before, after) if base.unk_id not in b]
    changed = sum(a != b for b, a in readable)
    had_unk = len(sentences) - len(readable)
    return {"sentences": len(sentences), "readable": len(readable), "changed": changed,
            "with_unk": had_unk, "with_unk_changed": sum(a != b for b, a in zip(before, after)) - changed}
