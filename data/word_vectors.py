"""Monolingual word vectors learnt here: skip-gram with negative sampling (SGNS) in torch.

    sentences = monolingual_sentences(root, "de")              # data/monolingual.py: all the text at hand
    vectors = train_sgns(sentences, dim=100, epochs=5)          # WordVectors(words, matrix)
    vectors = train_sgns(sentences, ngrams=(3, 5))              # fastText-style: + hashed char n-grams

Why SGNS: it is what fastText/word2vec vectors (the MUSE inputs) are, it needs nothing but raw
text, and it is short. The update is word2vec's, written out instead of going through autograd
(the same numbers as autograd + SGD on the summed loss, tested; ~3x faster): for a centre c and
targets t_0 (the context word, label 1) and t_1..t_M (negatives, label 0), g_m = lr (label_m -
sigmoid(c . t_m)); c += sum_m g_m t_m; t_m += g_m c, each batch of pairs applied at once.

With ``ngrams=(lo, hi)`` a word's centre vector is the mean of its own row and the rows of its
character n-grams (``<word>`` padded, lo..hi characters, hashed into ``buckets`` rows), as in
fastText; and as fastText's skip-gram does (``Model::update``: only the supervised model divides),
every one of those rows takes the *whole* gradient of the mean, not 1/G of it, so a word's vector
moves as fast as a plain word2vec row (with 1/G, the true derivative, a word of ~20 n-grams learns
at 1/20 of the rate: de -> en word translation P@1 0.0 after 3 epochs, against 2.7 without n-grams).
The saved vector of a word is that mean, and ``subword_vector`` gives one for a word never seen.

Legend: N pairs in a batch, E vector size, V vocabulary, M negatives per pair, G rows per word.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from data.monolingual import monolingual_sentences, tokenize  # noqa: F401  (tokenize: re-exported)

NOISE_TABLE = 10_000_000  # word2vec's unigram^0.75 table (it uses 1e8): negatives are O(1) lookups


@dataclass
class WordVectors:
    words: list[str]  # most frequent first
    matrix: torch.Tensor  # (V, E)
    ngram_rows: torch.Tensor | None = None  # (buckets, E) char n-gram rows when trained with ngrams
    ngrams: tuple[int, int] | None = None
    counts: list[int] = field(default_factory=list)

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def save(self, path: str | Path) -> None:
        torch.save({"words": self.words, "matrix": self.matrix, "ngram_rows": self.ngram_rows,
                    "ngrams": list(self.ngrams) if self.ngrams else None, "counts": self.counts}, path)

    @classmethod
    def load(cls, path: str | Path) -> "WordVectors":
        state = torch.load(path, map_location="cpu", weights_only=True)
        ngrams = tuple(state["ngrams"]) if state.get("ngrams") else None
        return cls(state["words"], state["matrix"], state.get("ngram_rows"), ngrams, state.get("counts", []))

    def subword_vector(self, word: str) -> torch.Tensor:
        """(E,) mean of the n-gram rows of ``word`` (any word, seen or not): needs ngram vectors."""
        if self.ngram_rows is None:
            raise ValueError("these vectors were trained without ngrams")
        rows = char_ngram_ids(word, *self.ngrams, len(self.ngram_rows))
        return self.ngram_rows[rows].mean(0)


def char_ngram_ids(word: str, lo: int, hi: int, buckets: int) -> list[int]:
    """Bucket ids of the char n-grams (lo..hi chars) of ``<word>``, hashed with 32-bit FNV-1a (as fastText)."""
    padded = f"<{word}>"
    ids = []
    for n in range(lo, hi + 1):
        for start in range(len(padded) - n + 1):
            h = 2166136261
            for byte in padded[start:start + n].encode("utf-8"):
                h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
            ids.append(h % buckets)
    return ids


def subword_rows(words: list[str], lo: int, hi: int, buckets: int, max_grams: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, G) row ids into [word rows | n-gram rows | one spare row] (word row first; short words padded
    with the spare row, index V + buckets, which training keeps at zero) and (V,) rows per word.

    A word keeps at most ``max_grams`` n-grams (its shortest ones first): one 60-character token
    would otherwise widen G, and every batch's gather, for all words."""
    lists = [[i] + [len(words) + g for g in char_ngram_ids(w, lo, hi, buckets)[:max_grams]]
             for i, w in enumerate(words)]
    spare = len(words) + buckets
    rows = torch.full((len(words), max(map(len, lists))), spare, dtype=torch.long)  # (V, G)
    for i, ids in enumerate(lists):
        rows[i, :len(ids)] = torch.tensor(ids)
    return rows, torch.tensor([len(ids) for ids in lists], dtype=torch.float)  # (V,)


def skipgram_pairs(ids: torch.Tensor, sent_ids: torch.Tensor, window: int, keep: torch.Tensor,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(center, context) pairs of one epoch over the concatenated corpus, vectorised.

    ids (L,) word ids of all sentences back to back, sent_ids (L,) their sentence numbers.
    Frequent words are subsampled; each center draws its window size in [1, window].
    """
    kept = torch.rand(len(ids), generator=gen) < keep[ids]  # (L,) subsampling
    ids, sent_ids = ids[kept], sent_ids[kept]
    spans = torch.randint(1, window + 1, (len(ids),), generator=gen)  # (L,)
    centers, contexts = [], []
    for offset in range(1, window + 1):
        same = sent_ids[:-offset] == sent_ids[offset:]  # (L - offset,) both in one sentence
        forward = same & (spans[:-offset] >= offset)  # left word is the center
        backward = same & (spans[offset:] >= offset)  # right word is the center
        centers += [ids[:-offset][forward], ids[offset:][backward]]
        contexts += [ids[offset:][forward], ids[:-offset][backward]]
    return torch.cat(centers), torch.cat(contexts)


def sgns_step(center_rows: torch.Tensor, context_rows: torch.Tensor, center: torch.Tensor, targets: torch.Tensor,
              lr: float, rows: torch.Tensor | None = None, sizes: torch.Tensor | None = None) -> torch.Tensor:
    """One batched word2vec update in place; returns the batch's summed SGNS loss (a 0-dim tensor).

    center (N,) word ids; targets (N, 1 + M): the context word, then the negatives. Without
    ``rows`` a centre vector is its row of ``center_rows``; with rows (V, G) and sizes (V,) it is the
    mean of the listed rows (word + char n-grams; the spare padding row stays zero), and each listed
    row takes the mean's whole gradient (fastText's skip-gram update, see the module docstring).
    """
    n, width = targets.shape
    if rows is None:
        c = center_rows.index_select(0, center)  # (N, E)
    else:
        size = sizes.index_select(0, center).unsqueeze(1)  # (N, 1)
        r = rows.index_select(0, center)[:, :int(size.max())]  # (N, G') no column that is padding for all
        c = center_rows.index_select(0, r.reshape(-1)).view(n, r.shape[1], -1).sum(1) / size  # (N, E)
    flat = targets.reshape(-1)  # (N (1 + M),)
    t = context_rows.index_select(0, flat).view(n, width, -1)  # (N, 1 + M, E)
    scores = torch.bmm(t, c.unsqueeze(2)).squeeze(2)  # (N, 1 + M)
    label = torch.zeros_like(scores)
    label[:, 0] = 1.0
    g = (label - torch.sigmoid(scores)) * lr  # (N, 1 + M) ascent on log-likelihood
    grad_c = torch.bmm(g.unsqueeze(1), t).squeeze(1)  # (N, E)
    context_rows.index_add_(0, flat, (g.unsqueeze(2) * c.unsqueeze(1)).view(-1, c.shape[1]))
    if rows is None:
        center_rows.index_add_(0, center, grad_c)
    else:
        spread = grad_c.unsqueeze(1).expand(-1, r.shape[1], -1)  # (N, G, E) the whole gradient, each row
        center_rows.index_add_(0, r.reshape(-1), spread.reshape(-1, c.shape[1]))
        center_rows[-1].zero_()  # the spare row took the padded slots' share
    sign = label * 2 - 1  # (N, 1 + M) +1 for the context word, -1 for negatives
    return -torch.nn.functional.logsigmoid(scores * sign).sum()


def train_sgns(sentences: list[list[str]], dim: int = 100, epochs: int = 5, window: int = 5, negatives: int = 5,
               min_count: int = 2, batch_size: int = 0, lr: float = 0.025, seed: int = 0,
               ngrams: Sequence[int] | None = None, buckets: int = 200_000, sample: float = 1e-4,
               log=print) -> WordVectors:
    """SGNS vectors (center embeddings) for words seen at least ``min_count`` times.

    ``batch_size``: pairs per update; 0 = 1,024, or 256 with ``ngrams`` (each pair then gathers and
    scatters ~G rows, and smaller batches stay in cache: 1.8x the words/s measured).
    ``sample``: word2vec's subsampling threshold (a word of corpus share f is kept with probability
    sqrt(sample / f) + sample / f); 0 keeps every word.
    """
    gen = torch.Generator().manual_seed(seed)
    batch_size = batch_size or (256 if ngrams else 1024)
    counts = Counter(w for s in sentences for w in s)
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
    index = {w: i for i, w in enumerate(words)}
    freq = torch.tensor([counts[w] for w in words], dtype=torch.float)  # (V,)
    share = freq / freq.sum()
    keep = ((sample / share).sqrt() + sample / share).clamp(max=1.0) if sample > 0 else torch.ones_like(share)
    noise = freq.pow(0.75)
    table = torch.repeat_interleave(torch.arange(len(words)), (noise / noise.sum() * NOISE_TABLE).round().long())
    ids = torch.tensor([index[w] for s in sentences for w in s if w in index], dtype=torch.long)  # (L,)
    sent_ids = torch.tensor([n for n, s in enumerate(sentences) for w in s if w in index], dtype=torch.long)
    rows = sizes = None
    n_rows = len(words)
    if ngrams:
        rows, sizes = subword_rows(words, ngrams[0], ngrams[1], buckets)  # (V, G), (V,)
        n_rows += buckets + 1
    center_rows = torch.empty(n_rows, dim).uniform_(-0.5 / dim, 0.5 / dim, generator=gen)  # (V [+ buckets], E)
    context_rows = torch.zeros(len(words), dim)  # (V, E)
    for epoch in range(epochs):
        center, context = skipgram_pairs(ids, sent_ids, window, keep, gen)
        order = torch.randperm(len(center), generator=gen)
        center, context = center[order], context[order]  # shuffled once, then sliced
        total, batches = torch.zeros(()), math.ceil(len(center) / batch_size)
        for b, lo in enumerate(range(0, len(center), batch_size)):
            rate = lr * max(1e-4, 1 - (epoch + b / batches) / epochs)  # linear decay over all epochs, as word2vec
            pos = context[lo:lo + batch_size]
            neg = table[torch.randint(len(table), (len(pos), negatives), generator=gen)]  # (N, M)
            targets = torch.cat([pos.unsqueeze(1), neg], dim=1)  # (N, 1 + M)
            total += sgns_step(center_rows, context_rows, center[lo:lo + batch_size], targets, rate, rows, sizes)
        log(f"sgns epoch {epoch + 1}/{epochs}: {len(center):,} pairs, loss {float(total) / max(len(center), 1):.4f}")
    if rows is None:
        return WordVectors(words, center_rows, counts=freq.long().tolist())
    matrix = torch.cat([center_rows[rows[lo:lo + 4096]].sum(1) / sizes[lo:lo + 4096].unsqueeze(1)
                        for lo in range(0, len(words), 4096)])  # (V, E) fastText's word vector
    return WordVectors(words, matrix, center_rows[len(words):-1].clone(), tuple(ngrams), freq.long().tolist())


def center_and_normalize(matrix: torch.Tensor) -> torch.Tensor:
    """Unit length, mean-centred, unit length again (the usual preprocessing before mapping)."""
    matrix = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)
    matrix = matrix - matrix.mean(0, keepdim=True)
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cache_name(lang: str, dim: int, epochs: int, window: int, negatives: int, min_count: int,
               ngrams: Sequence[int] | None = None) -> str:
    """File name of cached vectors; "all" = the corpus of data/monolingual.py (earlier caches lack it)."""
    sub = f"_ng{ngrams[0]}{ngrams[1]}" if ngrams else ""
    return f"sgns_all_{lang}_d{dim}_e{epochs}_w{window}_n{negatives}_m{min_count}{sub}.pt"


def load_or_train(cache: Path, root: Path, lang: str, dim: int, epochs: int, window: int, negatives: int,
                  min_count: int, log=print, ngrams: Sequence[int] | None = None) -> WordVectors:
    """Vectors of ``lang`` from ``cache`` if present (same settings), else trained and cached.
    ``ngrams``: (lo, hi) or a config's [lo, hi]; None or [] = plain vectors."""
    path = Path(cache) / cache_name(lang, dim, epochs, window, negatives, min_count, ngrams)
    if path.is_file():
        return WordVectors.load(path)
    sentences = monolingual_sentences(root, lang)
    log(f"{lang}: {len(sentences):,} sentences, {sum(map(len, sentences)):,} tokens")
    vectors = train_sgns(sentences, dim, epochs, window, negatives, min_count, ngrams=ngrams, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    vectors.save(tmp)
    tmp.replace(path)  # never a half-written cache
    return vectors
