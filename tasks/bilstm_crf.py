"""Supervised BiLSTM-CRF NER: ``python train.py configs/bilstm_crf_de.yaml``.

The task object is a core.task.Task (build_model, train_batches, loss, evaluate, metric_name,
run); ``run`` trains with core.task.fit_best (the best-dev weights from best.pt) and scores the
test split. The caps mean what they mean for every task: data.max_train_sentences,
max_eval_sentences (dev) and max_test_sentences (test) are fixed-seed samples (data.sampling.downsample). The helpers below (batching, prediction, F1) are shared with the zero-resource
pipeline (tasks/zeroresource.py).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from core.distributed import is_main_process
from core.metrics import entity_f1
from core.paths import cache_dir
from data.conll import Sentence
from data.labels import PANX_LABELS
from data.sampling import downsample
from data.sources import load_split, resolve_root
from data.vocab import Vocab, count_chars, count_words, encode_batch
from data.word_vectors import WordVectors, load_or_train
from models.bilstm_crf import build_bilstm_crf

LABELS = list(PANX_LABELS)


def length_batches(sentences: list, batch_size: int, seed: int, shuffle: bool = True) -> list[list]:
    """Batches of similar-length sentences: shuffle, sort within pools of 50 batches, shuffle the batches."""
    order = list(range(len(sentences)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    pool = 50 * batch_size
    batches = []
    for lo in range(0, len(order), pool):
        chunk = sorted(order[lo:lo + pool], key=lambda i: len(sentences[i].words))
        batches += [[sentences[i] for i in chunk[j:j + batch_size]] for j in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict_tags(model, sentences: list, words: Vocab, chars: Vocab, lowercase: bool, batch_size: int = 128,
                 extra_fn=None) -> list[list[str]]:
    """Viterbi tags for each sentence (``extra_fn(batch)`` gives augmentation features if the model takes them)."""
    was_training = model.training
    model.eval()
    out: list[list[str] | None] = [None] * len(sentences)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].words))
    for lo in range(0, len(order), batch_size):
        ids = order[lo:lo + batch_size]
        batch = encode_batch([sentences[i] for i in ids], words, chars, None, lowercase)
        paths = model.decode(batch, extra_fn(batch) if extra_fn else None).tolist()
        for i, path in zip(ids, paths):
            out[i] = [model.labels[t] for t in path[:len(sentences[i].words)]]
    model.train(was_training)
    return out


def f1_on(model, sentences, words, chars, lowercase, extra_fn=None) -> float:
    return entity_f1([s.tags for s in sentences], predict_tags(model, sentences, words, chars, lowercase,
                                                               extra_fn=extra_fn))


def initial_table(words: Vocab, vectors: WordVectors, seed: int) -> torch.Tensor:
    """(V, E) word table: rows of words with a vector take it, scaled to unit variance like the
    N(0, 1) rows drawn for the rest (nn.Embedding's own initialisation)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(len(words), vectors.matrix.shape[1], generator=g)  # (V, E)
    scaled = vectors.matrix / vectors.matrix.std()  # (S, E)
    index = vectors.index()
    rows = [(i, index[w]) for i, w in enumerate(words.itos) if w in index]
    if rows:
        ours, theirs = torch.tensor(rows).t()
        table[ours] = scaled[theirs]
    return table


def limit(sentences: list, n: int, seed: int) -> list:
    """The data.max_*_sentences cap: ``n`` sentences by a fixed-seed sample (file order kept); 0 = all."""
    return downsample(sentences, n, seed) if n else sentences


class BiLSTMCRFTask:
    """Train on ``data.train_langs[0]``'s train split, select on its dev split, report test."""

    metric_name = "dev_f1"

    def __init__(self, cfg, train: list[Sentence], dev: list[Sentence], test: list[Sentence]):
        self.cfg = cfg
        self.train, self.dev, self.test = train, dev, test
        b = cfg.bilstm
        if b.word_vectors not in ("", "sgns"):
            raise ValueError(f"bilstm.word_vectors: {b.word_vectors!r} is not one of '', 'sgns'")
        sgns = self._sgns_vectors(cfg) if b.word_vectors else None
        self.words = Vocab.build(count_words(train, b.lowercase), b.min_word_count,
                                 extra=sgns.words if sgns else ())
        self.vectors = initial_table(self.words, sgns, seed=cfg.train.seed) if sgns else None  # (V, E) or random
        self.chars = Vocab.build(count_chars(train))
        self.label_index = {t: i for i, t in enumerate(LABELS)}

    @staticmethod
    def _sgns_vectors(cfg) -> WordVectors:
        """The training language's skip-gram vectors (cached), after checking they fit the word table."""
        b, m = cfg.bilstm, cfg.mapping
        if not b.lowercase:
            raise ValueError("bilstm.word_vectors: sgns needs bilstm.lowercase: true "
                             "(the skip-gram vectors are keyed in lower case)")
        if m.vector_dim != b.word_dim:
            raise ValueError(f"bilstm.word_vectors: sgns gives mapping.vector_dim={m.vector_dim} dimensions "
                             f"but bilstm.word_dim is {b.word_dim}; set them equal")
        return load_or_train(cache_dir() / "word_vectors", resolve_root(cfg.data), cfg.data.train_langs[0],
                             m.vector_dim, m.vector_epochs, m.vector_window, m.vector_negatives, m.vector_min_count,
                             ngrams=m.vector_ngrams)

    def build_model(self):
        return build_bilstm_crf(self.cfg.bilstm, len(self.words), len(self.chars), LABELS,
                                word_vectors=self.vectors)

    def train_batches(self, epoch: int, rank: int, world: int):
        batches = length_batches(self.train, self.cfg.train.batch_size, self.cfg.train.seed + epoch)
        for sents in batches[rank::world]:
            yield encode_batch(sents, self.words, self.chars, self.label_index, self.cfg.bilstm.lowercase)

    def loss(self, model, batch):
        return model.loss(batch, reduction="sum")

    def evaluate(self, model) -> dict[str, float]:
        return {"dev_f1": f1_on(model, self.dev, self.words, self.chars, self.cfg.bilstm.lowercase)}

    def run(self, cfg, run_dir) -> dict:
        from core.task import fit_best
        result = fit_best(cfg, self, run_dir)
        model = result["model"]
        test_f1 = f1_on(model, self.test, self.words, self.chars, cfg.bilstm.lowercase)
        results = {"best_dev_f1": result["best_metric"], "test_f1": test_f1, "step": result["step"]}
        if is_main_process():
            (Path(run_dir) / "results.json").write_text(json.dumps(results, indent=2))
        return results


def build_task(cfg) -> BiLSTMCRFTask:
    lang = cfg.data.train_langs[0]
    d = cfg.data
    seed = cfg.train.seed
    return BiLSTMCRFTask(cfg, limit(load_split(d, lang, "train"), d.max_train_sentences, seed),
                         limit(load_split(d, lang, "dev"), d.max_eval_sentences, seed),
                         limit(load_split(d, lang, "test"), d.max_test_sentences, seed))
