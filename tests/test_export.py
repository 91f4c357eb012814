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
