"""Benchmark: our skip-gram trainer (data/word_vectors.py) vs gensim's Word2Vec, words/second, side by side.

    python bench/word_vectors.py [--lang de] [--tokens 1000000] [--epochs 1] [--threads 1] [--ngrams]

Both train on the same text (the first ``--tokens`` tokens of data/monolingual.py's corpus for the
language, as word keys) with the same settings: skip-gram, 100 dims, window 5 (each centre draws
its window in [1, 5]), 5 negatives from unigram^0.75, subsampling 1e-4, min count 2, lr 0.025
decaying linearly to ~0, one thread (gensim ``workers=1``). words/s = corpus tokens x epochs per
second of the whole call (vocabulary included for both). gensim is a bench-only dependency
(requirements-dev.txt). As a check that both learn the same kind of thing, the share of shared
entries in the cosine top-10 neighbours (among the 10,000 most frequent) of the 1,000 most frequent
words is printed (two runs of
one trainer with different seeds give a baseline for it).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.paths import data_root  # noqa: E402
from data.monolingual import monolingual_sentences  # noqa: E402
from data.word_vectors import train_sgns  # noqa: E402


def first_tokens(sentences: list[list[str]], n: int) -> list[list[str]]:
    out, total = [], 0
    for sent in sentences:
        if total >= n:
            break
        out.append(sent)
        total += len(sent)
    return out


def neighbours(words: list[str], matrix: torch.Tensor, probe: list[str], k: int = 10,
               candidates: int = 10_000) -> dict[str, set[str]]:
    """Cosine top-k of each probe word among the ``candidates`` most frequent words (rare words' vectors
    are barely trained and would fill the lists at random)."""
    words, matrix = words[:candidates], matrix[:candidates]
    index = {w: i for i, w in enumerate(words)}
    unit = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (V, E)
    rows = torch.tensor([index[w] for w in probe])
    sims = unit[rows] @ unit.t()  # (P, V)
    sims[torch.arange(len(rows)), rows] = -2  # not itself
    top = sims.topk(k, dim=1).indices
    return {w: {words[j] for j in top[i].tolist()} for i, w in enumerate(probe)}


def overlap(a: dict[str, set[str]], b: dict[str, set[str]]) -> float:
    return sum(len(a[w] & b[w]) for w in a) / sum(len(a[w]) for w in a)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="de")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ngrams", action="store_true", help="also time the char n-gram (3-5) option vs gensim FastText")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from gensim.models import FastText, Word2Vec
    from gensim.models.word2vec import FAST_VERSION

    sentences = first_tokens(monolingual_sentences(data_root(), args.lang), args.tokens)
    n_tokens = sum(map(len, sentences))
    settings = dict(dim=100, window=5, negatives=5, min_count=2, lr=0.025, sample=1e-4)
    gensim_args = dict(vector_size=100, window=5, negative=5, min_count=2, alpha=0.025, min_alpha=0.0001,
                       sample=1e-4, sg=1, hs=0, ns_exponent=0.75, workers=args.threads, epochs=args.epochs)
    print(f"torch {torch.__version__}, gensim compiled routines: {FAST_VERSION >= 0}, threads {args.threads}")
    print(f"{args.lang}: {len(sentences):,} sentences, {n_tokens:,} tokens, {args.epochs} epoch(s)")
    rows = []
    ours, wall, cpu = timed(lambda: train_sgns(sentences, epochs=args.epochs, seed=0, log=lambda *_: None, **settings))
    ours_b, _, _ = timed(lambda: train_sgns(sentences, epochs=args.epochs, seed=1, log=lambda *_: None, **settings))
    ref, ref_wall, ref_cpu = timed(lambda: Word2Vec(sentences, seed=0, **gensim_args))
    rows.append(("skip-gram", wall, cpu, ref_wall, ref_cpu))
    probe = [w for w in ours.words[:1000] if w in ref.wv.key_to_index]
    ref_words = list(ref.wv.index_to_key)
    ours_nn = neighbours(ours.words, ours.matrix, probe)
    print(f"top-10 neighbour overlap of {len(probe)} frequent words: ours vs gensim "
          f"{overlap(ours_nn, neighbours(ref_words, torch.from_numpy(ref.wv.vectors), probe)):.2f}, "
          f"ours seed 0 vs seed 1 {overlap(ours_nn, neighbours(ours_b.words, ours_b.matrix, probe)):.2f}")
    if args.ngrams:
        _, wall, cpu = timed(lambda: train_sgns(sentences, epochs=args.epochs, seed=0, ngrams=(3, 5),
                                                buckets=200_000, log=lambda *_: None, **settings))
        _, ref_wall, ref_cpu = timed(lambda: FastText(sentences, seed=0, min_n=3, max_n=5, bucket=200_000,
                                                      **gensim_args))
        rows.append(("+ char n-grams 3-5 (gensim FastText)", wall, cpu, ref_wall, ref_cpu))
    words = n_tokens * args.epochs
    print("words/s by wall clock (by process CPU time); ratio = ours / gensim")
    print(f"{'trainer':38s} {'ours':>16s} {'gensim':>18s} {'ratio':>6s}")
    for name, wall, cpu, ref_wall, ref_cpu in rows:
        print(f"{name:38s} {words / wall:>8,.0f} ({words / cpu:>7,.0f}) {words / ref_wall:>9,.0f} ({words / ref_cpu:>7,.0f}) "
              f"{ref_wall / wall:6.2f}")


if __name__ == "__main__":
    main()
