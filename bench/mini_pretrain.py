"""Benchmark (not a test): MLM training-step throughput of candidate mini sizes on this machine.

    python bench/mini_pretrain.py 4x256 6x256 4x384

For each LAYERSxHIDDEN (heads of 64, FFN 4H, vocabulary 32,000, batch 32 x 128 packed pieces)
one full step (forward, masked-position loss, backward, AdamW) in bf16 autocast and fp32, with
and without dropout, and the full (B, T, V) logits vs the masked positions only. Variants are
interleaved and the best of REPS steps is kept: the cores are shared, so minima are the fair
comparison. Prints tokens/s (all B x T positions) and ratios against the first variant.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from data.masking import IGNORE_INDEX, MaskingCollator  # noqa: E402
from models.encoder import XLMRConfig  # noqa: E402
from models.encoder_fast import use_kernels  # noqa: E402
from models.heads import XLMRForMaskedLM  # noqa: E402
from tasks.mlm import masked_lm_loss  # noqa: E402

V, B, T, REPS = 32000, 32, 128, 5


def full_logits_loss(model, batch):
    logits = model(batch["input_ids"], batch["attention_mask"])  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def main(sizes: list[str]) -> None:
    torch.manual_seed(0)
    collate = MaskingCollator(mask_id=V - 1, vocab_size=V)
    rows = [[0] + torch.randint(4, V - 1, (T - 2,)).tolist() + [2] for _ in range(B)]
    batch = collate(rows, torch.Generator().manual_seed(0))
    variants = [("bf16", 0.0, "masked"), ("fp32", 0.0, "masked"), ("bf16", 0.1, "masked"), ("bf16", 0.0, "full")]
    for size in sizes:
        L, H = map(int, size.split("x"))
        models = {}
        for precision, dropout, head in variants:
            cfg = XLMRConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=H // 64,
                             intermediate_size=4 * H, max_position_embeddings=514,
                             hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
            model = use_kernels(XLMRForMaskedLM(cfg), "fast", announce=False)  # as the MLM task on the CPU
            model.init_weights(torch.Generator().manual_seed(0))
            models[(precision, dropout, head)] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
        best = {key: float("inf") for key in models}
        for rep in range(REPS + 1):  # the first round warms up
            for key, (model, optimizer) in models.items():
                precision, _, head = key
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss = masked_lm_loss(model, batch)[0] if head == "masked" else full_logits_loss(model, batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if rep:
                    best[key] = min(best[key], time.perf_counter() - start)
        base = best[variants[0]]
        for key, seconds in best.items():
            precision, dropout, head = key
            print(f"{size:>6} {precision} dropout {dropout:.1f} {head:>6} logits: {B * T / seconds:7.0f} tok/s "
                  f"({seconds * 1000:.0f} ms/step, x{base / seconds:.2f} of the first)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["4x256"])
