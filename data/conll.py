"""Readers and writers for CoNLL-style NER column files.

Three formats, one sentence per block, blank lines between blocks:

- ``index``:  ``0<TAB>Savoyer<TAB>B-LOC``   (PAN-X / WikiNEuRal ``.conllu`` here)
- ``token``:  ``Savoyer B-LOC``             (classic CoNLL; tab or spaces)
- ``xtreme``: ``de:Savoyer<TAB>B-LOC``      (XTREME's PAN-X files; the prefix becomes ``lang``)

``fmt="auto"`` decides from the first data line of the file. A malformed line, a tag outside
the label set or bytes that are not UTF-8 are a :class:`ConllError` naming the file and line
number; a byte-order mark at the start of the file is accepted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from data.labels import PANX_LABELS, is_iob2_tag
from data.lines import utf8_lines

FORMATS = ("index", "token", "xtreme")
_XTREME_TOKEN = re.compile(r"^([a-z]{2,3}):(.+)$")


class ConllError(ValueError):
    """A line that does not fit the column format or the label set."""


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    lang: str | None = None


def _split_columns(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def detect_format(first_line: str) -> str:
    cols = _split_columns(first_line)
    if len(cols) == 3 and cols[0].isdigit():
        return "index"
    if len(cols) == 2 and _XTREME_TOKEN.match(cols[0]):
        return "xtreme"
    if len(cols) == 2:
        return "token"
    raise ConllError(f"cannot tell the column format from {first_line!r}")


def read_conll(path: str | Path, tag_map: dict[str, str] | None = None, fmt: str = "auto",
               labels: Iterable[str] | None = PANX_LABELS, lang: str | None = None) -> list[Sentence]:
    """Read ``path`` into sentences; ``tag_map`` renames tags first (e.g. ``B-MISC -> O``).

    ``labels`` is the allowed tag set after mapping (None: any IOB2 tag). ``lang`` is stored on
    every sentence (XTREME files carry their own).
    """
    path = Path(path)
    tag_map = tag_map or {}
    allowed = set(labels) if labels is not None else None
    valid = {t for t in allowed if is_iob2_tag(t)} if allowed is not None else set()  # fast path
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"fmt must be auto or one of {FORMATS}, got {fmt!r}")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    sent_lang = lang

    def flush():
        nonlocal words, tags, sent_lang
        if words:
            sentences.append(Sentence(words, tags, sent_lang))
        words, tags, sent_lang = [], [], lang

    for lineno, line in utf8_lines(path, ConllError):
        if not line.strip():
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            continue
        if fmt == "auto":
            try:
                fmt = detect_format(line)
            except ConllError as err:
                if line.startswith("#"):
                    continue  # a comment line before the first token line (CoNLL-U '# sent_id = 1')
                raise ConllError(f"{path}:{lineno}: {err}") from None
        cols = line.split("\t") if "\t" in line else line.split()
        if fmt == "index":
            if len(cols) != 3 or not cols[0].isdigit():
                if line.startswith("#"):
                    continue  # CoNLL-U comment line
                raise ConllError(f"{path}:{lineno}: expected 'index<TAB>token<TAB>tag', got {line!r}")
            word, tag = cols[1], cols[2]
        else:
            if len(cols) != 2:
                raise ConllError(f"{path}:{lineno}: expected 'token tag', got {line!r}")
            word, tag = cols
            if fmt == "xtreme":
                match = _XTREME_TOKEN.match(word)
                if not match:
                    raise ConllError(f"{path}:{lineno}: expected 'lang:token<TAB>tag', got {line!r}")
                sent_lang, word = match.group(1), match.group(2)
        if word == "":
            raise ConllError(f"{path}:{lineno}: empty token in {line!r}")
        tag = tag_map.get(tag, tag)
        if tag not in valid and ((allowed is not None and tag not in allowed) or not is_iob2_tag(tag)):
            known = ", ".join(sorted(allowed)) if allowed is not None else "IOB2 tags"
            raise ConllError(f"{path}:{lineno}: unknown tag {tag!r} (known: {known}; "
                             f"rename tags with data.tag_map, e.g. B-MISC: O)")
        words.append(word)
        tags.append(tag)
    flush()
    return sentences


def write_conll(path: str | Path, sentences: Iterable[Sentence], fmt: str = "index") -> None:
    """Write sentences in ``fmt`` (index | token | xtreme), a blank line after each."""
    lines = []
    for sent in sentences:
        for i, (word, tag) in enumerate(zip(sent.words, sent.tags)):
            if fmt == "index":
                lines.append(f"{i}\t{word}\t{tag}")
            elif fmt == "token":
                lines.append(f"{word}\t{tag}")
            elif fmt == "xtreme":
                lines.append(f"{sent.lang}:{word}\t{tag}")
            else:
                raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
        lines.append("")
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
