"""The MLM task: pretrain the mini XLM-R (tokenizer + encoder + MLM head) within a time budget.

Legend: B sequences, T subword positions, H hidden, V vocabulary, M masked positions.

    task = build_task(cfg)        # gather text, train the sentencepiece model, encode, pack
    task.run(cfg, run_dir)        # core.task.fit_best, then save the best weights (HF layout) to run_dir/model/

The budget (``mlm.time_budget_minutes``) counts from build_task, tokenizer training included.
run() hands what is left of it (minus ``mlm.budget_reserve_seconds`` for the final export) to
the loop as ``train.time_budget_minutes``, which stops cleanly (evaluation + checkpoint). When
``train.max_steps`` is 0, run() first times a few real optimizer steps and sets max_steps so the
learning-rate schedule reaches its end at the budget. On a CPU that other jobs share the speed
drifts, so (``mlm.pace_batches``) each batch is sized to keep steps at the planned duration and
the thread count follows what is fastest now (core/pacing.py).

fit writes config.yaml after this planning, so it holds the planned max_steps; a resumed
time-budget run keeps them (resume_planned_steps) and gets a fresh budget. The exported weights
are best.pt's (highest held-out MLM accuracy). In mlm_summary.json the time and throughput fields
(train_seconds, tokens, tokens_per_second, total_seconds) count the current process only.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from data.code_switch import SwitchedCorpus, load_lexicon
from data.masking import MaskingCollator
from data.text import encode_sentences, gather_text, ner_source_name, pack_sequences, split_heldout
from core.distributed import unwrap
from core.pacing import BatchPacer, ThreadTuner

SEED_STRIDE = 1_000_003  # separates the (seed, epoch, batch) streams of random numbers


def _autocast(device: torch.device, precision: str):
    from core.precision import autocast_context, resolve_precision

    return autocast_context(device, resolve_precision(precision, device))


def build_model_config(cfg, vocab_size: int, dropout: float):
    """The XLMRConfig of the mini model from the ``mlm`` section (heads must divide hidden)."""
    from models.encoder import XLMRConfig

    m = cfg.mlm
    if m.hidden_size % m.num_heads:
        raise ValueError(f"mlm.hidden_size {m.hidden_size} is not a multiple of mlm.num_heads {m.num_heads}")
    if m.seq_length + 2 > m.max_position_embeddings:
        raise ValueError(f"mlm.seq_length {m.seq_length} needs max_position_embeddings >= {m.seq_length + 2}")
    return XLMRConfig(vocab_size=vocab_size, hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
                      num_attention_heads=m.num_heads, intermediate_size=m.intermediate_size,
                      max_position_embeddings=m.max_position_embeddings, pad_token_id=1, type_vocab_size=1,
                      layer_norm_eps=1e-5, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def masked_lm_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy over the masked positions in fp32, number of correct predictions).

    The vocabulary projection runs on the M masked positions only (about 15% of B x T): the
    same numbers as the full (B, T, V) logits at a fraction of the cost; and it runs a chunk of
    rows at a time, so the (M, V) logits are never in memory at once (models/vocab_loss.py).
    """
    return model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])  # scalars


class MLMBatches:
    """One epoch of masked batches: packed fresh for the epoch, sharded by rank.

    Without a pacer every batch has ``train.batch_size`` sequences and the epoch is a pure
    function of (seed, epoch): a resumed run skips exactly what it consumed. With the task's
    pacer (``mlm.pace_batches``) sizes follow the machine's speed, so a resume lands near, not
    exactly at, the same place; len() then counts batches of the nominal size.
    """

    def __init__(self, task: "MLMTask", epoch: int, rank: int, world: int):
        self.task, self.epoch = task, epoch
        seed = task.cfg.train.seed * SEED_STRIDE + epoch
        sequences = pack_sequences(task.epoch_pieces(epoch), task.cfg.mlm.seq_length, task.tokenizer.bos_id,
                                   task.tokenizer.eos_id, torch.Generator().manual_seed(seed))
        batch_size = task.cfg.train.batch_size
        n_batches = len(sequences) // (batch_size * world)  # equal counts on every rank; the rest is dropped
        self.sequences = sequences[rank::world][: n_batches * batch_size]
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return len(self.sequences) // self.batch_size

    def __iter__(self):
        start, index = 0, 0
        while start < len(self.sequences):
            size = self.task.pace()
            rows = self.sequences[start:start + size]
            generator = torch.Generator().manual_seed(self.seed * SEED_STRIDE + index)  # masks of this batch
            batch = self.task.collate(rows, generator)
            self.task.tokens_fed += int(batch["attention_mask"].sum())
            self.task.last_batch_sequences = len(rows)
            start, index = start + size, index + 1
            yield batch


class MLMTask:
    metric_name = "mlm_acc"

    def __init__(self, cfg, tokenizer, train_pieces: list[list[int]], heldout_batches: list[dict],
                 started: float, switched: SwitchedCorpus | None = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.train_pieces, self.heldout_batches = train_pieces, heldout_batches
        self.switched = switched  # NER sentences code-switched anew each epoch (mlm.code_switch_rate)
        self.collate = MaskingCollator(tokenizer.mask_id, tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                                       mask_prob=cfg.mlm.mask_prob)
        budget = cfg.mlm.time_budget_minutes * 60
        self.started = started
        self.deadline = started + budget - cfg.mlm.budget_reserve_seconds if budget > 0 else math.inf
        self.model: nn.Module | None = None
        self.tokens_fed = 0  # non-pad positions handed to the loop (for tokens/s)
        cores = torch.get_num_threads()
        on_cpu = cfg.train.device == "cpu" or (cfg.train.device == "auto" and not torch.cuda.is_available())
        self.threads = ThreadTuner(sorted({1, cores})) if cfg.mlm.adaptive_threads and on_cpu and cores > 1 else None
        self.pacer: BatchPacer | None = None  # set by plan_budget when mlm.pace_batches
        self.last_batch_sequences = 0

    def epoch_pieces(self, epoch: int) -> list[list[int]]:
        """The sentences (piece ids) of one pass: the fixed ones and this epoch's code-switched ones."""
        if self.switched is None:
            return self.train_pieces
        repeat = self.cfg.mlm.ner_repeat
        return self.train_pieces + [ids for r in range(repeat) for ids in self.switched.pieces(epoch * repeat + r)]

    def pace(self) -> int:
        """Called as each batch is requested: feed the step just finished to the tuners; the size
        of the next batch."""
        done = self.last_batch_sequences
        if self.threads is not None:
            self.threads.tick(done)
        if self.pacer is None:
            return self.cfg.train.batch_size
        self.pacer.tick(done)
        return self.pacer.next_size()

    # --- the task interface of core.loop.fit -------------------------------------------------
    def build_model(self, dropout: float | None = None) -> nn.Module:
        from models.encoder_fast import use_kernels
        from models.heads import XLMRForMaskedLM

        dropout = self.cfg.mlm.dropout if dropout is None else dropout
        model = XLMRForMaskedLM(build_model_config(self.cfg, self.tokenizer.vocab_size, dropout))
        use_kernels(model, self.cfg.model.kernels, self.cfg.train.device)
        model.init_weights(generator=torch.Generator().manual_seed(self.cfg.train.seed))
        self.model = model
        return model

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1) -> MLMBatches:
        return MLMBatches(self, epoch, rank, world)

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return masked_lm_loss(model, batch)[0]

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out MLM loss per masked piece and accuracy (fixed masks, so runs compare)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct, count = 0, 0
        with _autocast(device, self.cfg.train.precision):
            for batch in self.heldout_batches:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                loss, right = masked_lm_loss(unwrap(model), batch)
                loss_sum += loss.double().cpu()
                correct += int(right)
                count += batch["n_tokens"]
        model.train(was_training)
        return {"mlm_loss": float(loss_sum) / max(count, 1), "mlm_acc": correct / max(count, 1)}

    # --- time budget -------------------------------------------------------------------------
    def time_steps(self, n_steps: int = 2) -> float:
        """Seconds per optimizer step of a throwaway model on real batches (after one warm-up),
        at each thread count the tuner may choose; the tuner starts with the fastest."""
        from core.precision import resolve_device, resolve_precision

        cfg = self.cfg
        device = resolve_device(cfg.train.device)
        model = self.build_model().to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        batches = iter(MLMBatches(self, epoch=10_000, rank=0, world=1))
        per_choice = {}
        for threads in (self.threads.choices if self.threads else [torch.get_num_threads()]):
            if self.threads:
                self.threads.use(threads)
            times = []
            for _ in range(n_steps + 1):
                start = time.perf_counter()
                for _ in range(cfg.train.accum_steps):
                    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
                    with _autocast(device, cfg.train.precision):
                        loss = masked_lm_loss(model, batch)[0]
                    loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                times.append(time.perf_counter() - start)
            per_choice[threads] = sum(times[1:]) / n_steps
        best = min(per_choice, key=per_choice.get)
        if self.threads:
            self.threads.use(best)
            self.threads.samples = {n: [] for n in self.threads.choices}
            self.threads.last = None
        self.model, self.tokens_fed, self.last_batch_sequences = None, 0, 0
        timed = ", ".join(f"{n} thread(s) {t:.3f}" for n, t in per_choice.items())
        print(f"[mlm] timed s/step ({resolve_precision(cfg.train.precision, device)}): {timed}; "
              f"starting with {best}", flush=True)
        return per_choice[best]

    def plan_budget(self, cfg) -> None:
        """Set train.max_steps (if 0) and train.time_budget_minutes from what is left of the budget,
        and (``mlm.pace_batches``) the pacer that keeps every step near the planned duration."""
        if math.isinf(self.deadline):
            return
        seconds_per_step = None
        if cfg.train.max_steps == 0:
            seconds_per_step = self.time_steps()
            left = self.deadline - time.monotonic()
            cfg.train.max_steps = max(1, int(0.92 * left / seconds_per_step))  # 8% for evals and checkpoints
        left = max(self.deadline - time.monotonic(), 1.0)
        cfg.train.time_budget_minutes = left / 60
        if cfg.mlm.pace_batches:
            base = cfg.train.batch_size
            target = 0.92 * left / (cfg.train.max_steps * cfg.train.accum_steps)  # seconds per micro-batch
            self.pacer = BatchPacer(target, base, min_size=max(1, base // 4), max_size=base * 8)
            if seconds_per_step:  # start from the timed speed instead of the nominal size
                self.pacer.rates = [seconds_per_step / (base * cfg.train.accum_steps)]
        print(f"[mlm] train.max_steps = {cfg.train.max_steps}, loop budget {cfg.train.time_budget_minutes:.1f} min "
              f"(of {cfg.mlm.time_budget_minutes:g} min in all)"
              + (f", paced at {self.pacer.target:.2f} s per micro-batch" if self.pacer else ""), flush=True)

    # --- the whole job -----------------------------------------------------------------------
    def run(self, cfg, run_dir: str | Path) -> dict:
        """Plan the budget, fit (config.yaml is written by fit, after the planning), then export the
        best-dev (held-out MLM accuracy) weights from best.pt and write mlm_summary.json."""
        from core.task import fit_best

        run_dir = Path(run_dir)
        self.plan_budget(cfg)
        train_started = time.monotonic()
        result = fit_best(cfg, self, run_dir)
        train_seconds = time.monotonic() - train_started
        model = unwrap(result["model"])
        final = self.evaluate(model)  # the exported weights' held-out scores
        save_mini(model, self.tokenizer, run_dir / "model", cfg.mlm.export_dropout)
        summary = {"steps": result["step"],
                   "max_steps": cfg.train.max_steps, "train_seconds": round(train_seconds, 1),
                   "tokens": self.tokens_fed, "tokens_per_second": round(self.tokens_fed / max(train_seconds, 1e-9)),
                   "total_seconds": round(time.monotonic() - self.started, 1),
                   "heldout_mlm_loss": final["mlm_loss"], "heldout_mlm_acc": final["mlm_acc"],
                   "thread_decisions": self.threads.decisions if self.threads else None,
                   "batch_sizes": _size_summary(self.pacer.sizes) if self.pacer else None,
                   "model_dir": str(run_dir / "model")}
        (run_dir / "mlm_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"[mlm] {json.dumps(summary)}", flush=True)
        return summary


def _size_summary(sizes: list[int]) -> dict:
    ordered = sorted(sizes)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]} if sizes else {}


def save_mini(model: nn.Module, tokenizer, out_dir: Path, export_dropout: float) -> None:
    """HF layout (config.json, model.safetensors, sentencepiece.bpe.model, tokenizer.json) with the
    fine-tuning dropout written into config.json (pretraining may have run without dropout)."""
    from models.export import save_pretrained

    save_pretrained(model, tokenizer, out_dir, config_overrides={
        "hidden_dropout_prob": export_dropout, "attention_probs_dropout_prob": export_dropout})


def run_directory(cfg) -> Path:
    from core.paths import run_dir
    return run_dir(cfg.train)


def resume_planned_steps(cfg) -> None:
    """A resumed time-budget run keeps the max_steps its first start planned (saved in last.pt),
    instead of timing again: the same schedule, and last.pt's settings match."""
    last = run_directory(cfg) / "last.pt"
    m, t = cfg.mlm, cfg.train
    if not (t.resume and last.is_file() and m.time_budget_minutes > 0 and m.pieces_budget <= 0 and t.max_steps == 0):
        return
    from core.checkpoint import safe_load

    t.max_steps = int(safe_load(last, mmap=True)["config"]["train"]["max_steps"])
    print(f"[mlm] resuming: train.max_steps = {t.max_steps} as planned by the first start", flush=True)


def build_tokenizer(cfg, sentences: list[str], out_dir: Path):
    """Train the sentencepiece unigram model on ``sentences`` (or reuse it when resuming)."""
    from data.tokenizer import XLMRTokenizer

    if (out_dir / "sentencepiece.bpe.model").is_file():
        print(f"[mlm] reusing tokenizer {out_dir}", flush=True)
        return XLMRTokenizer.from_pretrained(out_dir)
    return XLMRTokenizer.train(sentences, cfg.mlm.vocab_size, out_dir, model_type="unigram",
                               input_sentence_size=cfg.mlm.spm_input_sentences)


def build_heldout(cfg, tokenizer, sentences: list[str], collate: MaskingCollator) -> list[dict]:
    """Fixed packed + masked held-out batches (seeded apart from training)."""
    pieces = encode_sentences(tokenizer, sentences)
    sequences = pack_sequences(pieces, cfg.mlm.seq_length, tokenizer.bos_id, tokenizer.eos_id)
    sequences = sequences[: cfg.mlm.eval_sequences]
    generator = torch.Generator().manual_seed(cfg.train.seed + 12345)
    size = cfg.train.batch_size
    return [collate(sequences[i:i + size], generator) for i in range(0, len(sequences), size)]


def pretraining_text(cfg) -> dict[str, list[str]]:
    """gather_text with the dumps' markup lines (ELTeC's ``### file`` headers, WikiExtractor's
    ``<doc>``) dropped from ``mlm.text_files``, as the extend task's reader drops them: the same
    file gives both tasks the same lines, so ``heldout_every`` holds out the same ones."""
    from data.text_sources import drop_markup

    corpus = gather_text(cfg.data, cfg.mlm)
    return {name: drop_markup(lines) if name in cfg.mlm.text_files else lines for name, lines in corpus.items()}


def build_task(cfg) -> MLMTask:
    started = time.monotonic()
    corpus, heldout_text = split_heldout(pretraining_text(cfg), cfg.mlm.heldout_every)
    train_text = [s for sentences in corpus.values() for s in sentences]
    if not train_text:
        raise ValueError("no pretraining text: set mlm.ner_splits and/or mlm.text_files")
    tokenizer = build_tokenizer(cfg, train_text, run_directory(cfg) / "tokenizer")
    ner_sources = {ner_source_name(lang, split): lang for lang, split in cfg.mlm.ner_splits.items()}
    if cfg.mlm.code_switch_sources:
        ner_sources_switched = {name: lang for name, lang in ner_sources.items() if lang in cfg.mlm.code_switch_sources}
    else:
        ner_sources_switched = ner_sources
    switched = build_switched_corpus(cfg, tokenizer, corpus, ner_sources_switched)
    train_pieces = []
    for name, sentences in corpus.items():
        if switched is not None and name in ner_sources_switched:
            continue  # encoded each epoch by the switched corpus
        repeat = cfg.mlm.ner_repeat if name in ner_sources else 1  # NER-domain text seen more often
        train_pieces += encode_sentences(tokenizer, sentences) * repeat
    collate = MaskingCollator(tokenizer.mask_id, tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                              mask_prob=cfg.mlm.mask_prob)
    heldout = build_heldout(cfg, tokenizer, heldout_text, collate) if heldout_text else []
    task = MLMTask(cfg, tokenizer, train_pieces, heldout, started, switched)
    plan_pieces(cfg)
    resume_planned_steps(cfg)
    first = task.epoch_pieces(0)
    print(f"[mlm] {len(first)} training sentences ({sum(map(len, first))} pieces in epoch 0"
          + (f", NER sentences code-switched at rate {cfg.mlm.code_switch_rate:g}" if switched else "")
          + f"), {len(heldout_text)} held out; vocabulary {tokenizer.vocab_size}; "
          f"ready after {time.monotonic() - started:.0f} s", flush=True)
    return task


def plan_pieces(cfg) -> None:
    """``mlm.pieces_budget`` -> ``train.max_steps`` (before train.py writes config.yaml): the same steps
    of the same fixed-size batches on every machine, whatever its speed."""
    import os

    m, t = cfg.mlm, cfg.train
    if m.pieces_budget <= 0:
        return
    if t.max_steps:
        raise ValueError(f"mlm.pieces_budget={m.pieces_budget} and train.max_steps={t.max_steps} both set the "
                         "length of the run: keep one (train.max_steps=0)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = t.batch_size * t.accum_steps * m.seq_length * world  # packed sequences are ~99% full
    t.max_steps = math.ceil(m.pieces_budget / per_step)
    m.pace_batches = False  # fixed batches: the budget is pieces, not seconds
    print(f"[mlm] mlm.pieces_budget {m.pieces_budget:,} = train.max_steps {t.max_steps} x {per_step:,} pieces "
          f"({t.batch_size} x {t.accum_steps} x {m.seq_length} x world {world})", flush=True)


def build_switched_corpus(cfg, tokenizer, corpus: dict[str, list[str]],
                          ner_sources: dict[str, str]) -> SwitchedCorpus | None:
    """The NER sentences as a code-switched corpus (mlm.code_switch_rate > 0), else None."""
    m = cfg.mlm
    if m.code_switch_rate == 0:
        return None
    if not m.code_switch_dicts:
        raise ValueError("mlm.code_switch_rate > 0 needs mlm.code_switch_dicts (language -> dictionary to English)")
    unknown = sorted(set(m.code_switch_sources) - set(m.ner_splits))
    if unknown:
        raise ValueError(f"mlm.code_switch_sources: {unknown} not in mlm.ner_splits {sorted(m.ner_splits)}")
    from data.sources import resolve_root

    lexicon = load_lexicon(resolve_root(cfg.data), m.code_switch_dicts)
    sentences = [(lang, s.split(" ")) for name, lang in ner_sources.items() for s in corpus.get(name, [])]
    return SwitchedCorpus(sentences, lexicon, m.code_switch_rate, tokenizer, cfg.train.seed, m.code_switch_hub)
