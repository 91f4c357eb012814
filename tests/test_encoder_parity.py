"""Our encoder and heads against transformers' XLM-R on small random checkpoints.

Checkpoints are written by transformers itself (safetensors via save_pretrained, .bin via
torch.save of its state_dict); our load_pretrained must reproduce its outputs within 1e-5 in
fp32, with padding inside the batch, through both attention paths and both kernels (the reference
of models/encoder.py and the fast paths of models/encoder_fast.py; every path of the two against
each other: tests/test_encoder_paths.py).
"""
from __future__ import annotations

import pytest
import torch
from transformers import (XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaForTokenClassification,
                          XLMRobertaModel)

from data.tokenizer import XLMRTokenizer
from models import build_model, load_pretrained
from models.encoder import XLMRConfig, XLMREncoder, position_ids_from_input_ids

V, K = 60, 5
HF_CLASSES = {"encoder": XLMRobertaModel, "token-classification": XLMRobertaForTokenClassification,
              "masked-lm": XLMRobertaForMaskedLM}


def hf_config(**kw) -> XLMRobertaConfig:
    # Non-default eps (HF class default 1e-12) and one token type, as in the real checkpoint.
    base = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                max_position_embeddings=24, type_vocab_size=1, layer_norm_eps=3e-4, num_labels=K,
                hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return XLMRobertaConfig(**(base | kw))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    XLMRTokenizer.train(["ein kleiner satz über wörter", "noch ein satz", "und ein dritter"] * 40, V, d)
    return d


def write_hf_checkpoint(task, folder, tokenizer_dir, fmt="safetensors", **kw):
    torch.manual_seed(1)
    ref = HF_CLASSES[task](hf_config(**kw)).eval()
    with torch.no_grad():  # make biases and norms non-trivial so a mix-up cannot hide
        for name, p in ref.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    if fmt == "safetensors":
        ref.save_pretrained(folder)
    else:
        ref.config.save_pretrained(folder)
        torch.save(ref.state_dict(), folder / "pytorch_model.bin")
    for f in tokenizer_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return ref


def padded_batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, V, (3, 11), generator=g)  # (B, T)
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 2:] = False
    ids[~mask] = 1
    ids[:, 0] = 0
    return ids, mask


def hf_out(ref, ids, mask):
    out = ref(input_ids=ids, attention_mask=mask.long())
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("task", ["encoder", "token-classification", "masked-lm"])
def test_outputs_match_transformers(task, fmt, tmp_path, tokenizer_dir):
    ref = write_hf_checkpoint(task, tmp_path, tokenizer_dir, fmt)
    ids, mask = padded_batch()
    with torch.no_grad():
        expected = hf_out(ref, ids, mask)
        for attention in ("sdpa", "manual"):
            for kernels in ("reference", "fast"):
                model, tok = load_pretrained(tmp_path, task=task, attention=attention, kernels=kernels)
                got = model(ids, mask)
                assert got.shape == expected.shape
                assert torch.allclose(got[mask], expected[mask], atol=1e-5, rtol=0), (attention, kernels)
    assert tok.vocab_size <= V  # a tiny corpus yields fewer pieces (hard_vocab_limit=False)


def test_config_comes_from_json_not_defaults(tmp_path, tokenizer_dir):
    write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path)
    assert model.config.layer_norm_eps == 3e-4 and model.config.type_vocab_size == 1
    assert model.embeddings.norm.eps == 3e-4
    assert model.embeddings.word_embeddings.weight.shape == (V, 32)


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_attention_paths_agree_with_dropout_off_and_gradients(tmp_path, tokenizer_dir, kernels):
    write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path, kernels=kernels)
    ids, mask = padded_batch()
    outs, grads = [], []
    for impl in ("sdpa", "manual"):
        model.set_attention(impl)
        model.zero_grad()
        h = model(ids, mask)
        h[mask].square().sum().backward()
        outs.append(h.detach())
        grads.append(model.layers[0].attention.qkv.weight.grad.clone())
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_padded_batch_skips_pads_with_the_same_outputs_and_gradients(tmp_path, tokenizer_dir):
    """With the fast kernels a padded batch runs its position-wise layers on the real tokens only
    (models.encoder_fast.Packing): hidden states, and the gradients of a loss over real positions,
    must equal transformers' padded computation; the pads come out as zeros."""
    ref = write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path, kernels="fast")
    model.eval(), ref.eval()  # no dropout; autograd still records
    ids, mask = padded_batch()
    ours = model(ids, mask)  # (B, T, H)
    theirs = hf_out(ref, ids, mask)
    assert ours[~mask].abs().sum() == 0
    weights = torch.randn(ours.shape, generator=torch.Generator().manual_seed(5))
    (ours * weights)[mask].sum().backward()
    (theirs * weights)[mask].sum().backward()
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-5, rtol=0)
    close = dict(atol=1e-4, rtol=1e-5)  # gradients reach ~100 here
    for i in range(2):
        got = model.layers[i].attention.qkv.weight.grad  # (3H, H): query, key, value rows
        att = ref.encoder.layer[i].attention
        want = torch.cat([att.self.query.weight.grad, att.self.key.weight.grad, att.self.value.weight.grad])
        assert torch.allclose(got, want, **close), i
        assert torch.allclose(model.layers[i].ffn_in.weight.grad, ref.encoder.layer[i].intermediate.dense.weight.grad,
                              **close), i
    assert torch.allclose(model.embeddings.word_embeddings.weight.grad,
                          ref.embeddings.word_embeddings.weight.grad, **close)


def test_select_returns_the_selected_states_with_the_same_gradients(tmp_path, tokenizer_dir):
    """``select``: the encoder returns h[select] (M, H), with the fast kernels its last layer running
    queries, output projection and FFN on those M rows only -- still transformers' numbers and gradients."""
    ref = write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path, kernels="fast")
    model.eval(), ref.eval()
    ids, mask = padded_batch()
    select = mask & (torch.rand(mask.shape, generator=torch.Generator().manual_seed(7)) < 0.5)
    select[2, 0], select[2, 1] = True, False  # a packed row that is not its flat position
    rows = []
    hook = model.layers[-1].ffn_in.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    ours = model(ids, mask, select=select)  # (M, H)
    hook.remove()
    theirs = hf_out(ref, ids, mask)[select]  # (M, H)
    assert rows == [int(select.sum())] < [int(mask.sum())]  # the last FFN saw the M selected rows only
    weights = torch.randn(ours.shape, generator=torch.Generator().manual_seed(5))
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    close = dict(atol=1e-4, rtol=1e-5)
    for i in range(2):
        att = ref.encoder.layer[i].attention
        want = torch.cat([att.self.query.weight.grad, att.self.key.weight.grad, att.self.value.weight.grad])
        assert torch.allclose(model.layers[i].attention.qkv.weight.grad, want, **close), i
        assert torch.allclose(model.layers[i].attention.qkv.bias.grad, torch.cat(
            [att.self.query.bias.grad, att.self.key.bias.grad, att.self.value.bias.grad]), **close), i
        assert torch.allclose(model.layers[i].ffn_out.weight.grad, ref.encoder.layer[i].output.dense.weight.grad,
                              **close), i
    assert torch.allclose(model.embeddings.word_embeddings.weight.grad,
                          ref.embeddings.word_embeddings.weight.grad, **close)


def test_select_on_unpadded_empty_and_bad_selections(tmp_path, tokenizer_dir):
    write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path, kernels="fast")
    model.eval()
    ids, mask = padded_batch()
    full = model(ids[:1], None)  # row 0 has no pads: no mask at all
    select = torch.zeros(1, ids.shape[1], dtype=torch.bool)
    select[0, [0, 3, 4]] = True
    assert torch.allclose(model(ids[:1], None, select=select), full[select], atol=1e-5, rtol=0)
    assert model(ids, mask, select=torch.zeros_like(mask)).shape == (0, 32)
    with pytest.raises(ValueError, match="outside attention_mask"):
        model(ids, mask, select=~mask)


def test_position_ids_start_after_padding_index():
    ids = torch.tensor([[0, 9, 9, 2, 1, 1], [0, 9, 9, 9, 9, 2]])
    assert position_ids_from_input_ids(ids, 1).tolist() == [[2, 3, 4, 5, 1, 1], [2, 3, 4, 5, 6, 7]]


def test_fresh_classifier_on_base_checkpoint(tmp_path, tokenizer_dir):
    ref = write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path, task="token-classification", num_labels=7)
    assert model.classifier.weight.shape == (7, 32)
    assert model.classifier.bias.abs().sum() == 0 and 0.01 < model.classifier.weight.std() < 0.03
    ids, mask = padded_batch()
    with torch.no_grad():
        assert torch.allclose(model.encoder(ids, mask)[mask], hf_out(ref, ids, mask)[mask], atol=1e-5)


def test_masked_lm_decoder_is_tied(tmp_path, tokenizer_dir):
    write_hf_checkpoint("masked-lm", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path, task="masked-lm")
    assert model.lm_head.decoder.weight is model.encoder.embeddings.word_embeddings.weight
    ids, mask = padded_batch()
    with torch.no_grad():
        full = model(ids, mask)  # (B, T, V)
        picked = model(ids, mask, select=mask)  # (M, V)
    assert torch.allclose(full[mask], picked, atol=1e-6)


def test_bf16_load_goes_straight_to_dtype(tmp_path, tokenizer_dir):
    write_hf_checkpoint("token-classification", tmp_path, tokenizer_dir)
    model, _ = load_pretrained(tmp_path, task="token-classification", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ref, _ = load_pretrained(tmp_path, task="token-classification")
    ids, mask = padded_batch()
    with torch.no_grad():
        assert (model(ids, mask).float() - ref(ids, mask)).abs().max() < 0.1


def test_init_weights_like_hf():
    cfg = XLMRConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=24)
    for task in ("encoder", "token-classification", "masked-lm"):
        model = build_model(cfg, task, num_labels=K)
        model.init_weights(torch.Generator().manual_seed(0))
        enc = model if isinstance(model, XLMREncoder) else model.encoder
        emb = enc.embeddings
        assert emb.word_embeddings.weight[1].abs().sum() == 0  # padding rows stay zero
        assert emb.position_embeddings.weight[1].abs().sum() == 0
        assert abs(emb.word_embeddings.weight.std().item() - 0.02) < 0.003
        assert enc.layers[0].attention.qkv.bias.abs().sum() == 0
        assert torch.equal(enc.layers[0].ffn_norm.weight, torch.ones(32))
    again = build_model(cfg, "encoder")
    again.init_weights(torch.Generator().manual_seed(0))
    first = build_model(cfg, "encoder")
    first.init_weights(torch.Generator().manual_seed(0))
    assert torch.equal(again.layers[0].ffn_in.weight, first.layers[0].ffn_in.weight)  # deterministic


def test_wrong_shape_and_missing_keys_are_reported(tmp_path, tokenizer_dir):
    from models.safetensors_io import load_file, save_file
    write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    tensors = load_file(tmp_path / "model.safetensors")
    key = next(k for k in tensors if k.endswith("layer.1.intermediate.dense.weight"))
    tensors[key] = tensors[key][:, :-1].contiguous()
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"intermediate.dense.weight: checkpoint \[48, 31\] vs model \[48, 32\]"):
        load_pretrained(tmp_path)
    del tensors[key]
    tensors["roberta.extra.weight"] = torch.zeros(2)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(KeyError, match=r"missing keys: \[.*layer\.1\.intermediate\.dense\.weight.*unexpected keys: "
                                       r"\['roberta\.extra\.weight'\]"):
        load_pretrained(tmp_path)


def test_real_checkpoint_shape_keys_are_used_or_ignored(tmp_path, tokenizer_dir):
    """xlm-roberta-base on the hub is an MLM checkpoint (roberta.* + lm_head.*), older files also
    carry the position_ids buffer and a pooler; lm_head's bias may sit under lm_head.decoder.bias."""
    from models.safetensors_io import load_file, save_file
    ref = write_hf_checkpoint("masked-lm", tmp_path, tokenizer_dir)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["roberta.embeddings.position_ids"] = torch.arange(24)[None]
    tensors["roberta.pooler.dense.weight"] = torch.zeros(32, 32)
    tensors["roberta.pooler.dense.bias"] = torch.zeros(32)
    bias = tensors.pop("lm_head.bias", None)
    tensors["lm_head.decoder.bias"] = bias if bias is not None else tensors["lm_head.decoder.bias"]
    save_file(tensors, tmp_path / "model.safetensors")
    ids, mask = padded_batch()
    with torch.no_grad():
        expected = hf_out(ref, ids, mask)
        mlm, _ = load_pretrained(tmp_path, task="masked-lm")
        assert torch.allclose(mlm(ids, mask)[mask], expected[mask], atol=1e-5)
        tagger, _ = load_pretrained(tmp_path, task="token-classification", num_labels=3)  # lm_head ignored
        enc, _ = load_pretrained(tmp_path, task="encoder")
        assert torch.equal(tagger.encoder(ids, mask), enc(ids, mask))


def test_mmap_views_are_copy_on_write_and_match_pread(tmp_path, tokenizer_dir):
    import gc
    write_hf_checkpoint("encoder", tmp_path, tokenizer_dir)
    before = (tmp_path / "model.safetensors").read_bytes()
    mapped, _ = load_pretrained(tmp_path)  # fp32 file, fp32 model: views of the mapping
    copied, _ = load_pretrained(tmp_path, mmap=False)
    gc.collect()  # the reader is closed; the mapping lives as long as the tensors
    for (name, a), (_, b) in zip(mapped.state_dict().items(), copied.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        mapped.embeddings.word_embeddings.weight.add_(1.0)  # a write copies the page, not the file
    assert (tmp_path / "model.safetensors").read_bytes() == before
    again, _ = load_pretrained(tmp_path)
    assert torch.equal(again.embeddings.word_embeddings.weight, copied.embeddings.word_embeddings.weight)
