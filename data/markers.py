"""Entity markers (Zhou & Chen 2021) and the window around the two entities.

    enc = MarkerEncoder(tokenizer, "typed_entity_marker_punct", max_length=160, type_words=KLUE_TYPE_WORDS)
    item = enc.encode(example)       # ids with <s> .. </s>, marker/span positions, window flags

Styles (one config value, ``relation.marker``):

| style | subject rendered as | new tokens |
|---|---|---|
| entity_mask | ``[SUBJ-PER]`` (the words are hidden) | one per role and type |
| entity_marker | ``[E1] Bill [/E1]``, ``[E2] .. [/E2]`` | 4 |
| entity_marker_punct | ``@ Bill @``, ``# Microsoft #`` | none |
| typed_entity_marker | ``[SUBJ-PER] Bill [/SUBJ-PER]`` | 4 per type |
| typed_entity_marker_punct | ``@ * person * Bill @``, ``# ^ organization ^ Microsoft #`` | none |

New tokens get ids from ``special_ids`` (token -> id), which the vocabulary extension
(models/extend.py) hands out when it adds their embedding rows. Opaque type codes are spelled out
as words in the punctuation style (KLUE's POH -> 기타 "other", NOH -> 수량 "quantity").

Each segment (left context, marker, entity, between, marker, entity, right context) is
tokenised on its own, so the entity's pieces are exactly the pieces of its characters. The
window keeps both entities and their markers: context is cut from the far left and far right
first; only when the entities and the text between them exceed ``max_length`` is the middle of
the between-text cut (``Encoded.overflow``, counted and reported by the task).
"""
from __future__ import annotations

from dataclasses import dataclass

from data.relation import Entity, RelationExample

MARKER_STYLES = ("entity_mask", "entity_marker", "entity_marker_punct", "typed_entity_marker",
                 "typed_entity_marker_punct")
KLUE_TYPE_WORDS = {"PER": "사람", "ORG": "단체", "LOC": "장소", "DAT": "날짜", "POH": "기타", "NOH": "수량"}
ENGLISH_TYPE_WORDS = {"PER": "person", "ORG": "organization", "LOC": "location", "DAT": "date",
                      "POH": "other", "NOH": "number", "Peop": "person", "Org": "organization",
                      "Loc": "location", "Other": "other", "": "entity"}


def type_code(etype: str) -> str:
    return (etype or "ENTITY").upper()


def marker_tokens(style: str, types: list[str]) -> list[str]:
    """The new special tokens a style needs for these entity types (empty for punctuation styles)."""
    if style not in MARKER_STYLES:
        raise ValueError(f"marker style must be one of {MARKER_STYLES}, got {style!r}")
    codes = [type_code(t) for t in dict.fromkeys(types)]
    if style == "entity_mask":
        return [f"[{role}-{c}]" for role in ("SUBJ", "OBJ") for c in codes]
    if style == "entity_marker":
        return ["[E1]", "[/E1]", "[E2]", "[/E2]"]
    if style == "typed_entity_marker":
        return [f"[{slash}{role}-{c}]" for role in ("SUBJ", "OBJ") for c in codes for slash in ("", "/")]
    return []


@dataclass
class Encoded:
    input_ids: list[int]
    subj_marker: int  # position of the subject's first marker piece (its mask token for entity_mask)
    subj_span: tuple[int, int]  # the subject's own pieces, [start, end)
    obj_marker: int
    obj_span: tuple[int, int]
    truncated: bool  # some context was cut to fit max_length
    overflow: bool  # entities + markers + the text between them did not fit: the between-text was cut

    def __len__(self) -> int:
        return len(self.input_ids)


class MarkerEncoder:
    """Example -> marked piece ids within ``max_length`` (specials included)."""

    def __init__(self, tokenizer, style: str, max_length: int = 160, type_words: dict[str, str] | None = None,
                 special_ids: dict[str, int] | None = None):
        if style not in MARKER_STYLES:
            raise ValueError(f"marker style must be one of {MARKER_STYLES}, got {style!r}")
        self.tok, self.style, self.max_length = tokenizer, style, max_length
        self.type_words = {**ENGLISH_TYPE_WORDS, **(type_words or {})}
        self.special_ids = dict(special_ids or {})
        self._cache: dict[str, list[int]] = {}

    def _text(self, text: str) -> list[int]:
        text = text.strip()
        return self.tok.encode(text, add_special_tokens=False) if text else []

    def _marker_text(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self._text(text)
        return self._cache[text]

    def _special(self, token: str) -> list[int]:
        if token not in self.special_ids:
            raise KeyError(f"marker {token!r} has no id: add the style's marker_tokens() to the vocabulary "
                           f"(models/extend.py) and pass their ids as special_ids")
        return [self.special_ids[token]]

    def _render(self, role: str, ent: Entity, words: list[int]) -> tuple[list[int], list[int], list[int]]:
        """(opening marker, entity pieces, closing marker) of one entity."""
        code, word = type_code(ent.type), self.type_words.get(ent.type, ent.type.lower() or "entity")
        subj = role == "SUBJ"
        if self.style == "entity_mask":
            return [], self._special(f"[{role}-{code}]"), []
        if self.style == "entity_marker":
            n = "1" if subj else "2"
            return self._special(f"[E{n}]"), words, self._special(f"[/E{n}]")
        if self.style == "typed_entity_marker":
            return self._special(f"[{role}-{code}]"), words, self._special(f"[/{role}-{code}]")
        if self.style == "entity_marker_punct":
            mark = "@" if subj else "#"
            return self._marker_text(mark), words, self._marker_text(mark)
        mark, star = ("@", "*") if subj else ("#", "^")  # typed_entity_marker_punct
        return self._marker_text(f"{mark} {star} {word} {star}"), words, self._marker_text(mark)

    def encode(self, ex: RelationExample) -> Encoded:
        s = ex.sentence
        first, second = (ex.subj, ex.obj) if ex.subj.start < ex.obj.start else (ex.obj, ex.subj)
        roles = ("SUBJ", "OBJ") if first is ex.subj else ("OBJ", "SUBJ")
        left, mid, right = self._text(s[:first.start]), self._text(s[first.end + 1:second.start]), \
            self._text(s[second.end + 1:])
        a = self._render(roles[0], first, self._text(first.word))
        b = self._render(roles[1], second, self._text(second.word))
        fixed = 2 + sum(len(p) for p in (*a, *b))  # <s> and </s> + both entities with markers
        budget = self.max_length - fixed
        truncated = overflow = False
        if budget < len(mid):  # the between-text itself must be cut: keep its two ends
            overflow = truncated = True
            keep = max(budget, 0)
            mid = mid[:keep - keep // 2] + (mid[len(mid) - keep // 2:] if keep // 2 else [])
            left, right = [], []
        else:
            room = budget - len(mid)
            n_left = min(len(left), max(room - len(right), room // 2))
            n_right = min(len(right), room - n_left)
            truncated = n_left < len(left) or n_right < len(right)
            left, right = left[len(left) - n_left:], right[:n_right]
        ids = [self.tok.bos_id, *left]
        spans = []
        for opening, pieces, closing in (a, b):
            marker = len(ids)
            ids += opening
            spans.append((marker, (len(ids), len(ids) + len(pieces))))
            ids += pieces + closing
            if len(spans) == 1:
                ids += mid
        ids += [*right, self.tok.eos_id]
        (m1, s1), (m2, s2) = spans
        if first is not ex.subj:
            (m1, s1), (m2, s2) = (m2, s2), (m1, s1)
        return Encoded(ids, m1, s1, m2, s2, truncated, overflow)
