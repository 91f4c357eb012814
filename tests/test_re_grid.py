"""scripts/re_grid.py: which finished runs fill which grid cell (ce == focal gamma 0, names and bookkeeping
keys ignored, any other setting distinguishes), the table's numbers, and --train launching only the gaps."""
from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = "configs/tiny_re.yaml"


def fake_run(root, name, overrides, test_f1, dev_f1=50.0):
    """A finished run folder as train.py leaves it (config.yaml + the results.json keys the grid reads)."""
    from core.config import load_config, to_dict

    run = root / name
    run.mkdir(parents=True)
    cfg = to_dict(load_config(CONFIG, [*overrides, f"train.name={name}"]))
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    raw = {"micro_f1": test_f1, "auprc": test_f1 / 2, "auprc_calibrated": test_f1 / 2 + 1}
    both = {"micro_f1": test_f1 + 3, "auprc": 0.0, "auprc_calibrated": 0.0}
    (run / "results.json").write_text(json.dumps({"best_dev_micro_f1": dev_f1,
                                                  "variants": {"raw": raw, "constraint+prior": both}}))
    return run


def test_signature_reads_the_loss_by_what_it_computes():
    from scripts.re_grid import signature

    def sig(**relation):
        return signature({"task": "relation", "model": {}, "train": {"name": "x", "lr": 1.0},
                          "relation": relation})["relation"]

    ce = sig(loss="ce", focal_gamma=2.0, focal_alpha=[0.5], label_smoothing=0.0)
    assert ce == sig(loss="focal", focal_gamma=0.0, focal_alpha=[1.0], label_smoothing=0.0)
    assert ce["loss"] == "ce" and ce["focal_gamma"] == 0.0 and ce["focal_alpha"] == []
    assert sig(loss="focal", focal_gamma=0.0, focal_alpha=[0.25])["loss"] == "focal"  # alpha alone is not CE
    assert sig(loss="focal", focal_gamma=1.0) != sig(loss="focal", focal_gamma=2.0)


def test_grid_reuses_identical_runs_and_lists_the_rest(tmp_path):
    from scripts.re_grid import run_grid

    fake_run(tmp_path, "ablation_ce", ["relation.loss=ce"], 40.0)  # focal_gamma stays 2.0: still the gamma 0 cell
    fake_run(tmp_path, "ablation_focal1", ["relation.loss=focal", "relation.focal_gamma=1"], 44.0)
    fake_run(tmp_path, "other_lr", ["relation.loss=focal", "relation.focal_gamma=1",
                                    "relation.label_smoothing=0.09", "train.lr=0.1"], 99.0)  # not a cell: lr differs
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("task: relation\n")  # no results.json: ignored
    table = run_grid(CONFIG, [], [0.0, 1.0], [0.0, 0.09], [1.0], [None], tmp_path, prefix="g")
    lines = table.splitlines()
    assert "| 0 | 1 | 0 | ablation_ce (42) | 50.0 | 40.0 | 20.0 | 43.0 | 21.0 |" in lines
    assert "| 1 | 1 | 0 | ablation_focal1 (42) | 50.0 | 44.0 | 22.0 | 47.0 | 23.0 |" in lines
    assert "| 1 | 1 | 0.09 | not run | | | | | |" in lines and "99.0" not in table
    commands = [x for x in lines if x.startswith("python train.py")]
    assert len(commands) == 2 and all(CONFIG in c for c in commands)
    assert any("relation.loss=ce relation.label_smoothing=0.09 train.name=g_g0_a1_ls0.09" in c for c in commands)


def test_grid_train_runs_only_missing_cells_and_averages_seeds(tmp_path):
    from scripts.re_grid import run_grid

    fake_run(tmp_path, "s42", ["relation.loss=ce"], 40.0)
    launched = []

    def runner(cmd, check):  # stands in for train.py: leaves a finished run with the command's settings
        args = cmd[2:]
        assert cmd[1] == "train.py" and args[0] == CONFIG and check
        launched.append(args[-1])
        name = args[-1].split("=", 1)[1]
        fake_run(tmp_path, name, [a for a in args[1:] if not a.startswith("train.name=")], 50.0, dev_f1=60.0)

    table = run_grid(CONFIG, [], [0.0], [0.0], [1.0], [42, 1], tmp_path, prefix="g", train=True, runner=runner)
    assert launched == ["train.name=g_g0_a1_ls0_s1"]  # seed 42 exists already
    # means ± sample sd over the two seeds: test F1 40 and 50 -> 45.0 ± 7.1
    assert ("| 0 | 1 | 0 | s42 (42), g_g0_a1_ls0_s1 (1) | 55.0 ± 7.1 | 45.0 ± 7.1 | 22.5 ± 3.5 | 48.0 ± 7.1 | "
            "23.5 ± 3.5 |") in table.splitlines()


def test_inverse_frequency_alpha_pinned_on_the_conll04_training_counts():
    from scripts.re_grid import inverse_frequency_alpha

    counts = [2566, 256, 179, 271, 330, 247]  # no_relation, Work_For, Kill, OrgBased_In, Live_In, Located_In
    labels = [k for k, n in enumerate(counts) for _ in range(n)]
    alpha = inverse_frequency_alpha(labels, 6)
    assert alpha == [0.1132, 1.1349, 1.6231, 1.0721, 0.8804, 1.1763]  # the vector of RESULTS.md
    assert sum(alpha) / 6 == pytest.approx(1.0, abs=1e-4)
    assert max(a * n for a, n in zip(alpha, counts)) / min(a * n for a, n in zip(alpha, counts)) < 1.001
    # class 2 unseen counts as 1 example: inverse (1/3, 1, 1), mean 7/9 -> (3/7, 9/7, 9/7)
    assert inverse_frequency_alpha([0, 0, 0, 1], 3) == [0.4286, 1.2857, 1.2857]


def test_grid_inverse_alpha_cell_is_the_training_vector(tmp_path, data_root):
    from scripts.re_grid import run_grid, training_alpha

    alpha, counts = training_alpha(CONFIG, [])
    assert len(alpha) == 6 and sum(counts.values()) == 256  # tiny_re: max_train_examples 256
    rel, _ = training_alpha(CONFIG, [], "invrel")
    n = list(counts.values())
    assert rel[0] == 1.0 and sum(rel[1:]) / 5 == pytest.approx(1.0, abs=1e-4)  # relations only, mean 1
    assert rel[1] / rel[2] == pytest.approx(n[2] / n[1], rel=1e-3)  # alpha_k n_k constant among the relations
    assert alpha[1] / alpha[2] == pytest.approx(n[2] / n[1], rel=1e-3)
    vector = "relation.focal_alpha=[" + ",".join(f"{a:g}" for a in alpha) + "]"
    fake_run(tmp_path, "vec", ["relation.loss=focal", "relation.focal_gamma=1", vector], 41.0)
    fake_run(tmp_path, "scalar", ["relation.loss=focal", "relation.focal_gamma=1"], 44.0)  # alpha 1: another cell
    table = run_grid(CONFIG, [], [1.0], [0.0], [1.0, "inv"], [None], tmp_path, prefix="g")
    assert "| 1 | inv | 0 | vec (42) | 50.0 | 41.0 | 20.5 | 44.0 | 21.5 |" in table.splitlines()
    assert "| 1 | 1 | 0 | scalar (42) |" in table
    fake_run(tmp_path / "other", "scalar", ["relation.loss=focal", "relation.focal_gamma=1"], 44.0)
    gaps = run_grid(CONFIG, [], [1.0], [0.0], ["inv"], [None], tmp_path / "other", prefix="g")
    assert (f"relation.loss=focal relation.focal_gamma=1.0 {vector} relation.label_smoothing=0.0 "
            "train.name=g_g1_ainv_ls0") in gaps
