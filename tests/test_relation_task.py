"""The relation task end to end on a tiny random checkpoint (seconds): train.py, results, export
(transformers loads the encoder with the relation names), Python and evaluate.py prediction, PR figure."""
from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

OVERRIDES = ["relation.max_train_examples=96", "relation.max_dev_examples=48", "relation.max_test_examples=48",
             "train.batch_size=32", "relation.max_length=64"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import require_data
    from core.paths import data_root
    require_data(data_root())  # skip, or fail in CI
    import train

    tmp = tmp_path_factory.mktemp("re")
    out = tmp / "runs" / "tiny_re_test"
    code = train.main(["configs/tiny_re.yaml", *OVERRIDES, f"model.name_or_path={tmp / 'ckpt'}",
                       f"train.out_dir={tmp / 'runs'}/{{name}}", "train.name=tiny_re_test"])
    assert code == 0
    return out


def test_results_and_decoding_variants(run_dir):
    res = json.loads((run_dir / "results.json").read_text())
    assert set(res["variants"]) == {"raw", "constraint", "prior", "constraint+prior"}
    assert res["examples"] == {"train": 96, "dev": 48, "test": 48}
    # pinned after the fixed seed (tiny checkpoint, 3 steps): a change in how the task marks, pools,
    # weighs the loss or decodes moves these
    assert res["variants"]["raw"]["auprc"] == pytest.approx(35.21898, abs=1e-4)
    assert res["variants"]["constraint"]["auprc"] == pytest.approx(67.52930, abs=1e-4)
    assert res["variants"]["constraint+prior"]["micro_f1"] == pytest.approx(24.0, abs=1e-4)
    assert res["variants"]["raw"]["auprc_calibrated"] == pytest.approx(35.24208, abs=1e-4)
    assert (res["test_micro_f1"], res["best_dev_micro_f1"], res["chosen"]) == (0.0, 0.0, "raw")
    assert res["temperature"] == pytest.approx(0.229251, rel=1e-4)
    assert (res["prior_offset"], res["prior_offset_constrained"]) == (0.0, -0.25)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train, dev = [m for m in metrics if "loss" in m], [m for m in metrics if "dev_auprc" in m]
    assert [m["step"] for m in train] == [3] and train[0]["loss"] == pytest.approx(1.787458, rel=1e-4)
    assert train[0]["grad_norm"] == pytest.approx(0.637086, rel=1e-4)
    assert dev[-1]["dev_auprc"] == pytest.approx(25.65254, abs=1e-4)
    assert set(res["per_class_f1"]) == {"Work_For", "Kill", "OrgBased_In", "Live_In", "Located_In"}
    assert res["window"]["train"]["cannot_fit"] >= 0 and res["bad_rows"] == 0


def test_export_loads_in_transformers_with_relation_names(run_dir):
    transformers = pytest.importorskip("transformers")
    out = run_dir / "model"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "no_relation" and config["label2id"]["Kill"] == 2
    transformers.XLMRobertaModel.from_pretrained(out)  # the encoder (marker rows included) loads as is
    assert (out / "re_head.safetensors").is_file() and (out / "README.md").is_file()


def test_predict_one_and_csv_through_evaluate(run_dir, tmp_path):
    import evaluate
    from tasks.relation import RelationPredictor

    pred = RelationPredictor.load(run_dir)
    label, probs = pred.predict_one("Bill Gates works for Microsoft .", (0, 9), (21, 29), "Peop", "Org")
    assert label in probs and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    rows = tmp_path / "rows.csv"
    rows.write_text(",guid,sentence,subject_entity,object_entity\n"
                    "0,a,Bill Gates works for Microsoft .,\"{'word': 'Bill Gates', 'start_idx': 0, 'end_idx': 9, "
                    "'type': 'PER'}\",\"{'word': 'Microsoft', 'start_idx': 21, 'end_idx': 29, 'type': 'ORG'}\"\n",
                    encoding="utf-8")
    out = tmp_path / "preds.csv"
    assert evaluate.main([str(run_dir), "--predict", str(rows), "--out", str(out)]) == 0
    [row] = list(csv.DictReader(out.open()))
    assert row["id"] == "a" and row["pred_label"] in probs and len(json.loads(row["probs"])) == 6
    rows.write_text(rows.read_text().replace("'end_idx': 9", "'end_idx': 8"), encoding="utf-8")
    assert evaluate.main([str(run_dir), "--predict", str(rows), "--out", str(out)]) == 2  # named error, exit 2


def test_pr_figure_axes(run_dir):
    from scripts.re_report import main, pr_figure

    fig = pr_figure([0, 1, 1, 2], [[.7, .2, .1], [.2, .7, .1], [.5, .4, .1], [.1, .3, .6]], ["no_relation", "a", "b"])
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("recall", "precision")
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert main(["pr", str(run_dir)]) == 0 and (run_dir / "pr_curves.png").stat().st_size > 1000


def test_bad_rows_stop_train_py_with_exit_2(tmp_path, monkeypatch):
    import train

    bad = tmp_path / "klue_re"
    (bad / "dev").mkdir(parents=True)
    (bad / "names.json").write_text(json.dumps({"relations": ["no_relation", "per:title"]}))
    row = ("0,g0,\"이순신은 장군이다.\",\"{'word': '이순', 'start_idx': 0, 'end_idx': 2, 'type': 'PER'}\","
           "\"{'word': '장군', 'start_idx': 5, 'end_idx': 6, 'type': 'POH'}\",1,x\n")
    (bad / "train.csv").write_text(",guid,sentence,subject_entity,object_entity,label,source\n" + row)
    code = train.main(["configs/tiny_re.yaml", f"data.root={tmp_path}", "relation.dataset=klue",
                       "relation.klue_train=klue_re/train.csv", "relation.klue_relations=klue_re/names.json",
                       f"train.out_dir={tmp_path}/{{name}}"])
    assert code == 2


def test_typed_marker_tokens_grow_the_vocabulary_and_export(run_dir, tmp_path):
    """Typed markers as new special tokens: rows appended (old rows bit-identical), the exported folder's
    tokenizer cuts them out of raw text and its encoder gives our outputs in transformers."""
    transformers = pytest.importorskip("transformers")
    import torch

    from models import load_pretrained
    from models.export import save_pretrained
    from tasks.relation import add_marker_tokens

    encoder, tok = load_pretrained(run_dir.parent.parent / "ckpt", task="encoder")
    V, before = tok.vocab_size, encoder.embeddings.word_embeddings.weight.detach().clone()
    grown, ids = add_marker_tokens(encoder, tok, ["[SUBJ-PEOP]", "[/SUBJ-PEOP]"])
    assert ids == {"[SUBJ-PEOP]": V, "[/SUBJ-PEOP]": V + 1} and grown.vocab_size == V + 2
    weight = encoder.embeddings.word_embeddings.weight
    assert weight.shape[0] == V + 2 and torch.equal(weight[:V], before)
    save_pretrained(encoder, grown, tmp_path)
    text = "Bill [SUBJ-PEOP] Gates [/SUBJ-PEOP] works"
    hf_ids = transformers.AutoTokenizer.from_pretrained(tmp_path)(text)["input_ids"]
    assert hf_ids == grown.encode(text) and V in hf_ids and V + 1 in hf_ids
    ref = transformers.XLMRobertaModel.from_pretrained(tmp_path, add_pooling_layer=False).eval()
    x = torch.tensor([hf_ids])
    with torch.no_grad():
        assert torch.allclose(encoder.eval()(x, x != grown.pad_id), ref(input_ids=x).last_hidden_state, atol=1e-5)


def test_docs_re_md_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    """docs/RE.md walks one KLUE row to a predicted relation; its python blocks run against a tiny
    random checkpoint whose vocabulary reads the example's Hangul."""
    import re
    from pathlib import Path

    from data.conll import Sentence
    from tasks.ner import write_tiny_checkpoint

    words = "이순신은 조선 중기의 무신이다. @ * 사람 * # ^ 단체 ^ 장소 날짜 기타 수량 Bill Gates founded Microsoft".split()
    sentences = [Sentence(words[i:] + words[:i], []) for i in range(len(words))] * 8
    model = write_tiny_checkpoint(tmp_path / "ko_tiny", sentences, vocab_size=120, seed=0)
    monkeypatch.setenv("XLT_RE_MODEL", str(model))
    doc = (Path(__file__).resolve().parent.parent / "docs" / "RE.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) == 5
    namespace: dict = {"__name__": "re_doc"}
    for i, block in enumerate(blocks, start=1):
        exec(compile(block, f"RE.md block {i}", "exec"), namespace)
    assert tuple(namespace["logits"].shape) == (1, 30) and tuple(namespace["feats"].shape) == (1, 64)
    assert namespace["names"][int(namespace["probs"].argmax())] in ("no_relation", "rel_18")


def test_evaluation_batches_by_length_and_returns_logits_in_input_order():
    """tasks.relation.predict_logits (the task's evaluation and RelationPredictor's path) sorts the examples
    by length into padded batches; every example's logits come back at its own index, equal to scoring it
    alone (no padding), and none is dropped or repeated."""
    import random

    import torch

    from data.markers import Encoded
    from models.encoder import XLMRConfig, XLMREncoder
    from models.re_head import RelationClassifier
    from tasks.relation import MODEL_INPUTS, collate_relations, predict_logits

    cfg = XLMRConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=40)
    model = RelationClassifier(XLMREncoder(cfg), num_labels=4, pooling="mean").eval()
    gen, items = random.Random(0), []
    for n in [6, 17, 9, 30, 12, 7, 22, 9, 14, 25]:  # not sorted: batches of 3 mix the order
        ids = [0] + [gen.randrange(4, 50) for _ in range(n - 2)] + [2]
        items.append(Encoded(ids, 1, (2, 4), n - 4, (n - 3, n - 1), False, False))
    got = predict_logits(model, items, pad_id=1, batch_size=3, precision="fp32")  # (N, K)
    with torch.no_grad():
        alone = torch.cat([model(*(collate_relations([it], None, 1)[k] for k in MODEL_INPUTS)) for it in items])
    assert got.shape == (10, 4) and torch.allclose(got, alone, atol=1e-5)
    assert len({tuple(row.tolist()) for row in got}) == 10  # distinct rows: none copied into another's slot
