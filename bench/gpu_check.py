"""GPU check: what only a CUDA machine can show, in one script (refuses cleanly without CUDA).

    python bench/gpu_check.py                 # base-size checks (xlm-roberta-base layout, random weights)
    python bench/gpu_check.py --size mini     # the same at the mini's size (4 x 256), quicker

1. Encoder parity with transformers' XLMRobertaModel on the GPU in fp32, bf16 and fp16: ours under
   autocast must be as close to the fp32 reference as transformers' own run at that precision is
   (|ours - ref32| <= 2 |ref_low - ref32| + 1e-3 elementwise-max), and within 1e-4 in fp32.
2. The engine's training loop on the GPU: ``train.py configs/tiny_ner.yaml`` on a synthetic data set
   this script writes (no public data on the machine needed), a few steps each with fp16 + GradScaler
   and with bf16 (where the card has it); every step's loss finite, exit code 0.
3. Pinned, non-blocking host-to-device copies overlap with compute: a copy issued on a side stream
   while a matmul runs on the main stream takes less than the two one after the other, and
   ``core.loop.to_device`` returns to the host before its copy has finished.
4. One training step at the chosen size, batch 32 x 128: ours (AdamW and clipping from core.optim) against
   XLMRobertaForTokenClassification + torch.optim.AdamW, fp32 / bf16 / fp16 (+ GradScaler),
   median of 10 timed steps after 3 warm-up steps; ratio = reference / ours.
Prints one line per check and ``gpu_check: N passed, M failed`` at the end; exit 1 if any failed.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {
    "base": dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5),
    "mini": dict(vocab_size=16000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=1024, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5),
    "tiny": dict(vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=130, type_vocab_size=1, layer_norm_eps=1e-5),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pair(size: str, task: str = "encoder", num_labels: int = 7, device: str = "cpu", seed: int = 0):
    """(ours, reference) holding the same random weights; task: encoder | token-classification."""
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification, XLMRobertaModel

    from bench.same_weights import ours_like

    torch.manual_seed(seed)
    hf_config = XLMRobertaConfig(**SIZES[size], num_labels=num_labels, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    hf_config._attn_implementation = "sdpa"
    ref = (XLMRobertaModel(hf_config, add_pooling_layer=False) if task == "encoder"
           else XLMRobertaForTokenClassification(hf_config))
    ours = ours_like(ref, task, num_labels)  # a copy: step_times trains both
    return ours.to(device), ref.to(device)


def batch(size: str, b: int, t: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, T) with ragged lengths, padded with id 1, and the bool mask (B, T)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, SIZES[size]["vocab_size"], (b, t), generator=g)  # (B, T)
    lengths = torch.randint(t // 4, t + 1, (b,), generator=g)  # (B,)
    mask = torch.arange(t)[None, :] < lengths[:, None]  # (B, T)
    ids[:, 0] = 0
    ids = ids.masked_fill(~mask, 1)
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def parity(size: str, precision: str, device: str) -> tuple[bool, str]:
    """Ours under ``precision`` against transformers in fp32, with transformers' own error at that precision."""
    ours, ref = pair(size, device=device)
    ours.eval(), ref.eval()
    ids, mask = batch(size, 8, 64, device)

    def run(model, dtype, hf: bool):
        ctx = torch.autocast(device_type=torch.device(device).type, dtype=dtype) if dtype != torch.float32 else None
        with ctx if ctx is not None else torch.autocast(device_type="cpu", enabled=False):
            out = model(input_ids=ids, attention_mask=mask.long()).last_hidden_state if hf else model(ids, mask)
        return out.float()[mask]  # (R, H) real positions only

    ref32 = run(ref, torch.float32, True)
    ours_low = run(ours, DTYPES[precision], False)
    err = (ours_low - ref32).abs().max().item()
    if precision == "fp32":
        return err <= 1e-4, f"max |ours - ref| {err:.2e} (bound 1e-4)"
    ref_err = (run(ref, DTYPES[precision], True) - ref32).abs().max().item()
    bound = 2 * ref_err + 1e-3
    return err <= bound, f"max |ours - ref32| {err:.2e}, transformers' own {precision} error {ref_err:.2e} (bound {bound:.2e})"


def write_synthetic_panx(root: Path, sentences: int = 400, seed: int = 0) -> Path:
    """A PAN-X-shaped data root (panx/de/{train,val,test}.conllu) of made-up sentences, so the engine
    runs on a machine without the public data."""
    import random

    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    names = {"PER": ["Anna", "Karl", "Maria"], "LOC": ["Berlin", "Paris", "Rom"], "ORG": ["Bahn", "Bund", "Uno"]}
    for lang in ("de",):
        folder = root / "panx" / lang
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "val", "test"):
            lines = []
            for _ in range(sentences if split == "train" else sentences // 4):
                toks = []
                for _ in range(rng.randint(4, 30)):
                    if rng.random() < 0.15:
                        kind = rng.choice(sorted(names))
                        toks += [(rng.choice(names[kind]), f"B-{kind}"), (rng.choice(words), f"I-{kind}")]
                    else:
                        toks.append((rng.choice(words), "O"))
                lines += [f"{i}\t{w}\t{t}" for i, (w, t) in enumerate(toks)] + [""]
            (folder / f"{split}.conllu").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def engine_steps(precision: str, device: str, steps: int = 8) -> tuple[bool, str]:
    """train.py on the synthetic data for ``steps`` steps in ``precision`` on ``device``."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        root = write_synthetic_panx(Path(tmp) / "data")
        cmd = [sys.executable, "train.py", "configs/tiny_ner.yaml", f"data.root={root}",
               f"model.name_or_path={tmp}/model", "data.eval_langs=[de]",
               f"train.device={device}", f"train.precision={precision}", f"train.max_steps={steps}",
               "train.log_every=1", f"train.out_dir={tmp}/{{name}}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        losses = [float(line.split("| loss ")[1].split()[0]) for line in proc.stdout.splitlines() if "| loss " in line]
        ok = proc.returncode == 0 and len(losses) >= steps and all(x == x and abs(x) != float("inf") for x in losses)
        tail = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
        return ok, f"exit {proc.returncode}, {len(losses)} logged steps, loss {losses[0] if losses else '?'} -> " \
                   f"{losses[-1] if losses else '?'}" + (f" ({tail[0]})" if tail else "")


def copy_overlap(device: str = "cuda") -> tuple[bool, str]:
    """A pinned non_blocking copy on a side stream overlaps a matmul on the main stream."""
    from core.loop import to_device

    host = torch.empty(64 * 2**20, dtype=torch.float32).pin_memory()  # 256 MB pinned
    a = torch.randn(4096, 4096, device=device)
    side = torch.cuda.Stream()

    def timed(fn) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    def compute():
        for _ in range(20):
            a @ a

    def copy():
        with torch.cuda.stream(side):
            host.to(device, non_blocking=True)

    def both():
        copy()
        compute()

    for fn in (compute, copy, both):  # warm-up
        timed(fn)
    t_compute, t_copy, t_both = (statistics.median(timed(fn) for _ in range(5)) for fn in (compute, copy, both))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    moved = to_device({"x": host}, torch.device(device))
    t_return = time.perf_counter() - t0
    torch.cuda.synchronize()
    ok = t_both < 0.9 * (t_compute + t_copy) and t_return < 0.5 * t_copy and moved["x"].is_cuda
    return ok, (f"compute {1e3 * t_compute:.1f} ms, copy {1e3 * t_copy:.1f} ms, both {1e3 * t_both:.1f} ms "
                f"(serial would be {1e3 * (t_compute + t_copy):.1f}); to_device returned after {1e3 * t_return:.2f} ms")


def step_times(size: str, precision: str, device: str, b: int = 32, t: int = 128, reps: int = 10,
               warmup: int = 3) -> tuple[float, float]:
    """Median seconds of one training step (forward, loss, backward, clip, AdamW) for ours and the reference."""
    from core.config import TrainConfig
    from core.optim import build_optimizer, clip_grad_norm

    ours, ref = pair(size, task="token-classification", device=device)
    ids, mask = batch(size, b, t, device)
    labels = torch.randint(0, 7, (b, t), device=device).masked_fill(~mask, -100)  # (B, T)
    dev_type = torch.device(device).type
    result = []
    for name, model in (("ours", ours), ("ref", ref)):
        model.train()
        opt = (build_optimizer(model, TrainConfig(lr=1e-5, weight_decay=0.01)) if name == "ours"
               else torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01))
        scaler = torch.amp.GradScaler(dev_type, enabled=precision == "fp16")
        times = []
        for i in range(warmup + reps):
            if dev_type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(device_type=dev_type, dtype=DTYPES[precision], enabled=precision != "fp32"):
                if name == "ours":
                    logits = model(ids, mask)  # (B, T, K)
                else:
                    logits = model(input_ids=ids, attention_mask=mask.long()).logits  # (B, T, K)
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            if name == "ours":
                clip_grad_norm(model.parameters(), 1.0)  # the engine's clipping (takes the sparse embedding gradient)
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            if dev_type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        result.append(statistics.median(times))
        model.to("cpu")
        del opt
    return result[0], result[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=["base", "mini"], default="base")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: bench/gpu_check.py needs a CUDA GPU and torch.cuda.is_available() is False here; "
              "nothing was run", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0)
    bf16 = torch.cuda.is_bf16_supported()
    print(f"gpu_check on {name} (bf16 {'yes' if bf16 else 'no'}), torch {torch.__version__}, size {args.size}")
    precisions = ["fp32", "fp16"] + (["bf16"] if bf16 else [])
    results = []

    def report(what: str, ok: bool, detail: str) -> None:
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {what}: {detail}", flush=True)

    for p in precisions:
        report(f"encoder parity {p}", *parity(args.size, p, "cuda"))
    for p in [x for x in precisions if x != "fp32"]:
        report(f"engine steps {p}", *engine_steps(p, "cuda"))
    report("pinned non-blocking copy overlap", *copy_overlap("cuda"))
    for p in precisions:
        ours, ref = step_times(args.size, p, "cuda")
        print(f"step time {args.size} 32x128 {p}: ours {1e3 * ours:.1f} ms, transformers {1e3 * ref:.1f} ms, "
              f"ratio {ref / ours:.2f}x", flush=True)
    print(f"gpu_check: {sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
