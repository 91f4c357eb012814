"""Benchmark: relation-extraction training and evaluation throughput (examples/s) -- ours vs transformers.

    python bench/re.py                                    # base size (klue/roberta-base shape), bf16
    python bench/re.py --layers 2 --reps 1                  # quick smoke run
    python bench/re.py --run runs/re_c04_r7_cosine runs/re_klue_full   # real test parts

Ours: tasks/relation.py's model (models.re_head.RelationClassifier: our encoder, entity-start pooling,
MLP) and models.losses.relation_loss (focal, smoothing). Reference: transformers' AutoModel
(XLMRobertaModel, sdpa) with the SAME pooling + MLP modules and the same loss, as a KLUE recipe does
it. Both start from the same random weights (ours imported from the transformers model), the same
batches (B examples of length T with marker positions inside), the same optimizer (torch AdamW,
foreach) and the same autocast. Training: one step = forward + loss + backward + clip + AdamW.
Evaluation: forward under inference_mode. After one warm-up, reps alternate ours/ref; medians of
examples/s by wall clock; ratio = ours / ref.

``--run RUN ...``: evaluation over a trained run's whole test part instead of synthetic batches.
The test part is read and marked as tasks/relation.py does it (load_splits on the run's config.yaml,
the exported model/ folder's tokenizer, markers, max_length; RelationPredictor.load), and its
decoded predictions are checked against the run's test_predictions.csv first. Ours = the task's
evaluation path (tasks.relation.predict_logits: length-sorted batches of 2 x train.batch_size);
transformers = XLMRobertaModel.from_pretrained(RUN/model, sdpa) + the run's own pooling and MLP
modules, fed the batches a KLUE recipe feeds it (dataset order, the same batch size, each batch
padded to its longest). Also timed: each model with the other's batching, which separates the
encoder from the batching. Every pass covers the whole test part, collation included, marking
(done once, shared) excluded.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_config  # noqa: E402
from core.paths import data_root  # noqa: E402
from core.precision import autocast_context, cpu_supports_bf16  # noqa: E402
from data.batching import LengthBucketSampler  # noqa: E402
from models import load_from_source  # noqa: E402
from models.encoder import XLMRConfig  # noqa: E402
from models.losses import relation_loss  # noqa: E402
from models.re_head import RelationClassifier  # noqa: E402
from models.weights import DictSource  # noqa: E402
from tasks.relation import (MODEL_INPUTS, RelationPredictor, collate_relations, load_splits,  # noqa: E402
                            predict_logits)

BASE = dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
K = 30


class Reference(torch.nn.Module):
    """transformers' AutoModel + our pooling and MLP (the same modules, so only the encoder differs)."""

    def __init__(self, hf, head: RelationClassifier):
        super().__init__()
        self.hf, self.pooler, self.mlp, self.num_labels = hf, head.pooler, head.mlp, head.num_labels

    def forward(self, input_ids, attention_mask, subj_marker, obj_marker, subj_mask, obj_mask):
        h = self.hf(input_ids=input_ids, attention_mask=attention_mask.long()).last_hidden_state  # (B, T, H)
        return self.mlp(self.pooler(h, subj_marker, obj_marker, subj_mask, obj_mask))  # (B, K)


def make_batch(B: int, T: int, vocab: int, gen: torch.Generator) -> dict:
    lengths = torch.randint(T // 2, T + 1, (B,), generator=gen)
    ids = torch.randint(5, vocab, (B, T), generator=gen)
    mask = torch.arange(T)[None] < lengths[:, None]  # (B, T)
    ids[~mask] = 1
    subj = (lengths * 0.2).long()
    obj = (lengths * 0.6).long()
    span = lambda start: (torch.arange(T)[None] > start[:, None]) & (torch.arange(T)[None] <= start[:, None] + 3)  # noqa: E731
    return {"input_ids": ids, "attention_mask": mask, "subj_marker": subj, "obj_marker": obj,
            "subj_mask": span(subj), "obj_mask": span(obj), "labels": torch.randint(0, K, (B,), generator=gen)}


INPUTS = ("input_ids", "attention_mask", "subj_marker", "obj_marker", "subj_mask", "obj_mask")


def train_step(model, optimizer, batch, autocast) -> None:
    with autocast:
        logits = model(*(batch[k] for k in INPUTS))
        loss = relation_loss(logits, batch["labels"], gamma=1.0, smoothing=0.09, reduction="mean")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.inference_mode()
def eval_step(model, batch, autocast) -> None:
    with autocast:
        model(*(batch[k] for k in INPUTS)).float()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- the real test part of a trained run -------------------------------------------------------------
def load_run(run_dir: Path):
    """(RelationPredictor, config, test examples, encoded test items) of a finished relation run."""
    cfg = load_config(run_dir / "config.yaml")
    root = Path(cfg.data.root) if cfg.data.root else data_root()
    splits, names, _, _ = load_splits(cfg.relation, root, cfg.train.seed)
    predictor = RelationPredictor.load(run_dir)
    if names != predictor.names:
        raise ValueError(f"{run_dir}: the data's labels {names[:3]}.. are not the export's {predictor.names[:3]}..")
    test = splits["test"]
    return predictor, cfg, test, [predictor.encoder.encode(e) for e in test]


def check_run_predictions(run_dir: Path, test: list, predictor) -> str:
    """Our decoded test predictions against the run's own test_predictions.csv (same ids, same order)."""
    import csv

    with (run_dir / "test_predictions.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = rows[:len(test)]  # all of them unless --limit
    if [r["id"] for r in rows] != [e.guid for e in test]:
        raise ValueError(f"{run_dir}: the rebuilt test part is not the run's (ids or order differ)")
    labels = [predictor.names[k] for k in predictor.probs(test).argmax(-1).tolist()]
    same = sum(r["pred_label"] == p for r, p in zip(rows, labels))
    return f"{same} / {len(rows)} decoded predictions equal the run's test_predictions.csv"


@torch.inference_mode()
def in_dataset_order(model, items: list, pad_id: int, batch_size: int, autocast) -> torch.Tensor:
    """(N, K) fp32 logits, batches cut in the data's order, each padded to its longest (a KLUE recipe)."""
    model.eval()
    out = []
    for start in range(0, len(items), batch_size):
        batch = collate_relations(items[start:start + batch_size], None, pad_id)
        with autocast:
            out.append(model(*(batch[k] for k in MODEL_INPUTS)).float())  # (B, K)
    return torch.cat(out)  # (N, K)


def bench_run(run_dir: Path, precision: str, reps: int, limit: int = 0) -> list[str]:
    """Markdown rows for one run: agreement of ours and transformers, then examples/s of four set-ups."""
    from transformers import XLMRobertaModel

    predictor, cfg, test, items = load_run(run_dir)
    if limit:
        test, items = test[:limit], items[:limit]
    print(f"\n{run_dir}: {cfg.relation.dataset} test part, {len(test)} examples, max_length "
          f"{cfg.relation.max_length}; {check_run_predictions(run_dir, test, predictor)}")
    pad, B = predictor.tokenizer.pad_id, 2 * cfg.train.batch_size  # the task's evaluation batch
    lengths = [len(it) for it in items]
    sorted_batches = LengthBucketSampler(lengths, B, shuffle=False).batches()
    in_order = [list(range(s, min(s + B, len(items)))) for s in range(0, len(items), B)]
    padded = {name: sum(len(b) * max(lengths[i] for i in b) for b in batches)
              for name, batches in (("dataset order", in_order), ("length-sorted", sorted_batches))}
    print(f"  positions fed (B x T summed): real pieces {sum(lengths):,}, dataset order {padded['dataset order']:,}, "
          f"length-sorted {padded['length-sorted']:,}")
    ours = predictor.model.eval()
    hf, info = XLMRobertaModel.from_pretrained(run_dir / "model", attn_implementation="sdpa",
                                               add_pooling_layer=False, output_loading_info=True)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ValueError(f"{run_dir}/model: transformers did not load every weight: {info}")
    ref = Reference(hf.eval(), ours)
    autocast = autocast_context(torch.device("cpu"), precision)
    setups = {  # name: () -> (N, K) logits in the test part's order; predict_logits = the task's evaluation
        "ours, length-sorted (the task)": lambda: predict_logits(ours, items, pad, B, precision),
        "transformers, dataset order (KLUE recipe)": lambda: in_dataset_order(ref, items, pad, B, autocast),
        "ours, dataset order": lambda: in_dataset_order(ours, items, pad, B, autocast),
        "transformers, length-sorted": lambda: predict_logits(ref, items, pad, B, precision),
    }
    warm = items[:2 * B]
    predict_logits(ours, warm, pad, B, precision), in_dataset_order(ref, warm, pad, B, autocast)  # warm-up
    speed, logits = {name: [] for name in setups}, {}
    for rep in range(reps):
        for name in (list(setups) if rep % 2 == 0 else list(reversed(setups))):
            start = time.perf_counter()
            logits[name] = setups[name]()  # (N, K)
            speed[name].append(len(items) / (time.perf_counter() - start))
    base = logits["ours, length-sorted (the task)"]
    for name, other in logits.items():
        agree = int((other.argmax(-1) == base.argmax(-1)).sum())
        diff = float((torch.softmax(other, -1) - torch.softmax(base, -1)).abs().max())
        print(f"  {name}: {agree} / {len(items)} argmax labels as ours (the task), max |prob diff| {diff:.1e}")
    ref_speed = statistics.median(speed["transformers, dataset order (KLUE recipe)"])
    rows = []
    for name, values in speed.items():
        med = statistics.median(values)
        rows.append(f"| {cfg.relation.dataset} ({run_dir.name}, {len(items)}) | {name} | {med:.1f} | "
                    f"{med / ref_speed:.2f}x | {', '.join(f'{v:.1f}' for v in values)} |")
    return rows


def bench_test_parts(args) -> int:
    rows = ["| test part (run, examples) | set-up | examples/s | vs transformers, dataset order | reps |",
            "|---|---|---:|---:|---|"]
    for run in args.run:
        rows += bench_run(Path(run), args.precision, args.reps, args.limit)
    print(f"\nEvaluation over the whole test part, {args.precision}, {torch.get_num_threads()} threads, "
          f"median of {args.reps} reps (alternating order)\n")
    print("\n".join(rows))
    return 0


# ---- synthetic batches at base size -----------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--precision", default="bf16" if cpu_supports_bf16() else "fp32", choices=["bf16", "fp32"])
    parser.add_argument("--run", nargs="+", default=[], help="trained relation runs: time their real test parts "
                        "(the synthetic options --layers / --batch / --length then do not apply)")
    parser.add_argument("--limit", type=int, default=0, help="--run: the first N test examples only (smoke runs)")
    args = parser.parse_args(argv)
    if args.run:
        return bench_test_parts(args)
    from transformers import XLMRobertaConfig, XLMRobertaModel

    shape = BASE | {"num_hidden_layers": args.layers}
    torch.manual_seed(0)
    hf_config = XLMRobertaConfig(**shape, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    hf_config._attn_implementation = "sdpa"
    hf = XLMRobertaModel(hf_config, add_pooling_layer=False)
    config = XLMRConfig(**shape)
    encoder = load_from_source(DictSource({f"roberta.{k}": v.clone() for k, v in hf.state_dict().items()}), config)
    ours = RelationClassifier(encoder, K, "start")
    ref_head = RelationClassifier(encoder, K, "start")  # a twin head, then the same weights
    ref_head.load_state_dict(ours.state_dict())
    ref = Reference(hf, ref_head)
    autocast = autocast_context(torch.device("cpu"), args.precision)
    gen = torch.Generator().manual_seed(0)
    batch = make_batch(args.batch, args.length, shape["vocab_size"], gen)
    models = {"ours": ours, "transformers": ref}
    opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-5, foreach=True) for n, m in models.items()}
    with torch.no_grad():  # same weights -> same logits (dropout off)
        ours.eval(), ref.eval()
        a = ours(*(batch[k] for k in INPUTS))
        b = ref(*(batch[k] for k in INPUTS))
        print(f"max |logits ours - transformers| (fp32, eval): {float((a - b).abs().max()):.2e}")
    for m in models.values():
        m.train()
    train, evals = {n: [] for n in models}, {n: [] for n in models}
    for name, m in models.items():  # warm-up
        train_step(m, opts[name], batch, autocast)
        eval_step(m, batch, autocast)
    for rep in range(args.reps):
        order = list(models) if rep % 2 == 0 else list(reversed(models))
        for name in order:
            train[name].append(args.batch / timed(lambda: train_step(models[name], opts[name], batch, autocast)))
            evals[name].append(args.batch / timed(lambda: eval_step(models[name], batch, autocast)))
    print(f"\nRE model, {args.layers} layers x 768, vocab 32k, batch {args.batch} x {args.length} pieces, "
          f"{args.precision}, {torch.get_num_threads()} threads, median of {args.reps} reps (examples/s)\n")
    print("| | ours | transformers | ratio |\n|---|---:|---:|---:|")
    for what, d in (("train step", train), ("evaluation", evals)):
        o, r = statistics.median(d["ours"]), statistics.median(d["transformers"])
        print(f"| {what} | {o:.2f} | {r:.2f} | {o / r:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
