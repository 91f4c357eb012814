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


@pytest.mark.parametrize("override,valid", [
    ("model.head=crff", "'linear', 'crf'"), ("train.schedule=cos", "'linear', 'cosine', 'constant'"),
    ("train.precision=fp8", "'auto', 'fp32', 'bf16', 'fp16'"), ("train.device=gpu", "'auto', 'cpu', 'cuda'"),
    ("model.attention=flash", "'sdpa', 'manual'"), ("bilstm.char_encoder=gru", "'cnn', 'lstm'"),
    ("bilstm.word_vectors=glove", "'', 'sgns'")])
def test_enum_settings_name_their_valid_values(override, valid):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"'{key}' must be one of {valid}.*; got '"):  # others may be added
        load_config(None, [override])


def test_literal_values_load_and_yaml_files_are_checked_too(tmp_path):
    assert load_config(None, ["model.head=crf"]).model.head == "crf"
    path = tmp_path / "x.yaml"
    path.write_text("model:\n  head: crff\n")
    with pytest.raises(ConfigError, match=r"x.yaml: 'model.head' must be one of"):
        load_config(path)


@pytest.mark.parametrize("override,message", [
    ("train.lr=nan", "'train.lr' must be a finite number"), ("train.lr=.inf", "'train.lr' must be a finite number"),
    ("train.lr=-1e-4", "'train.lr' must be >= 0"), ("train.max_steps=-1", "'train.max_steps' must be >= 0"),
    ("train.accum_steps=0", "'train.accum_steps' must be >= 1"), ("train.log_every=0", "'train.log_every' must be >= 1"),
    ("train.batch_size=0", "'train.batch_size' must be >= 1"), ("train.epochs=0", "'train.epochs' must be > 0"),
    ("train.warmup_ratio=1.5", "'train.warmup_ratio' must be in"), ("data.stride=200", "'data.stride' must be in"),
    ("train.adam_betas=[0.9, 1.0]", "'train.adam_betas' must be two values"),
    ("mlm.mask_prob=0", "'mlm.mask_prob' must be in"),
    ("mapping.vector_ngrams=[5, 3]", "'mapping.vector_ngrams' must be"), ("mapping.vector_ngrams=[3]", "vector_ngrams")])
def test_bad_values_are_rejected_at_load_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_epochs_zero_is_fine_when_max_steps_sets_the_length():
    assert load_config(None, ["train.epochs=0", "train.max_steps=5"]).train.max_steps == 5


def test_unknown_task_names_the_registered_ones(tmp_path, capsys):
    import train

    path = tmp_path / "x.yaml"
    path.write_text("task: nerr\n")
    assert train.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "'task' must be one of 'ner', 'mlm'" in err and "got 'nerr'" in err
