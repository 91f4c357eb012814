"""Why the translated-data row of the zero-resource table is weak: cheap counts, no training.

    python scripts/translation_coverage.py configs/zeroresource_de_en.yaml

Builds the pipeline's bilingual space (tasks/zeroresource.build_space: vectors, seed, Procrustes,
refinement; vectors from the cache), translates the source training sentences word by word exactly
as the pipeline does (translate_sentences), and counts, separately for entity tokens (tag != O) and
the others, what happened to each word: translated, or copied and why (not alphabetic, outside the
source vocabulary, also in the target vocabulary, no mutual CSLS neighbour). For translated words
it checks the translation against the full MUSE dictionary of the pair where the word is in it (a
diagnostic only: that dictionary includes the test pairs, so it never feeds a model). Then it counts
how many target test tokens (entity / other) the translated training text contains, against the
untranslated source text: what the translated data could teach a model reading target words.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.config import load_config  # noqa: E402
from data.dictionaries import read_spec  # noqa: E402
from data.sources import load_split, resolve_root  # noqa: E402
from data.vocab import word_key  # noqa: E402
from tasks.bilstm_crf import limit  # noqa: E402
from tasks.zeroresource import build_space, translate_sentences  # noqa: E402

FULL_DICTIONARY = {("de", "en"): "muse_dicts/dm-bli/de-en.txt"}  # no de-es / de-nl dictionary here


def word_fate(word: str, space, mutual_only: bool) -> str:
    """Which branch of translate_sentences a word takes."""
    key = word_key(word, True)
    i = space.vocab("source").stoi.get(key, 0) - 2
    if not word.isalpha():
        return "copied: not alphabetic"
    if i < 0:
        return "copied: outside the source vocabulary"
    if key in space.vocab("target").stoi:
        return "copied: in the target vocabulary too"
    if mutual_only and not space.mutual[i]:
        return "copied: no mutual neighbour"
    return "translated"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    m, d = cfg.mapping, cfg.data
    root = resolve_root(d)
    space = build_space(cfg, log=lambda msg: print(msg, flush=True))
    src_train = limit(load_split(d, m.source_lang, "train"), d.max_train_sentences, cfg.train.seed)
    translated = translate_sentences(src_train, space, m.translate_mutual_only)
    full = FULL_DICTIONARY.get((m.source_lang, m.target_lang))
    reference: dict[str, set[str]] = {}
    if full:
        for s, t in read_spec(root, full):
            reference.setdefault(s, set()).add(t)
    fates = {"entity": Counter(), "other": Counter()}
    checked = {"entity": Counter(), "other": Counter()}
    for sent, out in zip(src_train, translated):
        for word, new, tag in zip(sent.words, out.words, sent.tags):
            kind = "other" if tag == "O" else "entity"
            fate = word_fate(word, space, m.translate_mutual_only)
            fates[kind][fate] += 1
            key = word_key(word, True)
            if fate == "translated" and key in reference:
                checked[kind]["in dictionary"] += 1
                checked[kind]["correct"] += word_key(new, True) in reference[key]
    target_vocab = space.vocab("target").stoi
    unknown = {kind: Counter() for kind in ("entity", "other")}  # what the target models read as <unk>
    for out in translated:
        for new, tag in zip(out.words, out.tags):
            kind = "other" if tag == "O" else "entity"
            unknown[kind]["tokens"] += 1
            unknown[kind]["unknown"] += word_key(new, True) not in target_vocab
    report = {"fates": {k: dict(v) for k, v in fates.items()}, "dictionary_check": {k: dict(v) for k, v in checked.items()},
              "translated_unknown_to_target": {k: dict(v) for k, v in unknown.items()}}
    for kind in ("entity", "other"):
        total = sum(fates[kind].values())
        print(f"\nsource train {kind} tokens: {total:,}")
        for fate, n in fates[kind].most_common():
            print(f"  {fate:40s} {n:>8,}  {100 * n / total:5.1f}%")
        u = unknown[kind]
        print(f"  translated {kind} tokens outside the target vocabulary (<unk> for the target models): "
              f"{100 * u['unknown'] / u['tokens']:.1f}%")
        c = checked[kind]
        if c["in dictionary"]:
            print(f"  translated and in the full MUSE dictionary: {c['in dictionary']:,}, of which the dictionary "
                  f"lists the chosen translation {100 * c['correct'] / c['in dictionary']:.1f}%")
    test = limit(load_split(d, m.target_lang, "test"), d.max_test_sentences, cfg.train.seed)
    seen_translated = {word_key(w, True) for s in translated for w in s.words}
    seen_source = {word_key(w, True) for s in src_train for w in s.words}
    cover = {}
    for kind in ("entity", "other"):
        tokens = [word_key(w, True) for s in test for w, t in zip(s.words, s.tags) if (t == "O") == (kind == "other")]
        cover[kind] = {"tokens": len(tokens),
                       "in_target_vocabulary": sum(t in target_vocab for t in tokens) / len(tokens),
                       "in_translated_train": sum(t in seen_translated for t in tokens) / len(tokens),
                       "in_untranslated_train": sum(t in seen_source for t in tokens) / len(tokens)}
        c = cover[kind]
        print(f"\n{m.target_lang} test {kind} tokens {c['tokens']:,}: in the target vocabulary "
              f"{100 * c['in_target_vocabulary']:.1f}%, in the translated train text {100 * c['in_translated_train']:.1f}%, "
              f"in the untranslated source train text {100 * c['in_untranslated_train']:.1f}%")
    report["target_test_coverage"] = cover
    report["bli"] = space.bli
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
