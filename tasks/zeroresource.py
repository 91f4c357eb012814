"""Zero-resource NER transfer through mapped word vectors: ``python train.py configs/zeroresource_de_en.yaml``.

Stages (each training stage runs core.loop.fit; no target-language label is read before the test):
 1. word vectors for source and target (SGNS, data/word_vectors.py, cached), target vectors mapped
    into the source space (Procrustes on a seed dictionary or identical strings, refined by mutual
    CSLS neighbours; adversarial initialisation as an option); BLI precision@1/@5 if a test
    dictionary is given.
 2. source BiLSTM-CRF on source train with the frozen source vectors (cached, shared by targets).
 3. direct transfer: the same model with the mapped target vectors swapped in.
 4. (a) source train sentences translated word by word (CSLS nearest neighbour, labels kept);
    (b) unlabelled target train sentences pseudo-labelled by the source model.
 5. target models: on (a); on (a)+(b); and the full method: (a)+(b), initialised from the source
    model (weight sharing), with the frozen source model's BiLSTM features concatenated (feature
    augmentation) and a stochastic schedule over sentence lengths. All scored on the target test.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

import contextlib

from core.paths import cache_dir
from data.conll import Sentence
from data.dictionaries import gold_translations, identical_pairs, index_pairs, read_spec
from data.sources import ensure_files, load_split, resolve_root
from data.vocab import PAD, UNK, Vocab, count_chars, encode_batch, word_key
from data.word_vectors import cache_name, center_and_normalize, load_or_train
from models.bilstm_crf import build_bilstm_crf
from models.csls import cosine_topk, csls_neighbourhoods, csls_topk, precision_at_k
from models.mapping import adversarial_init, procrustes, refine
from tasks.bilstm_crf import LABELS, f1_on, length_batches, limit


CHAR_LANGS = ("de", "en", "es", "nl")  # PAN-X languages whose unlabelled train text feeds the char vocabulary


class BilingualSpace:
    """Source vectors and target vectors mapped into the source space, as frozen word tables.

    Each language has a Vocab (<pad>, <unk>, then its most frequent words) and a table with the
    same number of rows, so one model can switch languages by copying a table into its
    (frozen) word embedding. ``translation[i]`` is the CSLS nearest target word of source word i.
    """

    def __init__(self, src_words, src, tgt_words, tgt_in_src, k: int, max_vocab: int):
        self.words = {"source": Vocab([PAD, UNK] + src_words), "target": Vocab([PAD, UNK] + tgt_words)}
        self.rows = 2 + max_vocab  # the same shape for every target, so the source model is shared
        self.tables = {"source": self._table(src), "target": self._table(tgt_in_src)}
        self.src, self.tgt, self.k = src, tgt_in_src, k
        self.current, self.chars, self.bli = "source", None, {}
        self.vectors_name = ""  # the source vectors' cache file name (build_space sets it)
        hoods = csls_neighbourhoods(src, tgt_in_src, k)
        _, nearest = csls_topk(src, tgt_in_src, topk=1, k=k, neighbourhoods=hoods)  # (S, 1)
        _, back = csls_topk(tgt_in_src, src, topk=1, k=k, neighbourhoods=hoods[::-1])  # (T, 1)
        nearest, back = nearest.squeeze(1), back.squeeze(1)
        self.translation = [tgt_words[j] for j in nearest.tolist()]
        self.mutual = (back[nearest] == torch.arange(len(nearest))).tolist()  # (S,) each other's neighbour

    def _table(self, vectors):
        table = vectors.new_zeros(self.rows, vectors.shape[1])  # (rows, E); <pad>, <unk> are zero
        table[2:2 + len(vectors)] = vectors
        return table

    def vocab(self, name: str) -> Vocab:
        return self.words[name]

    def load(self, model, name: str) -> None:
        with torch.no_grad():
            model.words.weight.copy_(self.tables[name])

    @contextlib.contextmanager
    def using(self, name: str, *models):
        """Models look words up in ``name``'s table inside the block, in ``self.current``'s after."""
        for model in filter(None, models):
            self.load(model, name)
        try:
            yield
        finally:
            for model in filter(None, models):
                self.load(model, self.current)


def build_space(cfg, log=print) -> BilingualSpace:
    """Stage 1: vectors, seed, Procrustes + refinement (or adversarial start), BLI, translations."""
    m = cfg.mapping
    root = resolve_root(cfg.data)
    cache = cache_dir() / "word_vectors"
    vec = {lang: load_or_train(cache, root, lang, m.vector_dim, m.vector_epochs, m.vector_window,
                               m.vector_negatives, m.vector_min_count, log=log, ngrams=m.vector_ngrams)
           for lang in (m.source_lang, m.target_lang)}
    src_words, tgt_words = (vec[lang].words[:m.max_vocab] for lang in (m.source_lang, m.target_lang))
    src = center_and_normalize(vec[m.source_lang].matrix[:m.max_vocab])  # (S, E)
    tgt = center_and_normalize(vec[m.target_lang].matrix[:m.max_vocab])  # (T, E)
    src_index = {w: i for i, w in enumerate(src_words)}
    tgt_index = {w: i for i, w in enumerate(tgt_words)}
    pairs = read_spec(root, m.seed_dictionary) if m.seed_dictionary else identical_pairs(src_words, tgt_words)
    seed, dropped = index_pairs(pairs, src_index, tgt_index)
    log(f"seed: {len(seed)} pairs in both vocabularies ({dropped} dropped)"
        f" from {'the dictionary' if m.seed_dictionary else 'identical strings'}")
    w = adversarial_init(src, tgt, epochs=m.adversarial_epochs, log=log) if m.adversarial \
        else procrustes(src[seed[:, 0]], tgt[seed[:, 1]])
    w, _ = refine(src, tgt, w, steps=m.refinement_steps, k=m.csls_k, log=log)
    tgt_in_src = tgt @ w.t()  # (T, E) W orthogonal: src W ~ tgt  <=>  src ~ tgt W^T
    space = BilingualSpace(src_words, src, tgt_words, tgt_in_src, m.csls_k, m.max_vocab)
    space.vectors_name = cache_name(m.source_lang, m.vector_dim, m.vector_epochs, m.vector_window,
                                    m.vector_negatives, m.vector_min_count, m.vector_ngrams)  # keys the cached source model
    if m.test_dictionary:
        gold, coverage = gold_translations(read_spec(root, m.test_dictionary), src_index, tgt_index)
        queries = torch.tensor(sorted(gold))
        _, by_csls = csls_topk(src, tgt_in_src, topk=5, k=m.csls_k, queries=queries)
        _, by_cos = cosine_topk(src, tgt_in_src, topk=5, queries=queries)
        space.bli = {"csls": precision_at_k(by_csls, queries.tolist(), gold),
                     "cosine": precision_at_k(by_cos, queries.tolist(), gold),
                     "queries": len(queries), "coverage": coverage}
        log(f"BLI {m.source_lang}->{m.target_lang}: {space.bli}")
    return space


def translate_sentences(sentences: list[Sentence], space: BilingualSpace, mutual_only: bool = True) -> list[Sentence]:
    """Word-by-word translation, labels carried over. Copied instead: words that are not purely
    alphabetic, words outside the source vocabulary, words the target vocabulary also has
    (mostly names, which should stay names) and, if ``mutual_only``, words whose CSLS neighbour
    does not have them as its own neighbour (the unreliable translations)."""
    index, target = space.vocab("source").stoi, space.vocab("target").stoi
    out = []
    for sent in sentences:
        words = []
        for word in sent.words:
            key = word_key(word, True)
            i = index.get(key, 0) - 2
            if i < 0 or not word.isalpha() or key in target or (mutual_only and not space.mutual[i]):
                words.append(word)
                continue
            new = space.translation[i]
            words.append(new.upper() if word.isupper() and len(word) > 1 else
                         new[:1].upper() + new[1:] if word[:1].isupper() else new)
        out.append(Sentence(words, list(sent.tags)))
    return out


class TaggingStage:
    """One core.loop.fit stage: a BiLSTM-CRF on given sentences, frozen word table, optional extras."""

    metric_name = "dev_f1"

    def __init__(self, cfg, space, train: list[Sentence], dev: list[Sentence], dev_table: str,
                 make_model, source_model=None, length_schedule: bool = False):
        self.cfg, self.space, self.train, self.dev = cfg, space, train, dev
        self.dev_table, self.make_model, self.source_model = dev_table, make_model, source_model
        self.length_schedule = length_schedule
        self.label_index = {t: i for i, t in enumerate(LABELS)}
        order = sorted(range(len(train)), key=lambda i: len(train[i].words))
        self.length_rank = {i: r / max(len(train) - 1, 1) for r, i in enumerate(order)}  # 0 short .. 1 long

    def build_model(self):
        model = self.make_model()
        self.space.load(model, self.space.current)
        return model

    def train_batches(self, epoch: int, rank: int, world: int):
        size, seed = self.cfg.train.batch_size, self.cfg.train.seed + epoch
        if self.length_schedule:  # every sentence once, roughly short to long: sort by length rank + noise
            rng = random.Random(seed)
            order = sorted(range(len(self.train)), key=lambda i: self.length_rank[i] + rng.uniform(0, 0.5))
            sents = [self.train[i] for i in order]
            batches = [sents[lo:lo + size] for lo in range(0, len(sents), size)]
        else:
            batches = length_batches(self.train, size, seed)
        return EncodedBatches(batches[rank::world], self)

    def extra(self, model, batch):
        if self.source_model is None or not model.extra_dim:
            return None
        with torch.no_grad():
            return self.source_model.features(batch["words"], batch["chars"], batch["mask"])  # (B, W, 2H)

    def loss(self, model, batch):
        return model.loss(batch, reduction="sum", extra=self.extra(model, batch))

    def evaluate(self, model) -> dict[str, float]:
        return {"dev_f1": self.f1(model, self.dev, self.dev_table)}

    def f1(self, model, sentences, table: str) -> float:
        """Entity F1 with the words looked up in ``table`` (source or target vectors)."""
        with self.space.using(table, model, self.source_model):
            return f1_on(model, sentences, self.space.vocab(table), self.space.chars, True,
                         extra_fn=(lambda b: self.extra(model, b)) if model.extra_dim else None)


class EncodedBatches:
    """Batches encoded lazily; len() lets the loop count them without encoding."""

    def __init__(self, batches, stage: TaggingStage):
        self.batches, self.stage = batches, stage

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        s = self.stage
        for sents in self.batches:
            yield encode_batch(sents, s.space.vocab(s.space.current), s.space.chars, s.label_index, True)


def fit_stage(cfg, stage: TaggingStage, run_dir: Path, epochs: float, lr: float = 0.0):
    """One stage in its own folder, by the rule of every task (core.task.fit_best): the returned model
    holds the stage's best-dev weights from best.pt, and ``train.resume`` continues the stage from
    its last.pt (a finished stage returns at once)."""
    from core.task import fit_best
    stage_cfg = copy.deepcopy(cfg)
    stage_cfg.train.epochs = epochs
    stage_cfg.train.lr = lr or cfg.train.lr
    result = fit_best(stage_cfg, stage, run_dir)
    return result["model"].eval()


def share_weights(target: nn.Module, source: nn.Module) -> None:
    """Copy every source parameter with a matching shape; the output layer's extra columns start at 0."""
    src_state = source.state_dict()
    with torch.no_grad():
        for name, param in target.state_dict().items():
            if name in src_state and src_state[name].shape == param.shape:
                param.copy_(src_state[name])
        width = source.out.weight.shape[1]
        target.out.weight[:, :width].copy_(source.out.weight)
        target.out.weight[:, width:].zero_()
        target.out.bias.copy_(source.out.bias)


class ZeroResourceTask:
    def __init__(self, cfg):
        self.cfg = cfg

    def run(self, cfg, run_dir) -> dict:
        run_dir = Path(run_dir)
        m, d = cfg.mapping, cfg.data
        src_lang, tgt_lang = m.source_lang, m.target_lang
        space = build_space(cfg, log=print)  # vectors, mapping, BLI, translation table
        results: dict = {"bli": space.bli}
        seed = cfg.train.seed  # every cap is a fixed-seed sample (tasks/bilstm_crf.py::limit)
        src_train = limit(load_split(d, src_lang, "train"), d.max_train_sentences, seed)
        src_dev = limit(load_split(d, src_lang, "dev"), d.max_eval_sentences, seed)
        tgt_unlabelled = [Sentence(s.words, ["O"] * len(s.words)) for s in  # tags dropped here
                          limit(load_split(d, tgt_lang, "train"), m.max_pseudo_sentences, seed)]
        tgt_test = limit(load_split(d, tgt_lang, "test"), d.max_test_sentences, seed)
        # Characters of source train + unlabelled train text of every PAN-X language the pipeline serves,
        # so that one (cached) source model fits all targets.
        space.chars = Vocab.build(count_chars(src_train) + sum(
            (count_chars(load_split(d, lang, "train")) for lang in CHAR_LANGS if lang != src_lang), Counter()))

        def plain_model(extra_dim: int = 0):
            return lambda: build_bilstm_crf(cfg.bilstm, space.rows, len(space.chars), LABELS,
                                            freeze_words=True, extra_dim=extra_dim)

        # 2. source model (cached: it does not depend on the target)
        source = self.source_model(cfg, space, src_train, src_dev, plain_model(), run_dir)
        stage = TaggingStage(cfg, space, [], src_dev, "source", plain_model())
        results["source_dev_f1"] = stage.f1(source, src_dev, "source")
        results["direct_transfer"] = stage.f1(source, tgt_test, "target")
        print(f"direct transfer {src_lang}->{tgt_lang}: test F1 {results['direct_transfer']:.4f}", flush=True)

        # 4. (a) translated source data, (b) pseudo-labelled target data
        translated = translate_sentences(src_train, space, m.translate_mutual_only)
        changed = sum(a != b for s, t in zip(src_train, translated) for a, b in zip(s.words, t.words))
        print(f"translated {changed} of {sum(len(s.words) for s in src_train)} source words", flush=True)
        with space.using("target", source):
            tags = stage_predict(source, tgt_unlabelled, space)
        pseudo = [Sentence(s.words, t) for s, t in zip(tgt_unlabelled, tags)]

        # 5. target models
        epochs = m.target_epochs
        space.current = "target"
        space.load(source, "target")  # the source model now reads target words (feature augmentation)
        runs = {"translated": (translated, False), "translated_pseudo": (translated + pseudo, False)}
        for name, (train, _) in runs.items():
            stage = TaggingStage(cfg, space, train, src_dev, "source", plain_model())
            model = fit_stage(cfg, stage, run_dir / name, epochs)
            results[name] = stage.f1(model, tgt_test, "target")
            print(f"{name}: test F1 {results[name]:.4f}", flush=True)
        extra_dim = 2 * cfg.bilstm.hidden_size if m.feature_augmentation else 0
        build_full = plain_model(extra_dim)

        def full_model():
            model = build_full()
            if m.weight_sharing:
                share_weights(model, source)
            return model

        stage = TaggingStage(cfg, space, translated + pseudo, src_dev, "source", full_model,
                             source_model=source if extra_dim else None, length_schedule=m.length_schedule)
        model = fit_stage(cfg, stage, run_dir / "full", epochs, lr=m.target_lr if m.weight_sharing else 0.0)
        results["full"] = stage.f1(model, tgt_test, "target")
        print(f"full method: test F1 {results['full']:.4f}", flush=True)
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
        return results

    def source_model(self, cfg, space, train, dev, make_model, run_dir: Path):
        train_cfg = {k: v for k, v in asdict(cfg.train).items() if k not in ("name", "out_dir", "resume")}
        key = json.dumps([asdict(cfg.bilstm), train_cfg, cfg.mapping.source_lang, len(train), len(dev),
                          cfg.mapping.vector_dim, cfg.mapping.vector_epochs, cfg.mapping.max_vocab,
                          len(space.chars), space.rows, space.vectors_name], sort_keys=True, default=str)
        path = cache_dir() / "zeroresource" / f"source_{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
        if path.is_file():
            from core.checkpoint import safe_load
            model = make_model()
            model.load_state_dict(safe_load(path))
            print(f"source model from {path}", flush=True)
            return model.eval()
        space.current = "source"
        stage = TaggingStage(cfg, space, train, dev, "source", make_model)
        model = fit_stage(cfg, stage, run_dir / "source", cfg.train.epochs)  # best-dev weights
        from core.checkpoint import atomic_save
        atomic_save(model.state_dict(), path)
        return model.eval()


def stage_predict(model, sentences, space) -> list[list[str]]:
    from tasks.bilstm_crf import predict_tags
    return predict_tags(model, sentences, space.vocab("target"), space.chars, True)


def build_task(cfg) -> ZeroResourceTask:
    """Check every NER file the stages read (one error naming all missing / malformed files)
    before the word vectors and the models take minutes."""
    resolve_root(cfg.data)
    src, tgt = cfg.mapping.source_lang, cfg.mapping.target_lang
    wanted = [(src, "train"), (src, "dev"), (tgt, "train"), (tgt, "test")]
    wanted += [(lang, "train") for lang in CHAR_LANGS if lang not in (src, tgt)]
    ensure_files(cfg.data, wanted)
    return ZeroResourceTask(cfg)
