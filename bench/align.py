"""Benchmarks of the alignment stack (not tests): EM throughput of our fast_align beside eflomal, and the
memory bound of contextual word retrieval over a ~30k-pair pool.

    OMP_NUM_THREADS=1 python bench/align.py em          # ours vs eflomal on opennmt_ende train + de-en gold
    OMP_NUM_THREADS=1 python bench/align.py memory      # retrieval over Multi30k train de-en (29k pairs)
    OMP_NUM_THREADS=1 python bench/align.py memory --pairs 3000   # the first 3,000 of them (CSLS time grows as Q^2)

em: both aligners see the same lower-cased 10,100 de-en pairs; throughput = sentence pairs x EM iterations
per second for one direction (ours: 4 EM iterations + the Viterbi pass, fast_align's default of 5), and the
wall time of both directions; AER of each on the 100 gold pairs. eflomal (pip sdist, built with the C
compiler) runs its own defaults (3 samplers, Markov chain Monte Carlo, IBM1 -> HMM -> fertility); it is an
outside reference only, never imported by the project.
memory: the pool's aligned word pairs get stand-in vectors (random, H = 256: memory does not depend on the
values), and retrieval_accuracy runs CSLS + NN both ways. The bound (bound_mb) = the CSLS chunk budget
(memory_mb, independent of Q) + per aligned pair: the two (Q, H) fp32 vector tables, the two padded
product-dtype operands of models/csls.py (bf16 here, d + 4 rounded up to 16 columns), and one direction's
neighbourhood state (each row's keep = max(k, 1) + ROW_MARGIN candidates, ids + cosines, their gathered
copies while scoring, each column's top k + COL_MARGIN + 1); nothing grows as Q^2. The peak resident growth
is measured (VmHWM, reset before the call).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.memory import status_mb  # noqa: E402
from core.paths import data_root  # noqa: E402
from data.parallel import load_gold, multi30k, opennmt_train, read_pharaoh, swap  # noqa: E402
from models.word_align import FastAlign, aer, symmetrize  # noqa: E402


def corpus():
    root = data_root()
    gold = load_gold(root, "de-en")
    train = swap(opennmt_train(root))
    src = [[w.lower() for w in s] for s in train.src] + gold.src
    tgt = [[w.lower() for w in t] for t in train.tgt] + gold.tgt
    return src, tgt, gold


def score(name, forward, reverse, gold):
    n = len(gold)
    sure, possible = [l.sure for l in gold.links], [l.possible for l in gold.links]
    for method in ("intersect", "grow-diag-final"):
        r = aer(symmetrize(forward[-n:], reverse[-n:], method), sure, possible)
        print(f"{name:10s} {method:16s} AER {r['aer']:.3f}  P {r['precision']:.3f}  R {r['recall']:.3f}")


def bench_em() -> None:
    src, tgt, gold = corpus()
    pairs = len(src)
    start = time.perf_counter()
    model = FastAlign().fit(src, tgt)
    forward = model.align(src, tgt)
    one = time.perf_counter() - start
    backward = FastAlign().fit(tgt, src).align(tgt, src)
    both = time.perf_counter() - start
    reverse = [{(i, j) for j, i in l} for l in backward]
    print(f"ours       one direction {one:6.1f} s = {pairs * model.iterations / one:8.0f} pairs x iterations/s; "
          f"both directions {both:6.1f} s ({torch.get_num_threads()} thread)")
    score("ours", forward, reverse, gold)
    try:
        import eflomal
    except ImportError:
        print("eflomal: not installed (pip install --no-binary eflomal eflomal builds it with the C compiler)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fwd, rev = Path(tmp) / "fwd", Path(tmp) / "rev"
        start = time.perf_counter()
        eflomal.Aligner().align([" ".join(s) for s in src], [" ".join(t) for t in tgt],
                                links_filename_fwd=str(fwd), links_filename_rev=str(rev), quiet=True)
        took = time.perf_counter() - start
        lens = ([len(s) for s in src], [len(t) for t in tgt])
        ef_fwd = [l.sure for l in read_pharaoh(fwd, *lens)]
        ef_rev = [l.sure for l in read_pharaoh(rev, *lens)]
    print(f"eflomal    both directions {took:6.1f} s = {pairs / took:8.0f} pairs/s (its own sampler schedule); "
          f"ours / eflomal wall time {both / took:.2f}")
    score("eflomal", ef_fwd, ef_rev, gold)


def bound_mb(Q: int, H: int, memory_mb: float, k: int = 10) -> tuple[float, float]:
    """(the part that grows with Q, the whole bound) in MB for Q aligned pairs (see the module doc)."""
    from models.csls_fast import COL_MARGIN, ROW_MARGIN, product_dtype

    keep, K = max(k, 1) + ROW_MARGIN, k + COL_MARGIN
    operand = -(-(H + 4) // 16) * 16 * (torch.finfo(product_dtype(torch.device("cpu"))).bits // 8)
    per_pair = (2 * H * 4 + 2 * operand  # fp32 tables + product operands, both sides
                + keep * (8 + 4) + (K + 1) * (8 + 4)  # candidates (ids, cosines), column top-K (values, rows)
                + keep * (8 + 4 + 4 + 4))  # while scoring: gathered ids, cosines, CSLS, r_tgt of the candidates
    linear = Q * per_pair / 2**20
    return linear, linear + memory_mb


def bench_memory(memory_mb: float, max_pairs: int = 0) -> None:
    from models.retrieval import retrieval_accuracy
    from models.word_align import align_corpus

    train = multi30k(data_root(), "train", "de", "en")
    cache = Path("runs/align_eval/bench-multi30k-train-de-en.talp")
    shared = Path("runs/align_eval/multi30k-de-en.all.talp")  # align_report.py's links: train + val + test
    if shared.is_file() and not cache.is_file():
        parts = [train] + [multi30k(data_root(), split, "de", "en") for split in ("val", "test_2016_flickr")]
        lens = [[len(s) for p in parts for s in p.src], [len(t) for p in parts for t in p.tgt]]
        links = [l.sure for l in read_pharaoh(shared, *lens)][:len(train)]
    elif cache.is_file():
        links = [l.sure for l in read_pharaoh(cache, [len(s) for s in train.src], [len(t) for t in train.tgt])]
    else:
        links = align_corpus(train.src, train.tgt)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text("".join(" ".join(f"{i}-{j}" for i, j in sorted(l)) + "\n" for l in links))
    H = 256
    if max_pairs:  # the first N sentence pairs of the pool (links from the whole pool's alignment)
        Q_all = sum(map(len, links))
        linear, whole = bound_mb(Q_all, H, memory_mb)
        print(f"whole pool: {len(train)} pairs, Q = {Q_all} aligned word pairs; bound there "
              f"{linear:.0f} MB (grows with Q) + {memory_mb:.0f} MB (CSLS chunks) = {whole:.0f} MB")
        train, links = train.subset(range(max_pairs)), links[:max_pairs]
    gen = torch.Generator().manual_seed(0)
    src_vecs = [torch.randn(len(s), H, generator=gen) for s in train.src]  # stand-ins for the encoder's
    tgt_vecs = [torch.randn(len(t), H, generator=gen) for t in train.tgt]
    pairs = [(s, i, j) for s, l in enumerate(links) for i, j in sorted(l)]
    Q = len(pairs)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    before = status_mb("VmHWM")
    start = time.perf_counter()
    retrieval_accuracy(src_vecs, tgt_vecs, pairs, memory_mb=memory_mb)
    took = time.perf_counter() - start
    growth = status_mb("VmHWM") - before
    linear, whole = bound_mb(Q, H, memory_mb)
    print(f"retrieval pool: {len(train)} pairs, Q = {Q} aligned word pairs ({2 * Q} vectors, H {H}); "
          f"CSLS + NN both directions {took:.1f} s; peak RSS growth {growth:.0f} MB; "
          f"bound {linear:.0f} MB (grows with Q) + {memory_mb:.0f} MB (CSLS chunks) = {whole:.0f} MB "
          f"(a full Q x Q fp32 matrix would be {Q * Q * 4 / 2**30:.0f} GB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["em", "memory"])
    parser.add_argument("--memory-mb", type=float, default=256)
    parser.add_argument("--pairs", type=int, default=0, help="memory: the first N sentence pairs (0 = all 29,000)")
    args = parser.parse_args()
    bench_em() if args.what == "em" else bench_memory(args.memory_mb, args.pairs)


if __name__ == "__main__":
    main()
