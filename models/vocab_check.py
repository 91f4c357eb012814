"""The tokenizer and the model of a checkpoint must agree on the vocabulary.

    check_vocab_match(model.config.vocab_size, tokenizer, "model.name_or_path", cfg.model.name_or_path)

A tokenizer from one checkpoint and weights from another (a 600-piece tokenizer beside
250,002 embedding rows) would train and export without a sign: ids past the tokenizer's range are
never used, or ids past the embedding's range fail deep in a batch. Every task that loads a
checkpoint checks once, at build time, and the error names both sizes and both files.
"""
from __future__ import annotations

from pathlib import Path

from models.resolve import TOKENIZER_FILES, resolve_model_dir


def _files(name_or_path: str | Path) -> tuple[str, str]:
    """(config file, tokenizer file) as a user would find them: full paths for a local folder."""
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        try:
            folder = resolve_model_dir(name_or_path, need_weights=False)  # already resolved by the loader
        except (OSError, ValueError):
            return f"{name_or_path} config.json", f"{name_or_path} tokenizer"
    tok = next((folder / f for f in TOKENIZER_FILES if (folder / f).is_file()), folder / "tokenizer")
    return str(folder / "config.json"), str(tok)


def check_vocab_match(model_rows: int, tokenizer, key: str, name_or_path: str | Path) -> None:
    """Raise ValueError unless the tokenizer has exactly ``model_rows`` ids (the embedding rows of the
    checkpoint's config.json); ``key`` is the config key that named the checkpoint."""
    pieces = tokenizer.vocab_size
    if pieces == model_rows:
        return
    config_file, tokenizer_file = _files(name_or_path)
    raise ValueError(f"{key}: the tokenizer ({tokenizer_file}) has {pieces:,} pieces but the model "
                     f"({config_file} vocab_size) has {model_rows:,} embedding rows: the tokenizer and the weights "
                     f"must come from the same checkpoint")
