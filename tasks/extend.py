"""The EXTEND task: grow a pretrained encoder into a target language, then continue MLM on its text.

Legend: V base vocabulary, N new pieces, H hidden.

    task = build_task(cfg)      # checks, target text, new pieces, grown model, encoded text (no long work yet)
    task.run(cfg, run_dir)      # (new rows only, then everything) MLM with core.loop.fit -> run_dir/model

Steps (docs/EXTEND.md walks one Russian word through them):
1. Check every input first (named errors): the base folder (model.name_or_path) with its
   sentencepiece model, the target and base-language text (extend.* keys), the settings.
2. New pieces (data/extend_vocab.py): a unigram model of the target text; the pieces the base
   lacks that leave the base-language text segmented as before; ``extend.new_pieces`` of them.
3. Grown model (models/extend.py): embeddings + tied decoder + bias get N rows (``extend.init``;
   ``wechsel`` / ``focus`` mix base rows by static piece vectors, models/extend_init.py).
4. Continual MLM with the MLM task's machinery (tasks/mlm.py: packing, masking, loss, evaluation)
   and core.loop.fit, for ``mlm.pieces_budget`` pieces; optionally first ``extend.new_rows_steps``
   of the steps with only the new rows trainable, and ``extend.base_text_share`` of base text.
5. Export the best held-out weights in the HF layout to run_dir/model (written to a temporary
   folder and renamed, so a failed run leaves no half-written model), extend_summary.json beside.

``extend.extend_vocab: false`` is the control: the same MLM on the same text, no new pieces.
Nothing here names a language: the target is whatever text the config lists.
"""
from __future__ import annotations

import copy
import json
import random
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from data.extend_vocab import (ExtensionError, base_text_unchanged, extend_tokenizer, segmentation_stats,
                               train_target_model)
from data.masking import MaskingCollator
from data.sources import load_split, resolve_root
from data.text import encode_sentences, split_heldout
from data.text_sources import drop_overlaps, read_source
from data.tokenizer import SPM_FILE, XLMRTokenizer
from tasks.mlm import MLMTask, build_heldout, plan_pieces, save_mini

INIT_CHOICES = ("random", "mean", "gaussian", "wechsel", "focus")


def gather(cfg, splits_key: str, files_key: str) -> dict[str, list[str]]:
    """{source: sentences} of the NER splits and text files under ``extend.<splits_key>/<files_key>``."""
    e = cfg.extend
    corpus: dict[str, list[str]] = {}
    for lang, split in getattr(e, splits_key).items():
        if split != "train":
            raise ValueError(f"extend.{splits_key}[{lang!r}] = {split!r}: only training text may be trained on")
        corpus[f"ner {lang} train"] = [" ".join(s.words) for s in load_split(cfg.data, lang, "train")]
    root = resolve_root(cfg.data)
    for i, spec in enumerate(getattr(e, files_key)):
        corpus[spec] = read_source(root, spec, e.max_lines_per_file, key=f"extend.{files_key}[{i}]")
    excluded = [line for i, spec in enumerate(e.exclude_files)
                for line in read_source(root, spec, key=f"extend.exclude_files[{i}]")]
    if excluded:
        for name in list(corpus):
            corpus[name], dropped = drop_overlaps(corpus[name], excluded)
            if dropped:
                print(f"[extend] {name}: {dropped} lines holding an extend.exclude_files sentence dropped", flush=True)
    return corpus


def check_settings(cfg) -> Path:
    """The base folder (a named error when it lacks the pieces extension needs) after the settings."""
    e = cfg.extend
    if e.init not in INIT_CHOICES:
        raise ValueError(f"extend.init must be one of {INIT_CHOICES}, got {e.init!r}")
    if e.init in ("wechsel", "focus") and not (e.init_k >= 1 and e.init_temperature > 0 and e.init_vector_dim >= 1
                                               and e.init_vector_epochs >= 1):
        raise ValueError(f"extend.init={e.init} needs init_k >= 1, init_temperature > 0, init_vector_dim >= 1 and "
                         f"init_vector_epochs >= 1, got {e.init_k}, {e.init_temperature}, {e.init_vector_dim}, "
                         f"{e.init_vector_epochs}")
    if not 0 <= e.new_rows_steps < 1:
        raise ValueError(f"extend.new_rows_steps must be in [0, 1), got {e.new_rows_steps}")
    if not 0 <= e.base_text_share < 1:
        raise ValueError(f"extend.base_text_share must be in [0, 1), got {e.base_text_share}")
    if e.base_text_share and not (e.base_ner_splits or e.base_text_files):
        raise ValueError("extend.base_text_share > 0 needs base-language text (extend.base_ner_splits / base_text_files)")
    if e.extend_vocab and not (e.base_ner_splits or e.base_text_files):
        raise ValueError("extend.extend_vocab needs base-language text to keep its segmentation "
                         "(extend.base_ner_splits / extend.base_text_files)")
    if cfg.mlm.pieces_budget <= 0 and cfg.train.max_steps <= 0:
        raise ValueError("set the length of the continual MLM: mlm.pieces_budget (or train.max_steps)")
    from models.resolve import resolve_model_dir

    folder = resolve_model_dir(cfg.model.name_or_path)
    if not (folder / SPM_FILE).is_file():
        raise FileNotFoundError(f"model.name_or_path: {folder} has no {SPM_FILE}; extending a vocabulary edits "
                                "the sentencepiece model (a tokenizer.json alone is not enough)")
    return folder


def sample_base_pieces(tokenizer, base_text: list[str], n_target: int, share: float, seed: int) -> list[list[int]]:
    """Base-language sentences so they make ``share`` of all sentences (fixed-seed sample)."""
    if share <= 0:
        return []
    want = round(n_target * share / (1 - share))
    picked = random.Random(seed).sample(base_text, min(want, len(base_text)))
    return encode_sentences(tokenizer, picked)


class ExtendTask(MLMTask):
    """The MLM task on a grown pretrained model (build_model hands out that model)."""

    def __init__(self, cfg, tokenizer, train_pieces, heldout_batches, started, model: nn.Module, report: dict):
        super().__init__(cfg, tokenizer, train_pieces, heldout_batches, started)
        self.grown, self.report = model, report
        self.first_new = report["base_vocab_size"]

    def build_model(self, dropout: float | None = None) -> nn.Module:
        self.model = self.grown
        return self.grown

    def new_rows_only(self, on: bool) -> list:
        """Freeze everything but the new rows of the embedding (= decoder) and of the decoder bias:
        their old rows get zero gradients (and the phase runs without weight decay, so Adam leaves
        them bit-identical). Returns the hook handles to remove."""
        from models.extend import word_embeddings

        model = self.grown
        embedding = word_embeddings(model).weight
        biases = [m.bias for m in model.modules() if type(m).__name__ == "MaskedLMHead"]
        for p in model.parameters():
            p.requires_grad_(not on)
        if not on:
            return []
        handles = []
        for p in [embedding, *biases]:
            p.requires_grad_(True)
            keep = torch.zeros(p.shape[0], *([1] * (p.dim() - 1)), dtype=p.dtype)
            keep[self.first_new:] = 1
            handles.append(p.register_hook(lambda g, keep=keep: g * keep.to(g.device, g.dtype)))
        return handles

    def run(self, cfg, run_dir: str | Path) -> dict:
        from core.loop import fit
        from core.task import fit_best

        run_dir = Path(run_dir)
        started = time.monotonic()
        self.report["before_mlm"] = self.evaluate(self.grown)
        steps = cfg.train.max_steps
        first = round(cfg.extend.new_rows_steps * steps)
        if first:
            old_rows = self.grown.encoder.embeddings.word_embeddings.weight[:self.first_new].detach().clone()
            sub = copy.deepcopy(cfg)
            sub.train.max_steps, sub.train.weight_decay = first, 0.0
            sub.train.name = f"{cfg.train.name}_new_rows"
            handles = self.new_rows_only(True)
            fit(sub, self, run_dir / "new_rows")
            for h in handles:
                h.remove()
            self.new_rows_only(False)
            now = self.grown.encoder.embeddings.word_embeddings.weight[:self.first_new]
            if not torch.equal(now.detach(), old_rows):
                raise RuntimeError("the new-rows phase changed old embedding rows")
            self.report["after_new_rows"] = self.evaluate(self.grown)
            cfg.train.max_steps = steps - first
        result = fit_best(cfg, self, run_dir)  # the best held-out weights (best.pt) in self.grown
        final = self.evaluate(self.grown)
        tmp, out = run_dir / "model.tmp", run_dir / "model"
        shutil.rmtree(tmp, ignore_errors=True)
        save_mini(self.grown, self.tokenizer, tmp, cfg.mlm.export_dropout)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        summary = self.report | {"steps": first + (result.get("step") or 0), "new_rows_steps": first,
                                 "train_seconds": round(time.monotonic() - started, 1),
                                 "heldout_mlm_loss": final["mlm_loss"], "heldout_mlm_acc": final["mlm_acc"],
                                 "model_dir": str(out)}
        cfg.train.max_steps = steps
        (run_dir / "extend_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        print(f"[extend] {json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))})}",
              flush=True)
        return summary


def build_tokenizer(cfg, base_tok: XLMRTokenizer, train_text: list[str], base_text: list[str],
                    heldout: list[str]) -> tuple[XLMRTokenizer, dict]:
    """The grown tokenizer (or the base one for the control) and the segmentation report."""
    e = cfg.extend
    report = {"base_vocab_size": base_tok.vocab_size}
    tok = base_tok
    if e.extend_vocab:
        target = train_target_model(train_text, e.spm_vocab_size, input_sentence_size=cfg.mlm.spm_input_sentences)
        ext = extend_tokenizer(base_tok, target, e.new_pieces, base_text, e.select, usage_text=train_text,
                               keys={"new_pieces": "extend.new_pieces", "select": "extend.select",
                                     "base": f"model.name_or_path ({cfg.model.name_or_path})"})
        tok, report["pieces"] = ext.tokenizer, ext.report
    report["vocab_size"] = tok.vocab_size
    report["heldout_before"] = segmentation_stats(base_tok, heldout)
    report["heldout_after"] = segmentation_stats(tok, heldout)
    report["base_text_check"] = base_text_unchanged(base_tok, tok, base_text[::7])
    return tok, report


def init_dictionary(cfg, base_text: list[str], target_text: list[str]) -> list[tuple[str, str]]:
    """(base-language word, target word) pairs for ``extend.init: wechsel``: the files of
    ``extend.init_dictionary``, or the words spelt the same in both texts when it is empty."""
    from data.dictionaries import identical_pairs, read_spec

    spec = cfg.extend.init_dictionary
    if not spec:
        words = lambda text: list(dict.fromkeys(w for s in text for w in s.split()))  # noqa: E731
        pairs = identical_pairs(words(base_text), words(target_text))
    else:
        try:
            pairs = read_spec(resolve_root(cfg.data), spec)
        except (OSError, ValueError) as err:
            raise ValueError(f"extend.init_dictionary: {err}") from None
    if not pairs:
        raise ValueError(f"extend.init_dictionary={spec!r} gives no word pairs"
                         + ("" if spec else " (no word is spelt the same in the base and target texts)"))
    return pairs


def build_task(cfg) -> ExtendTask:
    from models import load_pretrained, resolve_kernels
    from models.extend import grow_for_tokenizer
    from models.vocab_check import check_vocab_match

    started = time.monotonic()
    e = cfg.extend
    base_dir = check_settings(cfg)
    target, heldout = split_heldout(gather(cfg, "ner_splits", "text_files"), cfg.mlm.heldout_every)
    train_text = [s for sentences in target.values() for s in sentences]
    if not train_text:
        raise ValueError("no target text: set extend.ner_splits and/or extend.text_files")
    if not heldout:
        raise ValueError("no held-out target text: mlm.heldout_every must be > 0 and smaller than the text")
    base_corpus = gather(cfg, "base_ner_splits", "base_text_files")
    base_text = [s for sentences in base_corpus.values() for s in sentences]
    base_tok = XLMRTokenizer.from_pretrained(base_dir, backend="spm")
    pairs = init_dictionary(cfg, base_text, train_text) if e.init == "wechsel" and e.extend_vocab else None
    try:
        tok, report = build_tokenizer(cfg, base_tok, train_text, base_text, heldout)
    except ExtensionError as err:
        raise ValueError(str(err)) from None
    model = load_pretrained(base_dir, task="masked-lm", with_tokenizer=False, mmap=False,
                            kernels=resolve_kernels(cfg.model.kernels, cfg.train.device))[0]
    check_vocab_match(model.config.vocab_size, base_tok, "model.name_or_path", base_dir)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    if e.init in ("wechsel", "focus") and e.extend_vocab:
        from models.extend_init import grow_from_vectors

        report["init_vectors"] = grow_from_vectors(
            model, base_tok, tok, e.init, train_text, base_text, pairs, e.init_k, e.init_temperature,
            e.init_vector_dim, e.init_vector_epochs, seed=cfg.train.seed, generator=generator,
            log=lambda line: print(f"[extend] {e.init} piece vectors: {line}", flush=True))
        print(f"[extend] {json.dumps(report['init_vectors'])}", flush=True)
    elif e.init not in ("wechsel", "focus"):  # the control with a vector rule: no new rows to initialise
        grow_for_tokenizer(model, base_tok, tok, init=e.init, generator=generator)
    model.train()
    pieces = encode_sentences(tok, train_text)
    pieces += sample_base_pieces(tok, base_text, len(pieces), e.base_text_share, cfg.train.seed)
    collate = MaskingCollator(tok.mask_id, tok.vocab_size, pad_id=tok.pad_id, mask_prob=cfg.mlm.mask_prob)
    heldout_batches = build_heldout(cfg, tok, heldout, collate)
    report |= {"train_sentences": len(pieces), "train_pieces": sum(map(len, pieces)),
               "heldout_sentences": len(heldout), "init": e.init if e.extend_vocab else None}
    task = ExtendTask(cfg, tok, pieces, heldout_batches, started, model, report)
    plan_pieces(cfg)
    print(f"[extend] vocabulary {base_tok.vocab_size} -> {tok.vocab_size}; held-out pieces/word "
          f"{report['heldout_before']['pieces_per_word']:.2f} -> {report['heldout_after']['pieces_per_word']:.2f}, "
          f"<unk> of pieces {report['heldout_before']['unk_piece_rate']:.3f} -> "
          f"{report['heldout_after']['unk_piece_rate']:.3f}; base text changed: "
          f"{report['base_text_check']['changed']} of {report['base_text_check']['readable']} sentences; "
          f"{len(pieces)} training sentences; ready after {time.monotonic() - started:.0f} s", flush=True)
    return task
