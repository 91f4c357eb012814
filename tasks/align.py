"""Contextual alignment fine-tuning (Cao, Kitaev & Klein 2020) as a task trained by core.loop.fit.

    python train.py configs/mini_align_de.yaml        # align en and fr to German, export runs/<name>/model

Legend: B sentence pairs, T subword positions, H hidden, P pieces of one side of a batch, W its words,
Q aligned word pairs of the batch.

build_task reads each "<lang>-<anchor>" pair of align.train_pairs, word-aligns it with models/word_align.py
(both directions, intersected, 1-to-1) unless align.alignments gives a Pharaoh file, and encodes the words
into pieces. The links are cached in runs/align_cache/ under the sha256 of the sentences aligned and the
aligner settings (``link_cache_key``): a changed file gives a new key, never the old links. A batch holds B sentence pairs of any language pairs;
its loss is models/align_loss.py on the word vectors (pieces pooled) of align.layer: the Q aligned pairs
move together and the anchor words are pulled toward the frozen original encoder f0, which the task
holds (not the model: f0 is neither trained nor checkpointed; a resumed run loads it again).
n_tokens = Q, so the loop's step loss is the mean per aligned pair. Dev = contextual word retrieval
(CSLS, both directions) on the first align.dev_max_pairs pairs of each align.dev_pairs at the aligned
layer, with a progress line per chunk of sentences; it runs before training (the original encoder), at
each evaluation, and not again after: the best-dev scores are the ones recorded when best.pt was written
(re-computed only for a best.pt from before a resume). run() exports the best-dev encoder in the HF
layout (run_dir/model), which NER configs load through model.name_or_path.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from pathlib import Path

import torch
from torch import nn

from core.paths import data_root
from data.parallel import ParallelCorpus, read_parallel, read_pharaoh
from models.align_loss import KINDS, alignment_loss
from models.retrieval import POOLINGS, aligned_pairs, layer_states, retrieval_accuracy, word_vectors
from models.word_align import align_corpus, progress_printer


def encode_side(tokenizer, sentences: list[list[str]], max_pieces: int) -> list[tuple[list[int], list[int]]]:
    """(pieces, word of each piece) per sentence, cut after ``max_pieces`` pieces."""
    out = []
    for words in sentences:
        ids, word_index = tokenizer.encode_words(words)
        out.append((ids[:max_pieces], word_index[:max_pieces]))
    return out


def collate_side(encoded: list[tuple[list[int], list[int]]], tokenizer) -> dict:
    """<s> pieces </s> padded, and each piece's (row, column, word of the batch side)."""
    T = max(len(ids) for ids, _ in encoded) + 2
    input_ids = torch.full((len(encoded), T), tokenizer.pad_id, dtype=torch.long)  # (B, T)
    rows, cols, words, offsets, offset = [], [], [], [], 0
    for b, (ids, word_index) in enumerate(encoded):
        input_ids[b, :len(ids) + 2] = torch.tensor([tokenizer.bos_id, *ids, tokenizer.eos_id])
        rows += [b] * len(ids)
        cols += range(1, len(ids) + 1)  # position 0 is <s>: specials are never pooled
        words += [offset + w for w in word_index]
        offsets.append(offset)
        offset += (max(word_index) + 1) if word_index else 0
    return {"input_ids": input_ids, "attention_mask": input_ids.ne(tokenizer.pad_id),
            "rows": torch.tensor(rows, dtype=torch.long), "cols": torch.tensor(cols, dtype=torch.long),
            "words": torch.tensor(words, dtype=torch.long), "num_words": offset, "offsets": offsets}


def side_vectors(model: nn.Module, side: dict, layer: int, pooling: str) -> torch.Tensor:
    """(W, H) word vectors of one batch side at ``layer`` (mean/first/last over the word's pieces)."""
    last = layer in (-1, len(model.layers))
    states = model(side["input_ids"], side["attention_mask"]) if last else \
        layer_states(model, side["input_ids"], side["attention_mask"])[layer]  # (B, T, H)
    pieces = states[side["rows"], side["cols"]].float()  # (P, H)
    W, words = side["num_words"], side["words"]
    if pooling == "mean":
        sums = pieces.new_zeros(W, pieces.shape[1]).index_add(0, words, pieces)  # (W, H)
        return sums / torch.bincount(words, minlength=W).clamp_min(1)[:, None]
    order = torch.arange(len(words), device=words.device)
    start = torch.full((W,), len(words) if pooling == "first" else -1, dtype=torch.long, device=words.device)
    pick = start.scatter_reduce(0, words, order, "amin" if pooling == "first" else "amax")  # (W,)
    return pieces[pick]  # every word of a batch side has a piece (words without are never listed)


class AlignTask:
    metric_name = "dev_retrieval"

    def __init__(self, cfg, encoder: nn.Module, tokenizer, items: list[dict], dev: dict[str, tuple]):
        self.cfg, self.tokenizer, self.items, self.dev = cfg, tokenizer, items, dev
        self.first_model = encoder
        self.frozen = copy.deepcopy(encoder).eval().requires_grad_(False)  # f0
        a = cfg.align
        self.layer, self.pooling = a.layer, a.pooling
        self.evaluations: list[dict[str, float]] = []  # every evaluate() of this process, in order

    def build_model(self) -> nn.Module:
        model = self.first_model
        model.train()
        return model

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1) -> list[dict]:
        order = list(range(len(self.items)))
        random.Random(self.cfg.train.seed * 1_000_003 + epoch).shuffle(order)
        size = self.cfg.train.batch_size
        chunks = [order[i:i + size] for i in range(0, len(order), size)][rank::world]
        return [self.collate([self.items[i] for i in chunk]) for chunk in chunks]

    def collate(self, items: list[dict]) -> dict:
        """Both sides in ONE padded batch (2B rows: sources, then anchors), so the model runs one
        forward per step (the loop's lazy-embedding hook updates rows in place before each forward,
        which a second forward would do under the first one's graph); the anchors alone for f0."""
        B = len(items)
        both = collate_side([i["src"] for i in items] + [i["tgt"] for i in items], self.tokenizer)
        anchors = collate_side([i["tgt"] for i in items], self.tokenizer)
        first_anchor_word = both["offsets"][B] if B else 0
        src_words = [both["offsets"][b] + i for b, item in enumerate(items) for i, _ in item["links"]]
        tgt_words = [both["offsets"][B + b] + j for b, item in enumerate(items) for _, j in item["links"]]
        return {"both": both, "anchors": anchors, "first_anchor_word": first_anchor_word,
                "src_words": torch.tensor(src_words, dtype=torch.long),
                "tgt_words": torch.tensor(tgt_words, dtype=torch.long), "n_tokens": len(src_words)}

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        a = self.cfg.align
        words = side_vectors(model, batch["both"], self.layer, self.pooling)  # (W_s + W_t, H)
        anchor = words[batch["first_anchor_word"]:]  # (W_t, H)
        with torch.no_grad():
            anchor0 = side_vectors(self.frozen, batch["anchors"], self.layer, self.pooling)  # (W_t, H)
        out = alignment_loss(words[batch["src_words"]], words[batch["tgt_words"]], anchor, anchor0,
                             lam=a.lam, kind=a.loss, temperature=a.temperature)
        return out["loss"]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        scores = retrieval_scores(model, self.tokenizer, self.dev, [self.layer], self.pooling)
        layer = self.layer if self.layer >= 0 else len(model.layers)
        out = {f"{pair}_{k}": v for pair, per_layer in scores.items() for k, v in per_layer[layer].items()
               if k.startswith("csls")}
        out["dev_retrieval"] = sum(v for k, v in out.items()) / max(len(out), 1)
        self.evaluations.append(dict(out))
        return out

    def best_evaluation(self, best_metric: float | None) -> dict[str, float] | None:
        """The scores of the evaluation that wrote best.pt: the first of this process's evaluations of
        the trained model with the best metric (the loop keeps a later one only when it is higher);
        None when best.pt is from before a resume."""
        for out in self.evaluations[1:]:  # [0] is the original encoder, before training
            if best_metric is not None and out["dev_retrieval"] == best_metric:
                return out
        return None

    def run(self, cfg, run_dir: str | Path) -> dict:
        from core.loop import fit
        from core.task import restore_best
        from models.export import save_pretrained

        run_dir = Path(run_dir)
        print("[align] dev retrieval of the original encoder", flush=True)
        before = self.evaluate(self.frozen)
        fitted = fit(cfg, self, run_dir)
        model = fitted["model"]
        best = restore_best(model, run_dir)
        after = self.best_evaluation(fitted["best_metric"])
        if after is None:
            print("[align] dev retrieval of best.pt (written before the resume)", flush=True)
            after = self.evaluate(model.eval())
        model.eval()
        save_pretrained(model, self.tokenizer, run_dir / "model")
        result = {"dev_before": before, "dev_after": after, "best_step": best.get("step"),
                  "train_pairs": len(self.items), "model": str(run_dir / "model")}
        (run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        return {"dev_retrieval_before": before["dev_retrieval"], "dev_retrieval_after": after["dev_retrieval"]}


def retrieval_scores(model, tokenizer, dev: dict[str, tuple], layers: list[int], pooling: str = "mean",
                     chunk: int = 512) -> dict:
    """{pair: {layer: retrieval_accuracy(...)}} for each (corpus, links) of ``dev``; the sentences are
    encoded ``chunk`` at a time with a progress line after each chunk."""
    n_layers = len(model.layers)
    layers = [l if l >= 0 else n_layers + 1 + l for l in layers]
    out = {}
    for pair, (corpus, links) in dev.items():
        started, vecs, ok = time.monotonic(), [{l: [] for l in layers}, {l: [] for l in layers}], [[], []]
        total = 2 * len(corpus)
        for side, sentences in enumerate((corpus.src, corpus.tgt)):
            for lo in range(0, len(sentences), chunk):
                part_vecs, part_ok = word_vectors(model, tokenizer, sentences[lo:lo + chunk], layers, pooling)
                for l in layers:
                    vecs[side][l] += part_vecs[l]
                ok[side] += part_ok
                done = side * len(corpus) + min(lo + chunk, len(sentences))
                print(f"[align] dev retrieval {pair}: {done}/{total} sentences encoded "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
        pairs = aligned_pairs(links, ok[0], ok[1])
        out[pair] = {l: retrieval_accuracy(vecs[0][l], vecs[1][l], pairs) for l in layers}
    return out


def load_pair(root: Path, pair: str, files: list[str], anchor: str, tokenized: bool) -> ParallelCorpus:
    """The corpus of "<lang>-<anchor>" with the anchor as the target side."""
    langs = pair.split("-")
    if len(langs) != 2 or anchor not in langs or len(files) != 2:
        raise ValueError(f"align pair {pair!r}: expected '<lang>-{anchor}' (align.anchor) with two files, got {files}")
    if langs[0] == anchor:
        raise ValueError(f"align pair {pair!r}: write it as '{langs[1]}-{anchor}' (the anchor comes second)")
    return read_parallel(root / files[0], root / files[1], langs[0], anchor, tokenized=tokenized, name="|".join(files))


def load_dev(root: Path, pair: str, a) -> ParallelCorpus:
    """The first ``align.dev_max_pairs`` pairs (0 = all) of align.dev_pairs[pair]."""
    if a.dev_max_pairs < 0:
        raise ValueError(f"align.dev_max_pairs must be >= 0 (0 = all), got {a.dev_max_pairs}")
    corpus = load_pair(root, pair, a.dev_pairs[pair], a.anchor, a.tokenized)
    if a.dev_max_pairs and len(corpus) > a.dev_max_pairs:
        print(f"[align] dev {pair}: the first {a.dev_max_pairs:,} of {len(corpus):,} pairs (align.dev_max_pairs)",
              flush=True)
        corpus = corpus.subset(range(a.dev_max_pairs))
    return corpus


def resolve(root: Path, path: str) -> Path:
    """A config path: absolute or existing as given (e.g. runs/...), else relative to data.root."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else root / p


def link_cache_key(corpus: ParallelCorpus, a) -> str:
    """sha256 (hex) of every sentence pair the aligner sees, in order, and of the aligner settings: two
    corpora share cached links only when they hold the same words."""
    digest = hashlib.sha256(json.dumps({"symmetrize": a.symmetrize, "iterations": a.aligner_iterations,
                                        "pairs": len(corpus)}, sort_keys=True).encode())
    for src, tgt in zip(corpus.src, corpus.tgt):
        digest.update(("\x1f".join(src) + "\x1e" + "\x1f".join(tgt) + "\n").encode("utf-8"))
    return digest.hexdigest()


def word_links(corpus: ParallelCorpus, a, cache: Path | None) -> list[set]:
    """1-to-1 links from models/word_align.py, cached as a Pharaoh file (written atomically)."""
    lens = ([len(s) for s in corpus.src], [len(t) for t in corpus.tgt])
    if cache is not None and cache.is_file():
        print(f"[align] {corpus.name}: {len(corpus):,} pairs, links from the cache {cache}", flush=True)
        return [l.sure for l in read_pharaoh(cache, *lens)]
    started = time.monotonic()
    print(f"[align] {corpus.name}: word-aligning {len(corpus):,} pairs ({a.aligner_iterations} EM iterations "
          f"each direction, {a.symmetrize})...", flush=True)
    links = align_corpus(corpus.src, corpus.tgt, a.symmetrize, a.aligner_iterations,
                         progress=progress_printer(f"[align] {corpus.name}:", a.aligner_iterations))
    print(f"[align] {corpus.name}: {sum(map(len, links)):,} links in {time.monotonic() - started:.0f} s", flush=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text("".join(" ".join(f"{i}-{j}" for i, j in sorted(l)) + "\n" for l in links))
        tmp.replace(cache)
    return links


def pair_links(root: Path, a, pair: str, parts: list[ParallelCorpus], cache_dir: Path) -> list[list[set]]:
    """Links of each part (train, dev) of one language pair: given Pharaoh files (align.alignments[pair],
    align.alignments[pair + ".dev"]), else the parts word-aligned together (unsupervised EM sees all)."""
    keys = [pair, pair + ".dev"][:len(parts)]
    if all(k in a.alignments for k in keys):
        return [[l.sure for l in read_pharaoh(resolve(root, a.alignments[k]), [len(s) for s in c.src],
                                              [len(t) for t in c.tgt])] for k, c in zip(keys, parts)]
    joint = ParallelCorpus(parts[0].src_lang, parts[0].tgt_lang, [s for c in parts for s in c.src],
                           [t for c in parts for t in c.tgt], name=" + ".join(c.name for c in parts))
    key = link_cache_key(joint, a)[:24]
    links = word_links(joint, a, cache_dir / f"{pair}.{a.symmetrize}.{key}.talp")
    out, lo = [], 0
    for c in parts:
        out.append(links[lo:lo + len(c)])
        lo += len(c)
    return out


def make_items(tokenizer, corpus: ParallelCorpus, links: list[set], max_pieces: int) -> list[dict]:
    """Encoded sentence pairs with their links between words that kept a piece."""
    src, tgt = encode_side(tokenizer, corpus.src, max_pieces), encode_side(tokenizer, corpus.tgt, max_pieces)
    items = []
    for s in range(len(corpus)):
        if not (src[s][0] and tgt[s][0]):
            continue
        src_words, tgt_words = set(src[s][1]), set(tgt[s][1])
        kept = sorted((i, j) for i, j in links[s] if i in src_words and j in tgt_words)
        items.append({"src": src[s], "tgt": tgt[s], "links": kept})
    return items


def build_task(cfg) -> AlignTask:
    from models import load_pretrained, resolve_kernels
    from models.vocab_check import check_vocab_match

    a = cfg.align
    if a.loss not in KINDS:
        raise ValueError(f"align.loss must be one of {KINDS}, got {a.loss!r}")
    if a.pooling not in POOLINGS:
        raise ValueError(f"align.pooling must be one of {POOLINGS}, got {a.pooling!r}")
    root = Path(cfg.data.root) if cfg.data.root else data_root()
    # shared by the runs of one out_dir: the same files and settings give the same links
    cache_dir = Path(cfg.train.out_dir.format(name="align_cache"))
    encoder, tokenizer = load_pretrained(cfg.model.name_or_path, task="encoder", attention=cfg.model.attention,
                                         kernels=resolve_kernels(cfg.model.kernels, cfg.train.device))
    check_vocab_match(encoder.config.vocab_size, tokenizer, "model.name_or_path", cfg.model.name_or_path)
    items, dev = [], {}
    for pair, files in a.train_pairs.items():
        train = load_pair(root, pair, files, a.anchor, a.tokenized)
        if a.max_pairs:
            train = train.subset(range(min(a.max_pairs, len(train))))
        parts = [train]
        if pair in a.dev_pairs:
            parts.append(load_dev(root, pair, a))
        links = pair_links(root, a, pair, parts, cache_dir)
        items += make_items(tokenizer, train, links[0], a.max_pieces)
        if len(parts) == 2:
            dev[pair] = (parts[1], links[1])
    for pair in a.dev_pairs:
        if pair not in dev:
            corpus = load_dev(root, pair, a)
            dev[pair] = (corpus, pair_links(root, a, pair, [corpus], cache_dir)[0])
    if not items:
        raise ValueError("align.train_pairs gave no sentence pairs")
    return AlignTask(cfg, encoder, tokenizer, items, dev)
