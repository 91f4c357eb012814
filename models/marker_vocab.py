"""Marker vocabulary surgery: the entity-marker tokens of a style (data/markers.py) as new special
tokens of the tokenizer and new embedding rows of the encoder.

Legend: V base vocabulary, N new marker tokens.

    tokenizer, special_ids = add_marker_tokens(encoder, tokenizer, marker_tokens(style, types))

The new rows go through models/extend.py (old rows bit-identical), each the mean of the base
pieces of the marker's spelled-out name (``[/SUBJ-PER]`` -> "subj per"). As special tokens, the
exported tokenizer.json cuts them out of raw text, as transformers does.
"""
from __future__ import annotations

from torch import nn


def add_marker_tokens(encoder: nn.Module, tokenizer, tokens: list[str]):
    """(grown tokenizer, {token: id}): ids V .. V + N - 1 after the encoder's V embedding rows."""
    from models.extend import grow_vocabulary

    V = encoder.embeddings.word_embeddings.num_embeddings
    grown, ids = tokenizer.add_special_tokens(tokens)
    if ids != list(range(V, V + len(tokens))):
        raise ValueError(f"marker ids {ids[:3]}.. do not follow the {V} embedding rows")
    sources = [tokenizer.encode(t.strip("[]").replace("/", "").replace("-", " ").lower(), add_special_tokens=False)
               for t in tokens]
    grow_vocabulary(encoder, len(tokens), init="mean", sources=sources)
    return grown, dict(zip(tokens, ids))
