"""The monolingual running text at hand per language, for word vectors (data/word_vectors.py).

    sentences = monolingual_sentences(root, "de")     # lists of word keys (lower case, digits -> 0)
    for name, n_sent, n_tok in corpus_counts(root, "de"): ...

Every source is the training side of what ../shared/data has, used as monolingual text, never as
aligned pairs. Left out on purpose, because something is tested on them: PAN-X dev/test, the
multi30k val/test captions, OpenNMT val (= WMT newstest2012, so newstest2012 is left out of the
WMT sets too), FLORES-200 devtest, the LASER Tatoeba test pairs (tatoeba_laser, and the
tatoeba_anki lines that the folder lists as overlapping them). Repeated lines of the plain-text
sources are read once (tatoeba_anki repeats its English side; WMT 2008-2013 share theirs between
de-en and fr-en). Dutch has PAN-X train only: ELTeC-nld is empty and the other Dutch text is test.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from data.conll import read_conll
from data.lines import utf8_lines
from data.vocab import word_key

_TOKEN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]", re.UNICODE)
PANX_LANGS = ("de", "en", "es", "nl")
_WMT_DE_EN = ["news-test2008", "newssyscomb2009", "newstest2009", "newstest2010", "newstest2011",
              "newstest2013", "newstest2014", "newstest2015", "newstest2016", "newstest2017", "newstest2018",
              "newstest2019", "newstest2020"]  # newstest2012 = opennmt_ende val: a test set here
_WMT_FR_EN = ["news-test2008", "newssyscomb2009", "newstest2009", "newstest2010", "newstest2011",
              "newstest2013", "newstest2014", "newsdiscusstest2015"]


@dataclass(frozen=True)
class TextSource:
    """One file of running text: ``column`` picks a TAB-separated field; ``skip_lines`` names a file of
    1-based line numbers to leave out; ``eltec`` drops the ``### <novel>`` separator lines."""

    path: str
    column: int | None = None
    skip_lines: str = ""
    eltec: bool = False

    def lines(self, root: Path) -> list[str]:
        path = Path(root) / self.path
        if not path.is_file():
            raise FileNotFoundError(f"monolingual text {path} is missing (data/monolingual.py lists it)")
        skip = set()
        if self.skip_lines:
            skip = {int(x) for x in (Path(root) / self.skip_lines).read_text().split()}
        out = []
        for number, line in utf8_lines(path):  # not UTF-8: an error naming the file and line
            if number in skip or (self.eltec and line.startswith("### ")):
                continue
            if self.column is not None:
                fields = line.split("\t")
                if len(fields) <= self.column:
                    raise ValueError(f"{path}:{number}: expected a TAB-separated column {self.column + 1}")
                line = fields[self.column]
            if line.strip():
                out.append(line.strip())
        return out


def _wmt(pair: str, sets: list[str], lang: str) -> list[TextSource]:
    return [TextSource(f"wmt_flores/{pair}/{name}.{lang}") for name in sets]


_ANKI_DE = "tatoeba_anki/overlap_with_laser_tatoeba_test.deu-eng.lines"
_ANKI_FR = "tatoeba_anki/overlap_with_laser_tatoeba_test.fra-eng.lines"
TEXT_SOURCES: dict[str, list[TextSource]] = {
    "de": [TextSource("eltec/deu.txt", eltec=True), TextSource("multi30k/train.de"),
           TextSource("opennmt_ende/tgt-train.txt"), TextSource("tatoeba_anki/deu-eng.deu.txt", 1, _ANKI_DE),
           *_wmt("wmt_de-en", _WMT_DE_EN, "de"), *_wmt("wmt_en-de", ["newstest2019", "newstest2020"], "de")],
    "en": [TextSource("multi30k/train.en"), TextSource("opennmt_ende/src-train.txt"),
           TextSource("tatoeba_anki/deu-eng.deu.txt", 0, _ANKI_DE), TextSource("tatoeba_anki/fra-eng.fra.txt", 0, _ANKI_FR),
           *_wmt("wmt_de-en", _WMT_DE_EN, "en"), *_wmt("wmt_en-de", ["newstest2019", "newstest2020"], "en"),
           *_wmt("wmt_fr-en", _WMT_FR_EN, "en")],
    "es": [TextSource("eltec/spa.txt", eltec=True)],
    "nl": [],
    "fr": [TextSource("eltec/fra.txt", eltec=True), TextSource("multi30k/train.fr"),
           TextSource("tatoeba_anki/fra-eng.fra.txt", 1, _ANKI_FR), *_wmt("wmt_fr-en", _WMT_FR_EN, "fr")],
    "it": [TextSource("eltec/ita.txt", eltec=True)],
}


def tokenize(line: str) -> list[str]:
    """Word keys of a raw or Moses-tokenised line (HTML entities of OpenNMT undone)."""
    line = line.replace("&apos;", "'").replace("&quot;", '"').replace("&amp;", "&")
    return [word_key(t, lowercase=True) for t in _TOKEN.findall(line)]


def corpus_parts(root: Path, lang: str) -> list[tuple[str, list[list[str]]]]:
    """(source name, sentences) per source: PAN-X train words (tags dropped) first, then the text files."""
    root = Path(root)
    if lang not in TEXT_SOURCES:
        raise ValueError(f"no monolingual text listed for {lang!r} (data/monolingual.py: {sorted(TEXT_SOURCES)})")
    parts = []
    if lang in PANX_LANGS:
        panx = root / f"panx/{lang}/train.conllu"
        parts.append((f"panx/{lang}/train", [[word_key(w, True) for w in s.words]
                                             for s in read_conll(panx, labels=None)]))
    seen: set[str] = set()
    for source in TEXT_SOURCES[lang]:
        fresh = [line for line in source.lines(root) if not (line in seen or seen.add(line))]
        parts.append((source.path + (f"#{source.column + 1}" if source.column is not None else ""),
                      [tokenize(line) for line in fresh]))
    return parts


def monolingual_sentences(root: Path, lang: str) -> list[list[str]]:
    return [sent for _, sents in corpus_parts(root, lang) for sent in sents]


def corpus_counts(root: Path, lang: str) -> list[tuple[str, int, int]]:
    """(source, sentences, tokens) per source of ``lang``, then a ("total", ...) row."""
    rows = [(name, len(sents), sum(map(len, sents))) for name, sents in corpus_parts(root, lang)]
    return rows + [("total", sum(r[1] for r in rows), sum(r[2] for r in rows))]
