"""Plain text lines from the files a user has, whatever their format.

    lines = read_source(root, "eltec/rus.txt")                                  # one paragraph a line
    lines = read_source(root, "kowiki/AA/wiki_*")                               # a glob, files in name order
    lines = read_source(root, "nsmc/reviews.tsv.gz#review")                     # a column of a TSV (gzip ok)
    lines = read_source(root, "klue_re/train_subset/val_predictions.csv#sentence", max_lines=1000)

A spec is a path relative to the data root, optionally with ``#column`` for .csv / .tsv files
(read by header name; .gz is unpacked on the fly; a CSV's BOM is skipped). Plain files give one
line per non-empty line, whitespace folded, HTML escapes undone; lines that are markup of the
dumps at hand are skipped: WikiExtractor's ``<doc ...>`` / ``</doc>`` and ELTeC's ``### file``
headers. Bytes that are not UTF-8 are an error naming the config key, the file and the line.
``max_lines`` keeps the first N lines of the spec (0 = all). ``drop_overlaps`` removes
the lines that hold an evaluation sentence (e.g. Wikipedia text that quotes a test sentence).
"""
from __future__ import annotations

import codecs
import csv
import gzip
import html
import zlib
from pathlib import Path

SKIP_PREFIXES = ("<doc ", "</doc>", "### ")


class TextSourceError(ValueError):
    """A text source that is missing, empty or malformed (the message names the config key)."""


def _decoded(path: Path, key: str):
    """The lines of a file (gzip unpacked), decoded as UTF-8 with their newlines, a BOM dropped; bytes
    that are not UTF-8 (or a broken gzip stream) are an error naming the file and line."""
    number = 0
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise TextSourceError(f"{key}: {path}:{number}: not UTF-8 (byte 0x{raw[err.start]:02x} at column "
                                          f"{err.start + 1}); convert the file, e.g. iconv -f latin1 -t utf-8") from None
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise TextSourceError(f"{key}: {path}: unreadable after line {number} ({err})") from None


def _fold(text: str) -> str:
    return " ".join(html.unescape(text).split())


def _plain_lines(path: Path, key: str):
    for raw in _decoded(path, key):
        line = _fold(raw)
        if line and not line.startswith(SKIP_PREFIXES):
            yield line


def _column_lines(path: Path, column: str, key: str):
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    delimiter = "\t" if stem.endswith(".tsv") else ","
    reader = csv.DictReader(_decoded(path, key), delimiter=delimiter,
                            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    try:
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise TextSourceError(f"{key}: {path} has no column {column!r} (columns: {reader.fieldnames})")
        for row in reader:
            value = row.get(column)
            if value is None:
                raise TextSourceError(f"{key}: {path}:{reader.line_num}: row has no {column!r} field")
            line = _fold(value)
            if line:
                yield line
    except csv.Error as err:  # e.g. a cell over csv's field size limit: an unbalanced quote, usually
        raise TextSourceError(f"{key}: {path}:{reader.line_num + 1}: unreadable {delimiter!r}-separated text ({err}; "
                              f"a cell over {csv.field_size_limit():,} characters usually means an unbalanced quote)") from None


def drop_markup(lines: list[str]) -> list[str]:
    """The lines that are not markup of the dumps at hand (the rule ``read_source`` applies to plain
    files): for readers that keep every line, e.g. the MLM task's ``mlm.text_files``."""
    return [line for line in lines if not line.startswith(SKIP_PREFIXES)]


def source_paths(root: Path, spec: str, key: str) -> tuple[list[Path], str]:
    """(the files of a spec, its column or "") -- a named error when nothing matches."""
    rel, _, column = spec.partition("#")
    if any(ch in rel for ch in "*?["):
        paths = sorted(p for p in root.glob(rel) if p.is_file())
    else:
        paths = [root / rel] if (root / rel).is_file() else []
    if not paths:
        raise TextSourceError(f"{key}: no file {root / rel} (paths are relative to the data root {root})")
    return paths, column


def read_source(root: str | Path, spec: str, max_lines: int = 0, key: str = "text source") -> list[str]:
    """The non-empty lines of one spec; an error naming ``key`` and the file if it gives none."""
    paths, column = source_paths(Path(root), spec, key)
    lines: list[str] = []
    for path in paths:
        for line in (_column_lines(path, column, key) if column else _plain_lines(path, key)):
            lines.append(line)
            if max_lines and len(lines) >= max_lines:
                return lines
    if not lines:
        raise TextSourceError(f"{key}: {', '.join(map(str, paths))} holds no text lines")
    return lines


def drop_overlaps(lines: list[str], excluded: list[str], key_chars: int = 20) -> tuple[list[str], int]:
    """(lines holding none of the ``excluded`` sentences, number dropped). A line is dropped when an
    excluded sentence's first ``key_chars`` characters start at one of its word starts (shorter
    excluded sentences: when the line equals one) -- evaluation text kept out of training text."""
    keys = {s[:key_chars] for s in excluded if len(s) >= key_chars}
    short = {s for s in excluded if len(s) < key_chars}
    kept = []
    for line in lines:
        starts = [0] + [i + 1 for i, ch in enumerate(line) if ch == " "]
        if line in short or any(line[i:i + key_chars] in keys for i in starts):
            continue
        kept.append(line)
    return kept, len(lines) - len(kept)
