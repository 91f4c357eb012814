"""Benchmark: growing a base-size MLM (250,002 x 768 embedding + 30,000 rows) in the HF layout,
ours (models/extend.grow_vocabulary) next to two plain approaches, time and peak memory.

    python bench/extend.py                              # writes a random base-size checkpoint to a temp folder
    python bench/extend.py --new 30000 --init gaussian

A random xlm-roberta-base-sized XLMRForMaskedLM is written once in the HF layout (our
save_pretrained). Each approach then runs in its own fresh process (so peaks do not mix): load
the folder with load_pretrained (memory-mapped), grow the vocabulary, check the old rows, and
save the grown model to a new folder. Printed per approach: seconds of the growth alone, and the
peak resident memory above the loaded model (the inputs, read into memory: mmap=False) during the
growth, sampled every 2 ms. The grown matrix itself is (V + N) x H x 4 bytes = 820 MB.
- ours: one new (V + N, H) tensor, old rows copied in once, only the N new rows drawn;
- torch.cat: ``torch.cat([old, new_rows])`` (the new rows are a second temporary), bias likewise;
- re-init: the ``resize_token_embeddings`` pattern: a fresh nn.Embedding(V + N, H) initialised in
  full, then the old rows copied over it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASE = dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
APPROACHES = ("ours", "torch.cat", "re-init")


from bench.memory import PeakMemory, rss_mb  # noqa: E402


def write_checkpoint(folder: Path) -> None:
    from data.tokenizer import XLMRTokenizer
    from models.encoder import XLMRConfig
    from models.export import save_pretrained
    from models.heads import XLMRForMaskedLM

    model = XLMRForMaskedLM(XLMRConfig(**BASE))
    model.init_weights(torch.Generator().manual_seed(0))
    save_pretrained(model, None, folder)
    XLMRTokenizer.train(["ein kleiner satz", "noch ein satz", "и ещё один"] * 50, 60, folder)  # a tokenizer file


@torch.no_grad()
def plain_grow(model, n_new: int, how: str) -> None:
    emb = model.encoder.embeddings.word_embeddings
    old = emb.weight
    V, H = old.shape
    if how == "torch.cat":
        grown = torch.cat([old, torch.randn(n_new, H) * 0.02])  # (V + N, H)
    else:  # resize_token_embeddings: a whole new table, initialised, then the old rows copied in
        fresh = nn.Embedding(V + n_new, H)
        fresh.weight.normal_(0.0, 0.02)
        fresh.weight[:V] = old
        grown = fresh.weight.data
    emb.weight = nn.Parameter(grown)
    emb.num_embeddings = V + n_new
    del old
    head = model.lm_head
    head.bias = nn.Parameter(torch.cat([head.bias.detach(), torch.zeros(n_new)]))
    head.decoder.weight = emb.weight
    model.config.vocab_size = V + n_new


def child(folder: Path, approach: str, n_new: int, init: str) -> dict:
    from models import load_pretrained
    from models.export import save_pretrained
    from models.extend import grow_vocabulary

    model, _ = load_pretrained(folder, task="masked-lm", with_tokenizer=False, mmap=False)  # inputs resident
    probe = model.encoder.embeddings.word_embeddings.weight[[5, 250001]].clone()  # (2, H)
    torch.manual_seed(0)
    with PeakMemory() as mem:
        start = time.perf_counter()
        if approach == "ours":
            grow_vocabulary(model, n_new, init=init, generator=torch.Generator().manual_seed(0))
        else:
            plain_grow(model, n_new, approach)
        seconds = time.perf_counter() - start
    weight = model.encoder.embeddings.word_embeddings.weight
    assert weight.shape == (BASE["vocab_size"] + n_new, BASE["hidden_size"])
    assert torch.equal(weight[[5, 250001]], probe) and model.lm_head.decoder.weight is weight
    with tempfile.TemporaryDirectory() as out, PeakMemory() as save_mem:
        start = time.perf_counter()
        save_pretrained(model, None, out)
        save_seconds = time.perf_counter() - start
    return {"approach": approach, "grow_s": seconds, "grow_peak_mb": mem.growth, "save_s": save_seconds,
            "save_peak_mb": save_mem.growth}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", type=int, default=30000)
    parser.add_argument("--init", default="random", help="our init: random | gaussian")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default="", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        print(json.dumps(child(Path(a.folder), a.child, a.new, a.init)))
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); base {BASE['vocab_size']:,} x "
          f"{BASE['hidden_size']} + {a.new:,} rows (embedding {BASE['vocab_size'] * 768 * 4 / 2**20:.0f} MB fp32, "
          f"new rows {a.new * 768 * 4 / 2**20:.0f} MB)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "base"
        write_checkpoint(folder)
        rows = []
        for approach in APPROACHES:
            out = subprocess.run([sys.executable, __file__, "--child", approach, "--folder", str(folder),
                                  "--new", str(a.new), "--init", a.init], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ours = rows[0]
    print(f"{'approach':12} {'grow s':>8} {'peak MB over inputs':>20} {'save s':>8} {'save peak MB':>13}")
    for r in rows:
        label = f"ours ({a.init})" if r["approach"] == "ours" else r["approach"]
        print(f"{label:12} {r['grow_s']:8.2f} {r['grow_peak_mb']:20.0f} {r['save_s']:8.2f} {r['save_peak_mb']:13.0f}")
    for r in rows[1:]:
        print(f"{r['approach']} / ours: time {r['grow_s'] / ours['grow_s']:.2f}x, peak memory "
              f"{r['grow_peak_mb'] / max(ours['grow_peak_mb'], 1):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
