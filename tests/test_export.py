"""Export in the HF layout: transformers loads our folders with no missing or unexpected keys
and gives our outputs; our own loader round-trips them exactly."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import XLMRobertaForMaskedLM, XLMRobertaForTokenClassification, XLMRobertaModel

from data.tokenizer import XLMRTokenizer
from models import build_model, load_pretrained
from models.encoder import XLMRConfig
from models.export import save_pretrained
from models.safetensors_io import SafetensorsReader

pytestmark = pytest.mark.usefixtures("one_thread")
HF_CLASSES = {"encoder": XLMRobertaModel, "token-classification": XLMRobertaForTokenClassification,
              "masked-lm": XLMRobertaForMaskedLM}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return XLMRTokenizer.train(["ein satz", "noch ein satz hier", "und noch einer"] * 30, 50,
                               tmp_path_factory.mktemp("tok"))


def random_model(task, vocab_size):
    cfg = XLMRConfig(vocab_size=vocab_size, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=40, max_position_embeddings=20, layer_norm_eps=2e-5)
    model = build_model(cfg, task, num_labels=4)
    model.init_weights(torch.Generator().manual_seed(0))
    with torch.no_grad():  # non-trivial norms and biases, so a swapped key would show
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    return model.eval()


def batch():
    ids = torch.tensor([[0, 5, 9, 12, 7, 2], [0, 8, 2, 1, 1, 1]])  # (B, T) with padding
    return ids, ids.ne(1)


@pytest.mark.parametrize("task", ["encoder", "token-classification", "masked-lm"])
def test_transformers_loads_our_export(task, tmp_path, tokenizer):
    model = random_model(task, tokenizer.vocab_size)
    save_pretrained(model, tokenizer, tmp_path, id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
                    if task == "token-classification" else None)
    assert {"config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json"} <= \
        {p.name for p in tmp_path.iterdir()}
    ref, info = HF_CLASSES[task].from_pretrained(tmp_path, output_loading_info=True)
    allowed_missing = {"pooler.dense.weight", "pooler.dense.bias"} if task == "encoder" else set()
    assert set(info["missing_keys"]) <= allowed_missing and not info["unexpected_keys"], info
    assert ref.config.layer_norm_eps == 2e-5 and ref.config.type_vocab_size == 1
    ids, mask = batch()
    with torch.no_grad():
        ours = model(ids, mask)
        out = ref.eval()(input_ids=ids, attention_mask=mask.long())
        theirs = out.last_hidden_state if task == "encoder" else out.logits
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-5, rtol=0)
    if task == "token-classification":
        assert ref.config.id2label[1] == "B-PER"


@pytest.mark.parametrize("task", ["encoder", "token-classification", "masked-lm"])
def test_our_round_trip_is_exact(task, tmp_path, tokenizer):
    model = random_model(task, tokenizer.vocab_size)
    save_pretrained(model, tokenizer, tmp_path)
    again, tok = load_pretrained(tmp_path, task=task)
    for (name, a), (name2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert name == name2 and torch.equal(a, b), name
    assert tok.encode("noch ein satz") == tokenizer.encode("noch ein satz")


def test_qkv_is_split_into_hf_names_and_bf16_kept(tmp_path, tokenizer):
    model = random_model("encoder", tokenizer.vocab_size).to(torch.bfloat16)
    save_pretrained(model, None, tmp_path)
    with SafetensorsReader(tmp_path / "model.safetensors") as r:
        q = r.get("encoder.layer.1.attention.self.query.weight")
        v = r.get("encoder.layer.1.attention.self.value.bias")
        assert q.dtype == torch.bfloat16 and q.shape == (24, 24)
        assert torch.equal(q, model.layers[1].attention.qkv.weight[:24])
        assert torch.equal(v, model.layers[1].attention.qkv.bias[48:])
        assert not any("qkv" in k or k.startswith("layers.") for k in r.keys())
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["XLMRobertaModel"] and cfg["model_type"] == "xlm-roberta"
    assert "attention" not in cfg


# ---- label names, extra head files, the model card, and transformers' pipeline -----------------
TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_label_names_go_into_config_json(tmp_path, tokenizer):
    from models.export import read_label_names

    cfg = XLMRConfig(vocab_size=tokenizer.vocab_size, hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                     intermediate_size=40, max_position_embeddings=20)
    model = build_model(cfg, "token-classification", num_labels=7)
    save_pretrained(model, tokenizer, tmp_path / "a", id2label=TAGS)
    config = json.loads((tmp_path / "a/config.json").read_text())
    assert config["id2label"] == {str(i): t for i, t in enumerate(TAGS)}
    assert config["label2id"] == {t: i for i, t in enumerate(TAGS)}
    assert read_label_names(tmp_path / "a") == TAGS
    assert XLMRobertaForTokenClassification.from_pretrained(tmp_path / "a").config.id2label[5] == "B-LOC"
    save_pretrained(model, tokenizer, tmp_path / "b", id2label={i: t for i, t in enumerate(TAGS)})  # a mapping
    assert (tmp_path / "b/config.json").read_text() == (tmp_path / "a/config.json").read_text()
    save_pretrained(model, None, tmp_path / "c")  # no names: transformers' placeholders, read as unknown
    assert json.loads((tmp_path / "c/config.json").read_text())["id2label"]["6"] == "LABEL_6"
    assert read_label_names(tmp_path / "c") is None
    with pytest.raises(ValueError, match="6 names for a head of 7"):
        save_pretrained(model, None, tmp_path / "d", id2label=TAGS[:6])
    with pytest.raises(ValueError, match="duplicate"):
        save_pretrained(model, None, tmp_path / "d", id2label=TAGS[:6] + ["O"])


def test_extra_head_tensors_are_safetensors_and_the_card_is_readme(tmp_path, tokenizer):
    from models.crf import CRF
    from models.model_card import ModelCard, read_front_matter
    from models.safetensors_io import load_file

    model = random_model("token-classification", tokenizer.vocab_size)
    crf = CRF(4, labels=["O", "B-PER", "I-PER", "B-LOC"])
    card = ModelCard(title="t", summary="s", languages=["de"], tags=["ner"], pipeline_tag="token-classification")
    save_pretrained(model, tokenizer, tmp_path, id2label=["O", "B-PER", "I-PER", "B-LOC"], card=card,
                    extra_tensors={"crf.safetensors": crf.state_dict()})
    again = load_file(tmp_path / "crf.safetensors")
    assert again.keys() == crf.state_dict().keys()
    assert all(torch.equal(again[k], v) for k, v in crf.state_dict().items())
    assert (tmp_path / "crf.safetensors").read_bytes()[:8] != b"PK\x03\x04"  # not a torch zip pickle
    assert read_front_matter((tmp_path / "README.md").read_text())["language"] == ["de"]
    assert not list(tmp_path.glob("*.tmp"))
    for bad in ("../crf.safetensors", "crf.pt", "model.safetensors"):
        with pytest.raises(ValueError, match="plain"):
            save_pretrained(model, None, tmp_path, extra_tensors={bad: crf.state_dict()})


PIPE_WORDS = ["Die", "Berlinale", "Paris", "Berlin", "Koeln", "Parisienne"]


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    """A run folder with a tiny random linear-head NER model whose tags vary from word to word,
    exported by save_pretrained, scored in fp32 (config.yaml)."""
    import random

    import yaml

    from core.config import load_config, to_dict

    root = tmp_path_factory.mktemp("pipe")
    texts = ["Angela Merkel besucht Paris und Berlin", "Der Rhein fliesst durch Koeln", "Die Berlinale"]
    tok = XLMRTokenizer.train(texts * 40 + ["Berlinale Koelner Parisienne"] * 3, 90, root / "tok")
    cfg = XLMRConfig(vocab_size=tok.vocab_size, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=40, max_position_embeddings=64)
    model = build_model(cfg, "token-classification", num_labels=len(TAGS))
    model.init_weights(torch.Generator().manual_seed(0))
    with torch.no_grad():  # a classifier loud enough that the tags change from word to word
        model.classifier.weight.normal_(0, 2.0, generator=torch.Generator().manual_seed(1))
    run = root / "run"
    save_pretrained(model, tok, run / "model", id2label=TAGS)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(overrides=["train.precision=fp32"]))))
    rng = random.Random(0)
    lines = [" ".join(rng.choice(PIPE_WORDS) for _ in range(rng.randint(2, 9))) for _ in range(40)]
    return run, tok, lines


def test_transformers_pipeline_finds_our_predict_entities(linear_run, tmp_path):
    """pipeline("token-classification", aggregation_strategy="first") on the exported folder gives
    the same entities (type, character span) and scores as evaluate.py --predict --format jsonl."""
    import warnings

    from transformers import pipeline

    import evaluate

    run, tok, lines = linear_run
    for word in PIPE_WORDS:  # the pipeline's word heuristic needs a word's first piece to carry the "▁"
        assert tok.convert_ids_to_tokens(tok.encode_words([word])[0])[0] != "▁", word
    assert any(len(tok.encode_words([w])[0]) > 1 for w in PIPE_WORDS)  # multi-piece words are in the test
    from models.export import bare_marker_share

    assert bare_marker_share(tok, [PIPE_WORDS]) == 0 and bare_marker_share(tok, [["Angela", "Paris"]]) == 0.5
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    assert evaluate.main([str(run), "--predict", str(tmp_path / "in.txt"), "--out", str(tmp_path / "o.jsonl")]) == 0
    ours = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    ner = pipeline("token-classification", model=str(run / "model"), aggregation_strategy="first", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Tokenizer does not support real words": its fallback is the rule we assert
        theirs = [ner(line) for line in lines]
    assert sum(len(r["entities"]) for r in ours) > 40
    assert any(e["end"] - e["start"] > 12 for r in ours for e in r["entities"])  # multi-word entities occur
    assert {e["label"] for r in ours for e in r["entities"]} == {"PER", "ORG", "LOC"}
    for line, mine, ref in zip(lines, ours, theirs):
        assert mine["text"] == line
        assert [(e["start"], e["end"], e["label"]) for e in mine["entities"]] == \
            [(e["start"], e["end"], e["entity_group"]) for e in ref], line
        assert [e["score"] for e in mine["entities"]] == pytest.approx([float(e["score"]) for e in ref], abs=1e-4)
        assert all(line[e["start"]:e["end"]] == e["text"] for e in mine["entities"])
