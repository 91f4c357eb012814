"""train.py's command line: --list (header, what each config needs first), --print-config (nothing
run), bare config names, a missing config's nearest names."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import train
from core.catalog import list_configs, resolve_config
from core.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _one_error_line(capsys, argv) -> str:
    assert train.main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1, out.err
    assert out.err.startswith("error: ")
    return out.err


def test_list_names_every_config_its_header_and_the_chain_it_needs(capsys):
    assert train.main(["--list"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    listed = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert listed == names
    lines = out.splitlines()
    klue = lines.index(next(line for line in lines if line.startswith("mini_re_klue ")))
    assert lines[klue].split(None, 1)[1] == (CONFIGS / "mini_re_klue.yaml").read_text().splitlines()[0][2:]
    assert lines[klue + 1].split() == ["needs", "first:", "mini_pretrain", "->", "mini_extend_ko"]
    tiny = lines.index(next(line for line in lines if line.startswith("tiny_ner ")))
    assert not lines[tiny + 1].startswith(" ")  # a smoke run needs nothing first
    rows = {r.name: r for r in list_configs()}
    assert rows["mini_zeroshot_de"].needs == ["mini_pretrain"] and rows["mini_pretrain"].needs == []
    assert rows["tiny_re"].needs == []  # a path inside its own run folder is not a need
    assert rows["zeroshot_de"].downloads == ["xlm-roberta-base"] and rows["re_klue_roberta_base"].downloads == \
        ["klue/roberta-base"]
    assert rows["mini_pretrain"].downloads == rows["tiny_ner"].downloads == rows["mini_re_klue"].downloads == []
    zeroshot = lines.index(next(line for line in lines if line.startswith("zeroshot_de ")))
    assert lines[zeroshot + 1].split() == ["needs", "first:", "xlm-roberta-base", "(download)"]


def test_needs_come_from_the_values_in_run_order(tmp_path):
    (tmp_path / "a.yaml").write_text("# base\ntask: mlm\n")
    (tmp_path / "b.yaml").write_text("# grows a\nmodel:\n  name_or_path: runs/a/model\ntrain:\n  name: bee\n")
    (tmp_path / "c.yaml").write_text("# uses b and a\nmodel:\n  name_or_path: runs/bee/model\n"
                                     "mlm:\n  text_files: [runs/a/extra.txt]\n")
    (tmp_path / "d.yaml").write_text("train:\n  lrr: 1\n")
    rows = {r.name: r for r in list_configs(tmp_path)}
    assert (rows["a"].needs, rows["b"].needs, rows["c"].needs) == ([], ["a"], ["a", "b"])
    assert rows["c"].header == "uses b and a" and rows["d"].header == ""
    assert "did you mean 'train.lr'" in rows["d"].problem


def test_print_config_prints_the_merged_config_and_runs_nothing(tmp_path, capsys, monkeypatch):
    def refuse(cfg):
        raise AssertionError("a task was built")

    monkeypatch.setitem(train.TASKS, "ner", refuse)
    out_dir = tmp_path / "run"
    assert train.main(["tiny_ner", "--print-config", "train.lr=1e-3", f"train.out_dir={out_dir}",
                       "data.layout.pl=panx/{lang}/{split}.conllu"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 1e-3 and printed["train"]["name"] == "tiny_ner"
    assert printed["data"]["layout"]["pl"] == "panx/{lang}/{split}.conllu" and "de" in printed["data"]["layout"]
    assert not out_dir.exists()
    (tmp_path / "printed.yaml").write_text(yaml.safe_dump(printed))
    again = load_config(tmp_path / "printed.yaml")
    assert again == load_config(CONFIGS / "tiny_ner.yaml", ["train.lr=1e-3", f"train.out_dir={out_dir}",
                                                             "data.layout.pl=panx/{lang}/{split}.conllu"])


def test_bare_names_resolve_in_configs(tmp_path, monkeypatch):
    assert resolve_config("tiny_ner") == CONFIGS / "tiny_ner.yaml"
    assert resolve_config("tiny_ner.yaml") == CONFIGS / "tiny_ner.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny_ner.yaml").write_text("task: ner\n")
    assert resolve_config("tiny_ner") == CONFIGS / "tiny_ner.yaml"  # no extension: the shipped one
    assert resolve_config("tiny_ner.yaml") == Path("tiny_ner.yaml")  # an existing file as given


def test_a_missing_config_is_one_line_with_the_nearest_names(capsys, tmp_path):
    err = _one_error_line(capsys, ["tiny_nerr"])
    assert "tiny_nerr: no such config file; did you mean tiny_ner" in err and "--list" in err
    err = _one_error_line(capsys, ["configs/mini_re_kleu.yaml"])
    assert "did you mean mini_re_klue" in err
    assert "no such config file (" in _one_error_line(capsys, [str(tmp_path / "qqqqqqq.yaml")])
    assert "a folder, not a config file" in _one_error_line(capsys, [str(tmp_path)])
    with pytest.raises(ConfigError, match="no such config file"):
        resolve_config("nothing_like_it")


def test_list_into_a_closed_pipe_is_quiet():
    """`python train.py --list | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "train.py", "--list"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before anything is written: every write meets a closed pipe
    err = proc.stderr.read()
    proc.wait()
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert proc.returncode == 1
