"""Benchmark: peak memory of NER prediction against the size of the input (it must stay flat).

    python bench/predict_memory.py                          # 20,000 and 200,000 sentences
    python bench/predict_memory.py --sizes 2000,20000 --model runs/mini_pretrain/model

Each (input size, part size) runs in its own fresh process: PAN-X test sentences (de, en, es, nl,
repeated to the size), a model in the HF layout (--model; default a tiny random checkpoint written
here, since memory, not accuracy, is measured), then ``tasks.ner.predict_words``. Printed: the RSS
with the sentences read (the input itself), and the peak growth above it while predicting, for
predict_words' parts of 4,096 sentences and for one part holding the whole input (what the growth
would be if every window and per-piece output were held at once), with the fast CPU kernels and with
the reference ones. The fast kernels' oneDNN linear keeps a cache of compiled kernels, one per
matrix shape (up to ONEDNN_PRIMITIVE_CACHE_CAPACITY = 4,096 of them, ~300 KB each): bounded, but it
fills as packed batches bring new row counts, so it shows as growth until it is full. The returned
tags (one string reference per word) are the only output that grows with the input.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.memory import status_mb  # noqa: E402


def one(model_dir: str, n: int, chunk: int, kernels: str) -> dict:
    import torch

    from core.paths import data_root
    from data.conll import read_conll
    from models import load_pretrained
    from tasks.ner import predict_words

    torch.set_num_threads(1)
    pool = [s for lang in ("de", "en", "es", "nl") for s in read_conll(data_root() / "panx" / lang / "test.conllu")]
    sentences = [pool[i % len(pool)].words for i in range(n)]
    model, tok = load_pretrained(model_dir, task="token-classification", num_labels=7, kernels=kernels)
    import gc
    gc.collect()
    base = status_mb("VmRSS")
    tags, _ = predict_words(model, sentences, tok, chunk=chunk)
    assert len(tags) == n
    tags_mb = (sys.getsizeof(tags) + sum(map(sys.getsizeof, tags))) / 2**20  # the lists; tag strings are shared
    return {"base_mb": base, "peak_mb": status_mb("VmHWM"), "words": sum(map(len, sentences)), "tags_mb": tags_mb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,200000")
    ap.add_argument("--model", default="")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        n, chunk, kernels = args.one.split(",")
        print(json.dumps(one(args.model, int(n), int(chunk), kernels)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if not model:
            from core.paths import data_root
            from data.conll import read_conll
            from tasks.ner import write_tiny_checkpoint

            model = str(write_tiny_checkpoint(Path(tmp) / "tiny", read_conll(data_root() / "panx/de/train.conllu")[:2000]))
        print(f"model: {model}")
        for n in map(int, args.sizes.split(",")):
            for chunk, kernels, what in ((4096, "fast", "fast, parts of 4,096"), (10**9, "fast", "fast, one part"),
                                         (4096, "reference", "reference, parts")):
                proc = subprocess.run([sys.executable, __file__, "--one", f"{n},{chunk},{kernels}", "--model", model],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"error: {n} sentences failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    return 1
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"{n:>8,} sentences ({r['words']:,} words), {what:>20}: input read {r['base_mb']:,.0f} MB, "
                      f"peak growth while predicting {r['peak_mb'] - r['base_mb']:,.0f} MB "
                      f"(of it the returned tags: {r['tags_mb']:,.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
