"""Parallel text and word alignments: line-aligned files, Pharaoh/GIZA/talp links, the staged corpora.

    corpus = read_parallel("multi30k/test_2016_flickr.de", "multi30k/test_2016_flickr.en", "de", "en")
    links = read_pharaoh("opennmt_ende/val.src-tgt.talp", src_lens, tgt_lens)    # [Links], 0-based
    gold = load_gold(root, "de-en")     # 100 Europarl pairs with sure links; gold.problems lists bad links

A sentence is a list of word strings; a link is (i, j) = (source word i, target word j), 0-based.
``Links.sure`` is a subset of ``Links.possible`` (a sure link is also possible, as AER wants).

Bad input raises ``ParallelFormatError`` naming the file and the 1-based line: unequal line counts,
an empty line, a malformed link, a link index outside its sentence. One exception is chosen and
documented: a gold set read with ``out_of_range="skip"`` drops an out-of-range link and records it
in ``problems`` as (file, line, link) -- the de-en gold set has one (pair 63, ``12-16``: the English
sentence has 13 words, 0..12), so ``load_gold`` skips it, keeps the other 1,232 links, and reports it.
Raw text is split into words by ``split_words`` (punctuation apart, as Moses/fast_align input).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

BOM = "\ufeff"
WORD_RE = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


class ParallelFormatError(ValueError):
    """A parallel or alignment file that does not fit its format (the message names file and line)."""


@dataclass
class Links:
    sure: set[tuple[int, int]] = field(default_factory=set)
    possible: set[tuple[int, int]] = field(default_factory=set)  # includes every sure link


@dataclass
class ParallelCorpus:
    src_lang: str
    tgt_lang: str
    src: list[list[str]]
    tgt: list[list[str]]
    links: list[Links] | None = None  # alignments that came with the data (gold or automatic)
    name: str = ""
    dropped: list[str] = field(default_factory=list)  # what a loader left out, said in words
    problems: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, what) skipped links

    def __len__(self) -> int:
        return len(self.src)

    def subset(self, indices) -> "ParallelCorpus":
        indices = list(indices)
        links = [self.links[i] for i in indices] if self.links is not None else None
        return ParallelCorpus(self.src_lang, self.tgt_lang, [self.src[i] for i in indices],
                              [self.tgt[i] for i in indices], links, self.name, list(self.dropped))


def split_words(text: str) -> list[str]:
    """Words and punctuation marks of raw text ("Hallo, Welt!" -> Hallo , Welt !)."""
    return WORD_RE.findall(text)


def read_lines(path: str | Path) -> list[str]:
    """Lines without their newline (and without a leading UTF-8 byte-order mark)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.startswith(BOM):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def check_not_empty(path, lines: list[str]) -> None:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise ParallelFormatError(f"{path}:{n}: empty line (a parallel file needs a sentence on every line)")


def read_parallel(src_path, tgt_path, src_lang: str, tgt_lang: str, tokenized: bool = False,
                  name: str = "", empty: str = "error") -> ParallelCorpus:
    """Two line-aligned files -> a corpus. tokenized=True splits on spaces, else ``split_words``.

    empty="error": an empty line on either side raises (file:line); "skip": the pair is left out and
    its line number listed in ``dropped`` (opennmt_ende train has such pairs)."""
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise ParallelFormatError(f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}: "
                                  f"line-aligned files must have the same number of lines")
    dropped = []
    if empty == "skip":
        keep = [n for n, (a, b) in enumerate(zip(src_lines, tgt_lines)) if a.strip() and b.strip()]
        if len(keep) < len(src_lines):
            gone = sorted(set(range(len(src_lines))) - set(keep))
            dropped.append(f"{len(gone)} pairs with an empty side left out (lines {', '.join(str(n + 1) for n in gone[:10])}"
                           + (", ..." if len(gone) > 10 else "") + f") of {Path(src_path).name}")
            src_lines, tgt_lines = [src_lines[n] for n in keep], [tgt_lines[n] for n in keep]
    elif empty != "error":
        raise ValueError(f"empty must be 'error' or 'skip', got {empty!r}")
    check_not_empty(src_path, src_lines)
    check_not_empty(tgt_path, tgt_lines)
    split = str.split if tokenized else split_words
    return ParallelCorpus(src_lang, tgt_lang, [split(s) for s in src_lines], [split(t) for t in tgt_lines],
                          name=name or f"{Path(src_path).name}-{Path(tgt_path).name}", dropped=dropped)


def read_separated(path, src_lang: str, tgt_lang: str, sep: str = "\t", tokenized: bool = False,
                   skip_lines: set[int] = frozenset()) -> ParallelCorpus:
    """One file of ``source<sep>target`` rows (Tatoeba/Anki TSV, ``|||`` files); extra columns are ignored.

    skip_lines: 1-based line numbers to leave out (recorded in ``dropped``)."""
    src, tgt = [], []
    for n, line in enumerate(read_lines(path), 1):
        if n in skip_lines:
            continue
        parts = line.split(sep)
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise ParallelFormatError(f"{path}:{n}: expected 'source{sep}target' with both sides non-empty, "
                                      f"got {line[:80]!r}")
        split = str.split if tokenized else split_words
        src.append(split(parts[0].strip()))
        tgt.append(split(parts[1].strip()))
    dropped = [f"{len(skip_lines)} listed lines of {Path(path).name} left out"] if skip_lines else []
    return ParallelCorpus(src_lang, tgt_lang, src, tgt, name=Path(path).name, dropped=dropped)


def parse_link(token: str, path, n: int, one_based: bool) -> tuple[tuple[int, int], bool]:
    """'3-4' (sure) or '3p4' (possible) -> ((i, j), is_sure), 0-based."""
    sep = "-" if "-" in token else "p" if "p" in token else None
    left, _, right = token.partition(sep) if sep else ("", "", "")
    if not (left.isdigit() and right.isdigit()):
        raise ParallelFormatError(f"{path}:{n}: malformed link {token!r} (expected i-j or ipj)")
    i, j = int(left) - one_based, int(right) - one_based
    if i < 0 or j < 0:
        raise ParallelFormatError(f"{path}:{n}: link {token!r} is below 1 in a 1-based file")
    return (i, j), sep == "-"


def read_pharaoh(path, src_lens: list[int] | None = None, tgt_lens: list[int] | None = None,
                 one_based: bool = False, out_of_range: str = "error",
                 problems: list | None = None) -> list[Links]:
    """Pharaoh/talp/GIZA ``i-j`` (sure) and ``ipj`` (possible) links, one sentence pair a line.

    With the sentence lengths given, every index is checked: out_of_range="error" raises naming
    file, line and link; "skip" drops the link and appends (file, line, description) to ``problems``.
    An empty line is a pair without links (allowed).
    """
    if out_of_range not in ("error", "skip"):
        raise ValueError(f"out_of_range must be 'error' or 'skip', got {out_of_range!r}")
    lines = read_lines(path)
    if src_lens is not None and len(lines) != len(src_lens):
        raise ParallelFormatError(f"{path} has {len(lines)} lines but the corpus has {len(src_lens)} pairs")
    result = []
    for n, line in enumerate(lines, 1):
        links = Links()
        for token in line.split():
            (i, j), sure = parse_link(token, path, n, one_based)
            if src_lens is not None and (i >= src_lens[n - 1] or j >= tgt_lens[n - 1]):
                what = (f"link {token!r} out of range: the pair has {src_lens[n - 1]} source and "
                        f"{tgt_lens[n - 1]} target words")
                if out_of_range == "error":
                    raise ParallelFormatError(f"{path}:{n}: {what}")
                if problems is not None:
                    problems.append((str(path), n, what))
                continue
            links.possible.add((i, j))
            if sure:
                links.sure.add((i, j))
        result.append(links)
    return result


def read_ref_wa(path, num_pairs: int) -> list[Links]:
    """The AER-script format: rows ``pair i j S|P`` (pair 1-based, word indices 0-based)."""
    result = [Links() for _ in range(num_pairs)]
    for n, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if len(parts) not in (3, 4) or not all(p.isdigit() for p in parts[:3]) or (
                len(parts) == 4 and parts[3] not in ("S", "P")):
            raise ParallelFormatError(f"{path}:{n}: expected 'pair i j [S|P]', got {line!r}")
        pair, i, j = (int(p) for p in parts[:3])
        if not 1 <= pair <= num_pairs:
            raise ParallelFormatError(f"{path}:{n}: pair {pair} outside 1..{num_pairs}")
        result[pair - 1].possible.add((i, j))
        if len(parts) == 3 or parts[3] == "S":
            result[pair - 1].sure.add((i, j))
    return result


def load_gold(root, pair: str = "de-en") -> ParallelCorpus:
    """The gold word-alignment sets in word_align_gold: "de-en" (Europarl, 100 pairs, sure links,
    German = source) or "ro-en" (WPT 2005, 248 pairs, 1-based sure/possible). Out-of-range links
    are skipped and listed in ``problems`` (see the module docstring)."""
    base = Path(root) / "word_align_gold"
    if pair == "de-en":
        corpus = read_parallel(base / "de-en/test.de", base / "de-en/test.en", "de", "en", tokenized=True,
                               name="word_align_gold/de-en")
        links_path, one_based = base / "de-en/de-en.wa", False
    elif pair == "ro-en":
        corpus = read_separated(base / "roen.src-tgt", "ro", "en", sep="|||", tokenized=True)
        corpus.name = "word_align_gold/ro-en"
        links_path, one_based = base / "roen.gold", True
    else:
        raise ValueError(f"no gold alignments for {pair!r}; have de-en, ro-en")
    corpus.links = read_pharaoh(links_path, [len(s) for s in corpus.src], [len(t) for t in corpus.tgt],
                                one_based=one_based, out_of_range="skip", problems=corpus.problems)
    return corpus


# ---- the staged corpora (paths relative to the data root) ----------------------------------------

FLORES_CODES = {"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn",
                "nl": "nld_Latn", "ru": "rus_Cyrl", "ko": "kor_Hang"}
ANKI = {"de": "deu-eng.deu.txt", "fr": "fra-eng.fra.txt"}


def multi30k(root, split: str, src_lang: str, tgt_lang: str) -> ParallelCorpus:
    """Multi30k captions (train | val | test_2016_flickr), raw text split into words."""
    base = Path(root) / "multi30k"
    return read_parallel(base / f"{split}.{src_lang}", base / f"{split}.{tgt_lang}", src_lang, tgt_lang,
                         name=f"multi30k/{split}")


def tatoeba_anki(root, lang: str) -> ParallelCorpus:
    """English-``lang`` Tatoeba pairs (source = English), without the pairs listed as overlapping
    the tatoeba_laser test (overlap_with_laser_tatoeba_test.*.lines, 1-based)."""
    base = Path(root) / "tatoeba_anki"
    if lang not in ANKI:
        raise ValueError(f"tatoeba_anki has en-de and en-fr, not en-{lang}")
    stem = ANKI[lang].split(".")[0]
    overlap = {int(x) for x in read_lines(base / f"overlap_with_laser_tatoeba_test.{stem}.lines") if x.strip()}
    corpus = read_separated(base / ANKI[lang], "en", lang, skip_lines=overlap)
    corpus.name = f"tatoeba_anki/{stem}"
    return corpus


def flores(root, src_lang: str, tgt_lang: str) -> ParallelCorpus:
    """FLORES-200 devtest (1,012 sentences), CSV-style quoting of some lines undone."""
    base = Path(root) / "wmt_flores/flores200_devtest"

    def unquote(path):
        lines = read_lines(path)
        return [l[1:-1].replace('""', '"') if l.startswith('"') and l.endswith('"') and '""' in l else l
                for l in lines]
    src_path, tgt_path = (base / f"{FLORES_CODES[l]}.devtest" for l in (src_lang, tgt_lang))
    src, tgt = unquote(src_path), unquote(tgt_path)
    if len(src) != len(tgt):
        raise ParallelFormatError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}")
    return ParallelCorpus(src_lang, tgt_lang, [split_words(s) for s in src], [split_words(t) for t in tgt],
                          name="flores200/devtest")


def opennmt_val(root) -> ParallelCorpus:
    """newstest2012 (3,000 en-de pairs, Moses-tokenised) with its own automatic alignments (en = source)."""
    base = Path(root) / "opennmt_ende"
    corpus = unescape(read_parallel(base / "src-val.txt", base / "tgt-val.txt", "en", "de", tokenized=True,
                                    name="opennmt_ende/val (newstest2012)"))
    corpus.links = read_pharaoh(base / "val.src-tgt.talp", [len(s) for s in corpus.src],
                                [len(t) for t in corpus.tgt])
    return corpus


def opennmt_train(root) -> ParallelCorpus:
    base = Path(root) / "opennmt_ende"
    return unescape(read_parallel(base / "src-train.txt", base / "tgt-train.txt", "en", "de", tokenized=True,
                                  name="opennmt_ende/train", empty="skip"))


def unescape(corpus: ParallelCorpus) -> ParallelCorpus:
    """Moses' HTML entities back to characters, word by word (``&apos;s`` -> ``'s``; indices unchanged)."""
    corpus.src = [[html.unescape(w) for w in s] for s in corpus.src]
    corpus.tgt = [[html.unescape(w) for w in t] for t in corpus.tgt]
    return corpus


def swap(corpus: ParallelCorpus) -> ParallelCorpus:
    """The same corpus with source and target exchanged (links mirrored)."""
    links = None
    if corpus.links is not None:
        links = [Links({(j, i) for i, j in l.sure}, {(j, i) for i, j in l.possible}) for l in corpus.links]
    return ParallelCorpus(corpus.tgt_lang, corpus.src_lang, corpus.tgt, corpus.src, links, corpus.name,
                          list(corpus.dropped), list(corpus.problems))
