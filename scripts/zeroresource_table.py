"""The zero-resource table (test entity F1 x 100) from finished runs, seeds averaged.

    python scripts/zeroresource_table.py runs/zeroresource_de_en_v2* runs/zeroresource_de_nl_v2* runs/zeroresource_de_es_v2*

Each run folder holds the results.json of ``python train.py configs/zeroresource_de_<t>.yaml``; runs
are grouped by target language (their config.yaml's mapping.target_lang) and each cell is the mean
over the group's seeds, the seed count in the last column (and each seed's value with ``--seeds``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

COLUMNS = ("source_dev_f1", "direct_transfer", "translated", "translated_pseudo", "full")
HEADER = ("source dev F1", "direct transfer", "+ translated data", "+ pseudo-labels", "full method")


def read_runs(run_dirs: list[str]) -> dict[str, list[dict]]:
    """target language -> results.json of each run (in the order given)."""
    groups: dict[str, list[dict]] = {}
    for run in map(Path, run_dirs):
        results = run / "results.json"
        if not results.is_file():
            raise FileNotFoundError(f"{results}: not a finished zero-resource run")
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        row = json.loads(results.read_text(encoding="utf-8"))
        row["seed"] = cfg["train"]["seed"]
        groups.setdefault(cfg["mapping"]["target_lang"], []).append(row)
    return groups


def table(groups: dict[str, list[dict]], seeds: bool = False) -> str:
    lines = ["| target | " + " | ".join(HEADER) + " | seeds |", "|---|" + "---:|" * (len(HEADER) + 1)]
    for target, rows in groups.items():
        cells = []
        for key in COLUMNS:
            values = [100 * r[key] for r in rows]
            cell = f"{statistics.mean(values):.1f}"
            if seeds and len(values) > 1:
                cell += " (" + " / ".join(f"{v:.1f}" for v in values) + ")"
            cells.append(cell)
        lines.append(f"| {target} | " + " | ".join(cells) + f" | {', '.join(str(r['seed']) for r in rows)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--seeds", action="store_true", help="each seed's value beside the mean")
    args = parser.parse_args(argv)
    print(table(read_runs(args.runs), args.seeds))


if __name__ == "__main__":
    sys.exit(main())
