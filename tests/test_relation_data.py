"""Relation readers: KLUE CSV and JSON layouts, KBP37, CoNLL04, the dev split, every bad input."""
from __future__ import annotations

import json

import pytest

from data.relation import (NO_RELATION, Entity, RelationDataError, RelationExample, kbp37_label_names,
                           read_conll04, read_kbp37, read_klue_csv, read_klue_json, read_relation_names,
                           sample_negatives, split_klue_dev)

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["no_relation", "org:member_of", "per:employee_of"]
HEADER = ",guid,sentence,subject_entity,object_entity,label,source\n"
GOOD = ('0,g0,"이순신은 조선의 장군이다.","{\'word\': \'이순신\', \'start_idx\': 0, \'end_idx\': 2, \'type\': \'PER\'}",'
        '"{\'word\': \'조선\', \'start_idx\': 5, \'end_idx\': 6, \'type\': \'ORG\'}",2,wikipedia\n')


def write(tmp_path, text, name="rows.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_klue_csv_reads_inclusive_spans(tmp_path):
    [ex] = read_klue_csv(write(tmp_path, HEADER + GOOD), NAMES)
    assert ex.guid == "g0" and ex.label == "per:employee_of" and ex.source == "wikipedia"
    assert ex.subj == Entity("이순신", 0, 2, "PER") and ex.sentence[ex.obj.start:ex.obj.end + 1] == "조선"


def test_klue_json_layout(tmp_path):
    """The official klue-re-v1.1_train.json layout: a list of records, dict cells, label names."""
    records = [{"guid": "klue-re-v1_train_00000", "sentence": "이순신은 조선의 장군이다.",
                "subject_entity": {"word": "이순신", "start_idx": 0, "end_idx": 2, "type": "PER"},
                "object_entity": {"word": "조선", "start_idx": 5, "end_idx": 6, "type": "ORG"},
                "label": "per:employee_of", "source": "wikipedia"}]
    [ex] = read_klue_json(write(tmp_path, json.dumps(records, ensure_ascii=False), "train.json"), NAMES)
    assert ex.label == "per:employee_of" and ex.obj == Entity("조선", 5, 6, "ORG")
    records[0]["label"] = "per:unknown"
    with pytest.raises(RelationDataError, match=r"record 0 \(guid klue-re-v1_train_00000\): unknown label"):
        read_klue_json(write(tmp_path, json.dumps(records), "bad.json"), NAMES)


BAD_ROWS = {
    "reads '이순' , not its word": GOOD.replace("'end_idx': 2", "'end_idx': 1"),
    "start_idx 3 > end_idx 2": GOOD.replace("'start_idx': 0", "'start_idx': 3"),
    "overlap": GOOD.replace("'start_idx': 5, 'end_idx': 6", "'start_idx': 2, 'end_idx': 2").replace("'조선'", "'신'"),
    "unknown label 7": GOOD.replace(",2,wikipedia", ",7,wikipedia"),
    "unknown subject type 'XYZ'": GOOD.replace("'PER'", "'XYZ'"),
    "malformed entity cell": GOOD.replace("'type': 'PER'}", "'type': 'PER'"),
    "lacks column": '0,g0,"짧은 행"\n',
}


@pytest.mark.parametrize("why", list(BAD_ROWS))
def test_klue_bad_rows_are_named_errors_or_counted(tmp_path, why):
    path = write(tmp_path, HEADER + GOOD.replace("g0", "g1") + BAD_ROWS[why])
    pattern = why.replace("'", ".").replace("(", r"\(").replace(" , ", ".*")
    with pytest.raises(RelationDataError, match=rf"rows.csv: line 3 \(guid g0\): .*{pattern}"):
        read_klue_csv(path, NAMES)
    rows, bad = read_klue_csv(path, NAMES, skip_bad_rows=True, return_bad=True)
    assert [r.guid for r in rows] == ["g1"] and len(bad) == 1 and "line 3" in bad[0]


def test_klue_missing_column_in_header(tmp_path):
    with pytest.raises(RelationDataError, match=r"line 1 \(header\): missing column\(s\) \['object_entity'\]"):
        read_klue_csv(write(tmp_path, ",guid,sentence,subject_entity,label\n"), NAMES)


def test_klue_cells_are_literals_never_code(tmp_path):
    row = GOOD.replace("\"{'word': '이순신'", "\"__import__('os').system('true') or {'word': '이순신'")
    with pytest.raises(RelationDataError, match="malformed entity cell"):
        read_klue_csv(write(tmp_path, HEADER + row), NAMES)


def test_dev_split_is_seeded_and_disjoint():
    rows = [RelationExample(f"g{i}", "ab", Entity("a", 0, 0, "PER"), Entity("b", 1, 1, "ORG"), NO_RELATION)
            for i in range(50)]
    test, dev, rest = split_klue_dev(rows, 10, 5, seed=1234)
    assert (len(test), len(dev), len(rest)) == (10, 5, 35)
    assert not {r.guid for r in test} & {r.guid for r in dev + rest}
    assert split_klue_dev(rows, 10, 5, seed=1234)[0] == test and split_klue_dev(rows, 10, 5, seed=1)[0] != test


def test_kbp37_markup(tmp_path):
    text = ('0\t" <e1> Thom Yorke </e1> of <e2> Radiohead </e2> has . "\nper:employee_of(e1,e2)\n\n\n'
            '1\t" <e2> IBM </e2> hired <e1> Bill </e1> . "\norg:alternate_names(e2,e1) \n\n\n')
    a, b = read_kbp37(write(tmp_path, text, "k.txt"))
    assert a.sentence == "Thom Yorke of Radiohead has ." and a.subj.word == "Thom Yorke" and a.obj.word == "Radiohead"
    assert (a.subj.start, a.subj.end, a.obj.start, a.obj.end) == (0, 9, 14, 22)
    assert b.subj.word == "Bill" and b.obj.word == "IBM" and b.label == "org:alternate_names(e2,e1)"
    assert kbp37_label_names([a, b])[0] == NO_RELATION
    with pytest.raises(RelationDataError, match=r"k.txt: line 1 \(guid 0\): needs exactly one"):
        read_kbp37(write(tmp_path, '0\t" <e1> A </e1> b . "\nno_relation\n', "k.txt"))
    with pytest.raises(RelationDataError, match="unknown label"):
        read_kbp37(write(tmp_path, text, "k.txt"), labels=[NO_RELATION, "per:employee_of(e1,e2)"])


def test_conll04_pairs_and_negatives(tmp_path):
    item = {"tokens": ["Bill", "Gates", "founded", "Microsoft", "in", "Redmond"],
            "tags": ["B-Peop", "L-Peop", "O", "U-Org", "O", "U-Loc"],
            "relations": [{"head": 0, "tail": 1, "type": "Work_For"}, {"head": 1, "tail": 2, "type": "OrgBased_In"}],
            "orig_id": 7}
    rows = read_conll04(write(tmp_path, json.dumps([item]), "c.json"))
    assert len(rows) == 6  # 3 entities -> 6 ordered pairs
    by_pair = {(r.subj.word, r.obj.word): r.label for r in rows}
    assert by_pair[("Bill Gates", "Microsoft")] == "Work_For" and by_pair[("Microsoft", "Redmond")] == "OrgBased_In"
    assert by_pair[("Microsoft", "Bill Gates")] == NO_RELATION
    kept = sample_negatives(rows, 1.0, seed=0)
    assert sum(r.label == NO_RELATION for r in kept) == 2 and sum(r.label != NO_RELATION for r in kept) == 2
    item["relations"].append({"head": 0, "tail": 9, "type": "Kill"})
    with pytest.raises(RelationDataError, match=r"item 0 \(guid c-7\): .*points outside"):
        read_conll04(write(tmp_path, json.dumps([item]), "c.json"))


def test_real_files(data_root):
    names = read_relation_names(data_root / "klue_re/official_KLUE-benchmark/relation_list.json")
    assert len(names) == 30 and names[0] == NO_RELATION
    train = read_klue_csv(data_root / "klue_re/train_subset/val_predictions.csv", names)
    dev = read_klue_csv(data_root / "klue_re/dev/dev.csv", names)
    assert (len(train), len(dev)) == (3247, 5817)
    prior = lambda rows: sum(r.label == NO_RELATION for r in rows) / len(rows)  # noqa: E731
    assert 0.28 < prior(train) < 0.31 and 0.58 < prior(dev) < 0.62  # the prior shift
    with pytest.raises(RelationDataError, match=r"train.txt: line 549 \(guid 137\): empty entity <e1> </e1>"):
        read_kbp37(data_root / "kbp37/train.txt")
    kbp, bad = read_kbp37(data_root / "kbp37/train.txt", skip_bad_rows=True, return_bad=True)
    assert (len(kbp), len(bad)) == (15807, 110) and len(kbp37_label_names(kbp)) == 37  # 110 empty entities
    conll = read_conll04(data_root / "conll04/conll04_test.json")
    assert sum(r.label != NO_RELATION for r in conll) == 422 and len(conll) == 3822


CONLL_ITEM = {"tokens": ["Bill", "Gates", "founded", "Microsoft", "in", "Redmond"],
              "tags": ["B-Peop", "L-Peop", "O", "U-Org", "O", "U-Loc"],
              "relations": [{"head": 0, "tail": 1, "type": "Work_For"}], "orig_id": 7}


@pytest.mark.parametrize("change, why", [
    ({"tags": CONLL_ITEM["tags"] + ["O"]}, r"7 tags for 6 tokens"),  # an IndexError traceback before
    ({"tags": CONLL_ITEM["tags"][:-1]}, r"5 tags for 6 tokens"),  # the last entity was dropped before
    ({"relations": [{"head": 1, "tail": 1, "type": "OrgBased_In"}]}, r"from entity 1 to itself"),
    ({"relations": [{"head": 0, "tail": 1, "type": "Work_For"}] * 2}, r"pair \(0, 1\) is listed twice"),
    ({"tags": ["B-Peop", "I-Peop", "O", "U-Org", "O", "U-Loc"]}, r"opened at token 0 has no L- tag"),
])
def test_conll04_bad_items_name_file_and_item(tmp_path, change, why):
    items = [dict(CONLL_ITEM, orig_id=1), dict(CONLL_ITEM, **change)]
    path = write(tmp_path, json.dumps(items), "c.json")
    with pytest.raises(RelationDataError, match=rf"c.json: item 1 \(guid c-7\): .*{why}"):
        read_conll04(path)
    rows, bad = read_conll04(path, skip_bad_rows=True, return_bad=True)
    assert len(bad) == 1 and {r.guid.rsplit("-", 2)[0] for r in rows} == {"c-1"}  # counted, not silently dropped


def test_conll04_repeated_item_names_both(tmp_path):
    path = write(tmp_path, json.dumps([CONLL_ITEM, dict(CONLL_ITEM, orig_id=8), CONLL_ITEM]), "c.json")
    for skip in (False, True):  # a file error: stops the read even with skip_bad_rows
        with pytest.raises(RelationDataError, match=r"c.json: item 2 \(guid c-7\) repeats item 0"):
            read_conll04(path, skip_bad_rows=skip)


def test_klue_repeated_guid_names_file_and_both_rows(tmp_path):
    other = GOOD.replace("0,g0", "1,g1")
    conflicting = GOOD.replace("0,g0", "2,g0").replace(",2,wikipedia", ",1,wikipedia")
    with pytest.raises(RelationDataError, match=r"rows.csv: guid g0 is on line 2 and on line 4 with conflicting "
                                                r"labels 'per:employee_of' and 'org:member_of'"):
        read_klue_csv(write(tmp_path, HEADER + GOOD + other + conflicting), NAMES)
    with pytest.raises(RelationDataError, match=r"guid g0 is on line 2 and on line 3 with the same label"):
        read_klue_csv(write(tmp_path, HEADER + GOOD + GOOD), NAMES, skip_bad_rows=True)
    record = {"guid": "a", "sentence": "이순신은 조선의 장군이다.", "label": "no_relation",
              "subject_entity": {"word": "이순신", "start_idx": 0, "end_idx": 2, "type": "PER"},
              "object_entity": {"word": "조선", "start_idx": 5, "end_idx": 6, "type": "ORG"}}
    with pytest.raises(RelationDataError, match=r"t.json: guid a is on record 0 and on record 1 with conflicting"):
        read_klue_json(write(tmp_path, json.dumps([record, dict(record, label="org:member_of")]), "t.json"), NAMES)


def test_klue_cell_over_the_csv_field_limit_is_named(tmp_path):
    import csv

    long = GOOD.replace("이순신은 조선의 장군이다.", "이순신은 조선의 장군이다." + "가" * (csv.field_size_limit() + 10))
    with pytest.raises(RelationDataError, match=r"rows.csv: line 3: unreadable CSV \(field larger than field limit"):
        read_klue_csv(write(tmp_path, HEADER + GOOD.replace("g0", "g1") + long), NAMES)


def test_not_utf8_and_malformed_json_name_the_file_and_line(tmp_path):
    latin = tmp_path / "rows.csv"
    latin.write_bytes((HEADER + GOOD.replace("g0", "g1")).encode() + GOOD.replace("이순신은", "K\xf6ln").encode("latin-1", "replace"))
    with pytest.raises(RelationDataError, match=r"rows.csv: line 3: not UTF-8 \(byte 0xf6 at column 8\)"):
        read_klue_csv(latin, NAMES)
    (tmp_path / "c.json").write_bytes(b'[{"tokens": ["K\xf6ln"],\n "tags": ["U-Loc"]}]')
    with pytest.raises(RelationDataError, match=r"c.json: line 1: not UTF-8 \(byte 0xf6 at column 16\)"):
        read_conll04(tmp_path / "c.json")
    (tmp_path / "c.json").write_text('[{"tokens": ["Rom"],\n "tags": ["U-Loc"] "relations": []}]')
    with pytest.raises(RelationDataError, match=r"c.json: line 2 column 20: malformed JSON \(Expecting ','"):
        read_conll04(tmp_path / "c.json")
    (tmp_path / "names.json").write_text('{"relations": ["no_relation",]}')
    with pytest.raises(RelationDataError, match=r"names.json: line 1 column 30: malformed JSON"):
        read_relation_names(tmp_path / "names.json")
    (tmp_path / "t.json").write_bytes(b"\xef\xbb\xbf[\n\xe9]")
    with pytest.raises(RelationDataError, match=r"t.json: line 2: not UTF-8 \(byte 0xe9 at column 1\)"):
        read_klue_json(tmp_path / "t.json", NAMES)
    (tmp_path / "k.txt").write_bytes(b'0\t" <e1> A </e1> b <e2> C </e2> . "\nno_relation\n\n1\t" \xe9 "\n')
    with pytest.raises(RelationDataError, match=r"k.txt: line 4: not UTF-8 \(byte 0xe9 at column 5\)"):
        read_kbp37(tmp_path / "k.txt")
