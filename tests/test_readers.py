"""Named errors instead of tracebacks: every reader names the file and line of bytes that are not
UTF-8, accepts a BOM, an empty split stops a run before training, a data layout cannot write
outside the cache, and a broken override is one line."""
from __future__ import annotations

import codecs

import pytest

import train
from core.config import ConfigError, load_config
from data.conll import ConllError, read_conll
from data.dictionaries import read_dictionary
from data.lines import TextFileError
from data.sources import ensure_files, load_split
from data.text import read_text_file
from loopback import Server

GOOD = "0\tAnna\tB-PER\n1\tlacht\tO\n\n0\tRom\tB-LOC\n"


def _panx_root(tmp_path, test_text=GOOD, dev_text=GOOD):
    root = tmp_path / "data"
    (root / "panx" / "de").mkdir(parents=True)
    for name, text in (("train", GOOD), ("val", dev_text), ("test", test_text)):
        (root / "panx" / "de" / f"{name}.conllu").write_text(text, encoding="utf-8")
    return root


def test_conll_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "de.conllu"
    path.write_bytes(GOOD.encode() + b"\n0\tK\xf6ln\tB-LOC\n")  # Latin-1 o-umlaut on line 6
    with pytest.raises(ConllError, match=r"de\.conllu:6: not UTF-8 \(byte 0xf6 at column 4\)"):
        read_conll(path)


def test_conll_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.conllu"
    path.write_bytes(codecs.BOM_UTF8 + GOOD.encode())
    got = read_conll(path)
    assert [s.words for s in got] == [["Anna", "lacht"], ["Rom"]] and got[0].tags == ["B-PER", "O"]
    (tmp_path / "bom.txt").write_bytes(codecs.BOM_UTF8 + b"Anna B-PER\r\nlacht O\r\n")  # token format, CRLF
    assert read_conll(tmp_path / "bom.txt")[0].words == ["Anna", "lacht"]


def test_text_and_dictionary_readers_name_file_and_line(tmp_path):
    (tmp_path / "t.txt").write_bytes(codecs.BOM_UTF8 + b"ein Satz\n\nzwei &apos;S\xe4tze&apos;\n")
    with pytest.raises(TextFileError, match=r"t\.txt:3: not UTF-8 \(byte 0xe4"):
        read_text_file(tmp_path / "t.txt")
    (tmp_path / "u.txt").write_bytes(codecs.BOM_UTF8 + "ein Satz\n\nzwei &apos;Sätze&apos;\n".encode())
    assert read_text_file(tmp_path / "u.txt") == ["ein Satz", "zwei 'Sätze'"]  # BOM gone
    (tmp_path / "d.txt").write_bytes(codecs.BOM_UTF8 + b"haus house\nk\xf6ln cologne\n")
    with pytest.raises(TextFileError, match=r"d\.txt:2: not UTF-8"):
        read_dictionary(tmp_path / "d.txt")
    (tmp_path / "e.txt").write_bytes(codecs.BOM_UTF8 + b"haus house\n\nbad line here\n")
    with pytest.raises(TextFileError, match=r"e\.txt:3: expected 'source target'"):
        read_dictionary(tmp_path / "e.txt")  # nothing silently dropped
    (tmp_path / "f.txt").write_bytes(codecs.BOM_UTF8 + b"Haus house\n\n")
    assert read_dictionary(tmp_path / "f.txt") == [("haus", "house")]  # BOM gone, blank line skipped


@pytest.mark.parametrize("which", ["test", "dev"])
def test_empty_split_is_caught_before_training(tmp_path, which, capsys):
    texts = {"test_text": GOOD, "dev_text": GOOD}
    texts[f"{which}_text"] = "\n\n# only a comment\n\n"
    root = _panx_root(tmp_path, **texts)
    cfg = load_config(None, [f"data.root={root}"])
    name = {"test": "test", "dev": "val"}[which]
    with pytest.raises(ConllError, match=rf"panx/de/{name}\.conllu: no sentences .*de {which} needs at least one"):
        ensure_files(cfg.data, [("de", "train"), ("de", "dev"), ("de", "test")])
    with pytest.raises(ConllError, match=rf"{name}\.conllu: no sentences"):
        load_split(cfg.data, "de", which)
    # train.py: exit 2, one line naming the file, before the model is loaded or a run folder made
    code = train.main(["configs/tiny_ner.yaml", f"data.root={root}", "data.train_langs=[de]", "data.eval_langs=[de]",
                       f"train.out_dir={tmp_path}/runs/{{name}}",
                       f"model.name_or_path={tmp_path / 'no_model'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{name}.conllu: no sentences" in err, err
    assert not (tmp_path / "runs").exists()


def test_bad_line_in_the_test_file_is_caught_before_training(tmp_path):
    root = _panx_root(tmp_path, test_text=GOOD + "\n0\tBerlin\n")
    cfg = load_config(None, [f"data.root={root}"])
    with pytest.raises(ConllError, match=r"test\.conllu:6: expected"):
        ensure_files(cfg.data, [("de", "train"), ("de", "test")])
    assert ensure_files(cfg.data, [("de", "train")])  # the good file alone passes


def test_empty_carved_split_names_the_file(tmp_path):
    root = tmp_path / "data"
    (root / "wikineural" / "fr").mkdir(parents=True)
    (root / "wikineural" / "fr" / "val.conllu").write_text(GOOD, encoding="utf-8")
    cfg = load_config(None, [f"data.root={root}", "data.carve_sizes={test: 1, dev: 0}"])
    assert [s.words for s in load_split(cfg.data, "fr", "test")] in ([["Rom"]], [["Anna", "lacht"]])
    with pytest.raises(ConllError, match=r"val\.conllu: the dev part carved for fr is empty"):
        ensure_files(cfg.data, [("fr", "train"), ("fr", "dev")])
    cfg = load_config(None, [f"data.root={root}"])  # 2000 + 2000 out of 2 sentences
    with pytest.raises(ConllError, match=r"val\.conllu: cannot carve test 2000 \+ dev 2000 out of 2"):
        load_split(cfg.data, "fr", "train")


@pytest.fixture
def data_server():
    s = Server({"/de/train": GOOD.encode()})
    yield s
    s.close()


def test_layout_download_stays_in_the_cache(tmp_path, monkeypatch, data_server):
    monkeypatch.setenv("XLT_CACHE", str(tmp_path / "cache"))
    empty_root = tmp_path / "root"
    empty_root.mkdir()
    base = [f"data.root={empty_root}", f"data.url_template={data_server.url}/{{lang}}/{{split}}"]
    cfg = load_config(None, base)
    assert load_split(cfg.data, "de", "train")[0].words == ["Anna", "lacht"]  # downloaded into the cache
    assert (tmp_path / "cache" / "data" / "panx" / "de" / "train.conllu").is_file()
    for layout in ("../../escaped/{split}.conllu", "x/../../../escaped/{split}", f"{tmp_path}/escaped/{{split}}"):
        cfg = load_config(None, base + [f"data.layout={{de: '{layout}'}}"])
        with pytest.raises(ConfigError, match=r"data\.layout\['de'\]"):
            load_split(cfg.data, "de", "train")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "cache" / "escaped").exists()
    # a symlink inside the cache that leads out of it is refused too
    (tmp_path / "cache" / "data" / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    cfg = load_config(None, base + ["data.layout={de: 'out/{split}.conllu'}"])
    with pytest.raises(ConfigError, match="leaves"):
        load_split(cfg.data, "de", "train")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_unparsable_override_is_one_line(capsys):
    with pytest.raises(ConfigError, match=r"override 'train.name=\[': '\[' is not a YAML value") as err:
        load_config(None, ["train.name=["])
    assert "\n" not in str(err.value)
    assert train.main(["configs/tiny_ner.yaml", "train.lr={1e-3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.lr={1e-3" in err
    assert load_config(None, ["model.name_or_path='['"]).model.name_or_path == "["  # quoted: a string


def test_missing_data_skips_locally_and_fails_in_ci(tmp_path, monkeypatch):
    from conftest import require_data

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="public data not found"):
        require_data(tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so a missing data set is a failure"):
        require_data(tmp_path)
    (tmp_path / "panx").mkdir()
    require_data(tmp_path)  # present: nothing happens


def test_extension_text_sources_name_key_file_and_line(tmp_path):
    """read_source (extend.text_files and friends): bytes that are not UTF-8, in plain, CSV and gzip
    files, and a CSV cell over csv's field limit are one error naming the key, the file and the line."""
    import csv
    import gzip

    from data.text_sources import TextSourceError, read_source
    (tmp_path / "p.txt").write_bytes(codecs.BOM_UTF8 + b"erste Zeile\nzweite Zeile\nK\xf6ln\n")
    with pytest.raises(TextSourceError, match=r"extend\.text_files\[0\]: .*p\.txt:3: not UTF-8 \(byte 0xf6 at column 2\)"):
        read_source(tmp_path, "p.txt", key="extend.text_files[0]")
    (tmp_path / "a.csv").write_bytes(b'id,text\n1,"gut"\n2,"K\xf6ln"\n')
    with pytest.raises(TextSourceError, match=r"k: .*a\.csv:3: not UTF-8"):
        read_source(tmp_path, "a.csv#text", key="k")
    with gzip.open(tmp_path / "g.tsv.gz", "wb") as f:
        f.write(b"id\ttext\n1\tgut\n2\tK\xf6ln\n")
    with pytest.raises(TextSourceError, match=r"k: .*g\.tsv\.gz:3: not UTF-8"):
        read_source(tmp_path, "g.tsv.gz#text", key="k")
    (tmp_path / "long.csv").write_text('id,text\n1,gut\n2,"' + "x" * (csv.field_size_limit() + 1) + '"\n')
    with pytest.raises(TextSourceError, match=r"k: .*long\.csv:3: unreadable ',.*field larger than field limit"):
        read_source(tmp_path, "long.csv#text", key="k")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(TextSourceError, match=r"k: .*bad\.gz: unreadable after line 0"):
        read_source(tmp_path, "bad.gz", key="k")


def test_monolingual_text_names_file_and_line(tmp_path):
    from data.monolingual import TextSource

    (tmp_path / "m.txt").write_bytes(codecs.BOM_UTF8 + b"eins\tone\nzwei\ttwo\nK\xf6ln\tcologne\n")
    with pytest.raises(TextFileError, match=r"m\.txt:3: not UTF-8 \(byte 0xf6"):
        TextSource("m.txt", 1).lines(tmp_path)
    (tmp_path / "m.txt").write_bytes(codecs.BOM_UTF8 + b"eins\tone\r\nzwei\ttwo\n")
    assert TextSource("m.txt", 0).lines(tmp_path) == ["eins", "zwei"]  # BOM and CRLF gone
    assert TextSource("m.txt", 1).lines(tmp_path) == ["one", "two"]
