"""CoNLL readers, tag mapping, error messages, and the data-source splits."""
from __future__ import annotations

import dataclasses

import pytest

from core.config import load_config
from data.conll import ConllError, Sentence, read_conll, write_conll
from data.labels import build_label_set
from data.sources import MissingDataError, carve_split, load_split, split_path


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_three_formats_read_the_same_sentences(tmp_path):
    index = _write(tmp_path, "a.conllu", "0\tals\tO\n1\tSavoyer\tB-LOC\n\n0\tAnna\tB-PER\n")
    token = _write(tmp_path, "b.txt", "-DOCSTART- O\n\nals O\nSavoyer B-LOC\n\n\nAnna B-PER\n\n")
    xtreme = _write(tmp_path, "c.tsv", "de:als\tO\nde:Savoyer\tB-LOC\n\nde:Anna\tB-PER\n")
    want = [(["als", "Savoyer"], ["O", "B-LOC"]), (["Anna"], ["B-PER"])]
    for path in (index, token, xtreme):
        got = read_conll(path)
        assert [(s.words, s.tags) for s in got] == want, path.name
    assert [s.lang for s in read_conll(xtreme)] == ["de", "de"]
    assert [s.lang for s in read_conll(index, lang="fr")] == ["fr", "fr"]


def test_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, "bad.conllu", "0\tals\tO\n1\tTeil\n")
    with pytest.raises(ConllError, match=r"bad\.conllu:2: expected"):
        read_conll(path)


def test_unknown_tag_names_file_and_line_and_tag_map_fixes_it(tmp_path):
    path = _write(tmp_path, "fr.conllu", "0\tLe\tO\n\n0\tDS\tB-MISC\n1\tLite\tI-MISC\n")
    with pytest.raises(ConllError, match=r"fr\.conllu:3: unknown tag 'B-MISC'"):
        read_conll(path)
    got = read_conll(path, tag_map={"B-MISC": "O", "I-MISC": "O"})
    assert [s.tags for s in got] == [["O"], ["O", "O"]]
    assert read_conll(path, labels=None)[1].tags == ["B-MISC", "I-MISC"]  # any IOB2 tag allowed


def test_write_then_read_round_trip(tmp_path):
    sents = [Sentence(["Rom", "ist", "alt"], ["B-LOC", "O", "O"], "de"), Sentence(["x"], ["O"], "de")]
    for fmt in ("index", "token", "xtreme"):
        write_conll(tmp_path / f"o.{fmt}", sents, fmt=fmt)
        back = read_conll(tmp_path / f"o.{fmt}", lang="de")
        assert back == sents


def test_label_set_ids():
    labels = build_label_set()
    assert labels.tags == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    assert labels.ids(["O", "I-LOC"]) == [0, 6] and labels.entity_types() == ["PER", "ORG", "LOC"]
    with pytest.raises(KeyError, match="B-MISC"):
        labels.id("B-MISC")


def test_carve_is_a_fixed_seed_partition():
    sents = [Sentence([str(i)], ["O"]) for i in range(50)]
    parts = {s: carve_split(sents, s, {"test": 10, "dev": 5}, seed=7) for s in ("train", "dev", "test")}
    ids = {s: [int(x.words[0]) for x in p] for s, p in parts.items()}
    assert [len(ids[s]) for s in ("train", "dev", "test")] == [35, 5, 10]
    assert sorted(ids["train"] + ids["dev"] + ids["test"]) == list(range(50))
    assert all(v == sorted(v) for v in ids.values())  # file order kept
    assert ids == {s: [int(x.words[0]) for x in carve_split(sents, s, {"test": 10, "dev": 5}, 7)]
                   for s in ids}


def test_real_splits(data_root):
    cfg = load_config(overrides=[f"data.root={data_root}"]).data
    assert split_path(cfg, "de", "dev") == data_root / "panx/de/val.conllu"
    dev = load_split(cfg, "de", "dev")
    assert len(dev) == 10000 and dev[0].words[:2] == ["Anton", "Wilhelm"] and dev[0].lang == "de"
    fr = {s: load_split(cfg, "fr", s) for s in ("train", "dev", "test")}
    assert {s: len(v) for s, v in fr.items()} == {"train": 8600, "dev": 2000, "test": 2000}
    assert all("MISC" not in t for s in fr["test"] for t in s.tags)
    test_words = {tuple(s.words) for s in fr["test"]}
    assert fr["test"][0].words[:3] == ["Suivent", "d'", "autres"]
    assert sum(tuple(s.words) in test_words for s in fr["dev"]) < 5  # disjoint up to duplicate sentences


def test_missing_files_error_names_them(tmp_path):
    cfg = dataclasses.replace(load_config().data, root=str(tmp_path))
    with pytest.raises(MissingDataError, match=r"panx/nl/test\.conllu"):
        load_split(cfg, "nl", "test")


def test_missing_file_is_downloaded_into_the_cache(tmp_path, monkeypatch):
    import data.download

    monkeypatch.setenv("XLT_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_download(url, dest, expected_size=None):
        calls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("0\tOslo\tB-LOC\n\n0\tja\tO\n", encoding="utf-8")
        return dest

    monkeypatch.setattr(data.download, "download", fake_download)
    cfg = dataclasses.replace(load_config().data, root=str(tmp_path / "empty"),
                              url_template="https://example.org/{lang}/{split}.conllu")
    sents = load_split(cfg, "nl", "dev")
    assert calls == ["https://example.org/nl/val.conllu"] and sents[0].words == ["Oslo"]
    assert split_path(cfg, "nl", "dev") == tmp_path / "cache/data/panx/nl/val.conllu"
    load_split(cfg, "nl", "dev")
    assert len(calls) == 1  # found in the cache the second time
