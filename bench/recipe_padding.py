"""How many pieces the Trainer recipe's batches hold against the real ones (the e2e benchmark's data).

    python bench/recipe_padding.py                 # German PAN-X train, the mini's tokenizer, batches of 16

The recipe (bench/e2e.py) tokenizes each sentence with the fast tokenizer (truncated at 128 pieces),
draws random batches of 16 and pads each to its longest sentence; ours packs the real pieces. Printed
for three shuffles: real pieces, padded pieces and their ratio, and the same ratio for attention's
(T x T) work. transformers is a bench-only oracle here.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "runs/mini_pretrain/model"))
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    from transformers import XLMRobertaTokenizerFast

    from core.config import load_config
    from data.sources import load_split

    train = load_split(load_config(ROOT / "configs/mini_zeroshot_de.yaml").data, "de", "train")
    tok = XLMRobertaTokenizerFast(tokenizer_file=str(Path(args.model) / "tokenizer.json"))
    lens = [len(ids) for ids in tok([s.words for s in train], is_split_into_words=True, truncation=True,
                                    max_length=128)["input_ids"]]
    real, b = sum(lens), args.batch_size
    print(f"{len(lens):,} sentences, {real:,} real pieces ({real / len(lens):.1f} a sentence)")
    for seed in (42, 1, 2):
        order = list(range(len(lens)))
        random.Random(seed).shuffle(order)
        batches = [[lens[i] for i in order[k:k + b]] for k in range(0, len(order), b)]
        padded = sum(len(x) * max(x) for x in batches)
        attention = sum(len(x) * max(x) ** 2 for x in batches) / sum(n * n for n in lens)
        print(f"shuffle {seed}: padded pieces {padded:,}, padded / real {padded / real:.3f}, attention {attention:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
