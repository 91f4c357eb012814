"""One command to check base-size loading end to end (no internet needed):

    python scripts/check_base_load.py

1. transformers writes a random xlm-roberta-base-sized XLMRobertaModel (250002 x 768, 12 layers)
   into a temp folder, with a small sentencepiece tokenizer trained here (a tokenizer file must
   exist; its size does not matter for this check);
2. our resolver loads it by path;
3. the same folder is served by http.server on 127.0.0.1 (random port) under
   /FacebookAI/xlm-roberta-base/resolve/main/, HF_ENDPOINT points there, the HF cache and our
   cache are empty temp folders, and load_pretrained("xlm-roberta-base") downloads it;
4. prints the max |difference| of hidden states vs transformers for both (must be < 1e-4).
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.tokenizer import XLMRTokenizer  # noqa: E402
from models import load_pretrained  # noqa: E402

BASE = dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
TOLERANCE = 1e-4


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main() -> int:
    from transformers import XLMRobertaConfig, XLMRobertaModel

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        served = tmp / "www" / "FacebookAI" / "xlm-roberta-base" / "resolve" / "main"
        served.mkdir(parents=True)
        torch.manual_seed(0)
        ref = XLMRobertaModel(XLMRobertaConfig(**BASE)).eval()
        ref.save_pretrained(served)
        XLMRTokenizer.train(["ein kleiner satz", "noch ein satz", "и ещё один"] * 50, 60, served)
        print(f"wrote {sum(f.stat().st_size for f in served.iterdir()) / 2**20:.0f} MB to {served}")

        g = torch.Generator().manual_seed(0)
        ids = torch.randint(4, BASE["vocab_size"], (4, 64), generator=g)  # (B, T)
        mask = torch.ones(4, 64, dtype=torch.bool)
        mask[1, 40:] = mask[3, 10:] = False
        ids[~mask] = 1
        with torch.no_grad():
            expected = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        del ref

        os.environ.update(XLT_CACHE=str(tmp / "xlt_cache"), HF_HUB_CACHE=str(tmp / "hf_hub"))
        os.environ.pop("HF_HOME", None)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp / "www")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"

        worst = 0.0
        for how, name in (("by path", served), ("by download", "xlm-roberta-base")):
            t0 = time.perf_counter()
            model, tok = load_pretrained(name)
            seconds = time.perf_counter() - t0
            with torch.no_grad():
                diff = (model(ids, mask) - expected)[mask].abs().max().item()
            worst = max(worst, diff)
            print(f"{how:12} {seconds:6.1f} s   max |ours - transformers| hidden states = {diff:.2e}")
            del model
        server.shutdown()
        cached = tmp / "xlt_cache" / "models" / "FacebookAI--xlm-roberta-base"
        print(f"downloaded into {cached.name}: {sorted(p.name for p in cached.iterdir())}")
    ok = worst < TOLERANCE
    print(f"{'OK' if ok else 'FAIL'}: worst difference {worst:.2e} (tolerance {TOLERANCE:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
