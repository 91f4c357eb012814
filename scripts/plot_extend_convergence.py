"""Held-out MLM loss against pieces seen, one curve per run folder: how fast each vocabulary
extension (random / mean / wechsel / focus init) converges next to the bilingual model from scratch.

    python scripts/plot_extend_convergence.py                  # the runs named in configs/mini_extend_ru.yaml
    python scripts/plot_extend_convergence.py --out docs/img/extend_convergence.png \\
        --curve "random init=runs/mini_extend_ru_random" --curve "focus init=runs/mini_extend_ru_focus"

A curve is ``LABEL=RUN_FOLDER``. Its points are the ``mlm_loss`` records of the folder's
metrics.jsonl at step s, drawn at s x (train.batch_size x train.accum_steps x mlm.seq_length) pieces
(the folder's config.yaml; one process). An extension run adds its held-out loss before any MLM
(extend_summary.json ``before_mlm``) at 0 pieces, and the steps of its new-rows phase
(``new_rows/metrics.jsonl``) come first. The loss is per masked piece on each run's own held-out
text with its own vocabulary: the extensions share both (their tokenizer depends on the text and the
extend settings, not on the init), the bilingual model has its own tokenizer and de+ru held-out
text, so its curve shows how fast it learns, not a loss to subtract. Prints a table (first, last and
lowest loss, pieces seen) and writes the figure through a temporary file. A missing or malformed
file is one ``error:`` line and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

DEFAULT_CURVES = [  # label, run folder: the commands are in configs/mini_extend_ru.yaml's header
    ("random init", "runs/mini_extend_ru_random"),
    ("mean init", "runs/mini_extend_ru_mean"),
    ("wechsel init", "runs/mini_extend_ru_wechsel"),
    ("focus init", "runs/mini_extend_ru_focus"),
    ("bilingual de+ru from scratch", "runs/mini_bilingual_deru"),
]


class CurveError(ValueError):
    """A run folder that cannot give a curve (names the file)."""


def eval_losses(path: Path) -> list[tuple[int, float]]:
    """[(step, mlm_loss)] of the evaluation records of one metrics.jsonl, in file order."""
    if not path.is_file():
        raise CurveError(f"{path}: no metrics.jsonl (run not started, or not on this machine)")
    points = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CurveError(f"{path}:{number}: not a JSON record ({err.msg})") from None
        if isinstance(record, dict) and "mlm_loss" in record:
            points.append((int(record.get("step", 0)), float(record["mlm_loss"])))
    return points


def pieces_per_step(run: Path) -> int:
    """train.batch_size x train.accum_steps x mlm.seq_length from the run's config.yaml."""
    path = run / "config.yaml"
    if not path.is_file():
        raise CurveError(f"{path}: missing (every run folder holds the config it ran with)")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        return int(cfg["train"]["batch_size"]) * int(cfg["train"].get("accum_steps", 1)) * int(cfg["mlm"]["seq_length"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise CurveError(f"{path}: cannot read train.batch_size / train.accum_steps / mlm.seq_length ({err!r})") from None


def curve(run: str | Path) -> list[tuple[int, float]]:
    """[(pieces seen, held-out MLM loss)] of one run folder, in order of pieces."""
    run = Path(run)
    per_step = pieces_per_step(run)
    points: list[tuple[int, float]] = []
    summary_path = run / "extend_summary.json"
    offset = 0
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CurveError(f"{summary_path}: not JSON ({err.msg})") from None
        if "before_mlm" in summary:
            points.append((0, float(summary["before_mlm"]["mlm_loss"])))
        offset = int(summary.get("new_rows_steps", 0))
    if (run / "new_rows" / "metrics.jsonl").is_file():
        phase = eval_losses(run / "new_rows" / "metrics.jsonl")
        points += [(step * per_step, loss) for step, loss in phase]
        offset = offset or max((step for step, _ in phase), default=0)
    main = eval_losses(run / "metrics.jsonl")
    points += [((offset + step) * per_step, loss) for step, loss in main]
    if not points:
        raise CurveError(f"{run / 'metrics.jsonl'}: no record with mlm_loss (not an MLM or extension run)")
    return sorted(points, key=lambda p: p[0])


def table(curves: dict[str, list[tuple[int, float]]]) -> str:
    lines = ["| run | first loss | last loss | lowest loss | pieces seen |", "|---|---:|---:|---:|---:|"]
    for label, points in curves.items():
        losses = [loss for _, loss in points]
        lines.append(f"| {label} | {losses[0]:.3f} | {losses[-1]:.3f} | {min(losses):.3f} | {points[-1][0]:,} |")
    return "\n".join(lines)


def plot(curves: dict[str, list[tuple[int, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, points in curves.items():
        ax.plot([p / 1e6 for p, _ in points], [loss for _, loss in points], marker="o", markersize=3, label=label)
    ax.set_xlabel("pieces seen (millions)")
    ax.set_ylabel("held-out MLM loss per masked piece")
    ax.set_title("Held-out MLM loss of the target language while training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)  # never a half-written figure


def parse_curve(spec: str) -> tuple[str, str]:
    label, sep, folder = spec.rpartition("=")
    if not sep or not label or not folder:
        raise CurveError(f"--curve {spec!r}: expected LABEL=RUN_FOLDER")
    return label, folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curve", action="append", default=[], help="LABEL=RUN_FOLDER (repeat); default: "
                        + ", ".join(folder for _, folder in DEFAULT_CURVES))
    parser.add_argument("--out", type=Path, default=Path("docs/img/extend_convergence.png"))
    args = parser.parse_args(argv)
    try:
        specs = [parse_curve(s) for s in args.curve] or DEFAULT_CURVES
        curves = {label: curve(folder) for label, folder in specs}
    except CurveError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table(curves))
    plot(curves, args.out)
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
