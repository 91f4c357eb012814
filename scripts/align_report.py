"""The contextual-alignment experiment's measurements, tables and plot (docs/ALIGN.md, RESULTS.md).

    python scripts/align_report.py aer --model runs/mini_pretrain/model          # AER of both aligners, de-en gold
    python scripts/align_report.py retrieval --model runs/mini_pretrain/model --out runs/align_eval/before.json
    python scripts/align_report.py table runs/align_eval/before.json runs/align_eval/after_l2.json
    python scripts/align_report.py plot runs/align_eval/before.json runs/align_eval/after_l2.json --out runs/align_eval/layers.png
    python scripts/align_report.py ner base=runs/mini_zeroshot_de_s42,runs/mini_zeroshot_de_s1 l2=runs/...   # NER means

Test sets: Multi30k test_2016_flickr (de-en, de-fr, en-fr; word alignments by models/word_align.py with
train + val + test aligned together, intersected, 1-to-1), newstest2012 (opennmt_ende val, with its own
automatic alignments, 1-to-1 links kept; German as source), FLORES-200 devtest de-en, de-fr, en-fr (aligned
together with the WMT news test sets of the pair other than newstest2012: scripts' news_files). Alignments are
cached in runs/align_eval/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.checkpoint import atomic_write_text  # noqa: E402
from core.paths import data_root  # noqa: E402
from data.parallel import (ParallelCorpus, flores, load_gold, multi30k, opennmt_train, opennmt_val,  # noqa: E402
                           read_parallel, read_pharaoh, swap)
from models.retrieval import aligned_pairs, retrieval_accuracy, word_class, word_vectors  # noqa: E402
from models.word_align import aer, align_both, align_corpus, one_to_one, similarity_align, symmetrize  # noqa: E402

CACHE = Path("runs/align_eval")
M30K_PAIRS = (("de", "en"), ("de", "fr"), ("en", "fr"))


def cached_links(name: str, corpus: ParallelCorpus, compute) -> list[set]:
    path = CACHE / f"{name}.talp"
    if path.is_file():
        return [l.sure for l in read_pharaoh(path, [len(s) for s in corpus.src], [len(t) for t in corpus.tgt])]
    links = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(f"{i}-{j}" for i, j in sorted(l)) + "\n" for l in links))
    return links


def joint(parts: list[ParallelCorpus]) -> ParallelCorpus:
    return ParallelCorpus(parts[0].src_lang, parts[0].tgt_lang, [s for p in parts for s in p.src],
                          [t for p in parts for t in p.tgt])


def test_sets(root: Path, which: list[str]) -> dict[str, tuple[ParallelCorpus, list[set]]]:
    """{name: (corpus, 1-to-1 links)} for the requested test sets."""
    out = {}
    for src, tgt in M30K_PAIRS:
        name = f"multi30k-{src}-{tgt}"
        if "multi30k" not in which:
            continue
        parts = [multi30k(root, split, src, tgt) for split in ("train", "val", "test_2016_flickr")]
        everything = joint(parts)
        links = cached_links(name + ".all", everything, lambda: align_corpus(everything.src, everything.tgt))
        out[name] = (parts[2], links[-len(parts[2]):])
    if "newstest2012" in which:
        val = swap(opennmt_val(root))  # German as source, as the other sets
        out["newstest2012-de-en"] = (val, [one_to_one(l.sure) for l in val.links])
    if "flores" in which:
        for src, tgt in M30K_PAIRS:
            everything, test = flores_with_news(root, src, tgt)
            links = cached_links(f"flores-{src}-{tgt}.all", everything,
                                 lambda: align_corpus(everything.src, everything.tgt))
            out[f"flores-{src}-{tgt}"] = (test, links[-len(test):])
    return out


def news_files(root: Path, src: str, tgt: str) -> list[tuple[Path, Path]]:
    """The WMT news test sets of one pair (src file, tgt file), newstest2012 left out (it is opennmt_ende val,
    a test set here). de-fr: the years whose English side is the same file in wmt_de-en and wmt_fr-en
    (news-test2008 .. newstest2013, newssyscomb2009: line-aligned through it)."""
    base = root / "wmt_flores"
    if (src, tgt) in (("en", "de"), ("fr", "en"), ("fr", "de")):
        return [(b, a) for a, b in news_files(root, tgt, src)]
    if (src, tgt) == ("de", "en"):
        files = [(p, p.with_suffix(".en")) for p in sorted((base / "wmt_de-en").glob("*.de"))]
    elif (src, tgt) == ("en", "fr"):
        files = [(p, p.with_suffix(".fr")) for p in sorted((base / "wmt_fr-en").glob("*.en"))]
    elif (src, tgt) == ("de", "fr"):
        same_en = lambda fr: (base / "wmt_de-en" / f"{fr.stem}.en").is_file() and \
            (base / "wmt_de-en" / f"{fr.stem}.en").read_bytes() == fr.with_suffix(".en").read_bytes()
        files = [(base / "wmt_de-en" / f"{fr.stem}.de", fr) for fr in sorted((base / "wmt_fr-en").glob("*.fr"))
                 if same_en(fr)]
    else:
        raise ValueError(f"no WMT news text for {src}-{tgt} in {base}")
    return [f for f in files if "newstest2012" not in f[0].name]


def flores_with_news(root: Path, src: str, tgt: str) -> tuple[ParallelCorpus, ParallelCorpus]:
    """(the WMT news pairs + FLORES-200 devtest, FLORES alone): FLORES has no gold links, so our fast_align
    aligns it together with the news text (unsupervised EM sees all); its links are the last len(test) rows."""
    test = flores(root, src, tgt)
    news = [read_parallel(a, b, src, tgt, name=f"{a.name}|{b.name}") for a, b in news_files(root, src, tgt)]
    return joint(news + [test]), test


def retrieval(args) -> None:
    from models import load_pretrained

    torch.manual_seed(0)
    model, tok = load_pretrained(args.model)
    layers = list(range(len(model.layers) + 1))
    results = {"model": args.model, "layers": layers, "sets": {}}
    for name, (corpus, links) in test_sets(data_root(), args.sets.split(",")).items():
        start = time.perf_counter()
        src_vecs, src_ok = word_vectors(model, tok, corpus.src, layers, args.pooling)
        tgt_vecs, tgt_ok = word_vectors(model, tok, corpus.tgt, layers, args.pooling)
        pairs = aligned_pairs(links, src_ok, tgt_ok)
        src_cls = [word_class(corpus.src[s][i], corpus.src_lang) for s, i, _ in pairs]
        tgt_cls = [word_class(corpus.tgt[s][j], corpus.tgt_lang) for s, _, j in pairs]
        results["sets"][name] = {str(l): retrieval_accuracy(src_vecs[l], tgt_vecs[l], pairs, src_classes=src_cls,
                                                            tgt_classes=tgt_cls) for l in layers}
        top = results["sets"][name][str(layers[-1])]
        print(f"{name}: {len(pairs)} aligned pairs, last layer CSLS s2t {top['csls_s2t']:.3f} "
              f"t2s {top['csls_t2s']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
        atomic_write_text(Path(args.out), json.dumps(results, indent=1) + "\n")  # after every set: a cut run keeps its sets


def aer_table(args) -> None:
    """fast_align (ours) trained on the gold sentences + opennmt_ende train (lower-cased), and the encoder's
    mutual argmax per layer, both scored on the 100 de-en gold pairs."""
    root = data_root()
    gold = load_gold(root, "de-en")
    for file, line, what in gold.problems:
        print(f"note: {file}:{line}: {what} (skipped)")
    train = swap(opennmt_train(root))  # German source, as the gold set
    src = [[w.lower() for w in s] for s in train.src] + gold.src
    tgt = [[w.lower() for w in t] for t in train.tgt] + gold.tgt
    sure, possible = [l.sure for l in gold.links], [l.possible for l in gold.links]
    start = time.perf_counter()
    both = {}
    def directions():
        if not both:
            both["f"], both["r"] = align_both(src, tgt)
        return both
    everything = ParallelCorpus("de", "en", src, tgt)
    forward = cached_links("gold-de-en.forward", everything, lambda: directions()["f"])
    reverse = cached_links("gold-de-en.reverse", everything, lambda: directions()["r"])
    print(f"fast_align (ours), {len(src)} pairs, both directions: {time.perf_counter() - start:.1f} s"
          + ("" if both else " (cached links)"))
    n = len(gold)
    rows = {"forward (de->en)": forward[-n:], "reverse": reverse[-n:],
            "intersection": symmetrize(forward[-n:], reverse[-n:]),
            "grow-diag-final": symmetrize(forward[-n:], reverse[-n:], "grow-diag-final")}
    if args.model:
        from models import load_pretrained
        from models.csls import normalize
        model, tok = load_pretrained(args.model)
        layers = list(range(len(model.layers) + 1))
        vs, _ = word_vectors(model, tok, gold.src, layers)
        vt, _ = word_vectors(model, tok, gold.tgt, layers)
        for l in layers:
            rows[f"mutual argmax, layer {l}"] = [similarity_align(normalize(a) @ normalize(b).t())
                                                 for a, b in zip(vs[l], vt[l])]
    print("| aligner | AER | precision | recall | links |\n|---|---|---|---|---|")
    for name, links in rows.items():
        r = aer(links, sure, possible)
        print(f"| {name} | {r['aer']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['links']} |")


def table(args) -> None:
    runs = [json.loads(Path(p).read_text()) for p in args.files]
    names = [Path(p).stem for p in args.files]
    for set_name in common_sets(runs, names):
        print(f"\n**{set_name}** ({runs[0]['sets'][set_name]['0']['queries']} aligned pairs): "
              "accuracy@1, CSLS / NN, source->target | target->source")
        print("| layer | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
        for layer in map(str, runs[0]["layers"]):
            cells = []
            for r in runs:
                x = r["sets"][set_name][layer]
                cells.append(f"{x['csls_s2t']:.3f} / {x['nn_s2t']:.3f} \\| {x['csls_t2s']:.3f} / {x['nn_t2s']:.3f}")
            print(f"| {layer} | " + " | ".join(cells) + " |")
        last = str(runs[0]["layers"][-1])
        print("\nlast layer by class (CSLS s2t): " + "; ".join(
            f"{n}: " + ", ".join(f"{c} {r['sets'][set_name][last].get(f'csls_s2t_{c}', float('nan')):.3f}"
                                 for c in ("open", "closed", "punct")) for n, r in zip(names, runs)))


def ner_table(args) -> None:
    """Zero-shot NER test F1 (x 100) of groups of seeds: one row per group (mean, and each seed's), and the
    change of each group's mean against the first group's. A group: "label=run_dir,run_dir,...";
    every run must hold results.json with the same test languages."""
    groups = []
    for spec in args.groups:
        label, _, dirs = spec.partition("=")
        if not dirs:
            raise SystemExit(f"error: {spec!r}: expected label=run_dir[,run_dir...]")
        runs = []
        for d in dirs.split(","):
            path = Path(d) / "results.json"
            if not path.is_file():
                raise SystemExit(f"error: {path} is missing (is the run finished?)")
            runs.append(json.loads(path.read_text()))
        groups.append((label, runs))
    langs = groups[0][1][0]["test"]
    langs = list(langs) if isinstance(langs, dict) else langs
    def f1(run, lang):
        return 100 * run["test"][lang]["f1"]
    means = {label: [sum(f1(r, l) for r in runs) / len(runs) for l in langs] for label, runs in groups}
    print("| encoder | seeds | " + " | ".join(langs) + " |\n|---|---|" + "---:|" * len(langs))
    for label, runs in groups:
        print(f"| {label} | {len(runs)} | " + " | ".join(f"{m:.1f}" for m in means[label]) + " |")
        for r in runs if len(runs) > 1 else []:
            print(f"| {r['name']} | 1 | " + " | ".join(f"{f1(r, l):.1f}" for l in langs) + " |")
    first, first_runs = groups[0]
    for label, runs in groups[1:]:
        print(f"| {label} - {first} | | " + " | ".join(f"{a - b:+.1f}" for a, b in zip(means[label], means[first]))
              + " |")
        if len(runs) == len(first_runs) > 1:  # the same seeds in the same order: the range of the paired changes
            cells = []
            for l in langs:
                d = [f1(a, l) - f1(b, l) for a, b in zip(runs, first_runs)]
                cells.append(f"{min(d):+.1f}..{max(d):+.1f}")
            print(f"| {label} - {first}, seed by seed | | " + " | ".join(cells) + " |")


def common_sets(runs: list[dict], names: list[str]) -> list[str]:
    """The test sets every run has (in the first run's order); the others are named on stderr."""
    sets = [s for s in runs[0]["sets"] if all(s in r["sets"] for r in runs)]
    for name, run in zip(names, runs):
        missing = sorted(set().union(*(r["sets"] for r in runs)) - set(run["sets"]))
        if missing:
            print(f"note: {name} has no {', '.join(missing)}: left out", file=sys.stderr)
    if not sets:
        raise SystemExit("error: the files share no test set")
    return sets


def plot(args) -> Path:
    return plot_layers([json.loads(Path(p).read_text()) for p in args.files], [Path(p).stem for p in args.files],
                       Path(args.out))


def plot_layers(runs: list[dict], names: list[str], out: Path) -> Path:
    """One panel per test set: CSLS accuracy (source->target) by layer, one line per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = common_sets(runs, names)
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.0), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for run, name in zip(runs, names):
            layers = run["layers"]
            ax.plot(layers, [run["sets"][set_name][str(l)]["csls_s2t"] for l in layers], marker="o", label=name)
        ax.set_title(set_name, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel("retrieval accuracy (CSLS)")
        ax.set_ylim(bottom=0)  # the mini retrieves 1-5%: a 0..1 axis would flatten every line
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("aer")
    p.add_argument("--model", default="")
    p = sub.add_parser("retrieval")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sets", default="multi30k,newstest2012,flores")
    p.add_argument("--pooling", default="mean")
    p = sub.add_parser("links")  # only word-align the test sets (cached), no model needed
    p.add_argument("--sets", default="multi30k,newstest2012,flores")
    p = sub.add_parser("ner")  # mean zero-shot NER F1 of groups of seeds
    p.add_argument("groups", nargs="+", help="label=run_dir,run_dir,... (the first group is the reference)")
    for name in ("table", "plot"):
        p = sub.add_parser(name)
        p.add_argument("files", nargs="+")
        if name == "plot":
            p.add_argument("--out", default="runs/align_eval/retrieval_by_layer.png")
    args = parser.parse_args(argv)
    if args.command == "links":
        for name, (corpus, links) in test_sets(data_root(), args.sets.split(",")).items():
            print(f"{name}: {len(corpus)} pairs, {sum(map(len, links))} 1-to-1 links")
        return
    {"aer": aer_table, "retrieval": retrieval, "table": table, "plot": plot, "ner": ner_table}[args.command](args)


if __name__ == "__main__":
    main()
