"""The NER label set: tag strings <-> ids, and IOB2 checks.

PAN-X tags PER, ORG and LOC in IOB2; WikiNEuRal adds MISC, which configs map to O
(``data.tag_map``) so every language shares the seven PAN-X labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

PANX_LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
IGNORE_INDEX = -100  # label id on pieces that carry no loss (not a word's first piece, padding)


def is_iob2_tag(tag: str) -> bool:
    """``O`` or ``B-TYPE`` / ``I-TYPE`` with a non-empty type."""
    return tag == "O" or (len(tag) > 2 and tag[:2] in ("B-", "I-"))


@dataclass(frozen=True)
class LabelSet:
    """An ordered list of tags; the position of a tag is its id."""

    tags: tuple[str, ...] = PANX_LABELS

    def __post_init__(self):
        if len(set(self.tags)) != len(self.tags):
            raise ValueError(f"duplicate tags in {self.tags}")
        if "O" not in self.tags:
            raise ValueError(f"the label set needs 'O': {self.tags}")

    def __len__(self) -> int:
        return len(self.tags)

    def __contains__(self, tag: str) -> bool:
        return tag in self.tags

    @cached_property
    def _index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    def id(self, tag: str) -> int:
        try:
            return self._index[tag]
        except KeyError:
            raise KeyError(f"unknown tag {tag!r}; known: {', '.join(self.tags)}") from None

    def ids(self, tags: list[str]) -> list[int]:
        return [self.id(t) for t in tags]

    def tag(self, i: int) -> str:
        return self.tags[i]

    def entity_types(self) -> list[str]:
        """Entity types in label order, e.g. ['PER', 'ORG', 'LOC']."""
        return list(dict.fromkeys(t[2:] for t in self.tags if t != "O"))


def build_label_set(tags: list[str] | tuple[str, ...] | None = None) -> LabelSet:
    return LabelSet(tuple(tags) if tags else PANX_LABELS)
