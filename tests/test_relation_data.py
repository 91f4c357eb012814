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
