"""The NER task: a pretrained encoder + token-classification head fine-tuned on CoNLL files.

Legend: B windows, T subword positions, W owned words of a window, K tags.

    task = build_task(cfg)        # checks checkpoint and data first, then tokenizes everything
    task.run(cfg, run_dir)        # fit (once, or once per few-shot size), then test every eval_lang

Training sees windows (data/windows.py); the loss is the SUM over labelled pieces (the loop
divides by the step's labelled tokens). ``model.head: crf`` puts a CRF over each window's owned
first pieces. Evaluation stitches window predictions back to one tag per word and scores
entities with seqeval (core/metrics.py).
"""
from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.distributed import is_main_process, unwrap
from core.metrics import entity_scores
from data.batching import LengthBucketSampler, collate
from data.conll import Sentence
from data.labels import IGNORE_INDEX, LabelSet, build_label_set
from data.sampling import apply_mix, downsample, nested_fewshot
from data.sources import ensure_files, load_split
from data.windows import build_windows, stitch
from models.tagger import CRFTagger, first_piece_view

MINI_HINT = ("Offline? The mini configs (configs/mini_*.yaml) use the small model that "
             "`python train.py configs/mini_pretrain.yaml` writes to runs/mini_pretrain/model/, "
             "and configs/tiny_ner.yaml runs in seconds.")


class MissingCheckpointError(FileNotFoundError):
    """The encoder checkpoint named by model.name_or_path cannot be found."""


def _autocast(device: torch.device, precision: str):
    try:
        from core.precision import autocast_context, resolve_precision
    except ImportError:
        return contextlib.nullcontext()
    return autocast_context(device, resolve_precision(precision, device))


PREDICT_CHUNK = 4096  # sentences whose windows and per-piece outputs are held at once


@torch.inference_mode()
def predict_words(model: nn.Module, sentences: list[Sentence] | list[list[str]], tokenizer,
                  labels: LabelSet | None = None, data_cfg=None, batch_size: int = 32, precision: str = "auto",
                  chunk: int = PREDICT_CHUNK):
    """(tags, losses): one predicted tag per word of every sentence (windows stitched back), and
    each word's cross-entropy of its gold tag under the head's softmax (None without gold tags).
    A sentence may be a plain list of words; labels default to PAN-X's, data_cfg (max_length,
    stride) to DataConfig's defaults. Sentences go through in parts of ``chunk``: the windows and
    per-piece outputs of one part are held at a time, so memory beyond the returned tags does not
    grow with the input (bench/predict_memory.py)."""
    from core.config import DataConfig

    labels = labels if labels is not None else build_label_set()
    data_cfg = data_cfg if data_cfg is not None else DataConfig()
    model = unwrap(model)
    was_training = model.training
    model.eval()
    has_gold = all(isinstance(s, Sentence) and len(s.tags) == len(s.words) for s in sentences)
    step = max(chunk, 1)
    tags, losses = [], [] if has_gold else None
    try:
        for first in range(0, len(sentences), step):
            part = [s if isinstance(s, Sentence) else Sentence(list(s), []) for s in sentences[first:first + step]]
            part_tags, part_losses = _predict_part(model, part, tokenizer, labels,
                                                   data_cfg, batch_size, precision, has_gold)
            tags += part_tags
            if has_gold:
                losses += part_losses
    finally:
        model.train(was_training)
    return tags, losses


def _predict_part(model: nn.Module, sentences: list[Sentence], tokenizer, labels: LabelSet, data_cfg,
                  batch_size: int, precision: str, with_losses: bool):
    """predict_words on one part of the sentences (the model already in eval mode): (tags, per-word
    losses, or None when not ``with_losses``)."""
    device = next(model.parameters()).device
    windows = build_windows(sentences, tokenizer, labels, data_cfg.max_length, data_cfg.stride)
    sampler = LengthBucketSampler([len(w) for w in windows], batch_size, shuffle=False)
    window_preds: list[list[int]] = [[] for _ in windows]
    window_losses: list[list[float]] = [[] for _ in windows]
    for index in sampler.batches():
        batch = collate([windows[i] for i in index], tokenizer.pad_id)
        input_ids = batch["input_ids"].to(device)
        attention_mask = batch["attention_mask"].to(device)
        word_ids = batch["word_ids"].to(device)  # (B, T)
        gold = batch["labels"].to(device).clamp_min(0) if with_losses else None  # (B, T)
        if isinstance(model, CRFTagger):
            with _autocast(device, precision):
                logits = model(input_ids, attention_mask).float()  # (B, T, K)
            packed, mask, positions = first_piece_view(logits, word_ids)
            preds = torch.zeros(word_ids.shape, dtype=torch.long, device=device)  # (B, T)
            rows = mask[:, 0]  # windows that own no word stay out of the CRF
            if rows.any():
                decoded = model.crf.decode(packed[rows], mask[rows]).clamp_min(0)  # (B', W)
                preds[rows] = preds[rows].scatter(1, positions[rows], decoded)
            if with_losses:
                losses = F.cross_entropy(logits.transpose(1, 2), gold, reduction="none")  # (B, T)
        else:  # logits at the owned first pieces only, the positions stitch reads
            owned = word_ids >= 0  # (B, T)
            with _autocast(device, precision):
                logits = model(input_ids, attention_mask, select=owned).float()  # (M, K)
            preds = torch.zeros(owned.shape, dtype=torch.long, device=device)  # (B, T)
            preds[owned] = logits.argmax(-1)
            if with_losses:
                losses = torch.zeros(owned.shape, device=device)  # (B, T)
                losses[owned] = F.cross_entropy(logits, gold[owned], reduction="none")
        for row, i in zip(preds.cpu().tolist(), index):
            window_preds[i] = row
        if with_losses:
            for loss_row, i in zip(losses.cpu().tolist(), index):
                window_losses[i] = loss_row
    n_words = [len(s.words) for s in sentences]
    tags = [[labels.tag(i) for i in row] for row in stitch(windows, window_preds, n_words)]
    return tags, stitch(windows, window_losses, n_words) if with_losses else None


def predict_tags(model, sentences, tokenizer, labels=None, data_cfg=None, batch_size=32, precision="auto"):
    """One tag per word of every sentence: ``predict_tags(model, [["Angela", "Merkel"]], tokenizer)``."""
    return predict_words(model, sentences, tokenizer, labels, data_cfg, batch_size, precision)[0]


def score(model, sentences, tokenizer, labels=None, data_cfg=None, batch_size=32, precision="auto") -> dict:
    pred = predict_tags(model, sentences, tokenizer, labels, data_cfg, batch_size, precision)
    return entity_scores([s.tags for s in sentences], pred)


class NERTask:
    metric_name = "dev_f1"

    def __init__(self, cfg, tokenizer, labels: LabelSet, first_model: nn.Module | None = None):
        self.cfg, self.tokenizer, self.labels = cfg, tokenizer, labels
        self._first_model = first_model
        d = cfg.data
        self.dev = {lang: _cap(load_split(d, lang, "dev"), d.max_eval_sentences, cfg.train.seed)
                    for lang in self.dev_langs()}
        self.pool = {lang: load_split(d, lang, "train") for lang in d.train_langs}
        self.set_train_sentences(self.base_train_sentences())

    def dev_langs(self) -> list[str]:
        d = self.cfg.data
        return list(dict.fromkeys(d.train_langs + ([d.fewshot_lang] if d.fewshot_lang else [])))

    def base_train_sentences(self) -> list[Sentence]:
        d = self.cfg.data
        mixed = apply_mix(self.pool, d.mix, self.cfg.train.seed) if d.mix else \
            [s for lang in d.train_langs for s in self.pool[lang]]
        return downsample(mixed, d.max_train_sentences, self.cfg.train.seed) if d.max_train_sentences else mixed

    def set_train_sentences(self, sentences: list[Sentence]) -> None:
        d = self.cfg.data
        self.train_windows = build_windows(sentences, self.tokenizer, self.labels, d.max_length, d.stride,
                                           d.label_all_pieces)
        self.sampler = LengthBucketSampler([len(w) for w in self.train_windows], self.cfg.train.batch_size,
                                           seed=self.cfg.train.seed, bucket=d.bucket)

    # --- the task interface of core.loop.fit -------------------------------------------------
    def build_model(self) -> nn.Module:
        if self._first_model is not None:
            model, self._first_model = self._first_model, None
            return model
        return load_model(self.cfg, len(self.labels))[0]

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1):
        pin = self.cfg.train.device == "cuda" or (self.cfg.train.device == "auto" and torch.cuda.is_available())
        for index in self.sampler.batches(epoch, rank, world):
            yield collate([self.train_windows[i] for i in index], self.tokenizer.pad_id, pin_memory=pin)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        crf = getattr(unwrap(model), "crf", None)
        if crf is None:  # logits at the labelled positions only (the encoder's last layer skips the rest)
            labelled = batch["labels"] != IGNORE_INDEX  # (B, T)
            logits = model(batch["input_ids"], batch["attention_mask"], select=labelled).float()  # (M, K) in fp32
            return F.cross_entropy(logits, batch["labels"][labelled], reduction="sum")
        logits = model(batch["input_ids"], batch["attention_mask"]).float()  # (B, T, K) in fp32
        packed, mask, positions = first_piece_view(logits, batch["word_ids"])
        tags = torch.gather(batch["labels"], 1, positions).clamp_min(0)  # (B, W)
        rows = mask[:, 0]
        return crf(packed[rows], tags[rows], mask[rows], reduction="sum")

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = {}
        for lang, sents in self.dev.items():
            out[f"dev_f1_{lang}"] = score(model, sents, self.tokenizer, self.labels, self.cfg.data,
                                          self.cfg.train.batch_size * 2, self.cfg.train.precision)["f1"]
        out["dev_f1"] = sum(out.values()) / len(out)
        return out

    # --- after training ------------------------------------------------------------------------
    def test(self, model: nn.Module) -> dict[str, dict]:
        """Test scores on every eval_lang with ``model`` as it is (run() gives it the best-dev weights)."""
        model = unwrap(model)
        d = self.cfg.data
        return {lang: score(model, _cap(load_split(d, lang, "test"), d.max_test_sentences, self.cfg.train.seed),
                            self.tokenizer, self.labels, d, self.cfg.train.batch_size * 2, self.cfg.train.precision)
                for lang in d.eval_langs}

    def run(self, cfg, run_dir: str | Path) -> dict:
        """fit, then test and export the best-dev weights (best.pt); few-shot: once per size, each size
        from the pretrained weights, in run_dir/k{size}."""
        from core.results import write_curve, write_results
        from core.task import fit_best

        run_dir = Path(run_dir)
        d = cfg.data
        if not d.fewshot_sizes:
            result = fit_best(cfg, self, run_dir)
            if not is_main_process():
                return {}
            payload = write_results(run_dir, cfg, self.test(result["model"]), result["best_metric"])
            save_trained(run_dir, result["model"], self.tokenizer, self.labels, payload, cfg, self.dev)  # + card
            return payload
        base = self.base_train_sentences()
        subsets = nested_fewshot(load_split(d, d.fewshot_lang, "train"), d.fewshot_sizes, cfg.train.seed)
        curve = {}
        for size, subset in subsets.items():
            self.set_train_sentences(base + subset)
            sub_cfg = copy.deepcopy(cfg)
            sub_cfg.train.name = f"{cfg.train.name}_k{size}"
            result = fit_best(sub_cfg, self, run_dir / f"k{size}")  # build_model: the pretrained weights again
            if not is_main_process():
                continue
            curve[size] = self.test(result["model"])
            payload = write_results(run_dir / f"k{size}", sub_cfg, curve[size], result["best_metric"])
            save_trained(run_dir / f"k{size}", result["model"], self.tokenizer, self.labels, payload, sub_cfg, self.dev)
        return write_curve(run_dir, cfg, curve) if curve else {}


def _cap(sentences: list[Sentence], n: int, seed: int) -> list[Sentence]:
    return downsample(sentences, n, seed) if n else sentences


def load_model(cfg, num_labels: int):
    """(model, tokenizer) for token classification; random weights if cfg.model.from_scratch."""
    from models import load_pretrained, resolve_kernels

    name = cfg.model.name_or_path
    kernels = resolve_kernels(cfg.model.kernels, cfg.train.device)
    torch.manual_seed(cfg.train.seed)  # the fresh classifier (and CRF) draw the same numbers every run
    if cfg.model.tiny_random and not (Path(name) / "config.json").is_file():
        write_tiny_checkpoint(name, load_split(cfg.data, cfg.data.train_langs[0], "train")[:2000], seed=cfg.train.seed)
    looks_local = name.startswith((".", "/", "runs", "~")) or Path(name).exists()
    if looks_local and not (Path(name).expanduser() / "config.json").is_file():
        raise MissingCheckpointError(f"no checkpoint at {name} (model.name_or_path): expected config.json, "
                                     f"model.safetensors and sentencepiece.bpe.model there. {MINI_HINT}")
    try:
        model, tokenizer = load_pretrained(name, task="token-classification", num_labels=num_labels,
                                           attention=cfg.model.attention, from_scratch=cfg.model.from_scratch,
                                           kernels=kernels)
    except (OSError, ValueError) as err:
        raise MissingCheckpointError(f"cannot load {name!r} (model.name_or_path): {err}\n{MINI_HINT}") from err
    from models.vocab_check import check_vocab_match
    check_vocab_match(model.config.vocab_size, tokenizer, "model.name_or_path", name)
    if cfg.model.from_scratch:  # the same random draw for a given seed
        model.init_weights(generator=torch.Generator().manual_seed(cfg.train.seed))
    model.dropout.p = cfg.model.classifier_dropout
    if cfg.model.head == "crf":
        from models.crf import CRF

        model = CRFTagger(model, CRF(num_labels, labels=list(build_label_set().tags), kernels=kernels))
    elif cfg.model.head == "bilstm_crf":  # frozen encoder -> BiLSTM -> CRF (Wang et al. 2020's downstream model)
        from models.crf import CRF
        from models.frozen_bilstm import FrozenEncoderBiLSTM

        tagger = FrozenEncoderBiLSTM(model, cfg.bilstm.hidden_size, cfg.bilstm.dropout)
        model = CRFTagger(tagger, CRF(num_labels, labels=list(build_label_set().tags), kernels=kernels))
    elif cfg.model.head != "linear":
        raise ValueError(f"model.head must be linear or crf, got {cfg.model.head!r}")
    return model, tokenizer


def build_task(cfg) -> NERTask:
    """Check data files and checkpoint (errors name what is missing), then tokenize the data."""
    d = cfg.data
    wanted = [(lang, "train") for lang in d.train_langs] + [(lang, "test") for lang in d.eval_langs]
    wanted += [(lang, "dev") for lang in d.train_langs]
    if d.fewshot_sizes:
        if not d.fewshot_lang:
            raise ValueError("data.fewshot_sizes needs data.fewshot_lang")
        wanted += [(d.fewshot_lang, "train"), (d.fewshot_lang, "dev")]
    ensure_files(d, wanted)
    labels = build_label_set()
    model, tokenizer = load_model(cfg, len(labels))
    return NERTask(cfg, tokenizer, labels, first_model=model)


def save_trained(run_dir: str | Path, model: nn.Module, tokenizer, labels: LabelSet, results: dict | None = None,
                 cfg=None, dev: dict[str, list[Sentence]] | None = None, command: str | None = None) -> dict:
    """Export the tested weights to run_dir/model: the HF layout with the tag names in config.json,
    a CRF head's transitions as crf.safetensors, and a README.md model card (models/model_card.py).

    For a CRF head the dev sentences (``dev``; default: the run's dev sets, as training scored them)
    are decoded twice, by our Viterbi and by the per-word argmax transformers would do, and the F1
    difference goes into the card and into ``results`` (results.json, under "export"). cfg: the
    run's config (default: run_dir's config.yaml, or its parent's for a few-shot k*/ folder).
    command: the command that made the run (default: this process's train.py command line).
    Returns the "export" entry.
    """
    import shlex
    import sys

    from core.config import load_config
    from models.export import bare_marker_share, save_pretrained
    from models.model_card import ner_card

    run_dir = Path(run_dir)
    out = run_dir / "model"
    model = unwrap(model)
    if cfg is None:
        found = [p for p in (run_dir / "config.yaml", run_dir.parent / "config.yaml") if p.is_file()]
        cfg = load_config(found[0]) if found else load_config()
    crf = isinstance(model, CRFTagger)
    decoding = None
    if crf:
        d = cfg.data
        if dev is None:
            langs = dict.fromkeys(d.train_langs + ([d.fewshot_lang] if d.fewshot_lang else []))
            dev = {lang: _cap(load_split(d, lang, "dev"), d.max_eval_sentences, cfg.train.seed) for lang in langs}
        args = (tokenizer, labels, d, cfg.train.batch_size * 2, cfg.train.precision)
        viterbi = {lang: score(model, sents, *args)["f1"] for lang, sents in dev.items()}
        argmax = {lang: score(model.tagger, sents, *args)["f1"] for lang, sents in dev.items()}
        decoding = {"dev_f1_viterbi": viterbi, "dev_f1_argmax": argmax,
                    "difference": sum(viterbi.values()) / len(viterbi) - sum(argmax.values()) / len(argmax),
                    "sentences": sum(len(s) for s in dev.values())}
    if command is None:
        previous = ((results or {}).get("export") or {}).get("command")
        if Path(sys.argv[0]).name == "train.py":
            command = "python train.py " + shlex.join(sys.argv[1:])
        else:
            command = previous or f"python train.py {shlex.quote(str(run_dir / 'config.yaml'))}  # the run's merged config"
    split = bare_marker_share(tokenizer, [s.words for sents in dev.values() for s in sents]) if dev else None
    card = ner_card(cfg, results, decoding, command, crf, model_dir=str(out), pipeline_split_words=split)
    extra = {"crf.safetensors": model.crf.state_dict()} if crf else None
    exported = model.tagger if crf else model
    if hasattr(exported, "head_state"):  # bilstm_crf: the frozen encoder in the HF layout, the BiLSTM beside it
        extra["bilstm.safetensors"] = exported.head_state()
        exported = exported.base
    save_pretrained(exported, tokenizer, out, id2label=list(labels.tags), card=card, extra_tensors=extra)
    for stale in ("labels.json", "crf.pt"):  # the old layout's side files (tag names now in config.json)
        (out / stale).unlink(missing_ok=True)
    export = {"model_dir": "model", "head": "crf" if crf else "linear", "command": command, "decoding": decoding}
    if split is not None:
        export["pipeline_split_words"] = split
    if results is not None:
        results["export"] = export
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    return export


def write_tiny_checkpoint(out_dir: str | Path, sentences: list[Sentence], vocab_size: int = 600,
                          seed: int = 0) -> Path:
    """A tiny random XLM-R (2 layers, H 32) and a sentencepiece vocabulary trained on ``sentences``,
    in the HF layout: the model of smoke runs (configs/tiny_ner.yaml) and tests."""
    from data.tokenizer import XLMRTokenizer
    from models.encoder import XLMRConfig
    from models.export import save_pretrained
    from models.heads import XLMRForMaskedLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = XLMRTokenizer.train((" ".join(s.words) for s in sentences), vocab_size, out)
    config = XLMRConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=514)
    model = XLMRForMaskedLM(config)
    model.init_weights(generator=torch.Generator().manual_seed(seed))
    save_pretrained(model, tokenizer, out)
    return out
