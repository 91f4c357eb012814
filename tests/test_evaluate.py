"""Entity scores against seqeval and brute force; evaluate.py's tables, --predict (layouts, JSON lines,
standard input), --export, and its named errors for bad input and broken model folders."""
from __future__ import annotations

import json
import random

import pytest
from seqeval.metrics import classification_report

from core.metrics import confusion, entity_f1, entity_scores

pytestmark = pytest.mark.usefixtures("one_thread")
TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_pinned_small_example():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    s = entity_scores(true, pred)
    assert (s["precision"], s["recall"], s["support"]) == (2 / 3, 2 / 3, 3)
    assert s["per_type"]["ORG"] == {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    assert s["per_type"]["LOC"]["f1"] == 0.0 and s["per_type"]["PER"]["f1"] == 1.0
    assert confusion(true, pred, TAGS)[5] == [0, 0, 0, 1, 0, 0, 0]  # gold B-LOC predicted B-ORG


def test_matches_seqeval_on_random_sequences():
    rng = random.Random(0)
    true = [[rng.choice(TAGS) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(TAGS) for t in seq] for seq in true]
    s = entity_scores(true, pred)
    assert s["f1"] == pytest.approx(s["seqeval_f1"], abs=1e-12)
    assert s["precision"] == pytest.approx(s["seqeval_precision"], abs=1e-12)
    assert s["recall"] == pytest.approx(s["seqeval_recall"], abs=1e-12)
    assert entity_f1(true, pred) == pytest.approx(s["f1"], abs=1e-12)
    report = classification_report(true, pred, output_dict=True, zero_division=0)
    for etype, row in s["per_type"].items():
        assert row["f1"] == pytest.approx(report[etype]["f1-score"], abs=1e-12)
        assert row["support"] == report[etype]["support"]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        entity_f1([["O", "O"]], [["O"]])


def _scores(f1):
    return {"precision": f1, "recall": f1, "f1": f1, "support": 10,
            "per_type": {"PER": {"precision": f1, "recall": f1, "f1": f1, "support": 10}}}


def test_results_files_and_gather_table(tmp_path):
    from core.config import load_config
    from evaluate import main
    from core.results import write_curve, write_results

    cfg = load_config(overrides=["train.name=zs", "data.eval_langs=[de, en]"])
    write_results(tmp_path / "zs", cfg, {"de": _scores(0.8123), "en": _scores(0.31)}, best_dev=0.8)
    assert json.loads((tmp_path / "zs/results.json").read_text())["rows"] == {"zs": {"de": 0.8123, "en": 0.31}}
    assert "| zs | 81.2 | 31.0 |" in (tmp_path / "zs/results.md").read_text()
    few = load_config(overrides=["train.name=fs", "data.eval_langs=[fr]", "data.fewshot_lang=fr"])
    write_curve(tmp_path / "fs", few, {250: {"fr": _scores(0.5)}, 500: {"fr": _scores(0.6)}})
    assert (tmp_path / "fs/curve.png").stat().st_size > 1000
    (tmp_path / "empty").mkdir()
    from core.results import gather
    table = gather([tmp_path / "zs", tmp_path / "fs", tmp_path / "empty"])
    assert table.splitlines()[:5] == ["| set-up | de | fr | en |", "|---|---:|---:|---:|", "| zs | 81.2 | - | 31.0 |",
                                      "| fs k=250 | - | 50.0 | - |", "| fs k=500 | - | 60.0 | - |"]
    assert "No results yet: " + str(tmp_path / "empty") in table
    assert main(["--gather", str(tmp_path / "zs")]) == 0


def test_read_input_tells_text_from_conll(tmp_path):
    from data.text_input import read_input

    (tmp_path / "a.txt").write_text("Angela Merkel besucht Paris .\n\nDas ist gut\n")
    assert [s.words for s in read_input(tmp_path / "a.txt")] == [["Angela", "Merkel", "besucht", "Paris", "."],
                                                                 ["Das", "ist", "gut"]]
    (tmp_path / "b.conll").write_text("0\tParis\tB-LOC\n1\tbrennt\tO\n")
    assert read_input(tmp_path / "b.conll")[0].tags == ["B-LOC", "O"]


def test_error_report_ranks_tokens_and_sentences():
    from data.conll import Sentence
    from evaluate import error_report

    sents = [Sentence(["Paris", "ist"], ["B-LOC", "O"]), Sentence(["Paris", "Hilton"], ["B-PER", "I-PER"])]
    pred = [["B-LOC", "O"], ["B-LOC", "O"]]
    losses = [[0.1, 0.05], [2.0, 1.5]]
    report = error_report(sents, pred, losses, TAGS, top=2)
    assert "| Paris | 2.10 | 2 |\n| Hilton | 1.50 | 1 |" in report
    assert "| B-PER | 0 | 0 | 0 | 0 | 0 | 1 | 0 |" in report
    assert report.index("loss 3.50") < report.index("loss 0.15")


# ---- --predict: input layouts, JSON lines, standard input, named errors ------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder with a tiny random linear-head model (fp32 in config.yaml) and a CRF twin."""
    import torch
    import yaml

    from core.config import load_config, to_dict
    from data.tokenizer import XLMRTokenizer
    from models import build_model
    from models.crf import CRF
    from models.encoder import XLMRConfig
    from models.export import save_pretrained

    root = tmp_path_factory.mktemp("run")
    tok = XLMRTokenizer.train(["Angela Merkel besucht Paris", "Der Rhein fliesst durch Koeln"] * 40, 70, root / "tok")
    cfg = XLMRConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=40)
    model = build_model(cfg, "token-classification", num_labels=len(TAGS))
    model.init_weights(torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.classifier.weight.normal_(0, 2.0, generator=torch.Generator().manual_seed(1))
    config_yaml = yaml.safe_dump(to_dict(load_config(overrides=["train.precision=fp32", "data.max_length=12",
                                                                "data.stride=4"])))
    for name, extra in (("linear", None), ("crf", {"crf.safetensors": CRF(len(TAGS), labels=TAGS).state_dict()})):
        save_pretrained(model, tok, root / name / "model", id2label=TAGS, extra_tensors=extra)
        (root / name / "config.yaml").write_text(config_yaml)
    return root


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_predict_jsonl_offsets_point_into_the_raw_line(tiny_run, tmp_path, capsys):
    from evaluate import main

    lines = ["  Angela   Merkel\tbesucht Paris ", "Der Rhein fliesst durch Koeln und Paris und Angela Merkel besucht"]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n\n")
    assert main([str(tiny_run / "linear"), "--predict", str(tmp_path / "in.txt"), "--out", str(tmp_path / "o.conll")]) == 0
    tags = [[row.split("\t")[2] for row in block.splitlines()]
            for block in (tmp_path / "o.conll").read_text().strip().split("\n\n")]
    assert [len(t) for t in tags] == [4, 11]  # one tag per word; the long line went through 12-piece windows
    assert main([str(tiny_run / "linear"), "--predict", str(tmp_path / "in.txt"), "--out", str(tmp_path / "o.jsonl")]) == 0
    records = _jsonl(tmp_path / "o.jsonl")
    assert [r["text"] for r in records] == lines
    from data.text_input import entity_spans

    for line, record, row in zip(lines, records, tags):
        words = list(__import__("re").finditer(r"\S+", line))
        want = [(words[a].start(), words[b - 1].end(), etype) for a, b, etype in entity_spans(row)]
        assert [(e["start"], e["end"], e["label"]) for e in record["entities"]] == want
        assert all(e["text"] == line[e["start"]:e["end"]] and 0 < e["score"] <= 1 for e in record["entities"])
    assert sum(len(r["entities"]) for r in records) >= 3


def test_predict_reads_standard_input(tiny_run, tmp_path, monkeypatch, capsys):
    import io
    import sys

    from evaluate import main

    (tmp_path / "in.txt").write_text("Angela Merkel besucht Paris\n")
    assert main([str(tiny_run / "crf"), "--predict", str(tmp_path / "in.txt"), "--format", "jsonl"]) == 0
    from_file = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Angela Merkel besucht Paris\n".encode())))
    assert main([str(tiny_run / "crf"), "--predict", "-", "--format", "jsonl"]) == 0
    assert capsys.readouterr().out == from_file and json.loads(from_file)["text"] == "Angela Merkel besucht Paris"


def test_entity_spans_follow_seqeval_chunks():
    from seqeval.metrics.sequence_labeling import get_entities

    from data.text_input import entity_spans

    rng = random.Random(1)
    for _ in range(500):
        tags = [rng.choice(TAGS) for _ in range(rng.randint(0, 9))]
        assert entity_spans(tags) == [(a, b + 1, t) for t, a, b in get_entities(tags)], tags


def test_one_word_per_line_is_read_as_sentences_not_words(tmp_path, capsys):
    from data.text_input import read_input

    (tmp_path / "w.txt").write_text("Angela\nMerkel\nbesucht\n\nDas\nist\ngut\n\n\n")
    sents = read_input(tmp_path / "w.txt")
    assert [s.words for s in sents] == [["Angela", "Merkel", "besucht"], ["Das", "ist", "gut"]]
    assert sents[0].text == "Angela Merkel besucht" and sents[0].spans[1] == (7, 13)
    assert "as words" in capsys.readouterr().err
    assert [s.words for s in read_input(tmp_path / "w.txt", "text")] == [["Angela"], ["Merkel"], ["besucht"],
                                                                         ["Das"], ["ist"], ["gut"]]
    (tmp_path / "one.txt").write_text("Paris\n")  # a single line of one word is a sentence
    assert [s.words for s in read_input(tmp_path / "one.txt")] == [["Paris"]]
    (tmp_path / "bom.txt").write_bytes("\ufeffParis brennt\r\n".encode())
    assert read_input(tmp_path / "bom.txt")[0].text == "Paris brennt"


def _error(capsys, argv) -> str:
    from evaluate import main

    assert main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1, out.err
    assert out.err.startswith("error: ")
    return out.err


def test_bad_predict_input_is_one_named_line(tiny_run, tmp_path, capsys, monkeypatch):
    import io
    import sys

    run = str(tiny_run / "linear")
    (tmp_path / "latin1.txt").write_bytes("Paris\nK\xf6ln brennt\n".encode("latin-1"))
    err = _error(capsys, [run, "--predict", str(tmp_path / "latin1.txt")])
    assert f"{tmp_path / 'latin1.txt'}:2: not UTF-8 (byte 0xf6 at column 2)" in err
    (tmp_path / "empty.txt").write_text("\n \n")
    assert "empty.txt: no sentences" in _error(capsys, [run, "--predict", str(tmp_path / "empty.txt")])
    assert "cannot read" in _error(capsys, [run, "--predict", str(tmp_path / "missing.txt")])
    (tmp_path / "bad.conll").write_text("0\tParis\tB-LOC\n1\tbrennt\n")
    assert "bad.conll:2:" in _error(capsys, [run, "--predict", str(tmp_path / "bad.conll")])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert "<stdin>: no sentences" in _error(capsys, [run, "--predict", "-"])


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_checkpoints_are_one_named_line(tiny_run, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("Angela Merkel\n")
    predict = ["--predict", str(tmp_path / "in.txt")]
    run = _copy_run(tiny_run / "crf", tmp_path / "truncated")
    weights = run / "model/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    err = _error(capsys, [str(run), *predict])
    assert "model.safetensors" in err and "truncated?" in err
    run = _copy_run(tiny_run / "crf", tmp_path / "header")
    (run / "model/model.safetensors").write_bytes(b"\xff" * 64)
    assert "header length" in _error(capsys, [str(run), *predict])
    run = _copy_run(tiny_run / "crf", tmp_path / "crf")
    (run / "model/crf.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    assert "crf.safetensors" in _error(capsys, [str(run), *predict])
    run = _copy_run(tiny_run / "linear", tmp_path / "nolabels")
    config = json.loads((run / "model/config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(TAGS))}
    (run / "model/config.json").write_text(json.dumps(config))
    assert "no tag names" in _error(capsys, [str(run), *predict])
    (run / "model/labels.json").write_text("[not json")
    assert "labels.json" in _error(capsys, [str(run), *predict])
    (run / "model/config.json").write_text("{")
    assert "config.json" in _error(capsys, [str(run), *predict])
    run = _copy_run(tiny_run / "linear", tmp_path / "oldcrf")
    (run / "model/crf.pt").write_bytes(b"PK\x03\x04 truncated zip")
    assert "crf.pt" in _error(capsys, [str(run), *predict])
    assert "no trained model" in _error(capsys, [str(tmp_path / "nothing"), *predict])
    _copy_run(tiny_run / "linear", tmp_path / "fewshot" / "k250")
    assert f"{tmp_path / 'fewshot'}/k250" in _error(capsys, [str(tmp_path / "fewshot"), *predict])
    assert "no folder" in _error(capsys, [str(tiny_run / "linear"), *predict, "--out", str(tmp_path / "no/o.jsonl")])


def test_old_runs_with_labels_json_and_crf_pt_still_load(tiny_run, tmp_path):
    import torch

    from evaluate import load_trained
    from models.safetensors_io import load_file

    run = _copy_run(tiny_run / "crf", tmp_path / "old")
    model_dir = run / "model"
    torch.save(load_file(model_dir / "crf.safetensors"), model_dir / "crf.pt")  # the old layout
    (model_dir / "crf.safetensors").unlink()
    (model_dir / "labels.json").write_text(json.dumps(TAGS))
    config = json.loads((model_dir / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(TAGS))}
    (model_dir / "config.json").write_text(json.dumps(config))
    old, _, old_labels, _ = load_trained(run)
    new, _, new_labels, _ = load_trained(tiny_run / "crf")
    assert old_labels == new_labels and list(new_labels.tags) == TAGS
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    assert type(old).__name__ == "CRFTagger"


def test_export_rewrites_an_old_run_in_the_new_layout(tiny_run, tmp_path, data_root, capsys):
    import torch
    import yaml

    from core.config import load_config, to_dict
    from evaluate import main
    from models.safetensors_io import load_file

    run = _copy_run(tiny_run / "crf", tmp_path / "old")
    model_dir = run / "model"
    crf = load_file(model_dir / "crf.safetensors")
    torch.save(crf, model_dir / "crf.pt")
    (model_dir / "crf.safetensors").unlink()
    (model_dir / "labels.json").write_text(json.dumps(TAGS))
    config = json.loads((model_dir / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(TAGS))}
    (model_dir / "config.json").write_text(json.dumps(config))
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(overrides=[
        f"data.root={data_root}", "data.max_eval_sentences=12", "train.precision=fp32", "data.max_length=12",
        "data.stride=4"]))))
    assert main([str(run), "--export", "--command", "python train.py configs/old.yaml"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["decoding"]["sentences"] == 12 and info["command"] == "python train.py configs/old.yaml"
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "crf.safetensors",
                                                          "model.safetensors", "sentencepiece.bpe.model",
                                                          "tokenizer.json", "tokenizer_config.json"]
    assert json.loads((model_dir / "config.json").read_text())["id2label"]["2"] == "I-PER"
    again = load_file(model_dir / "crf.safetensors")
    assert all(torch.equal(again[k], v) for k, v in crf.items())
    assert "python train.py configs/old.yaml" in (model_dir / "README.md").read_text()


# ---- CLI manners: progress, --out, CoNLL input, misuse as one line, other kinds of run, --gather ----


def _fake_run(root, name, task, results=None, files=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"task: {task}\n")
    if results is not None:
        (run / "results.json").write_text(json.dumps(results))
    for file, text in (files or {}).items():
        (run / file).write_text(text)
    return run


RELATION = {"dataset": "conll04", "best_dev_micro_f1": 55.55, "test_micro_f1": 50.25, "test_auprc": 40.0,
            "chosen": "constraint", "per_class_f1": {"Work_For": 60.0}}
ALIGN = {"dev_before": {"dev_retrieval": 0.25, "en-de_csls": 0.2}, "dev_after": {"dev_retrieval": 0.5},
         "best_step": 40, "train_pairs": 100}


def test_scoring_shows_progress_and_parts_give_the_same_tags(tiny_run, capsys):
    from data.conll import Sentence
    from evaluate import load_trained, predict_scored
    from tasks.ner import predict_words

    model, tok, labels, cfg = load_trained(tiny_run / "crf")
    run = (model, tok, labels, cfg.data, 32, "fp32")
    words = "Angela Merkel besucht Paris und der Rhein fliesst durch Koeln".split()
    sentences = [Sentence(words[i % 5:i % 5 + 2 + i % 4], ["O"] * len(words[i % 5:i % 5 + 2 + i % 4]))
                 for i in range(450)]
    pred, losses = predict_scored(run, sentences, "de")
    whole, whole_losses = predict_words(model, sentences, tok, labels, cfg.data, 32, "fp32")
    assert pred == whole and len(losses) == 450
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["de: 200/450 sentences", "de: 400/450 sentences",
                                                      "de: 450/450 sentences"]
    assert all(line.endswith("sentences/s") for line in lines)


def test_out_confirms_and_never_overwrites_the_input(tiny_run, tmp_path, capsys):
    from evaluate import main

    run = str(tiny_run / "linear")
    (tmp_path / "in.txt").write_text("Angela Merkel besucht Paris\nDer Rhein\n")
    assert main([run, "--predict", str(tmp_path / "in.txt"), "--out", str(tmp_path / "o.jsonl")]) == 0
    err = capsys.readouterr().err
    assert f"wrote {tmp_path / 'o.jsonl'} (jsonl): 2 sentences, 6 words, " in err and " entities" in err
    before = (tmp_path / "in.txt").read_bytes()
    for out in (str(tmp_path / "in.txt"), str(tmp_path / "." / "in.txt")):
        assert "is the --predict input" in _error(capsys, [run, "--predict", str(tmp_path / "in.txt"), "--out", out])
    assert (tmp_path / "in.txt").read_bytes() == before


def test_a_tagged_conll_file_is_read_as_conll_never_its_tags_as_words(tiny_run, tmp_path, capsys):
    from data.text_input import read_input
    from evaluate import main

    conll03 = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n" \
              "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    (tmp_path / "c.conll").write_text(conll03)
    sents = read_input(tmp_path / "c.conll")
    assert [(s.words, s.tags) for s in sents] == [(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
                                                 (["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    (tmp_path / "c3.conll").write_text("Paris NNP B-LOC\nbrennt VB O\n")
    assert read_input(tmp_path / "c3.conll")[0].words == ["Paris", "brennt"]
    (tmp_path / "one.txt").write_text("Ich sah O\n")  # one line of three words ending in O is text
    assert read_input(tmp_path / "one.txt")[0].words == ["Ich", "sah", "O"]
    assert main([str(tiny_run / "linear"), "--predict", str(tmp_path / "c.conll"), "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == ["EU rejects German", "Peter Blackburn"]
    (tmp_path / "bad.conll").write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP\n")
    assert "bad.conll:2: expected 4 columns" in _error(capsys, [str(tiny_run / "linear"), "--predict",
                                                                str(tmp_path / "bad.conll")])


def test_misuse_is_one_error_line(tiny_run, tmp_path, capsys):
    run = str(tiny_run / "linear")
    assert "a folder" in _error(capsys, [run, "--predict", str(tmp_path)])
    err = _error(capsys, [run, "--langs", "de,xx"])
    assert "unknown language 'xx'" in err and "de, en, es, fr, it, nl, ru" in err
    relation = _fake_run(tmp_path, "re", "relation", RELATION)
    assert "a folder" in _error(capsys, [str(relation), "--predict", str(tmp_path)])
    assert "not standard input" in _error(capsys, [str(relation), "--predict", "-"])
    (tmp_path / "rows.csv").write_bytes("id,sentence\n0,K\xf6ln\n".encode("latin-1"))
    assert f"{tmp_path / 'rows.csv'}:2: not UTF-8" in _error(capsys, [str(relation), "--predict",
                                                                      str(tmp_path / "rows.csv")])
    assert "not for a 'relation' run" in _error(capsys, [str(relation), "--langs", "de"])
    empty = _fake_run(tmp_path, "al", "align")
    assert f"{empty} (align run): no results.json yet" in _error(capsys, [str(empty)])
    pretrain = _fake_run(tmp_path, "pre", "mlm", files={"mlm_summary.json": "{}"})
    assert "(mlm run): an MLM pretraining run (mlm_summary.json): a model for other configs" in \
        _error(capsys, [str(pretrain)])


def test_relation_and_alignment_runs_print_their_table(tmp_path, capsys):
    from evaluate import main

    assert main([str(_fake_run(tmp_path, "re", "relation", RELATION))]) == 0
    out = capsys.readouterr().out
    assert "| re | conll04 | 50.2 | 40.0 | 55.5 | constraint |" in out
    assert main([str(_fake_run(tmp_path, "al", "align", ALIGN))]) == 0
    assert "| al | 0.2500 | 0.5000 | 40 |" in capsys.readouterr().out


def test_gather_takes_any_mix_of_run_folders(tmp_path, capsys):
    from core.config import load_config
    from core.results import write_results
    from evaluate import main

    cfg = load_config(overrides=["train.name=zs", "data.eval_langs=[de, en]"])
    write_results(tmp_path / "zs", cfg, {"de": _scores(0.8123), "en": _scores(0.31)}, best_dev=0.8)
    runs = [tmp_path / "zs", _fake_run(tmp_path, "re", "relation", RELATION), _fake_run(tmp_path, "al", "align", ALIGN),
            _fake_run(tmp_path, "bl", "bilstm_crf", {"best_dev_f1": 0.5, "test_f1": 0.4, "step": 9}),
            _fake_run(tmp_path, "pre", "mlm", files={"mlm_summary.json": "{}"}),
            _fake_run(tmp_path, "broken", "ner", files={"results.json": "{not json"}),
            _fake_run(tmp_path, "half", "ner"), tmp_path / "missing"]
    assert main(["--gather", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "| zs | 81.2 | 31.0 |" in out and "| re | conll04 | 50.2 | 40.0 | 55.5 | constraint |" in out
    assert "| al | 0.2500 | 0.5000 | 40 |" in out and "| bl | 0.5000 | 0.4000 | 9.0000 |" in out
    assert out.index("## NER") < out.index("## Relation") < out.index("## Contextual alignment")
    left_out = out[out.index("Not tabulated:"):]
    assert f"- {tmp_path / 'pre'}: an MLM pretraining run (mlm_summary.json): a model for other" in left_out
    assert f"- {tmp_path / 'broken'}: results.json is not valid JSON" in left_out
    assert f"- {tmp_path / 'half'}: no results.json yet" in left_out
    assert f"- {tmp_path / 'missing'}: no such folder" in left_out


def test_plain_word_lists_are_turned_into_sentences_one_part_at_a_time(tiny_run, monkeypatch):
    """predict_words on plain word lists: each part (``chunk``) becomes Sentence objects only when it
    is predicted, so the copies never exist for the whole input; the tags equal one part's."""
    import tasks.ner as ner
    from data.conll import Sentence
    from evaluate import load_trained

    model, tok, labels, cfg = load_trained(tiny_run / "linear")
    words = "Angela Merkel besucht Paris und der Rhein fliesst durch Koeln".split()
    plain = [words[i % 5:i % 5 + 2 + i % 4] for i in range(7)]
    parts, real = [], ner._predict_part
    monkeypatch.setattr(ner, "_predict_part", lambda m, part, *a: parts.append(part) or real(m, part, *a))
    tags, losses = ner.predict_words(model, plain, tok, labels, cfg.data, 32, "fp32", chunk=3)
    assert [len(p) for p in parts] == [3, 3, 1] and losses is None  # plain lists carry no gold tags
    assert all(isinstance(s, Sentence) and s.tags == [] for p in parts for s in p)
    seen = [s for p in parts for s in p]
    assert [s.words for s in seen] == plain and all(s.words is not w for s, w in zip(seen, plain))  # copies
    whole, _ = ner.predict_words(model, plain, tok, labels, cfg.data, 32, "fp32", chunk=100)
    assert tags == whole and [len(t) for t in tags] == [len(w) for w in plain]
