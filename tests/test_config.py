"""The config schema: strict keys, typed values, overrides last, every shipped YAML loads."""
from pathlib import Path

import pytest

from core.config import ConfigError, load_config

CONFIGS = sorted(Path(__file__).resolve().parent.parent.glob("configs/*.yaml"))


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  lr: 3.0e-5\n  epochs: 2\n")
    cfg = load_config(path, ["train.lr=1e-4", "data.eval_langs=[de, fr]"])
    assert cfg.train.lr == 1e-4
    assert cfg.train.epochs == 2.0 and isinstance(cfg.train.epochs, float)
    assert cfg.data.eval_langs == ["de", "fr"]
    assert cfg.train.batch_size == 16  # default untouched
    assert cfg.train.name == "x"


def test_unknown_key_names_closest(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'train.learning_rate'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"did you mean 'train.lr'"):
        load_config(None, ["train.lrr=3"])


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match=r"'train.batch_size' must be int"):
        load_config(None, ["train.batch_size=big"])
    with pytest.raises(ConfigError, match=r"is a section"):
        load_config(None, ["train=3"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_loads(path):
    load_config(path)
