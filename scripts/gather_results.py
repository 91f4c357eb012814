"""One table from many runs' results.json (a thin CLI over core/results.py):

    python scripts/gather_results.py runs/mini_* > results/mini.md
    python evaluate.py --gather runs/mini_*            # the same

The tables and curves themselves are library code: core/results.py (write_results, write_curve,
f1_table, per_type_table, gather) and core/plots.py (plot_curve). The names are re-exported
here only so that older imports keep working; import them from core.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from core.results import f1_table, gather, per_type_table, write_curve, write_results  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One markdown table from many runs' results.json.")
    parser.add_argument("run_dirs", nargs="+")
    args = parser.parse_args(argv)
    sys.stdout.write(gather(args.run_dirs))


if __name__ == "__main__":
    main()
