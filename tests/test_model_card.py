"""Model cards (models/model_card.py) and the NER export (tasks/ner.py::save_trained): tag names in
config.json, the CRF as safetensors, the argmax-vs-Viterbi dev F1 measured at export, the card."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_card_front_matter_and_sections():
    from models.model_card import ModelCard, read_front_matter

    card = ModelCard(title="m", summary="What it does.", languages=["de", "fr"], datasets=["unimelb-nlp/wikiann"],
                     tags=["ner"], pipeline_tag="token-classification", base_model="runs/mini_pretrain/model",
                     scores={"de test": {"entity F1": 0.7612, "precision": 0.75}}, command="python train.py c.yaml",
                     usage_here="here", usage_transformers="there", limits=["a limit"])
    text = card.render()
    meta = read_front_matter(text)
    assert meta["language"] == ["de", "fr"] and meta["datasets"] == ["unimelb-nlp/wikiann"]
    assert meta["metrics"] == ["f1"] and meta["pipeline_tag"] == "token-classification"
    assert "base_model" not in meta  # a local path is not a Hub id
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["name"] == "de test"
    assert result["metrics"] == [{"type": "f1", "name": "entity F1", "value": 76.12},
                                 {"type": "precision", "name": "precision", "value": 75.0}]
    assert "| de test | 76.1 | 75.0 |" in text
    assert "```bash\npython train.py c.yaml\n```" in text and "- a limit" in text
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Scores (x 100)", "## How it was made", "## Use it with this repository",
                        "## Use it with transformers", "## Limits"]
    assert read_front_matter(ModelCard("m", "s", base_model="FacebookAI/xlm-roberta-base").render())["base_model"] \
        == "FacebookAI/xlm-roberta-base"


@pytest.fixture(scope="module")
def crf_model(tmp_path_factory):
    from data.tokenizer import XLMRTokenizer
    from models import build_model
    from models.crf import CRF
    from models.encoder import XLMRConfig
    from tasks.ner import CRFTagger

    tok = XLMRTokenizer.train(["Angela Merkel besucht Paris", "Der Rhein fliesst durch Koeln"] * 40, 70,
                              tmp_path_factory.mktemp("tok"))
    cfg = XLMRConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=130)
    tagger = build_model(cfg, "token-classification", num_labels=len(TAGS))
    tagger.init_weights(torch.Generator().manual_seed(0))
    crf = CRF(len(TAGS), labels=TAGS)
    with torch.no_grad():  # emissions and transitions both matter, so argmax and Viterbi disagree
        tagger.classifier.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
        crf.transitions.normal_(0, 2.0, generator=torch.Generator().manual_seed(2))
    return CRFTagger(tagger, crf).eval(), tok


def _dev():
    import random

    from data.conll import Sentence

    rng = random.Random(0)
    words = ["Angela", "Merkel", "besucht", "Paris", "Der", "Rhein", "fliesst", "durch", "Koeln"]
    return {"de": [Sentence([rng.choice(words) for _ in range(rng.randint(2, 8))],
                            [], "de") for _ in range(30)]}


def test_save_trained_measures_argmax_against_viterbi_and_writes_the_card(crf_model, tmp_path):
    from core.config import load_config
    from data.labels import build_label_set
    from evaluate import load_trained
    from models.model_card import read_front_matter
    from models.safetensors_io import load_file
    from tasks.ner import predict_tags, save_trained, score

    model, tok = crf_model
    labels = build_label_set()
    cfg = load_config("configs/mini_zeroshot_de.yaml", ["train.precision=fp32", "train.name=card_test"])
    dev = _dev()
    for sent in dev["de"]:  # gold = the argmax tags: argmax scores 1.0, Viterbi less
        sent.tags = predict_tags(model.tagger, [sent], tok, labels, cfg.data, precision="fp32")[0]
    viterbi_tags = predict_tags(model, dev["de"], tok, labels, cfg.data, precision="fp32")
    assert viterbi_tags != [s.tags for s in dev["de"]]  # the two decoders really differ here
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    for stale in ("labels.json", "crf.pt"):
        (run / "model" / stale).write_text("old")
    scores = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 4, "per_type": {}}
    results = {"name": "card_test", "best_dev_f1": 0.4, "rows": {"card_test": {"de": 1 / 3}},
               "test": {"de": scores, "en": scores}}
    export = save_trained(run, model, tok, labels, results, cfg, dev, command="python train.py configs/x.yaml a=1")

    d = export["decoding"]
    want_v = score(model, dev["de"], tok, labels, cfg.data, precision="fp32")["f1"]
    want_a = score(model.tagger, dev["de"], tok, labels, cfg.data, precision="fp32")["f1"]
    assert want_a == 1.0 and want_v < 1.0
    assert d == {"dev_f1_viterbi": {"de": want_v}, "dev_f1_argmax": {"de": want_a}, "difference": want_v - want_a,
                 "sentences": 30}
    from models.export import bare_marker_share

    assert export["pipeline_split_words"] == bare_marker_share(tok, [s.words for s in dev["de"]]) > 0
    assert f"{100 * export['pipeline_split_words']:.2f}% of the dev words" in (run / "model/README.md").read_text()
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["export"] == export and on_disk["rows"] == results["rows"]
    out = run / "model"
    assert json.loads((out / "config.json").read_text())["id2label"] == {str(i): t for i, t in enumerate(TAGS)}
    assert not (out / "labels.json").exists() and not (out / "crf.pt").exists()
    crf = load_file(out / "crf.safetensors")
    assert all(torch.equal(crf[k], v) for k, v in model.crf.state_dict().items())
    card = (out / "README.md").read_text()
    meta = read_front_matter(card)
    assert meta["language"] == list(dict.fromkeys(["de", *cfg.data.eval_langs])) and "fr" in meta["language"]
    assert {"unimelb-nlp/wikiann", "Babelscape/wikineural"} <= set(meta["datasets"]) and "crf" in meta["tags"]
    assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "f1", "name": "entity F1", "value": 33.33}
    assert f"{100 * (want_v - want_a):+.1f} dev entity F1 over argmax" in card
    assert "python train.py configs/x.yaml a=1" in card and "aggregation_strategy=\"first\"" in card
    again, _, again_labels, _ = load_trained(run)
    assert list(again_labels.tags) == TAGS and torch.equal(again.crf.transitions, model.crf.transitions)


def test_linear_export_has_no_crf_file_and_no_decoding_gap(crf_model, tmp_path):
    from core.config import load_config
    from data.labels import build_label_set
    from tasks.ner import save_trained

    model, tok = crf_model
    cfg = load_config(overrides=["train.precision=fp32"])
    export = save_trained(tmp_path, model.tagger, tok, build_label_set(), None, cfg, command="c")
    assert export == {"model_dir": "model", "head": "linear", "command": "c", "decoding": None}
    assert not (tmp_path / "model/crf.safetensors").exists() and not (tmp_path / "results.json").exists()
    assert "argmax" not in (tmp_path / "model/README.md").read_text().split("## Limits")[1]


def test_a_crf_training_run_exports_names_card_scores_and_the_decoding_gap(tmp_path, data_root):
    """train.py end to end (tiny model, CRF head): the exported folder carries the tag names, the
    card holds the run's test scores and the measured gap, results.json the same gap."""
    import train
    from core.paths import data_root as root_of
    from data.conll import read_conll
    from models.model_card import read_front_matter
    from tasks.ner import write_tiny_checkpoint

    tiny = write_tiny_checkpoint(tmp_path / "tiny", read_conll(root_of() / "panx/de/train.conllu")[:300], vocab_size=300)
    args = ["configs/tiny_ner.yaml", f"data.root={data_root}", f"model.name_or_path={tiny}", "model.head=crf",
            f"train.out_dir={tmp_path}/{{name}}", "data.max_train_sentences=64", "data.max_eval_sentences=16",
            "data.max_test_sentences=16", "data.max_length=24", "data.stride=6", "train.epochs=1",
            "train.batch_size=16", "train.log_every=100", "data.eval_langs=[de, it]", "train.precision=fp32"]
    assert train.main(args) == 0
    run = tmp_path / "tiny_ner"
    results = json.loads((run / "results.json").read_text())
    decoding = results["export"]["decoding"]
    assert set(decoding["dev_f1_viterbi"]) == {"de"} and decoding["sentences"] == 16
    config = json.loads((run / "model/config.json").read_text())
    assert config["id2label"]["1"] == "B-PER" and (run / "model/crf.safetensors").is_file()
    card = (run / "model/README.md").read_text()
    values = [r["metrics"][0]["value"] for r in read_front_matter(card)["model-index"][0]["results"]]
    assert values == [round(100 * results["test"][lang]["f1"], 2) for lang in ("de", "it")]
    assert f"{100 * decoding['difference']:+.1f} dev entity F1 over argmax" in card
    assert results["export"]["command"].startswith("python train.py ")
