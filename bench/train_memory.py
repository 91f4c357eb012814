"""Benchmark: peak resident memory of training at base size, ours against transformers + torch AdamW.

    python bench/train_memory.py                                  # 16x128 and 32x128, fp32 (+ bf16 where the CPU has it)
    python bench/train_memory.py --shapes 16x128 --precisions fp32 --steps 2

Each (side, shape, precision) runs in its own fresh process, so peaks do not mix: random weights in
the xlm-roberta-base layout (250,002 x 768 embedding, 12 layers; transformers draws them, ours loads
the same tensors), then ``--steps`` training steps on a full batch of B sequences of T pieces with a
token-classification loss on every piece. The process's peak RSS (VmHWM, reset once the model and
optimizer are built) is read at the end.
- ours: the NER task's step as core/loop.py runs it: ``model(ids, mask, select=labelled)`` (the last
  layer on the labelled positions), fp32 cross-entropy, core.optim.build_optimizer (AdamW with the
  embedding rows updated lazily from sparse gradients), clipping, ``zero_grad(set_to_none=True)``;
- reference: XLMRobertaForTokenClassification (sdpa), the same loss on its (B, T, K) logits,
  torch.optim.AdamW (fused where available, as Trainer's default), the same clipping.
Ratio = ours / reference peak (lower is better).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.memory import cpu_name, status_mb  # noqa: E402

BASE = dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
NUM_LABELS = 7


def one(side: str, b: int, t: int, precision: str, steps: int) -> dict:
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    torch.manual_seed(0)
    hf_config = XLMRobertaConfig(**BASE, num_labels=NUM_LABELS)
    hf_config._attn_implementation = "sdpa"
    ref = XLMRobertaForTokenClassification(hf_config)
    if side == "ours":
        from core.config import TrainConfig
        from core.optim import build_optimizer, clip_grad_norm
        from bench.same_weights import ours_like

        model = ours_like(ref, "token-classification", NUM_LABELS, share=True)
        del ref
        optimizer = build_optimizer(model, TrainConfig(lr=2e-5, weight_decay=0.05))
    else:
        model = ref
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.05, fused=True)
    import gc
    gc.collect()
    loaded = status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:  # the peak counts from here: building (ours copies the
        handle.write("5")                            # reference's tensors first) is not training memory
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, BASE["vocab_size"], (b, t), generator=g)  # (B, T)
    ids[:, 0] = 0
    mask = torch.ones(b, t, dtype=torch.bool)  # (B, T) full-length sequences
    labels = torch.randint(0, NUM_LABELS, (b, t), generator=g)  # (B, T)
    model.train()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            if side == "ours":
                logits = model(ids, mask, select=labels != -100)  # (M, K)
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[labels != -100], reduction="sum")
            else:
                logits = model(input_ids=ids, attention_mask=mask.long()).logits  # (B, T, K)
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),
                                                         reduction="sum")
        (loss / labels.numel()).backward()
        if side == "ours":
            clip_grad_norm(model.parameters(), 1.0)  # the engine's clipping (takes the sparse embedding gradient)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"loaded_mb": loaded, "peak_mb": status_mb("VmHWM")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="16x128,32x128")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # side,B,T,precision: the child process
    args = ap.parse_args(argv)
    if args.one:
        side, b, t, precision = args.one.split(",")
        print(json.dumps(one(side, int(b), int(t), precision, args.steps)))
        return 0
    from core.precision import cpu_supports_bf16

    print(f"torch {torch.__version__}, CPU {cpu_name()}, fast bf16: {cpu_supports_bf16()}; base size, {args.steps} steps")
    for precision in args.precisions.split(","):
        if precision == "bf16" and not cpu_supports_bf16():
            print("bf16: skipped (this CPU has no AVX512-BF16/AMX)")
            continue
        for shape in args.shapes.split(","):
            b, t = shape.split("x")
            peaks = {}
            for side in ("ours", "reference"):
                proc = subprocess.run([sys.executable, __file__, "--one", f"{side},{b},{t},{precision}",
                                       "--steps", str(args.steps)], capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"error: {side} {shape} {precision} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    return 1
                peaks[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            o, r = peaks["ours"], peaks["reference"]
            print(f"{precision} {shape}: peak RSS ours {o['peak_mb']:,.0f} MB (model+optimizer built: "
                  f"{o['loaded_mb']:,.0f}) | transformers + AdamW {r['peak_mb']:,.0f} MB ({r['loaded_mb']:,.0f}) | "
                  f"ratio {o['peak_mb'] / r['peak_mb']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
