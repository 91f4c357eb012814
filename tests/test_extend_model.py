"""models/extend.py: grown embeddings, tied decoder and bias; each initialisation pinned; HF parity."""
from __future__ import annotations

import pytest
import torch
import transformers

from data.tokenizer import XLMRTokenizer
from models import load_pretrained
from models.encoder import XLMRConfig
from models.export import save_pretrained
from models.extend import base_statistics, grow_for_tokenizer, grow_vocabulary, piece_sources
from models.heads import XLMRForMaskedLM, XLMRForTokenClassification

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(vocab=12, cls=XLMRForMaskedLM, **kw):
    cfg = XLMRConfig(vocab_size=vocab, hidden_size=4, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=8, max_position_embeddings=16)
    model = cls(cfg, **kw)
    model.init_weights(torch.Generator().manual_seed(0))
    if cls is XLMRForMaskedLM:
        with torch.no_grad():
            model.lm_head.bias.copy_(-torch.arange(float(vocab)) / 4)
    return model


def rows(model):
    return model.encoder.embeddings.word_embeddings.weight


def test_old_rows_bit_identical_and_decoder_tied():
    model = tiny()
    before, bias = rows(model).detach().clone(), model.lm_head.bias.detach().clone()
    grow_vocabulary(model, 5, init="random", generator=torch.Generator().manual_seed(1))
    assert rows(model).shape == (17, 4) and torch.equal(rows(model)[:12], before)
    assert model.lm_head.decoder.weight is rows(model) and model.lm_head.bias.shape == (17,)
    assert torch.equal(model.lm_head.bias[:12], bias) and model.config.vocab_size == 17
    assert model.encoder.embeddings.word_embeddings.num_embeddings == 17
    logits = model(torch.tensor([[0, 13, 16, 2]]))  # new ids run through embedding and decoder
    assert logits.shape == (1, 4, 17)
    logits.sum().backward()
    assert rows(model).grad.shape == (17, 4)


def test_random_init_pinned():
    model = tiny()
    grow_vocabulary(model, 3, init="random", generator=torch.Generator().manual_seed(1))
    expected = torch.tensor([[0.013227, 0.005338, 0.001234, 0.012426], [-0.009038, -0.003323, -0.030455, 0.007634],
                             [-0.020552, -0.011261, -0.017846, -0.001165]])
    assert torch.allclose(rows(model)[12:], expected, atol=1e-6)
    assert torch.equal(model.lm_head.bias[12:], torch.zeros(3))  # the paper: N(0, 0.02), bias 0


def test_gaussian_init_pinned_and_bias_is_base_mean():
    model = tiny()
    grow_vocabulary(model, 3, init="gaussian", generator=torch.Generator().manual_seed(1))
    expected = torch.tensor([[0.015483, 0.018035, -0.001743, -0.001681], [-0.003710, -0.007760, -0.022852, 0.012656],
                             [-0.013636, -0.025391, -0.011862, 0.019919]])
    assert torch.allclose(rows(model)[12:], expected, atol=1e-5)
    # mean of the ordinary ids' biases (4..11: -1.0 .. -2.75), not 0: no outsized MLM probability
    assert torch.allclose(model.lm_head.bias[12:], torch.full((3,), -1.875))


def test_gaussian_statistics_match_base_rows():
    weight = torch.randn(5000, 3, generator=torch.Generator().manual_seed(0)) @ torch.tensor(
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]]) + torch.tensor([0.1, -0.2, 0.3])
    mean, cov = base_statistics(weight, 5000, chunk=777)
    assert torch.allclose(mean, weight[4:].double().mean(0), atol=1e-7)
    assert torch.allclose(cov, torch.cov(weight[4:].double().T), atol=1e-6)


def test_mean_init_brute_force_with_unk_fallback():
    model = tiny()
    base, bias = rows(model).detach().clone(), model.lm_head.bias.detach().clone()
    grow_vocabulary(model, 3, init="mean", sources=[[4, 5], [3], [7, 3, 9]], generator=torch.Generator().manual_seed(1))
    assert torch.allclose(rows(model)[12], base[[4, 5]].mean(0))
    assert torch.allclose(rows(model)[14], base[[7, 9]].mean(0))  # <unk> (3) ignored
    assert torch.allclose(model.lm_head.bias[12:], torch.tensor([-1.125, -1.875, -2.0]))
    # all-<unk> row: the first Gaussian draw of the same generator
    assert torch.allclose(rows(model)[13], torch.tensor([0.015483, 0.018035, -0.001743, -0.001681]), atol=1e-5)


def test_rows_init_and_errors():
    model = tiny()
    given = torch.arange(8.0).reshape(2, 4)
    grow_vocabulary(model, 2, init="rows", init_rows=given, init_bias=torch.tensor([-3.0, -4.0]))
    assert torch.equal(rows(model)[12:], given) and torch.equal(model.lm_head.bias[12:], torch.tensor([-3.0, -4.0]))
    with pytest.raises(ValueError, match="init must be one of"):
        grow_vocabulary(tiny(), 2, init="zeros")
    with pytest.raises(ValueError, match="needs sources"):
        grow_vocabulary(tiny(), 2, init="mean")
    with pytest.raises(ValueError, match=r"init_rows of shape \(2, 4\)"):
        grow_vocabulary(tiny(), 2, init="rows", init_rows=torch.zeros(3, 4))


def test_token_classification_model_grows_embeddings_only():
    model = tiny(cls=XLMRForTokenClassification, num_labels=3)
    before = rows(model).detach().clone()
    grow_vocabulary(model, 4, init="gaussian", generator=torch.Generator().manual_seed(0))
    assert torch.equal(rows(model)[:12], before) and model.config.vocab_size == 16
    assert model(torch.tensor([[0, 15, 2]])).shape == (1, 3, 3)


def test_grown_export_matches_transformers(tmp_path):
    base = XLMRTokenizer.train(["ein satz", "noch ein satz hier", "und noch einer"] * 30, 50, tmp_path / "tok")
    grown = base.add_pieces([("▁привет", -5.0), ("▁мир", -6.0), ("ин", -7.0)])
    grown, marker_ids = grown.add_special_tokens(["<e1>", "</e1>"])
    cfg = XLMRConfig(vocab_size=base.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=40)
    model = XLMRForMaskedLM(cfg)
    model.init_weights(torch.Generator().manual_seed(0))
    old = rows(model).detach().clone()
    sources = piece_sources(base, ["▁привет", "ин", "<e1>"])
    assert sources[0] == [] and sources[1] == []  # ▁ <unk> and <unk>: nothing to average
    grow_for_tokenizer(model, base, grown, init="mean", generator=torch.Generator().manual_seed(0))
    save_pretrained(model.eval(), grown, tmp_path / "model")
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(tmp_path / "model").eval()
    assert hf.config.vocab_size == grown.vocab_size == base.vocab_size + 5
    text = "ein <e1>привет мир</e1> satz <mask>"
    ids = torch.tensor([grown.encode(text)])
    assert ids.max() >= base.vocab_size and marker_ids[0] in ids.tolist()[0]
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(input_ids=ids).logits, atol=1e-5)
    ours, tok = load_pretrained(tmp_path / "model", task="masked-lm")
    assert torch.equal(rows(ours)[:base.vocab_size], old) and tok.encode(text) == ids.tolist()[0]


def test_mean_init_word_initial_unseen_script_pieces_get_gaussian_rows(tmp_path):
    """``▁Москва`` reads as ``▁ <unk>`` to a Latin-only base: no source, a Gaussian draw each, not
    copies of the ``▁`` row that all start identical."""
    base = XLMRTokenizer.train(["ein satz", "noch ein satz hier", "und noch einer"] * 30, 50, tmp_path / "tok")
    new = ["▁привет", "▁мир", "ин", "▁satzин"]
    grown = base.add_pieces([(p, -5.0 - i) for i, p in enumerate(new)])
    sources = piece_sources(base, new)
    assert sources[0] == [] and sources[1] == [] and sources[2] == []  # ▁ <unk>, ▁ <unk>, <unk>
    assert base.convert_ids_to_tokens(sources[3]) == ["▁satz", "<unk>"]  # an informative piece: kept
    cfg = XLMRConfig(vocab_size=base.vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16)
    model = XLMRForMaskedLM(cfg)
    model.init_weights(torch.Generator().manual_seed(0))
    V = base.vocab_size
    old = rows(model).detach().clone()
    grow_for_tokenizer(model, base, grown, init="mean", generator=torch.Generator().manual_seed(3))
    new_rows = rows(model).detach()[V:]
    assert not torch.equal(new_rows[0], new_rows[1])  # no two pieces start identical
    ref = XLMRForMaskedLM(XLMRConfig(vocab_size=V, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=16))
    ref.init_weights(torch.Generator().manual_seed(0))
    grow_vocabulary(ref, 3, init="gaussian", generator=torch.Generator().manual_seed(3))
    assert torch.allclose(new_rows[:3], rows(ref).detach()[V:], atol=1e-6)  # the same three Gaussian draws, in order
    assert torch.equal(rows(model)[:V], old)
