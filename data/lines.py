"""Lines of a UTF-8 data file, with an error that names the file and line of any byte that is not UTF-8.

    for lineno, line in utf8_lines(path):   # 1-based numbers, newline removed, a leading BOM dropped

Every reader of text data (CoNLL files, plain text, dictionaries) goes through here, so a Latin-1
file or a stray byte is reported as ``path:line: not UTF-8 ...`` instead of a bare
``UnicodeDecodeError`` from somewhere in a training run.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import Iterator


class TextFileError(ValueError):
    """A data file that cannot be read as UTF-8 text."""


def utf8_lines(path: str | Path, error: type[ValueError] = TextFileError) -> Iterator[tuple[int, str]]:
    """(line number, line without ``\\n`` / ``\\r\\n``) of ``path``; raises ``error`` naming file and line."""
    path = Path(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                            f"convert the file, e.g. iconv -f latin1 -t utf-8") from None
            yield lineno, line.rstrip("\r\n")
