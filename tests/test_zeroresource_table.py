"""scripts/zeroresource_table.py: runs grouped by target, means over seeds, a missing result named."""
from __future__ import annotations

import json

import pytest
import yaml

from scripts.zeroresource_table import read_runs, table


def _run(root, name, target, seed, full):
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"seed": seed}, "mapping": {"target_lang": target}}))
    (run / "results.json").write_text(json.dumps({"source_dev_f1": 0.5, "direct_transfer": 0.3, "translated": 0.2,
                                                  "translated_pseudo": 0.25, "full": full}))
    return str(run)


def test_means_over_seeds_per_target(tmp_path):
    runs = [_run(tmp_path, "a", "en", 42, 0.30), _run(tmp_path, "b", "en", 1, 0.36), _run(tmp_path, "c", "es", 42, 0.2)]
    text = table(read_runs(runs))
    assert "| en | 50.0 | 30.0 | 20.0 | 25.0 | 33.0 | 42, 1 |" in text
    assert "| es | 50.0 | 30.0 | 20.0 | 25.0 | 20.0 | 42 |" in text
    assert "| 33.0 (30.0 / 36.0) | 42, 1 |" in table(read_runs(runs), seeds=True)
    (tmp_path / "d").mkdir()
    with pytest.raises(FileNotFoundError, match="d/results.json"):
        read_runs([str(tmp_path / "d")])
