"""Relation-extraction readers: KLUE-RE (CSV and official JSON), KBP37 and CoNLL04 -> examples.

    rows = read_klue_csv(path, relation_names)             # list[RelationExample]; errors name the row
    rows, bad = read_klue_csv(path, names, skip_bad_rows=True, return_bad=True)

Every reader gives ``RelationExample``s: one sentence, a subject and an object ``Entity`` as
character spans (``end`` INCLUSIVE, as KLUE writes it: ``sentence[start:end + 1] == word``) and a
relation name. A bad record (span characters != word, start > end, overlapping subject/object,
unknown label or type, a malformed dict cell, a missing column; CoNLL04: tags and tokens of
different lengths, a relation from an entity to itself, a pair listed twice) raises
``RelationDataError`` naming the file, the line (or record / item index) and the guid; with
``skip_bad_rows=True`` it is counted instead and returned in the list of bad-row messages (never
silently dropped: the task prints the count). Errors of the file itself stop the read whatever
``skip_bad_rows`` says: bytes that are not UTF-8 or malformed JSON (file, line), a guid given twice
in one labelled file (both rows; CoNLL04: an orig_id, both items), a CSV cell over csv's field size
limit.

The KLUE dev split (``split_klue_dev``): dev.csv is the only labelled KLUE data beside the
3,247-row train subset, so it is carved once by a seeded shuffle into a test part (nothing
trains or selects on it), a small dev part (model selection, the prior/temperature fits) and the
rest (joins training when ``relation.klue_rest_to_train``). Prior shift: no_relation is ~29% of
the train subset but ~60% of dev.csv; the rest moves the training prior towards dev's.
"""
from __future__ import annotations

import ast
import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

NO_RELATION = "no_relation"
KLUE_TYPES = ("PER", "ORG", "LOC", "DAT", "POH", "NOH")
KLUE_COLUMNS = ("guid", "sentence", "subject_entity", "object_entity", "label")
CONLL04_TYPES = ("Loc", "Org", "Peop", "Other")
CONLL04_RELATIONS = ("Work_For", "Kill", "OrgBased_In", "Live_In", "Located_In")


class RelationDataError(ValueError):
    """A record that does not fit the format: names the file, line and guid."""


@dataclass(frozen=True)
class Entity:
    word: str
    start: int  # first character
    end: int  # last character, INCLUSIVE
    type: str  # "" when the data set has no entity types (KBP37)


@dataclass(frozen=True)
class RelationExample:
    guid: str
    sentence: str
    subj: Entity
    obj: Entity
    label: str  # relation name, e.g. "per:employee_of" or "no_relation"
    source: str = ""


def type_pair(ex: RelationExample) -> str:
    """"SUBJTYPE-OBJTYPE" ("-" for an untyped entity): the key of the type constraint and its scores."""
    return f"{ex.subj.type or '-'}-{ex.obj.type or '-'}"


def check_example(ex: RelationExample, types: tuple[str, ...] | None, labels: list[str] | None) -> None:
    """Raise ValueError (without the file/row, the caller adds them) if the example is inconsistent."""
    for role, e in (("subject", ex.subj), ("object", ex.obj)):
        if e.start > e.end:
            raise ValueError(f"{role} start_idx {e.start} > end_idx {e.end}")
        if e.start < 0 or e.end >= len(ex.sentence):
            raise ValueError(f"{role} span {e.start}..{e.end} outside the sentence ({len(ex.sentence)} chars)")
        if ex.sentence[e.start:e.end + 1] != e.word:
            raise ValueError(f"{role} span {e.start}..{e.end} reads {ex.sentence[e.start:e.end + 1]!r}, "
                             f"not its word {e.word!r}")
        if types is not None and e.type not in types:
            raise ValueError(f"unknown {role} type {e.type!r} (known: {', '.join(types)})")
    if ex.subj.start <= ex.obj.end and ex.obj.start <= ex.subj.end:
        raise ValueError(f"subject {ex.subj.start}..{ex.subj.end} and object {ex.obj.start}..{ex.obj.end} overlap")
    if labels is not None and ex.label not in labels:
        raise ValueError(f"unknown label {ex.label!r}")


class _Collector:
    """Raise on the first bad record, or (skip_bad_rows) keep its message and go on."""

    def __init__(self, path: Path, skip_bad_rows: bool):
        self.path, self.skip, self.bad = path, skip_bad_rows, []

    def fail(self, where: int | str, guid: str, why: str) -> None:
        """where: a line number, or another locator ("record 3", "item 7")."""
        where = f"line {where}" if isinstance(where, int) else where
        msg = f"{self.path}: {where} (guid {guid or '?'}): {why}"
        if not self.skip:
            raise RelationDataError(msg)
        self.bad.append(msg)


def _finish(examples, collector: _Collector, return_bad: bool):
    return (examples, collector.bad) if return_bad else examples


def _not_utf8(path: Path, data: bytes, err: UnicodeDecodeError, offset: int = 0,
              first_line: int = 1) -> RelationDataError:
    """The error for bytes that are not UTF-8: file, line and column of the first bad byte
    (``data`` starts on line ``first_line`` of the file; ``offset`` bytes before ``err``'s text)."""
    start = offset + err.start
    line = first_line + data.count(b"\n", 0, start)
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return RelationDataError(f"{path}: line {line}: not UTF-8 (byte 0x{data[start]:02x} at column {column}); "
                             f"convert the file, e.g. iconv -f latin1 -t utf-8")


def read_utf8(path: str | Path) -> str:
    """The text of a UTF-8 file (a BOM dropped); an error naming the file and line otherwise."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, data, err, 3 if data.startswith(b"\xef\xbb\xbf") else 0) from None


def read_json(path: str | Path):
    """A UTF-8 JSON file; malformed JSON is an error naming the file, line and column."""
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise RelationDataError(f"{path}: line {err.lineno} column {err.colno}: malformed JSON ({err.msg})") from None


def _csv_lines(path: Path, handle):
    """The lines of a binary handle decoded as UTF-8 (BOM dropped), newlines kept for csv."""
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _not_utf8(path, raw, err, first_line=number) from None


class _Guids:
    """Each guid of a labelled file once: a repeat is an error naming both rows (never a silent duplicate)."""

    def __init__(self, path: Path):
        self.path, self.seen = path, {}

    def check(self, where: str, ex: RelationExample) -> None:
        if ex.guid not in self.seen:
            self.seen[ex.guid] = (where, ex)
            return
        first, other = self.seen[ex.guid]
        what = (f"conflicting labels {other.label!r} and {ex.label!r}" if other.label != ex.label
                else "the same label" if other == ex else "different entities or text")
        raise RelationDataError(f"{self.path}: guid {ex.guid} is on {first} and on {where} with {what}: "
                                f"each guid must appear once")


# ---- KLUE-RE ------------------------------------------------------------------------------------
def read_relation_names(path: str | Path) -> list[str]:
    """relation_list.json ({"relations": [...]}, index = integer label; 0 = no_relation)."""
    data = read_json(path)
    names = data.get("relations") if isinstance(data, dict) else None
    if not isinstance(names, list):
        raise RelationDataError(f"{path}: expected {{\"relations\": [...]}}")
    if not names or names[0] != NO_RELATION:
        raise RelationDataError(f"{path}: relations[0] must be {NO_RELATION!r}")
    return names


def _klue_entity(cell, role: str) -> Entity:
    value = ast.literal_eval(cell) if isinstance(cell, str) else cell  # literals only: no code runs
    if not isinstance(value, dict):
        raise ValueError(f"{role}_entity is not a dict: {cell!r}")
    missing = [k for k in ("word", "start_idx", "end_idx", "type") if k not in value]
    if missing:
        raise ValueError(f"{role}_entity lacks {missing}")
    start, end = value["start_idx"], value["end_idx"]
    if not (isinstance(start, int) and isinstance(end, int)):
        raise ValueError(f"{role}_entity start_idx/end_idx must be integers, got {start!r}, {end!r}")
    return Entity(str(value["word"]), start, end, str(value["type"]))


def _klue_label(raw, names: list[str]) -> str:
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw)
    if isinstance(raw, int):
        if not 0 <= raw < len(names):
            raise ValueError(f"unknown label {raw} (0..{len(names) - 1})")
        return names[raw]
    if raw not in names:
        raise ValueError(f"unknown label {raw!r}")
    return raw


def _klue_record(rec: dict, names: list[str]) -> RelationExample:
    try:
        subj = _klue_entity(rec["subject_entity"], "subject")
        obj = _klue_entity(rec["object_entity"], "object")
    except (SyntaxError, ValueError) as err:
        raise ValueError(f"malformed entity cell: {err}") from None
    label = _klue_label(rec["label"], names) if names is not None else ""  # None: rows to predict
    ex = RelationExample(str(rec["guid"]), rec["sentence"], subj, obj, label, str(rec.get("source") or ""))
    check_example(ex, KLUE_TYPES, names)
    return ex


def read_klue_csv(path: str | Path, names: list[str] | None, skip_bad_rows: bool = False,
                  return_bad: bool = False):
    """A KLUE-RE CSV export (dev.csv, or the train subset with its extra columns, BOM allowed).
    names=None: rows to predict; the label column may be absent and is ignored."""
    path = Path(path)
    collector = _Collector(path, skip_bad_rows)
    examples, guids = [], _Guids(path)
    with path.open("rb") as f:
        reader = csv.DictReader(_csv_lines(path, f))
        try:
            columns = KLUE_COLUMNS if names is not None else KLUE_COLUMNS[:-1]
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise RelationDataError(f"{path}: line 1 (header): missing column(s) {missing}")
            for rec in reader:
                guid = rec.get("guid") or ""
                empty = [c for c in columns if rec.get(c) is None]
                if empty:
                    collector.fail(reader.line_num, guid, f"row lacks column(s) {empty}")
                    continue
                try:
                    ex = _klue_record(rec, names)
                except ValueError as err:
                    collector.fail(reader.line_num, guid, str(err))
                    continue
                if names is not None:
                    guids.check(f"line {reader.line_num}", ex)
                examples.append(ex)
        except csv.Error as err:  # e.g. a cell over csv's field size limit: an unbalanced quote, usually
            raise RelationDataError(f"{path}: line {reader.line_num + 1}: unreadable CSV ({err}; a cell over "
                                    f"{csv.field_size_limit():,} characters usually means an unbalanced quote)") from None
    return _finish(examples, collector, return_bad)


def read_klue_json(path: str | Path, names: list[str], skip_bad_rows: bool = False, return_bad: bool = False):
    """The official layout (klue-re-v1.1_train.json): a JSON list of records whose label is the
    relation name (or its index); the entity fields are dicts, not strings."""
    path = Path(path)
    collector = _Collector(path, skip_bad_rows)
    records = read_json(path)
    if not isinstance(records, list):
        raise RelationDataError(f"{path}: expected a JSON list of records")
    examples, guids = [], _Guids(path)
    for i, rec in enumerate(records):
        guid = str(rec.get("guid", "")) if isinstance(rec, dict) else ""
        where = f"record {i}"
        missing = [c for c in KLUE_COLUMNS if not isinstance(rec, dict) or c not in rec]
        if missing:
            collector.fail(where, guid, f"record lacks field(s) {missing}")
            continue
        try:
            ex = _klue_record(rec, names)
        except ValueError as err:
            collector.fail(where, guid, str(err))
            continue
        guids.check(where, ex)
        examples.append(ex)
    return _finish(examples, collector, return_bad)


def split_klue_dev(examples: list[RelationExample], test_size: int, dev_size: int, seed: int):
    """(test, dev, rest): a seeded shuffle of dev.csv, cut once. Same seed -> same parts."""
    if test_size + dev_size > len(examples):
        raise ValueError(f"test {test_size} + dev {dev_size} > {len(examples)} rows")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    parts = order[:test_size], order[test_size:test_size + dev_size], order[test_size + dev_size:]
    return tuple([examples[i] for i in sorted(p)] for p in parts)


# ---- KBP37 ---------------------------------------------------------------------------------------
MARKUP = ("<e1>", "</e1>", "<e2>", "</e2>")


def _kbp37_sentence(text: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """Strip the <e1>/<e2> markup of a whitespace-tokenised sentence: (clean text, char spans)."""
    words, spans, opened = [], {}, {}
    length = 0
    for tok in text.split():
        if tok in ("<e1>", "<e2>"):
            opened[tok[1:3]] = length + (1 if words else 0)
            continue
        if tok in ("</e1>", "</e2>"):
            key = tok[2:4]
            if key not in opened:
                raise ValueError(f"{tok} without {tok.replace('/', '')}")
            start = opened.pop(key)
            if start > length - 1:
                raise ValueError(f"empty entity <{key}> </{key}>")
            spans[key] = (start, length - 1)
            continue
        length += len(tok) + (1 if words else 0)
        words.append(tok)
    if set(spans) != {"e1", "e2"} or opened:
        raise ValueError("needs exactly one <e1>..</e1> and one <e2>..</e2>")
    return " ".join(words), spans


def read_kbp37(path: str | Path, labels: list[str] | None = None, skip_bad_rows: bool = False,
               return_bad: bool = False):
    """KBP37 text: `id<TAB>"sentence with <e1> .. </e1> <e2> .. </e2>"`, the label line, blank lines.
    The subject is e1, the object e2; the label keeps its direction, e.g. per:employee_of(e1,e2).
    labels=None accepts any label (the training file defines the set)."""
    path = Path(path)
    collector = _Collector(path, skip_bad_rows)
    lines = read_utf8(path).splitlines()
    examples, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        line_no, head = i + 1, lines[i]
        label = lines[i + 1].strip() if i + 1 < len(lines) else ""  # one label has a trailing space
        i += 2
        guid, sep, quoted = head.partition("\t")
        try:
            if not sep or not label:
                raise ValueError("expected `id<TAB>\"sentence\"` followed by a label line")
            sentence, spans = _kbp37_sentence(quoted.strip().strip('"'))
            (s0, s1), (o0, o1) = spans["e1"], spans["e2"]
            ex = RelationExample(guid.strip(), sentence, Entity(sentence[s0:s1 + 1], s0, s1, ""),
                                 Entity(sentence[o0:o1 + 1], o0, o1, ""), label)
            check_example(ex, None, labels)
            examples.append(ex)
        except ValueError as err:
            collector.fail(line_no, guid.strip(), str(err))
    return _finish(examples, collector, return_bad)


def kbp37_label_names(examples: list[RelationExample]) -> list[str]:
    """no_relation first, then the other labels sorted (37 on KBP37's train file)."""
    return [NO_RELATION] + sorted({e.label for e in examples} - {NO_RELATION})


# ---- CoNLL04 -------------------------------------------------------------------------------------
def bilou_entities(tags: list[str]) -> list[tuple[int, int, str]]:
    """(first token, last token inclusive, type) of each BILOU entity, in order of appearance."""
    out, start = [], None
    for i, tag in enumerate(tags):
        prefix, _, etype = tag.partition("-")
        if prefix == "U":
            out.append((i, i, etype))
        elif prefix == "B":
            if start is not None:
                raise ValueError(f"B- tag at token {i} inside the entity opened at token {start}")
            start = i
        elif prefix == "L":
            if start is None:
                raise ValueError(f"L- tag at token {i} without a B-")
            out.append((start, i, etype))
            start = None
        elif prefix not in ("I", "O"):
            raise ValueError(f"tag {tag!r} at token {i} is not BILOU")
    if start is not None:
        raise ValueError(f"the entity opened at token {start} has no L- tag")
    return out


def read_conll04(path: str | Path, skip_bad_rows: bool = False, return_bad: bool = False):
    """CoNLL04 JSON (tokens, BILOU tags, relations between entity indices) -> every ordered pair of
    entities of a sentence; pairs without an annotated relation are the no_relation negatives."""
    path = Path(path)
    collector = _Collector(path, skip_bad_rows)
    items = read_json(path)
    if not isinstance(items, list):
        raise RelationDataError(f"{path}: expected a JSON list of items")
    examples, first_item = [], {}
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            collector.fail(f"item {n}", "", "malformed item: not a JSON object")
            continue
        guid = f"{path.stem}-{item.get('orig_id', n)}"
        if guid in first_item:  # a repeated item would repeat (or contradict) every pair of its sentence
            raise RelationDataError(f"{path}: item {n} (guid {guid}) repeats item {first_item[guid]}: "
                                    f"each orig_id must appear once")
        first_item[guid] = n
        try:
            tokens, tags = item["tokens"], item["tags"]
            if len(tags) != len(tokens):
                raise ValueError(f"{len(tags)} tags for {len(tokens)} tokens")
            sentence = " ".join(tokens)
            offsets = [sum(len(t) + 1 for t in tokens[:k]) for k in range(len(tokens))]
            ents = []
            for a, b, etype in bilou_entities(tags):
                start, end = offsets[a], offsets[b] + len(tokens[b]) - 1
                ents.append(Entity(sentence[start:end + 1], start, end, etype))
            gold = {}
            for rel in item["relations"]:
                key = (rel["head"], rel["tail"])
                if rel["type"] not in CONLL04_RELATIONS:
                    raise ValueError(f"unknown relation {rel['type']!r}")
                if not (0 <= key[0] < len(ents) and 0 <= key[1] < len(ents)):
                    raise ValueError(f"relation {key} points outside the {len(ents)} entities")
                if key[0] == key[1]:
                    raise ValueError(f"relation {rel['type']!r} from entity {key[0]} to itself")
                if key in gold:
                    raise ValueError(f"pair {key} is listed twice ({gold[key]!r}, {rel['type']!r})")
                gold[key] = rel["type"]
        except (KeyError, TypeError, ValueError) as err:
            collector.fail(f"item {n}", guid, f"malformed item: {err}")
            continue
        for i, subj in enumerate(ents):
            for j, obj in enumerate(ents):
                if i == j:
                    continue
                ex = RelationExample(f"{guid}-{i}-{j}", sentence, subj, obj, gold.get((i, j), NO_RELATION))
                try:
                    check_example(ex, CONLL04_TYPES, [NO_RELATION, *CONLL04_RELATIONS])
                    examples.append(ex)
                except ValueError as err:
                    collector.fail(f"item {n}", ex.guid, str(err))
    return _finish(examples, collector, return_bad)


def sample_negatives(examples: list[RelationExample], per_positive: float, seed: int) -> list[RelationExample]:
    """Keep every positive and a seeded sample of per_positive x #positives negatives (training only;
    0 keeps all). Order of the kept examples is the original order."""
    if per_positive <= 0:
        return examples
    neg = [i for i, e in enumerate(examples) if e.label == NO_RELATION]
    n_pos = len(examples) - len(neg)
    keep_neg = set(random.Random(seed).sample(neg, min(len(neg), int(round(per_positive * n_pos)))))
    return [e for i, e in enumerate(examples) if e.label != NO_RELATION or i in keep_neg]
