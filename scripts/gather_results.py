"""Tables from the results of many run folders of any kind of task:

    python scripts/gather_results.py runs/* > results/all.md
    python evaluate.py --gather runs/*                 # the same
    python evaluate.py runs/mini_re_klue               # one relation or alignment run: its table

Runs are grouped by what their ``results.json`` holds: NER runs (language rows, few-shot sizes) in
one F1 table; relation extraction (test micro-F1 and AUPRC of the chosen decoding); contextual
alignment (dev retrieval before and after); any other task's top-level numbers as they are. A
folder that cannot be tabulated (missing, no results.json yet, an MLM or extension run, a file that
is not JSON) is one line saying why. The NER table itself is core/results.py's ``f1_table``; the
names re-exported from there keep older imports working.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from core.results import f1_table, gather, per_type_table, write_curve, write_results  # noqa: F401,E402

KIND_TITLES = {"ner": "NER: test entity F1 (x 100)",
               "relation": "Relation extraction: test scores of the chosen decoding (x 100)",
               "align": "Contextual alignment: dev word retrieval (CSLS accuracy)"}
SUMMARIES = {"mlm_summary.json": "an MLM pretraining run", "extend_summary.json": "a vocabulary-extension run"}


class RunResults:
    """One run folder: ``kind`` (ner, relation, align, or the config's task) and its results, or
    ``reason`` why there is nothing to tabulate."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir)
        self.task = _task_of(self.path)
        self.results: dict | None = None
        self.reason = ""
        results = self.path / "results.json"
        if not self.path.is_dir():
            self.reason = "no such folder"
        elif not results.is_file():
            summary = next((f"{what} ({name})" for name, what in SUMMARIES.items() if (self.path / name).is_file()),
                           None)
            self.reason = (f"{summary}: a model for other configs, no score table" if summary
                           else "no results.json yet (not trained, or still training)")
        else:
            try:
                data = json.loads(results.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                self.reason = f"{results.name} is not valid JSON ({err})"
            else:
                if isinstance(data, dict):
                    self.results = data
                else:
                    self.reason = f"{results.name} holds no mapping of results"

    @property
    def kind(self) -> str:
        if self.results is None:
            return ""
        if isinstance(self.results.get("rows"), dict):
            return "ner"
        if "test_micro_f1" in self.results:
            return "relation"
        if "dev_after" in self.results:
            return "align"
        return self.task or "other"


def _task_of(run_dir: Path) -> str:
    import yaml

    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return ""
    return str(data.get("task", "")) if isinstance(data, dict) else ""


def gather_runs(run_dirs: list[str | Path]) -> str:
    """Markdown: one table per kind of task among ``run_dirs``, then a line per folder left out."""
    runs = [RunResults(d) for d in run_dirs]
    kinds: dict[str, list[RunResults]] = {}
    for run in runs:
        if run.results is not None:
            kinds.setdefault(run.kind, []).append(run)
    parts = [f"## {KIND_TITLES.get(kind, f'{kind}: results.json')}\n\n" + run_table(kind, group)
             for kind, group in kinds.items()]
    left_out = [f"- {run.path}: {run.reason}" for run in runs if run.results is None]
    if left_out:
        parts.append("Not tabulated:\n\n" + "\n".join(left_out) + "\n")
    return "\n".join(parts) if parts else "(no run folders given)\n"


def run_table(kind: str, runs: list[RunResults]) -> str:
    """The markdown table of runs of one kind (see KIND_TITLES)."""
    if kind == "ner":
        rows: dict[str, dict[str, float]] = {}
        for run in runs:
            rows.update({name: {k: v for k, v in cells.items() if isinstance(v, (int, float))}
                         for name, cells in run.results["rows"].items() if isinstance(cells, dict)})
        return f1_table(rows)
    if kind == "relation":
        lines = ["| run | data set | test micro-F1 | test AUPRC | best dev micro-F1 | decoding |",
                 "|---|---|---:|---:|---:|---|"]
        for run in runs:
            r = run.results
            lines.append(f"| {run.path.name} | {r.get('dataset', '-')} | {_num(r.get('test_micro_f1'))} | "
                         f"{_num(r.get('test_auprc'))} | {_num(r.get('best_dev_micro_f1'))} | {r.get('chosen', '-')} |")
        return "\n".join(lines) + "\n"
    if kind == "align":
        lines = ["| run | before | after | best step |", "|---|---:|---:|---:|"]
        for run in runs:
            r = run.results
            before, after = (r.get(k) if isinstance(r.get(k), dict) else {} for k in ("dev_before", "dev_after"))
            lines.append(f"| {run.path.name} | {_num(before.get('dev_retrieval'), 4)} | "
                         f"{_num(after.get('dev_retrieval'), 4)} | {r.get('best_step', '-')} |")
        return "\n".join(lines) + "\n"
    keys = list(dict.fromkeys(k for run in runs for k, v in run.results.items() if _is_number(v)))
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for run in runs:
        lines.append(f"| {run.path.name} | " + " | ".join(_num(run.results.get(k), 4) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tables from many runs' results.json, one per kind of task.")
    parser.add_argument("run_dirs", nargs="+")
    args = parser.parse_args(argv)
    sys.stdout.write(gather_runs(args.run_dirs))


if __name__ == "__main__":
    main()
