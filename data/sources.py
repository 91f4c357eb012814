"""Find each language's split files, carve splits of single-file languages, download if asked.

    sents = load_split(cfg.data, "de", "train")     # PAN-X: panx/de/train.conllu
    sents = load_split(cfg.data, "fr", "test")      # WikiNEuRal: carved from wikineural/fr/val.conllu

Files are looked up under the data root (``cfg.data.root``, else ``core.paths.data_root()``),
then in the download cache. When a file is missing and ``cfg.data.url_template`` is set it is
downloaded into the cache with ``data.download.download``; offline, the error names every
missing file and where to put it. ``ensure_files`` also parses every needed split up front, so
a malformed, non-UTF-8 or empty file (each split needs a sentence) stops a run before training,
with the file named.

Single-file languages (``cfg.data.val_only_langs``, WikiNEuRal fr/it ship only ``val.conllu``)
get train/dev/test by a fixed-seed shuffle of that file's sentences: the first
``carve_sizes["test"]`` shuffled sentences are test, the next ``carve_sizes["dev"]`` dev, the
rest train; each part keeps the file order. Defaults: fr 8,600 / 2,000 / 2,000 and
it 7,050 / 2,000 / 2,000 (train / dev / test).
"""
from __future__ import annotations

import random
from pathlib import Path

from core.config import ConfigError
from core.paths import cache_dir, confined, data_root
from data.conll import ConllError, Sentence, read_conll

SPLITS = ("train", "dev", "test")


class MissingDataError(FileNotFoundError):
    """Split files that are neither under the data root nor downloadable."""


def resolve_root(data_cfg) -> Path:
    return Path(data_cfg.root) if data_cfg.root else data_root()


def relative_path(data_cfg, lang: str, split: str) -> str:
    """The file's path relative to the data root, e.g. ``panx/de/val.conllu`` for de/dev.

    A layout that is absolute or climbs out with ``..`` is a ConfigError naming ``data.layout``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if lang not in data_cfg.layout:
        raise KeyError(f"no file layout for language {lang!r}; add it to data.layout "
                       f"(known: {', '.join(sorted(data_cfg.layout))})")
    stem = data_cfg.split_names["dev"] if lang in data_cfg.val_only_langs else data_cfg.split_names[split]
    rel = data_cfg.layout[lang].format(lang=lang, split=stem)
    if not rel.strip() or Path(rel).is_absolute() or ".." in Path(rel).parts or "\\" in rel:
        raise ConfigError(f"data.layout[{lang!r}]: {rel!r} must be a relative path inside the data root "
                          f"and the download cache (no '..', no absolute path)")
    return rel


def split_path(data_cfg, lang: str, split: str) -> Path:
    """The file that holds ``lang``'s ``split`` (for val-only languages: the file it is carved from).

    Looks under the data root, then the cache; returns the data-root path if neither has it.
    """
    rel = relative_path(data_cfg, lang, split)
    for base in (resolve_root(data_cfg), cache_dir() / "data"):
        if (base / rel).is_file():
            return base / rel
    return resolve_root(data_cfg) / rel


def ensure_files(data_cfg, wanted: list[tuple[str, str]], read: bool = True) -> dict[tuple[str, str], Path]:
    """Paths for (lang, split) pairs, checked before any long work.

    Missing files are downloaded if ``url_template`` is set, else one :class:`MissingDataError`
    lists all of them. With ``read`` every split is also parsed: a malformed or non-UTF-8 line, or
    a split without a single sentence, is a :class:`ConllError` naming the file (and line).
    """
    found, missing = {}, []
    for lang, split in wanted:
        path = split_path(data_cfg, lang, split)
        if path.is_file():
            found[(lang, split)] = path
        elif data_cfg.url_template:
            found[(lang, split)] = _download(data_cfg, lang, split)
        else:
            missing.append(path)
    if missing:
        names = "\n  ".join(str(p) for p in dict.fromkeys(missing))
        raise MissingDataError(
            f"NER data files not found:\n  {names}\nPut them there (CoNLL columns 'index token tag', "
            f"see docs/NER.md), point data.root or $XLT_DATA_ROOT at a folder that has them, or set "
            f"data.url_template to download them into {cache_dir() / 'data'}.")
    if read:
        parsed: dict[Path, list[Sentence]] = {}
        for (lang, split), path in found.items():
            _read_split(data_cfg, lang, split, path, parsed)
    return found


def _download(data_cfg, lang: str, split: str) -> Path:
    from data.download import download  # the ENCODER engineer's generic HTTPS download

    rel = relative_path(data_cfg, lang, split)
    dest = confined(cache_dir() / "data", rel, f"data.layout[{lang!r}]")  # symlinks may not lead out either
    url = data_cfg.url_template.format(lang=lang, split=Path(rel).stem)
    return download(url, dest)


def carve_split(sentences: list[Sentence], split: str, sizes: dict[str, int], seed: int) -> list[Sentence]:
    """A fixed-seed train/dev/test partition of one file's sentences (see the module docstring)."""
    n_test, n_dev = sizes.get("test", 0), sizes.get("dev", 0)
    if n_test + n_dev >= len(sentences):
        raise ValueError(f"cannot carve test {n_test} + dev {n_dev} out of {len(sentences)} sentences")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    parts = {"test": order[:n_test], "dev": order[n_test:n_test + n_dev], "train": order[n_test + n_dev:]}
    return [sentences[i] for i in sorted(parts[split])]


def _read_split(data_cfg, lang: str, split: str, path: Path,
                parsed: dict[Path, list[Sentence]] | None = None) -> list[Sentence]:
    """Parse ``path`` (once per ``parsed`` cache), carve if needed; an empty split is a ConllError."""
    parsed = {} if parsed is None else parsed
    if path not in parsed:
        parsed[path] = read_conll(path, tag_map=data_cfg.tag_map, lang=lang)
    sentences = parsed[path]
    if not sentences:
        raise ConllError(f"{path}: no sentences (empty, or only blank and comment lines); "
                         f"{lang} {split} needs at least one")
    if lang in data_cfg.val_only_langs:
        try:
            sentences = carve_split(sentences, split, data_cfg.carve_sizes, data_cfg.carve_seed)
        except ValueError as err:
            raise ConllError(f"{path}: {err} (data.carve_sizes)") from None
        if not sentences:
            raise ConllError(f"{path}: the {split} part carved for {lang} is empty (data.carve_sizes)")
    return sentences


def load_split(data_cfg, lang: str, split: str) -> list[Sentence]:
    """Sentences of ``lang``'s ``split`` with ``data_cfg.tag_map`` applied; ``lang`` set on each.

    Errors name the file: missing (MissingDataError), malformed, not UTF-8 or empty (ConllError).
    """
    path = ensure_files(data_cfg, [(lang, split)], read=False)[(lang, split)]
    return _read_split(data_cfg, lang, split, path)
