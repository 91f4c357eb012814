"""Benchmark: our CRF vs pytorch-crf, loss forward+backward and Viterbi, side by side.

    python bench/crf.py [--repeats 30] [--threads 1]

Both run in one process on the same random batch (lengths drawn uniformly in [W/2, W], one
sentence of full length), interleaved. "ours" is CRF(kernels="fast") (models/crf_fast.py, what
kernels=auto runs); the reference kernels (models/crf.py as written) are timed too, on the same
batch. Prints the best-of-N time of each (robust to the load of a shared machine), the ratio
(theirs / ours, > 1 means we are faster) and whether both give the same loss and the same paths.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from models.crf import CRF  # noqa: E402


def paired_ms(ours, theirs, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` times (ms), the two functions interleaved so background load hits both alike."""
    ours(), theirs()  # warm-up
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        for fn, times in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return min(t_ours), min(t_theirs)


def bench_size(B: int, W: int, K: int, repeats: int) -> None:
    import torchcrf

    gen = torch.Generator().manual_seed(0)
    ours = CRF(K, kernels="fast")
    reading = CRF(K, kernels="reference")
    ref = torchcrf.CRF(K, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    reading.load_state_dict(ours.state_dict())
    emissions = torch.randn(B, W, K, generator=gen, requires_grad=True)  # (B, W, K)
    tags = torch.randint(K, (B, W), generator=gen)  # (B, W)
    lengths = torch.randint(W // 2, W + 1, (B,), generator=gen)
    lengths[0] = W
    mask = torch.arange(W)[None] < lengths[:, None]  # (B, W)

    def loss_ours():
        ours(emissions, tags, mask).backward()

    def loss_ref():
        (-ref(emissions, tags, mask, reduction="mean")).backward()

    def loss_reading():
        reading(emissions, tags, mask).backward()

    same_loss = torch.allclose(ours(emissions, tags, mask), -ref(emissions, tags, mask, reduction="mean"),
                               rtol=1e-5, atol=1e-4)
    same_loss = same_loss and torch.allclose(reading(emissions, tags, mask), ours(emissions, tags, mask),
                                             rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        paths = ours.decode(emissions, mask)
        ref_paths = ref.decode(emissions, mask)
    same_paths = all(paths[b, :lengths[b]].tolist() == ref_paths[b] for b in range(B))

    same_paths = same_paths and torch.equal(paths, reading.decode(emissions, mask))
    t_loss, r_loss = paired_ms(loss_ours, loss_ref, repeats)
    t_read, _ = paired_ms(loss_reading, loss_ref, max(1, repeats // 3))
    with torch.no_grad():
        t_dec, r_dec = paired_ms(lambda: ours.decode(emissions, mask), lambda: ref.decode(emissions, mask), repeats)
        t_read_dec, _ = paired_ms(lambda: reading.decode(emissions, mask), lambda: ref.decode(emissions, mask),
                                  max(1, repeats // 3))
    print(f"B={B} W={W} K={K}")
    print(f"  loss fwd+bwd  ours {t_loss:7.2f} ms  pytorch-crf {r_loss:7.2f} ms  ratio {r_loss / t_loss:5.1f}x"
          f"  same loss: {same_loss}")
    print(f"  viterbi       ours {t_dec:7.2f} ms  pytorch-crf {r_dec:7.2f} ms  ratio {r_dec / t_dec:5.1f}x"
          f"  same paths: {same_paths}")
    print(f"  reference kernels: loss fwd+bwd {t_read:7.2f} ms ({r_loss / t_read:4.1f}x pytorch-crf), "
          f"viterbi {t_read_dec:7.2f} ms ({r_dec / t_read_dec:4.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for B, W, K in [(32, 40, 7), (32, 128, 9)]:
        bench_size(B, W, K, args.repeats)


if __name__ == "__main__":
    main()
