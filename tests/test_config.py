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


def test_dotted_override_into_a_mapping_sets_one_key_and_braces_replace():
    default = load_config().data.layout
    cfg = load_config(None, ["data.layout.pl=panx/{lang}/{split}.conllu"])
    assert cfg.data.layout == {**default, "pl": "panx/{lang}/{split}.conllu"}
    assert cfg.data.layout["fr"] == "wikineural/{lang}/{split}.conllu"  # the other languages are kept
    assert load_config(None, ["data.layout={pl: 'x/{lang}/{split}'}"]).data.layout == {"pl": "x/{lang}/{split}"}
    pairs = load_config(None, ["align.train_pairs.es-de=[a.es, a.de]"]).align.train_pairs
    assert pairs["es-de"] == ["a.es", "a.de"] and "en-de" in pairs
    assert load_config(None, ["data.carve_sizes.test=10"]).data.carve_sizes == {"test": 10, "dev": 2000}
    with pytest.raises(ConfigError, match=r"'data.carve_sizes.test' must be int"):
        load_config(None, ["data.carve_sizes.test=x"])
    with pytest.raises(ConfigError, match=r"'data.layout.pl' is one value of the mapping 'data.layout'"):
        load_config(None, ["data.layout.pl.x=3"])
    with pytest.raises(ConfigError, match=r"'train.lr' is a single value"):
        load_config(None, ["train.lr.x=3"])


def test_a_duplicate_yaml_key_names_the_file_and_both_lines(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  lr: 1.0e-4\n  epochs: 2\n  lr: 3.0e-5\n")
    with pytest.raises(ConfigError, match=r"x.yaml:4: duplicate key 'lr' \(first given on line 2\)"):
        load_config(path)
    path.write_text("base: &b {lr: 1.0}\ntrain:\n  <<: *b\n  lr: 2.0\n")  # a merge key may be overridden
    with pytest.raises(ConfigError, match=r"unknown key 'base'"):  # gets past the loader to the schema
        load_config(path)


def _alias_bomb(depth: int) -> str:
    """~600 bytes that stand for 9 ** depth strings, nested under train.lr."""
    names = "abcdefghijklmnop"
    lines = ["    - &a [" + ",".join(['"lol"'] * 9) + "]"]
    lines += [f"    - &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * 9) + "]" for i in range(1, depth)]
    return "train:\n  lr:\n" + "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path):
    import time
    import tracemalloc

    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(9))
    assert len(path.read_bytes()) < 700
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml:\d+: YAML aliases expand to more than 100,000 values") as err:
        load_config(path)
    seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 20e6 and len(str(err.value)) < len(str(path)) + 120
    path.write_text("train:\n  lr: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(ConfigError, match=r"bomb.yaml:2: values nested more than 64 deep"):
        load_config(path)
    path.write_text("train: &t\n  lr: *t\n")
    with pytest.raises(ConfigError, match=r"an? YAML alias that contains itself"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"expand to more than"):  # the same through an override
        load_config(None, ["train.lr=" + "[" + _alias_bomb(9).split("\n", 2)[2].replace("\n    - ", ", ")
                           .removeprefix("    - ").rstrip() + "]"])


def test_a_small_aliased_value_is_quoted_short_in_the_error(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(_alias_bomb(4))  # 9 ** 4 strings: below the limit, so the schema sees it
    with pytest.raises(ConfigError, match=r"'train.lr' must be float, got \[\[") as err:
        load_config(path)
    assert len(str(err.value).partition(" got ")[2]) <= 200  # the value quoted, whatever its size


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"x.yaml:1: not UTF-8 text \(byte 0x89\)"),
    (b"train:\n  lr: \x00\x01", r"x.yaml:2: a NUL byte"),
    (b"train:\n  name: caf\xe9\n", r"x.yaml:2: not UTF-8 text \(byte 0xe9\)"),
    (b"train: [\n", r"x.yaml:2: not valid YAML")])
def test_a_binary_or_broken_config_file_is_one_named_line(tmp_path, content, message):
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override,message", [
    ("data.mix={de: -1}", r"'data.mix' must be shares > 0"),
    ("data.mix={de: 0}", r"'data.mix' must be shares > 0"),
    ("data.mix={fr: 1.0}", r"'data.mix' names 'fr', not in data.train_langs"),
    ("data.train_langs=[]", r"'data.train_langs' must be at least one language")])
def test_training_languages_and_mix_are_checked_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
    assert load_config(None, ["data.train_langs=[de, fr]", "data.mix={de: 0.7, fr: 0.3}"]).data.mix == \
        {"de": 0.7, "fr": 0.3}
