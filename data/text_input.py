"""The input of ``evaluate.py --predict`` and the entity spans it writes.

    sentences = read_input("in.txt")              # or "-" for standard input; layout detected
    records = to_jsonl_records(sentences, tags, probs)   # [{"text", "entities": [...]}]

Layouts (``input_format``): ``text``, one sentence a line, words split on whitespace, each word's
character span in the line kept; ``conll``, a CoNLL file with tags (kept aside, any IOB2 tag):
``index TOKEN TAG``, ``TOKEN TAG``, or more columns with the tag last (CoNLL-2003's
``TOKEN POS CHUNK TAG``: the word is the first column), ``-DOCSTART-`` lines skipped; ``words``,
one word a line with blank lines between sentences. ``auto`` picks conll when the first token line
is ``index TOKEN TAG`` or ``TOKEN TAG``, or when it has three or more columns ending in an IOB2
tag and so do nine lines in ten (more than one line, or a tag other than O), so the tags of a
tagged file are never read as words (a malformed line is an error naming it); words when every
line is a single token (more than one line: a file of single-word lines is never read as one-word
sentences; a note says so); else text. For conll/words input the text of a sentence is its words
joined by single spaces.

Entities are read off IOB2 tags by the conlleval rule (an I-X that does not continue an X starts a
new entity), the grouping seqeval and transformers' pipeline use. Bad input is an
:class:`InputError` (or data.conll.ConllError) naming the file and line.
"""
from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from data.conll import ConllError, read_conll
from data.labels import is_iob2_tag

INPUT_FORMATS = ("auto", "text", "conll", "words")


class InputError(ValueError):
    """Input that cannot be read (not UTF-8, empty, missing)."""


@dataclass
class InputSentence:
    """One sentence of --predict input: its words, their character spans in ``text``, gold tags if any."""
    text: str
    spans: list[tuple[int, int]]
    tags: list[str] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        return [self.text[a:b] for a, b in self.spans]


def _decode(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(f"{name}:{line}: not UTF-8 (byte 0x{data[err.start]:02x} at column {column}); "
                         f"convert it first, e.g. iconv -f latin1 -t utf-8") from None
    return text.removeprefix("\ufeff")


def check_utf8(source: str | Path) -> None:
    """An InputError naming the file and line when ``source`` cannot be read or is not UTF-8."""
    try:
        _decode(Path(source).read_bytes(), str(source))
    except OSError as err:
        raise InputError(f"{source}: cannot read ({err.strerror})") from None


def _columns(line: str) -> list[str]:
    line = line.strip()
    return line.split("\t") if "\t" in line else line.split()


def _token_lines(lines: list[str]) -> list[str]:
    """Non-blank lines less -DOCSTART- and comment lines ('#' not followed by columns ending in a tag)."""
    return [line for line in lines if line.strip() and not line.startswith("-DOCSTART-")
            and not (line.startswith("#") and not is_iob2_tag(_columns(line)[-1]))]


def detect_input_format(lines: list[str]) -> str:
    """conll (a first token line 'index TOKEN TAG' or 'TOKEN TAG', tab- or space-separated, TAG an
    IOB2 tag; or 3+ columns ending in a tag, as nine lines in ten do), words (every line one token,
    more than one line), else text."""
    content = _token_lines(lines) or [line for line in lines if line.strip()]
    cols = _columns(content[0])
    if (len(cols) == 3 and cols[0].isdigit() and is_iob2_tag(cols[2])) or (len(cols) == 2 and is_iob2_tag(cols[1])):
        return "conll"
    if len(cols) >= 3 and is_iob2_tag(cols[-1]) and (len(content) > 1 or cols[-1] != "O"):
        tagged = sum(is_iob2_tag(_columns(line)[-1]) for line in content)  # lines whose last column is a tag
        if tagged >= 0.9 * len(content):
            return "conll"
    if len(content) > 1 and all(len(line.split()) == 1 for line in content):
        return "words"
    return "text"


def _joined(words: list[str], tags: list[str] | None = None) -> InputSentence:
    spans, pos = [], 0
    for word in words:
        spans.append((pos, pos + len(word)))
        pos += len(word) + 1
    return InputSentence(" ".join(words), spans, list(tags or []))


def read_input(source: str | Path, input_format: str = "auto") -> list[InputSentence]:
    """Sentences of --predict input (``-`` = standard input); raises InputError / ConllError naming
    the file and line."""
    name = "<stdin>" if str(source) == "-" else str(source)
    if str(source) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise InputError(f"{name}: cannot read ({err.strerror})") from None
    lines = [line.removesuffix("\r") for line in _decode(data, name).split("\n")]
    if not any(line.strip() for line in lines):
        raise InputError(f"{name}: no sentences (the input is empty)")
    fmt = detect_input_format(lines) if input_format == "auto" else input_format
    if input_format == "auto" and fmt == "words":
        print(f"note: reading {name} as words (one word a line, blank lines between sentences); "
              f"--input-format text reads each line as a sentence", file=sys.stderr)
    if fmt == "text":
        return [InputSentence(line, [m.span() for m in re.finditer(r"\S+", line)]) for line in lines if line.strip()]
    if fmt == "words":
        sentences, words = [], []
        for line in lines + [""]:
            if line.strip():
                words.append(line.strip())
            elif words:
                sentences.append(_joined(words))
                words = []
        return sentences
    tokens = _token_lines(lines)
    first = _columns(tokens[0]) if tokens else []
    if len(first) > 3 or (len(first) == 3 and not first[0].isdigit()):  # TOKEN ... TAG (CoNLL-2003)
        return _read_columns(lines, len(first), name)
    with tempfile.TemporaryDirectory() as tmp:  # read_conll reads a file; errors name the input, not tmp
        path = Path(tmp) / "input.conll"
        path.write_text("\n".join(lines), encoding="utf-8")
        try:
            sentences = read_conll(path, labels=None)
        except ConllError as err:
            raise ConllError(str(err).replace(str(path), name)) from None
    if not sentences:
        raise InputError(f"{name}: no sentences")
    return [_joined(s.words, s.tags) for s in sentences]


def _read_columns(lines: list[str], width: int, name: str) -> list[InputSentence]:
    """A CoNLL file of ``width`` columns, the word first and the IOB2 tag last; errors name the line."""
    sentences, words, tags = [], [], []
    for lineno, line in enumerate(lines + [""], start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(_joined(words, tags))
            words, tags = [], []
            continue
        cols = _columns(line)
        if len(cols) != width or not is_iob2_tag(cols[-1]):
            if line.startswith("#"):
                continue  # a comment line
            raise InputError(f"{name}:{lineno}: expected {width} columns ending in an IOB2 tag, like the first "
                             f"token line; got {line[:120]!r}")
        words.append(cols[0])
        tags.append(cols[-1])
    if not sentences:
        raise InputError(f"{name}: no sentences")
    return sentences


def entity_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(first word, last word + 1, type) of each entity in IOB2 tags, by the conlleval rule: an
    I-X that does not continue an X entity starts a new one."""
    out: list[list] = []
    for i, tag in enumerate(tags):
        if tag == "O":
            continue
        prefix, etype = tag[:2], tag[2:]
        if prefix == "I-" and out and out[-1][1] == i and out[-1][2] == etype:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1, etype])
    return [tuple(e) for e in out]


def to_jsonl_records(sentences: list[InputSentence], pred: list[list[str]],
                     probs: list[list[float]]) -> list[dict]:
    records = []
    for sent, tags, p in zip(sentences, pred, probs):
        entities = []
        for first, last, etype in entity_spans(tags):
            start, end = sent.spans[first][0], sent.spans[last - 1][1]
            entities.append({"start": start, "end": end, "label": etype, "text": sent.text[start:end],
                             "score": round(sum(p[first:last]) / (last - first), 6)})
        records.append({"text": sent.text, "entities": entities})
    return records
