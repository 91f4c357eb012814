"""Monolingual word vectors learnt here: skip-gram with negative sampling (SGNS) in torch.

    sentences = monolingual_sentences(root, "de")              # lists of word keys
    vectors = train_sgns(sentences, dim=100, epochs=5)          # WordVectors(words, matrix)

Why SGNS: it is what fastText/word2vec vectors (the MUSE inputs) are, it needs nothing but
raw text, and it is ~100 lines of torch. The text is the monolingual side of what is at hand:
PAN-X train words of the language (tags dropped) plus multi30k / OpenNMT / Tatoeba sides when
the language has them; they are used as separate monolingual corpora, never as aligned pairs.
Words are keyed as in the BiLSTM-CRF vocabulary (lower case, digits -> 0).

Legend: N pairs in a batch, E vector size, V vocabulary, M negatives per pair.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from data.conll import read_conll
from data.vocab import word_key

# Monolingual text per language, relative to the data root (plus PAN-X train of the language).
MONOLINGUAL_TEXT = {
    "de": ["multi30k/train.de", "opennmt_ende/tgt-train.txt", "tatoeba_laser/tatoeba.deu-eng.deu"],
    "en": ["multi30k/train.en", "opennmt_ende/src-train.txt", "tatoeba_laser/tatoeba.deu-eng.eng"],
    "nl": ["tatoeba_laser/tatoeba.nld-eng.nld"],
    "es": ["tatoeba_laser/tatoeba.spa-eng.spa"],
    "fr": ["multi30k/train.fr", "tatoeba_laser/tatoeba.fra-eng.fra"],
}
_TOKEN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]", re.UNICODE)


@dataclass
class WordVectors:
    words: list[str]  # most frequent first
    matrix: torch.Tensor  # (V, E)

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def save(self, path: str | Path) -> None:
        torch.save({"words": self.words, "matrix": self.matrix}, path)

    @classmethod
    def load(cls, path: str | Path) -> "WordVectors":
        state = torch.load(path, map_location="cpu")
        return cls(state["words"], state["matrix"])


def tokenize(line: str) -> list[str]:
    return [word_key(t, lowercase=True) for t in _TOKEN.findall(line.replace("&apos;", "'").replace("&quot;", '"'))]


def monolingual_sentences(root: Path, lang: str, panx_train: str = "panx/{lang}/train.conllu") -> list[list[str]]:
    """Word-key sentences of ``lang``: PAN-X train words (no tags) + the extra text files."""
    root = Path(root)
    sentences = [[word_key(w, True) for w in s.words]
                 for s in read_conll(root / panx_train.format(lang=lang), labels=None)]
    for rel in MONOLINGUAL_TEXT.get(lang, []):
        path = root / rel
        if path.is_file():
            sentences += [tokenize(line) for line in path.open(encoding="utf-8") if line.strip()]
    return sentences


class SkipGram(nn.Module):
    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.center = nn.Embedding(vocab_size, dim, sparse=True)
        self.context = nn.Embedding(vocab_size, dim, sparse=True)
        nn.init.uniform_(self.center.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.context.weight)

    def forward(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """SGNS loss summed over the pairs: center (N,), context (N,), negatives (N, M)."""
        c = self.center(center)  # (N, E)
        pos = (c * self.context(context)).sum(-1)  # (N,)
        neg = torch.bmm(self.context(negatives), c.unsqueeze(2)).squeeze(2)  # (N, M)
        return -(nn.functional.logsigmoid(pos).sum() + nn.functional.logsigmoid(-neg).sum())


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


def train_sgns(sentences: list[list[str]], dim: int = 100, epochs: int = 5, window: int = 5, negatives: int = 5,
               min_count: int = 2, batch_size: int = 1024, lr: float = 0.025, seed: int = 0,
               log=print) -> WordVectors:
    """SGNS vectors (center embeddings) for words seen at least ``min_count`` times."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    counts = Counter(w for s in sentences for w in s)
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
    index = {w: i for i, w in enumerate(words)}
    freq = torch.tensor([counts[w] for w in words], dtype=torch.float)  # (V,)
    share = freq / freq.sum()
    keep = ((1e-4 / share).sqrt() + 1e-4 / share).clamp(max=1.0)  # word2vec subsampling
    noise = freq.pow(0.75)  # (V,) negative-sampling distribution
    ids = torch.tensor([index[w] for s in sentences for w in s if w in index], dtype=torch.long)  # (L,)
    sent_ids = torch.tensor([n for n, s in enumerate(sentences) for w in s if w in index], dtype=torch.long)
    model = SkipGram(len(words), dim)
    opt = torch.optim.SGD(model.parameters(), lr=lr)  # sparse rows; per-pair steps as in word2vec
    for epoch in range(epochs):
        center, context = skipgram_pairs(ids, sent_ids, window, keep, gen)
        order = torch.randperm(len(center), generator=gen)
        total, batches = 0.0, math.ceil(len(order) / batch_size)
        for b, lo in enumerate(range(0, len(order), batch_size)):
            for group in opt.param_groups:  # linear decay over all epochs, as word2vec
                group["lr"] = lr * max(1e-4, 1 - (epoch + b / batches) / epochs)
            pick = order[lo:lo + batch_size]
            neg = torch.multinomial(noise, len(pick) * negatives, replacement=True, generator=gen)
            loss = model(center[pick], context[pick], neg.view(len(pick), negatives))  # summed over pairs
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        log(f"sgns epoch {epoch + 1}/{epochs}: {len(center):,} pairs, loss {total / max(len(center), 1):.4f}")
    return WordVectors(words, model.center.weight.detach().clone())


def center_and_normalize(matrix: torch.Tensor) -> torch.Tensor:
    """Unit length, mean-centred, unit length again (the usual preprocessing before mapping)."""
    matrix = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)
    matrix = matrix - matrix.mean(0, keepdim=True)
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


def load_or_train(cache: Path, root: Path, lang: str, dim: int, epochs: int, window: int, negatives: int,
                  min_count: int, log=print) -> WordVectors:
    """Vectors of ``lang`` from ``cache`` if present (same settings), else trained and cached."""
    cache = Path(cache) / f"sgns_{lang}_d{dim}_e{epochs}_w{window}_n{negatives}_m{min_count}.pt"
    if cache.is_file():
        return WordVectors.load(cache)
    sentences = monolingual_sentences(root, lang)
    log(f"{lang}: {len(sentences):,} sentences, {sum(map(len, sentences)):,} tokens")
    vectors = train_sgns(sentences, dim, epochs, window, negatives, min_count, log=log)
    cache.parent.mkdir(parents=True, exist_ok=True)
    vectors.save(cache)
    return vectors
