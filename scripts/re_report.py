"""Relation-extraction reports: the data report that justifies max_length and the type constraint, and
precision-recall curves of a finished run.

    python scripts/re_report.py data configs/mini_re_conll04.yaml --out runs/re_report_conll04
    python scripts/re_report.py pr runs/mini_re_conll04            # -> runs/mini_re_conll04/pr_curves.png
    python scripts/re_report.py table runs/re_c04_* --rarest 10     # the ablation table from results.json
    python scripts/re_report.py grid configs/mini_re_conll04.yaml --gamma 0,1,2 --smoothing 0,0.09 [--train]

``data`` reads the config's splits exactly as training does (the KLUE dev.csv carve included), marks
every example with the config's marker style and tokenizer (model.name_or_path) without a length
limit, and writes report.md (label distribution, pieces per example with the counts over 128 / 160 /
256, entity-type pair x relation counts, per split) and lengths.png. ``pr`` draws one-vs-rest PR
curves from RUN/test_predictions.csv (the run's final test probabilities and gold labels). ``grid``
(scripts/re_grid.py) tabulates a focal gamma / alpha x smoothing grid, reusing every finished run whose
settings are a cell's and training the missing cells with ``--train``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LIMITS = (128, 160, 256)


def data_report(cfg) -> tuple[str, dict]:
    """(markdown, {split: [pieces per example]}) for the config's data, marker style and tokenizer."""
    from core.paths import data_root
    from data.markers import KLUE_TYPE_WORDS, MarkerEncoder, marker_tokens
    from models import load_tokenizer
    from models.resolve import resolve_model_dir
    from tasks.relation import load_splits, type_pair

    r = cfg.relation
    root = Path(cfg.data.root) if cfg.data.root else data_root()
    splits, names, types, bad = load_splits(r, root, cfg.train.seed)
    folder = Path(cfg.model.name_or_path)  # a tokenizer folder is enough; else the model's (HF layout)
    tok = load_tokenizer(folder if (folder / "tokenizer.json").is_file() else
                         resolve_model_dir(cfg.model.name_or_path, need_weights=False))
    special = {t: tok.vocab_size + i for i, t in enumerate(marker_tokens(r.marker, types))}
    enc = MarkerEncoder(tok, r.marker, 10_000, r.type_words or (KLUE_TYPE_WORDS if r.dataset == "klue" else {}),
                        special)
    lengths = {s: [len(enc.encode(e)) for e in exs] for s, exs in splits.items()}
    out = [f"# Data report: {r.dataset} ({cfg.model.name_or_path}, marker {r.marker})\n",
           f"Bad rows skipped: {len(bad)}" + (f" (first: {bad[0]})" if bad else "") + "\n",
           "## Examples and pieces per example (specials and markers included)\n",
           "| split | examples | no_relation | mean pieces | max | > 128 | > 160 | > 256 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s, exs in splits.items():
        L = lengths[s]
        share = sum(e.label == "no_relation" for e in exs) / max(len(exs), 1)
        out.append(f"| {s} | {len(exs)} | {100 * share:.1f}% | {sum(L) / max(len(L), 1):.1f} | {max(L, default=0)} | "
                   + " | ".join(str(sum(n > lim for n in L)) for lim in LIMITS) + " |")
    out += ["", "## Label distribution\n", "| label | " + " | ".join(splits) + " |",
            "|---|" + "---:|" * len(splits)]
    counts = {s: Counter(e.label for e in exs) for s, exs in splits.items()}
    for name in names:
        out.append(f"| {name} | " + " | ".join(str(counts[s][name]) for s in splits) + " |")
    out += ["", "## Entity-type pair x relation (train; the type constraint allows what occurs here)\n"]
    pair_counts = Counter((type_pair(e), e.label) for e in splits["train"])
    pairs = sorted({p for p, _ in pair_counts})
    rel_names = [n for n in names if any(pair_counts[(p, n)] for p in pairs)]
    out += ["| pair | " + " | ".join(rel_names) + " |", "|---|" + "---:|" * len(rel_names)]
    for p in pairs:
        out.append(f"| {p} | " + " | ".join(str(pair_counts[(p, n)] or "") for n in rel_names) + " |")
    unseen = {s: sum((type_pair(e), e.label) not in pair_counts and e.label != "no_relation" for e in exs)
              for s, exs in splits.items() if s != "train"}
    out += ["", f"Relations whose (type pair, relation) never occurs in train (the constraint would forbid them): "
                f"{unseen}\n"]
    return "\n".join(out) + "\n", lengths


def length_figure(lengths: dict[str, list[int]], title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = max((max(v) for v in lengths.values() if v), default=1)
    for split, L in lengths.items():
        ax.hist(L, bins=range(0, top + 8, 8), histtype="step", density=True, label=f"{split} ({len(L)})")
    for lim in LIMITS:
        ax.axvline(lim, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("pieces per marked example")
    ax.set_ylabel("share of examples")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def read_predictions(path: Path) -> tuple[list[str], list[list[float]], list[str]]:
    """(gold labels, probability rows, label names) from a run's test_predictions.csv."""
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "gold_label" not in rows[0]:
        raise ValueError(f"{path}: needs the columns id, pred_label, probs, gold_label")
    return [r["gold_label"] for r in rows], [json.loads(r["probs"]) for r in rows], []


def pr_figure(gold: list[int], probs, names: list[str], top: int = 8):
    """One-vs-rest PR curves of the ``top`` most frequent relations (no_relation left out)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from core.metrics import klue_auprc, precision_recall_points

    probs, gold = np.asarray(probs), np.asarray(gold)
    areas = klue_auprc(probs, gold, len(names))["per_class"]
    frequent = [c for c, _ in Counter(gold.tolist()).most_common() if c != 0][:top]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for c in frequent:
        precision, recall = precision_recall_points(gold == c, probs[:, c])
        ax.plot(recall, precision, drawstyle="steps-post", label=f"{names[c]} ({areas[c]:.1f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("test PR curves, one-vs-rest (area x 100)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def results_table(run_dirs: list[str], rarest: int = 0) -> str:
    """One row per run: its set-up, dev micro-F1, test micro-F1 / AUPRC (raw decoding), the decoding
    variants, and (rarest > 0) per-class test F1 of the ``rarest`` relations rarest in training."""
    import yaml

    rows = ["| run | marker | pooling | loss | smoothing | schedule | dev F1 | test F1 | test AUPRC | "
            "+constraint F1 | +prior F1 | +both F1 | AUPRC calibrated |",
            "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    per_class = {}
    for run in map(Path, run_dirs):
        if not (run / "results.json").is_file():
            continue
        res = json.loads((run / "results.json").read_text())
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        r, v = cfg["relation"], res["variants"]
        loss = r["loss"] + (f" (gamma {r['focal_gamma']})" if r["loss"] == "focal" else "")
        rows.append(f"| {run.name} | {r['marker']} | {r['pooling']} | {loss} | {r['label_smoothing']} | "
                    f"{cfg['train']['schedule']} | {res['best_dev_micro_f1']:.1f} | {v['raw']['micro_f1']:.1f} | "
                    f"{v['raw']['auprc']:.1f} | {v['constraint']['micro_f1']:.1f} | {v['prior']['micro_f1']:.1f} | "
                    f"{v['constraint+prior']['micro_f1']:.1f} | {v['raw']['auprc_calibrated']:.1f} |")
        per_class[run.name] = res["per_class_f1"]
    out = "\n".join(rows) + "\n"
    if rarest and per_class:
        first = next(iter(per_class.values()))
        rare = sorted(first, key=lambda k: (first[k]["train_count"], k))[:rarest]
        out += ("\n| relation (train count, test support) | " + " | ".join(per_class) + " |\n|---|"
                + "---:|" * len(per_class) + "\n")
        for k in rare:
            out += (f"| {k} ({first[k]['train_count']}, {first[k]['support']}) | "
                    + " | ".join(f"{pc[k]['f1']:.1f}" if k in pc else "-" for pc in per_class.values()) + " |\n")
        out += "\n" + thirds_table(per_class)
    return out


def thirds_table(per_class: dict[str, dict]) -> str:
    """Mean per-class test F1 over the rarest / middle / most frequent third of the relations (by
    training count, no_relation left out) and how many relations get any F1 at all, one column per run."""
    first = next(iter(per_class.values()))
    ranked = sorted((k for k in first if k != "no_relation"), key=lambda k: (first[k]["train_count"], k))
    n = len(ranked) // 3
    groups = {"rarest third": ranked[:n], "middle third": ranked[n:len(ranked) - n],
              "most frequent third": ranked[len(ranked) - n:]}
    rows = ["| mean per-class test F1 | " + " | ".join(per_class) + " |", "|---|" + "---:|" * len(per_class)]
    for label, keys in groups.items():
        counts = f"{first[keys[0]]['train_count']}-{first[keys[-1]]['train_count']}" if keys else "-"
        rows.append(f"| {label} ({len(keys)} relations, {counts} training examples) | " + " | ".join(
            f"{sum(pc[k]['f1'] for k in keys) / max(len(keys), 1):.1f}" if set(ranked) <= set(pc) else "-"
            for pc in per_class.values()) + " |")  # "-": a run of another data set (other relations)
    rows.append(f"| relations with test F1 > 0 (of {len(ranked)}) | " + " | ".join(
        str(sum(pc[k]["f1"] > 0 for k in ranked)) if set(ranked) <= set(pc) else "-" for pc in per_class.values()) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="data report of a relation config")
    d.add_argument("config")
    d.add_argument("overrides", nargs="*")
    d.add_argument("--out", required=True, help="folder for report.md and lengths.png")
    p = sub.add_parser("pr", help="PR curves of a finished run")
    p.add_argument("run_dir")
    t = sub.add_parser("table", help="one table from finished runs' results.json")
    t.add_argument("run_dirs", nargs="+")
    t.add_argument("--rarest", type=int, default=0, help="also per-class test F1 of the N rarest relations")
    from scripts import re_grid
    re_grid.add_parser(sub)
    args = parser.parse_args(argv)
    if args.cmd == "grid":
        return re_grid.main(args)
    if args.cmd == "table":
        print(results_table(args.run_dirs, args.rarest))
        return 0
    if args.cmd == "data":
        from core.config import load_config

        cfg = load_config(args.config, args.overrides)
        text, lengths = data_report(cfg)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(text, encoding="utf-8")
        length_figure(lengths, f"{cfg.relation.dataset}: pieces per example").savefig(out / "lengths.png", dpi=120)
        print(text)
        return 0
    run = Path(args.run_dir)
    names = json.loads((run / "model" / "relation.json").read_text(encoding="utf-8"))["labels"]
    gold_names, probs, _ = read_predictions(run / "test_predictions.csv")
    index = {n: i for i, n in enumerate(names)}
    pr_figure([index[g] for g in gold_names], probs, names).savefig(run / "pr_curves.png", dpi=120)
    print(run / "pr_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
