"""Parallel-text and alignment readers: formats, and every bad input named by file and line."""
import pytest

from data.parallel import (Links, ParallelFormatError, load_gold, multi30k, opennmt_val, read_parallel,
                           read_pharaoh, read_ref_wa, read_separated, split_words, swap, tatoeba_anki)

pytestmark = pytest.mark.usefixtures("one_thread")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_parallel_splits_words_and_strips_the_bom(tmp_path):
    src = write(tmp_path, "a.de", "\ufeffHallo, Welt!\nEin Haus.\n")
    tgt = write(tmp_path, "a.en", "Hello, world!\nA house.\n")
    corpus = read_parallel(src, tgt, "de", "en")
    assert corpus.src == [["Hallo", ",", "Welt", "!"], ["Ein", "Haus", "."]]
    assert corpus.tgt[1] == ["A", "house", "."] and len(corpus) == 2
    assert split_words("l'homme don't e-mail") == ["l'homme", "don't", "e-mail"]


def test_unequal_line_counts_and_empty_lines_are_named(tmp_path):
    src = write(tmp_path, "a.de", "eins\nzwei\ndrei\n")
    tgt = write(tmp_path, "a.en", "one\ntwo\n")
    with pytest.raises(ParallelFormatError, match=r"a\.de has 3 lines but .*a\.en has 2"):
        read_parallel(src, tgt, "de", "en")
    tgt = write(tmp_path, "b.en", "one\n  \nthree\n")
    with pytest.raises(ParallelFormatError, match=r"b\.en:2: empty line"):
        read_parallel(src, tgt, "de", "en")
    kept = read_parallel(src, tgt, "de", "en", empty="skip")
    assert kept.src == [["eins"], ["drei"]] and "1 pairs with an empty side left out (lines 2)" in kept.dropped[0]
    tsv = write(tmp_path, "p.tsv", "Hi.\tHallo!\nGo.\n")
    with pytest.raises(ParallelFormatError, match=r"p\.tsv:2: expected"):
        read_separated(tsv, "en", "de")


def test_pharaoh_sure_possible_one_based_and_out_of_range(tmp_path):
    path = write(tmp_path, "x.gold", "1-1 2p3\n\n3-1\n")
    links = read_pharaoh(path, [3, 1, 3], [3, 1, 1], one_based=True)
    assert links[0].sure == {(0, 0)} and links[0].possible == {(0, 0), (1, 2)}
    assert links[1] == Links() and links[2].sure == {(2, 0)}
    with pytest.raises(ParallelFormatError, match=r"x\.gold:3: link '3-1' out of range"):
        read_pharaoh(path, [3, 1, 2], [3, 1, 1], one_based=True)
    problems = []
    skipped = read_pharaoh(path, [3, 1, 2], [3, 1, 1], one_based=True, out_of_range="skip", problems=problems)
    assert skipped[2] == Links() and problems[0][1] == 3 and "3-1" in problems[0][2]
    bad = write(tmp_path, "y.wa", "0-0 1x2\n")
    with pytest.raises(ParallelFormatError, match=r"y\.wa:1: malformed link '1x2'"):
        read_pharaoh(bad)
    with pytest.raises(ParallelFormatError, match=r"has 1 lines but the corpus has 2"):
        read_pharaoh(bad, [2, 2], [2, 2])


def test_ref_wa_rows(tmp_path):
    path = write(tmp_path, "r.wa", "1 0 0 S\n2 1 0 P\n2 0 1\n")
    links = read_ref_wa(path, 2)
    assert links[0].sure == {(0, 0)} and links[1].sure == {(0, 1)} and links[1].possible == {(1, 0), (0, 1)}
    with pytest.raises(ParallelFormatError, match=r"r2\.wa:1: pair 3 outside 1\.\.2"):
        read_ref_wa(write(tmp_path, "r2.wa", "3 0 0 S\n"), 2)


def test_de_en_gold_reports_its_out_of_range_link(data_root):
    gold = load_gold(data_root, "de-en")
    assert len(gold) == 100 and gold.src[0][:2] == ["herr", "präsident"]  # BOM gone
    assert sum(len(l.sure) for l in gold.links) == 1232  # 1,233 links less the bad one
    assert len(gold.problems) == 1 and gold.problems[0][1] == 63 and "'12-16'" in gold.problems[0][2]
    # the .wa and the AER-script .ref.wa files agree (the ref file keeps the bad link)
    ref = read_ref_wa(data_root / "word_align_gold/de-en/de-en.ref.wa", 100)
    ref[62].sure.discard((12, 16))
    assert [r.sure for r in ref] == [l.sure for l in gold.links]
    roen = load_gold(data_root, "ro-en")
    assert len(roen) == 248 and roen.links[0].sure == {(1, 3), (0, 2)} and not roen.problems


def test_staged_corpora(data_root):
    anki = tatoeba_anki(data_root, "de")
    assert len(anki) == 169813 - 712 and "712 listed lines" in anki.dropped[0]
    test = multi30k(data_root, "test_2016_flickr", "de", "fr")
    assert len(test) == 1000 and test.src_lang == "de"
    val = opennmt_val(data_root)
    assert len(val) == 3000 and (0, 0) in val.links[0].sure and val.src[0][0] == "Parliament"
    back = swap(val)
    assert back.src == val.tgt and (1, 0) in back.links[0].sure  # 0-1 mirrored
