"""The focal gamma / alpha x label smoothing grid of a relation config, as one table.

    python scripts/re_report.py grid configs/mini_re_conll04.yaml --gamma 0,1,2 --smoothing 0,0.09
    python scripts/re_report.py grid configs/mini_re_conll04.yaml --gamma 0,1,2 --smoothing 0,0.09 --train
    python scripts/re_report.py grid configs/mini_re_conll04.yaml --gamma 1 --alpha 1,inv,invrel --smoothing 0.09

Each cell is the config plus ``relation.loss`` / ``focal_gamma`` / ``focal_alpha`` /
``label_smoothing`` (and ``train.seed`` per ``--seeds``: a cell then shows the mean ± the sample
standard deviation over the seeds found, and which runs they are). A cell is filled from any finished run under
``--runs`` (a folder with config.yaml and results.json) whose settings are the cell's: the sections
task, model, relation and train (and data.root) are compared, the bookkeeping keys (name, out_dir,
resume, logging / saving intervals) are not, and the loss is compared by what it computes (ce ==
focal with gamma 0 and alpha 1, whatever focal_gamma says then). So the ablation's runs are reused
wherever they are identical. Without ``--train`` a missing cell is shown as "not run" and its
command printed; with ``--train`` the missing cells are trained one after another first
(``python train.py CONFIG ... train.name=PREFIX_g.._a.._ls..``).

``--alpha`` takes scalars, ``inv`` and ``invrel``. ``inv`` is the per-class vector
alpha_k = (1 / n_k) / mean_j (1 / n_j), n_k the count of class k among the cell's TRAINING examples
(read as training reads them, sampled negatives included), i.e. inverse training frequency with a
mean of 1 over the K classes; ``invrel`` the same over the relations only (mean 1 over classes
1..K-1) with no_relation (class 0) at 1, so it rebalances the relations among themselves without
down-weighting no_relation. Rounded to 4 digits, so the override is the one in the run's config.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

IGNORED_TRAIN_KEYS = {"name", "out_dir", "resume", "resume_allow_changes", "log_every", "save_every", "eval_every"}


def inverse_frequency_alpha(labels: list[int], num_classes: int, digits: int = 4) -> list[float]:
    """(K,) focal alpha proportional to 1 / (training count of the class), mean 1 over the classes,
    rounded; a class absent from training counts as 1 example (the largest alpha)."""
    counts = Counter(labels)
    inverse = [1.0 / max(counts.get(k, 0), 1) for k in range(num_classes)]
    mean = sum(inverse) / num_classes
    return [round(x / mean, digits) for x in inverse]


def training_alpha(config: str, overrides: list[str], rule: str = "inv") -> tuple[list[float], dict[str, int]]:
    """(alpha by ``rule``, inv or invrel, {label: training count}) of a relation config's training examples."""
    from core.config import load_config
    from core.paths import data_root
    from tasks.relation import load_splits

    cfg = load_config(config, overrides)
    root = Path(cfg.data.root) if cfg.data.root else data_root()
    splits, names, _, _ = load_splits(cfg.relation, root, cfg.train.seed)
    index = {n: k for k, n in enumerate(names)}
    labels = [index[e.label] for e in splits["train"]]
    counts = Counter(labels)
    if rule == "invrel":  # classes 1..K-1 only, no_relation (0) fixed at 1
        alpha = [1.0, *inverse_frequency_alpha([k - 1 for k in labels if k], len(names) - 1)]
    elif rule == "inv":
        alpha = inverse_frequency_alpha(labels, len(names))
    else:
        raise ValueError(f"alpha rule must be inv or invrel, got {rule!r}")
    return alpha, {n: counts.get(k, 0) for n, k in index.items()}


def cell_overrides(gamma: float, alpha: float | list[float], smoothing: float, seed: int | None) -> list[str]:
    """Config overrides of one grid cell (gamma 0 and alpha 1 = plain cross-entropy); alpha a scalar
    or a per-class list."""
    if gamma == 0 and alpha == 1:
        out = ["relation.loss=ce"]
    else:
        vector = "" if alpha == 1 else ",".join(map(_num, alpha if isinstance(alpha, list) else [alpha]))
        out = ["relation.loss=focal", f"relation.focal_gamma={gamma}", f"relation.focal_alpha=[{vector}]"]
    out.append(f"relation.label_smoothing={smoothing}")
    return out + ([f"train.seed={seed}"] if seed is not None else [])


def signature(cfg: dict) -> dict:
    """The settings that decide a relation run's numbers, with the loss written as what it computes."""
    r = dict(cfg["relation"])
    alpha = list(r.get("focal_alpha") or [])
    gamma = float(r.get("focal_gamma", 0.0)) if r.get("loss") == "focal" else 0.0
    if r.get("loss") != "focal" or alpha in ([1], [1.0]):
        alpha = []
    r["focal_gamma"], r["focal_alpha"] = gamma, alpha
    r["loss"] = "ce" if gamma == 0 and not alpha else "focal"
    train = {k: v for k, v in cfg["train"].items() if k not in IGNORED_TRAIN_KEYS}
    return {"task": cfg["task"], "model": cfg["model"], "relation": r, "train": train,
            "data.root": cfg.get("data", {}).get("root", "")}


def same_settings(cell: dict, run: dict) -> bool:
    """True when the run's config has the cell's settings; a key the run's config lacks (written by
    older code) counts as the cell's value."""
    for section, want in cell.items():
        have = run.get(section)
        if not isinstance(want, dict):
            if have != want:
                return False
            continue
        if have is None or any(k in have and have[k] != v for k, v in want.items()):
            return False
    return True


def finished_runs(runs_root: Path) -> list[tuple[Path, dict]]:
    """(folder, signature) of every finished relation run under runs_root, sorted by name."""
    import yaml

    out = []
    for cfg_path in sorted(runs_root.glob("*/config.yaml")):
        if not (cfg_path.parent / "results.json").is_file():
            continue
        cfg = yaml.safe_load(cfg_path.read_text())
        if isinstance(cfg, dict) and cfg.get("task") == "relation":
            out.append((cfg_path.parent, signature(cfg)))
    return out


def _num(x: float | str) -> str:
    return x if isinstance(x, str) else f"{x:g}"


def run_grid(config: str, overrides: list[str], gammas: list[float], smoothings: list[float],
             alphas: list[float | str], seeds: list[int | None], runs_root: Path, prefix: str = "",
             train: bool = False, runner=subprocess.run) -> str:
    """The grid table (markdown); missing cells trained first when ``train``, else their commands listed.
    An alpha ``"inv"`` / ``"invrel"`` is the inverse-frequency vector of each cell's training examples."""
    from core.config import load_config, to_dict

    base = load_config(config, overrides)
    prefix = prefix or f"{base.train.name}_grid"
    cells = [(g, a, s, seed) for a in alphas for g in gammas for s in smoothings for seed in seeds]
    wanted, missing = {}, []
    vectors = {}  # (rule, seed) -> alpha: the training examples depend on the seed, not on gamma / smoothing
    for g, a, s, seed in cells:
        name = f"{prefix}_g{_num(g)}_a{_num(a)}_ls{_num(s)}" + (f"_s{seed}" if seed is not None else "")
        seed_args = [f"train.seed={seed}"] if seed is not None else []
        if isinstance(a, str) and (a, seed) not in vectors:
            vectors[a, seed] = training_alpha(config, [*overrides, *seed_args], a)[0]
        alpha = vectors[a, seed] if isinstance(a, str) else a
        args = [config, *overrides, *cell_overrides(g, alpha, s, seed), f"train.name={name}"]
        sig = signature(to_dict(load_config(args[0], args[1:])))
        wanted[(g, a, s, seed)] = sig
        if not any(same_settings(sig, have) for _, have in finished_runs(runs_root)):
            missing.append(args)
    if train:
        for args in missing:
            runner([sys.executable, "train.py", *args], check=True)
        missing = []
    runs = finished_runs(runs_root)
    rows = ["| gamma | alpha | smoothing | runs (seed) | dev F1 | test F1 | test AUPRC | "
            "+constraint+prior F1 | AUPRC calibrated |", "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for g, a, s in dict.fromkeys((g, a, s) for g, a, s, _ in cells):
        found = []
        for seed in seeds:
            match = [d for d, have in runs if same_settings(wanted[(g, a, s, seed)], have)]
            found += match[:1]  # the first by name when several runs are identical
        if not found:
            rows.append(f"| {_num(g)} | {_num(a)} | {_num(s)} | not run | | | | | |")
            continue
        res = [json.loads((d / "results.json").read_text()) for d in found]
        names = ", ".join(f"{d.name} ({_seed(d)})" for d in found)
        cols = [[r["best_dev_micro_f1"] for r in res], [r["variants"]["raw"]["micro_f1"] for r in res],
                [r["variants"]["raw"]["auprc"] for r in res], [r["variants"]["constraint+prior"]["micro_f1"] for r in res],
                [r["variants"]["raw"]["auprc_calibrated"] for r in res]]
        rows.append(f"| {_num(g)} | {_num(a)} | {_num(s)} | {names} | " + " | ".join(map(mean_sd, cols)) + " |")
    out = "\n".join(rows) + "\n"
    if missing:
        out += "\nNot run yet (add --train to run them):\n" + "\n".join(
            "python train.py " + " ".join(args) for args in missing) + "\n"
    return out


def mean_sd(values: list[float]) -> str:
    """'m' for one value, 'm ± sd' (sample standard deviation) over several seeds."""
    m = statistics.mean(values)
    return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} ± {statistics.stdev(values):.1f}"


def _seed(run_dir: Path) -> int:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["seed"]


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def alphas(text: str) -> list[float | str]:
    """'1,0.25,inv,invrel' -> [1.0, 0.25, 'inv', 'invrel']."""
    return [x.strip() if x.strip() in ("inv", "invrel") else float(x) for x in text.split(",") if x.strip()]


def add_parser(sub) -> None:
    g = sub.add_parser("grid", help="focal gamma / alpha x smoothing table (reuses identical runs)")
    g.add_argument("config")
    g.add_argument("overrides", nargs="*", help="dotted overrides applied to every cell")
    g.add_argument("--gamma", type=floats, default=[0.0, 1.0, 2.0])
    g.add_argument("--smoothing", type=floats, default=[0.0, 0.09])
    g.add_argument("--alpha", type=alphas, default=[1.0],
                   help="focal alpha values: scalars (1 = none), inv (per-class inverse training frequency), "
                        "invrel (the same over the relations, no_relation 1)")
    g.add_argument("--seeds", default="", help="e.g. 42,1,2 (default: the config's seed); cells show mean ± sd")
    g.add_argument("--runs", default="runs", help="folder searched for finished runs")
    g.add_argument("--prefix", default="", help="train.name prefix of new runs (default: <config name>_grid)")
    g.add_argument("--train", action="store_true", help="train the missing cells first, one after another")


def main(args) -> int:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [None]
    print(run_grid(args.config, args.overrides, args.gamma, args.smoothing, args.alpha, seeds,
                   Path(args.runs), args.prefix, args.train))
    return 0
