"""Benchmark: relation-extraction training and evaluation throughput (examples/s) -- ours vs transformers.

    scripts/cpujob -2 python bench/re.py                  # base size (klue/roberta-base shape), bf16
    python bench/re.py --layers 2 --reps 1                  # quick smoke run

Ours: tasks/relation.py's model (models.re_head.RelationClassifier: our encoder, entity-start pooling,
MLP) and models.losses.relation_loss (focal, smoothing). Reference: transformers' AutoModel
(XLMRobertaModel, sdpa) with the SAME pooling + MLP modules and the same loss, as a KLUE recipe does
it. Both start from the same random weights (ours imported from the transformers model), the same
batches (B examples of length T with marker positions inside), the same optimizer (torch AdamW,
foreach) and the same autocast. Training: one step = forward + loss + backward + clip + AdamW.
Evaluation: forward under inference_mode. After one warm-up, reps alternate ours/ref; medians of
examples/s by wall clock; ratio = ours / ref.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.precision import autocast_context, cpu_supports_bf16  # noqa: E402
from models import load_from_source  # noqa: E402
from models.encoder import XLMRConfig  # noqa: E402
from models.losses import relation_loss  # noqa: E402
from models.re_head import RelationClassifier  # noqa: E402
from models.weights import DictSource  # noqa: E402

BASE = dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
K = 30


class Reference(torch.nn.Module):
    """transformers' AutoModel + our pooling and MLP (the same modules, so only the encoder differs)."""

    def __init__(self, hf, head: RelationClassifier):
        super().__init__()
        self.hf, self.pooler, self.mlp = hf, head.pooler, head.mlp

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--precision", default="bf16" if cpu_supports_bf16() else "fp32", choices=["bf16", "fp32"])
    args = parser.parse_args(argv)
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
