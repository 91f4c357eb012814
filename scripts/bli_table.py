"""Word translation (BLI) table: P@1 / P@5 by CSLS and by nearest neighbour, for four maps per pair.

    python scripts/bli_table.py                                  # de-en, en-de, de-es; vectors cached
    python scripts/bli_table.py --pairs de-en --ngrams 3,5       # the fastText-style vectors
    python scripts/bli_table.py --counts                         # tokens per language and source first

Vectors: SGNS (data/word_vectors.py) on all the monolingual text of data/monolingual.py, with the
settings of ``--config`` (default configs/zeroresource_de_en.yaml: dim, epochs, window, negatives,
min count, csls_k, refinement steps); the ``--max-vocab`` most frequent words of each side are
mapped and searched (MUSE uses 200k; memory and time here). Maps (src @ W ~ tgt, W orthogonal):
- procrustes: Procrustes on the MUSE train dictionary (the seed);
- refined: that map refined (mutual CSLS neighbours among the 15k most frequent words -> Procrustes);
- identical + refined: identical strings as the seed (what the de-nl / de-es pipelines use), refined;
- unsupervised: the adversarial map (models/mapping.py, no dictionary), refined.
Dictionaries: de->en train = MUSE en-de 0-5000 reversed, test = the MUSE de-en 5000-6500 split
(coastalcph annotated release: a/n/o/pn/v, invalid "nw" pairs out); en->de train / test = MUSE
en-de 0-5000 / 5000-6500. de->es has no dictionary here: it is pivoted through English (train =
de->en train o en-es 0-5000; test = de->en test o the full en-es dictionary). Seed pairs whose
source word is a test source word are dropped. Scored, as in MUSE, on the test pairs with both
words in the vocabularies; coverage = the share of test source words left.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.config import load_config  # noqa: E402
from core.paths import cache_dir, data_root  # noqa: E402
from data.dictionaries import gold_translations, identical_pairs, index_pairs, read_spec  # noqa: E402
from data.monolingual import corpus_counts  # noqa: E402
from data.word_vectors import center_and_normalize, load_or_train  # noqa: E402
from models.csls import cosine_topk, csls_topk, precision_at_k  # noqa: E402
from models.mapping import adversarial_init, procrustes, refine  # noqa: E402

DE_EN_TEST = ",".join(f"muse_dicts/coastalcph-annotated/de-en.5000-6500.{c}.txt" for c in "a n o pn v".split())
DICTIONARIES = {  # pair -> (train spec, test spec); "pivot:" composes two specs through English
    "de-en": ("muse_dicts/dm-bli/en-de.0-5000.txt:reversed", DE_EN_TEST),
    "en-de": ("muse_dicts/dm-bli/en-de.0-5000.txt", "muse_dicts/dm-bli/en-de.5000-6500.txt"),
    "de-es": ("pivot:muse_dicts/dm-bli/en-de.0-5000.txt:reversed|muse_dicts/dm-bli/en-es.0-5000.txt",
              f"pivot:{DE_EN_TEST}|muse_dicts/dm-bli/en-es.txt"),
}


def read_pairs(root: Path, spec: str) -> list[tuple[str, str]]:
    """Pairs of a dictionary spec; ``pivot:A|B`` = {(a, c) : (a, b) in A, (b, c) in B}."""
    if not spec.startswith("pivot:"):
        return read_spec(root, spec)
    first, second = spec[len("pivot:"):].split("|")
    via: dict[str, list[str]] = {}
    for b, c in read_spec(root, second):
        via.setdefault(b, []).append(c)
    return list(dict.fromkeys((a, c) for a, b in read_spec(root, first) for c in via.get(b, [])))


def score(src, tgt, w, queries, gold, k, groups: dict[str, set[int]] | None = None):
    """P@1 / P@5 by CSLS and NN; with ``groups`` (name -> query ids) also per group, CSLS P@1."""
    mapped = src @ w  # (S, E)
    _, by_csls = csls_topk(mapped, tgt, topk=5, k=k, queries=queries)
    _, by_nn = cosine_topk(mapped, tgt, topk=5, queries=queries)
    q = queries.tolist()
    out = {"csls": precision_at_k(by_csls, q, gold), "nn": precision_at_k(by_nn, q, gold)}
    for name, ids in (groups or {}).items():
        rows = [i for i, query in enumerate(q) if query in ids]
        out.setdefault("by_group", {})[name] = {
            "queries": len(rows), **precision_at_k(by_csls[rows], [q[i] for i in rows], gold)}
    return out


def word_class_groups(root: Path, spec: str, src_index: dict, gold: dict) -> dict[str, set[int]]:
    """The de-en test split's word classes (coastalcph: a, n, o, pn = proper nouns, v), as query ids."""
    if spec != DE_EN_TEST:
        return {}
    groups = {}
    for part in spec.split(","):
        name = part.rsplit(".", 2)[-2]
        groups[name] = {src_index[s] for s, _ in read_spec(root, part) if s in src_index and src_index[s] in gold}
    return groups


MAPS = ("procrustes", "refined", "identical + refined", "adversarial", "unsupervised")


def bli_pair(root: Path, pair: str, vectors: dict, m, max_vocab: int, adv_iterations: int, log,
             maps: tuple[str, ...] = MAPS) -> dict:
    src_lang, tgt_lang = pair.split("-")
    src_words, tgt_words = (vectors[lang].words[:max_vocab] for lang in (src_lang, tgt_lang))
    src = center_and_normalize(vectors[src_lang].matrix[:max_vocab])  # (S, E)
    tgt = center_and_normalize(vectors[tgt_lang].matrix[:max_vocab])  # (T, E)
    src_index = {w: i for i, w in enumerate(src_words)}
    tgt_index = {w: i for i, w in enumerate(tgt_words)}
    train_spec, test_spec = DICTIONARIES[pair]
    test = read_pairs(root, test_spec)
    gold, coverage = gold_translations(test, src_index, tgt_index)
    queries = torch.tensor(sorted(gold))
    test_sources = {s for s, _ in test}
    train = read_pairs(root, train_spec)
    clean = [(s, t) for s, t in train if s not in test_sources]
    seed, missing = index_pairs(clean, src_index, tgt_index)
    ident, _ = index_pairs([p for p in identical_pairs(src_words, tgt_words) if p[0] not in test_sources],
                           src_index, tgt_index)
    out = {"test_source_words": len(test_sources), "queries": len(queries), "coverage": coverage,
           "seed_pairs": len(seed), "seed_dropped_test_overlap": len(train) - len(clean),
           "seed_dropped_vocabulary": missing, "identical_pairs": len(ident), "maps": {}}
    log(f"{pair}: {len(queries)} queries (coverage {coverage:.2f}), seed {len(seed)} pairs "
        f"({len(train) - len(clean)} dropped as test source words, {missing} outside the vocabularies)")
    quiet = lambda *_: None  # noqa: E731
    started = time.time()
    w = procrustes(src[seed[:, 0]], tgt[seed[:, 1]])
    out["maps"]["procrustes"] = score(src, tgt, w, queries, gold, m.csls_k, word_class_groups(root, test_spec, src_index, gold))
    if "refined" in maps:
        w, _ = refine(src, tgt, w, steps=m.refinement_steps, k=m.csls_k, log=quiet)
        out["maps"]["refined"] = score(src, tgt, w, queries, gold, m.csls_k)
    if "identical + refined" in maps:
        w, _ = refine(src, tgt, procrustes(src[ident[:, 0]], tgt[ident[:, 1]]), steps=m.refinement_steps,
                      k=m.csls_k, log=quiet)
        out["maps"]["identical + refined"] = score(src, tgt, w, queries, gold, m.csls_k)
    if "unsupervised" in maps:
        w = adversarial_init(src, tgt, epochs=m.adversarial_epochs, iterations=adv_iterations, log=log)
        out["maps"]["adversarial"] = score(src, tgt, w, queries, gold, m.csls_k)
        w, _ = refine(src, tgt, w, steps=m.refinement_steps, k=m.csls_k, log=quiet)
        out["maps"]["unsupervised"] = score(src, tgt, w, queries, gold, m.csls_k)
    log(f"{pair}: maps and scores in {time.time() - started:.0f} s")
    return out


def table(results: dict) -> str:
    lines = ["| pair | map | CSLS P@1 | CSLS P@5 | NN P@1 | NN P@5 |", "|---|---|---:|---:|---:|---:|"]
    for pair, res in results.items():
        for name, s in res["maps"].items():
            lines.append(f"| {pair} | {name} | {100 * s['csls']['p@1']:.1f} | {100 * s['csls']['p@5']:.1f} | "
                         f"{100 * s['nn']['p@1']:.1f} | {100 * s['nn']['p@5']:.1f} |")
    for pair, res in results.items():
        groups = res["maps"]["procrustes"].get("by_group", {})
        if groups:
            lines += ["", f"{pair}, procrustes, CSLS P@1 by word class: " + ", ".join(
                f"{name} {100 * g['p@1']:.1f} ({g['queries']})" for name, g in groups.items())]
    notes = [f"- {pair}: {r['queries']} of {r['test_source_words']} test source words in the vocabularies "
             f"(coverage {r['coverage']:.2f}); seed {r['seed_pairs']} pairs ({r['seed_dropped_test_overlap']} "
             f"dropped as test words), {r['identical_pairs']} identical strings" for pair, r in results.items()]
    return "\n".join(lines + [""] + notes) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="de-en,en-de,de-es")
    parser.add_argument("--config", default="configs/zeroresource_de_en.yaml")
    parser.add_argument("--max-vocab", type=int, default=50_000)
    parser.add_argument("--ngrams", default="", help="lo,hi: fastText-style char n-gram vectors (e.g. 3,5)")
    parser.add_argument("--vector-epochs", type=int, default=0, help="skip-gram epochs (0 = the config's)")
    parser.add_argument("--adv-iterations", type=int, default=1000, help="adversarial steps per epoch")
    parser.add_argument("--maps", default=",".join(m for m in MAPS if m != "adversarial"),
                        help="which maps (procrustes always): refined, identical + refined, unsupervised")
    parser.add_argument("--counts", action="store_true", help="print tokens per language and source first")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    m = load_config(args.config).mapping
    m.vector_epochs = args.vector_epochs or m.vector_epochs
    root = data_root()
    ngrams = tuple(int(x) for x in args.ngrams.split(",")) if args.ngrams else None
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    for pair in pairs:
        if pair not in DICTIONARIES:
            raise SystemExit(f"--pairs: {pair!r} is not one of {sorted(DICTIONARIES)}")
    langs = sorted({lang for p in pairs for lang in p.split("-")})
    if args.counts:
        for lang in langs:
            for name, n_sent, n_tok in corpus_counts(root, lang):
                print(f"{lang}  {name:45s} {n_sent:>9,} sentences {n_tok:>11,} tokens", flush=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    vectors = {}
    for lang in langs:
        started = time.time()
        vectors[lang] = load_or_train(cache_dir() / "word_vectors", root, lang, m.vector_dim, m.vector_epochs,
                                      m.vector_window, m.vector_negatives, m.vector_min_count, log=log, ngrams=ngrams)
        log(f"{lang}: {len(vectors[lang].words):,} words with count >= {m.vector_min_count} "
            f"({time.time() - started:.0f} s, cached in {cache_dir() / 'word_vectors'})")
    maps = tuple(x.strip() for x in args.maps.split(","))
    results = {pair: bli_pair(root, pair, vectors, m, args.max_vocab, args.adv_iterations, log, maps) for pair in pairs}
    print(table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"ngrams": ngrams, "max_vocab": args.max_vocab, "results": results},
                                             indent=2))


if __name__ == "__main__":
    main()
