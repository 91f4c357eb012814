"""Benchmark: NER prediction throughput -- our predict API vs the transformers equivalent, side by side.

    python bench/predict.py                                         # 20,000 PAN-X test sentences, bf16 + fp32
    python bench/predict.py --sentences 2000 --reps 1 --precisions fp32   # quick

Ours: tasks.ner.predict_words (the public API evaluate.py --predict uses): words -> windows of at
most 128 pieces (longer sentences cut with overlap, each word owned by one window), length-
bucketed batches of 32, the encoder with ``--kernels`` (default fast, models/encoder_fast.py:
skipping pads and running its last layer's queries and FFN on the owned first pieces only),
autocast in the given precision, argmax, stitched back to one tag per word.
Reference: what a transformers user writes: XLMRobertaTokenizerFast(is_split_into_words=True,
truncation at 128, padding to the longest of the batch), batches of 32 in corpus order,
XLMRobertaForTokenClassification (sdpa) under the same autocast, argmax, and the word-level
aggregation (each word's first sub-token, via word_ids()). Words cut off by the truncation get
no prediction there (counted and printed); ours predicts every word, and the bench checks it.

Both models hold the same weights: the mini architecture (4 layers, 256 wide, 16k vocabulary)
with the mini tokenizer (runs/mini_pretrain/model if it exists, else random weights of its
config with runs/mini_pretrain/tokenizer -- throughput does not depend on the values). Sentences:
the first N/5 of each PAN-X test file (de, en, es, nl, ru). Repetitions alternate the order;
median sentences/s and the ratio ours / reference. Roofline: model FLOPs of the forward on the
real tokens, the last layer's queries on the owned first pieces (the useful work, bench/flops.py),
over the measured GEMM peak of the precision (bench/matmul.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.flops import step_flops  # noqa: E402
from bench.matmul import gemm_peak  # noqa: E402
from bench.same_weights import ours_like  # noqa: E402
from core.config import load_config  # noqa: E402
from core.paths import data_root  # noqa: E402
from core.precision import cpu_supports_bf16  # noqa: E402
from data.batching import LengthBucketSampler  # noqa: E402
from data.conll import read_conll  # noqa: E402
from data.labels import build_label_set  # noqa: E402
from data.tokenizer import XLMRTokenizer  # noqa: E402
from data.windows import build_windows  # noqa: E402
from tasks.ner import predict_words  # noqa: E402

LANGS = ("de", "en", "es", "nl", "ru")
MINI = dict(vocab_size=16000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
            max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)


def load_sentences(n: int):
    per = -(-n // len(LANGS))
    out = []
    for lang in LANGS:
        out.extend(read_conll(data_root() / "panx" / lang / "test.conllu", lang=lang)[:per])
    return out[:n]


def load_models(model_dir: Path, tokenizer_dir: Path, num_labels: int, kernels: str = "fast"):
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification, XLMRobertaTokenizerFast

    torch.manual_seed(0)
    if (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file():
        ref = XLMRobertaForTokenClassification.from_pretrained(model_dir, num_labels=num_labels,
                                                               attn_implementation="sdpa")
        tokenizer_dir, source = model_dir, str(model_dir)
    else:
        tok = XLMRTokenizer.from_pretrained(tokenizer_dir)
        hf_config = XLMRobertaConfig(**(MINI | dict(vocab_size=tok.vocab_size)), num_labels=num_labels)
        hf_config._attn_implementation = "sdpa"
        ref = XLMRobertaForTokenClassification(hf_config)
        source = f"random weights, mini config, tokenizer {tokenizer_dir}"
    ref.eval()
    ours = ours_like(ref, "token-classification", num_labels, kernels)
    ours.eval()
    tokenizer = XLMRTokenizer.from_pretrained(tokenizer_dir)
    hf_tok = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"))
    return ours, ref, tokenizer, hf_tok, source


@torch.inference_mode()
def reference_predict(model, hf_tok, sentences, id2tag, batch_size: int, max_length: int, precision: str):
    """The transformers recipe: tag per word (first sub-token); None for words cut off by truncation."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    out = []
    for lo in range(0, len(sentences), batch_size):
        chunk = sentences[lo:lo + batch_size]
        enc = hf_tok([s.words for s in chunk], is_split_into_words=True, truncation=True, max_length=max_length,
                     padding=True, return_tensors="pt")
        with ctx:
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        preds = logits.float().argmax(-1).tolist()  # (B, T)
        for b, sent in enumerate(chunk):
            tags = [None] * len(sent.words)
            previous = None
            for t, w in enumerate(enc.word_ids(b)):
                if w is not None and w != previous:
                    tags[w] = id2tag[preds[b][t]]
                previous = w
            out.append(tags)
    return out


def forward_flops(size: dict, windows, num_labels: int) -> int:
    """Model FLOPs of the forward over these windows: real tokens only, the last layer's queries on
    the owned first pieces, the ones a word's tag is read from (bench/flops.py)."""
    return step_flops(size["hidden_size"], size["num_hidden_layers"], size["intermediate_size"],
                      [len(w) for w in windows], ("classifier", num_labels),
                      selected=[sum(i >= 0 for i in w.word_ids) for w in windows])["total"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--model", default=str(ROOT / "runs/mini_pretrain/model"))
    ap.add_argument("--tokenizer", default=str(ROOT / "runs/mini_pretrain/tokenizer"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--kernels", choices=("fast", "reference"), default="fast",
                    help="our encoder's kernels (models/encoder_fast.py)")
    args = ap.parse_args()
    model_dir, tokenizer_dir = Path(args.model), Path(args.tokenizer)
    if not (model_dir / "config.json").is_file() and not tokenizer_dir.is_dir():
        print(f"error: neither a model at {model_dir} (--model) nor a tokenizer at {tokenizer_dir} (--tokenizer); "
              f"build the mini first: python train.py configs/mini_pretrain.yaml", file=sys.stderr)
        sys.exit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
    labels = build_label_set()
    id2tag = [labels.tag(i) for i in range(len(labels))]
    data_cfg = load_config(None).data
    sentences = load_sentences(args.sentences)
    ours, ref, tokenizer, hf_tok, source = load_models(Path(args.model), Path(args.tokenizer), len(labels),
                                                          args.kernels)
    size = ref.config.to_dict()
    n_words = sum(len(s.words) for s in sentences)
    windows = build_windows(sentences, tokenizer, labels, data_cfg.max_length, data_cfg.stride)
    long = len(windows) - len(sentences)  # every sentence has one window, a long one more
    flops = forward_flops(size, windows, len(labels))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fast bf16 (amx/avx512_bf16): "
          f"{cpu_supports_bf16()}; model: {source}")
    print(f"{len(sentences):,} PAN-X test sentences ({', '.join(LANGS)}), {n_words:,} words, {len(windows):,} windows "
          f"of <= {data_cfg.max_length} pieces ({long} extra windows from long sentences), batch {args.batch_size}; "
          f"{flops / 1e9:.1f} GFLOP of forward on the real tokens (the last layer on the owned first pieces)")
    for precision in args.precisions.split(","):
        peak = gemm_peak(precision)
        times = {"ours": [], "ref": []}
        results = {}
        for rep in range(args.reps + 1):  # rep 0 = warm-up on the first 500 sentences (not timed)
            order = ("ours", "ref") if rep % 2 == 0 else ("ref", "ours")
            batch = sentences if rep else sentences[:500]
            for name in order:
                t0 = time.perf_counter()
                if name == "ours":
                    results[name] = predict_words(ours, batch, tokenizer, labels, data_cfg, args.batch_size,
                                                  precision)[0]
                else:
                    results[name] = reference_predict(ref, hf_tok, batch, id2tag, args.batch_size,
                                                      data_cfg.max_length, precision)
                if rep > 0:
                    times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        build_windows(sentences, tokenizer, labels, data_cfg.max_length, data_cfg.stride)
        t_windows = time.perf_counter() - t0
        ours_tags, ref_tags = results["ours"], results["ref"]
        # every word gets exactly one prediction from ours (stitch raises on none / two)
        assert len(ours_tags) == len(sentences) and all(len(t) == len(s.words) and None not in t
                                                        for t, s in zip(ours_tags, sentences)), "a word lost its tag"
        missing = sum(t is None for tags in ref_tags for t in tags)
        both = [(a, b) for ta, tb in zip(ours_tags, ref_tags) for a, b in zip(ta, tb) if b is not None]
        agree = sum(a == b for a, b in both) / max(len(both), 1)
        t_ours, t_ref = statistics.median(times["ours"]), statistics.median(times["ref"])
        ratios = [r / o for o, r in zip(times["ours"], times["ref"])]
        g_ours, g_ref = flops / t_ours / 1e9, flops / t_ref / 1e9
        print(f"{precision}: ours {len(sentences) / t_ours:7.0f} sent/s ({t_ours:6.1f} s) | transformers "
              f"{len(sentences) / t_ref:7.0f} sent/s ({t_ref:6.1f} s) | ratio {statistics.median(ratios):.2f}x "
              f"(median of {len(ratios)}: {', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"      every word tagged once by ours: True ({n_words:,} words); transformers left {missing:,} words "
              f"untagged (truncated); same tag on {agree:.4%} of the words both tagged")
        print(f"      roofline: ours {g_ours:.0f} GFLOP/s = {100 * g_ours / peak:.0f}%, transformers {g_ref:.0f} GFLOP/s "
              f"= {100 * g_ref / peak:.0f}% of the measured {precision} GEMM peak ({peak:.0f} GFLOP/s); "
              f"end to end incl. tokenization (ours: words -> windows alone took {t_windows:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
