"""The reference encoder (models/encoder.py) and its fast kernels (models/encoder_fast.py) give the
same numbers and gradients on every path: fp32 and bf16 autocast, with and without padding, with
and without ``select``, sdpa and manual attention, with and without autograd, training with dropout
(one fixed mask shared by both), and the branches meant for an accelerator, forced on CPU tensors
(they must be the reference bit for bit). Also: how use_kernels switches a model in place, what
``auto`` resolves to, the kernels line, and the config value reaching the model a task builds."""
from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models.encoder_fast as fast
from core.config import ConfigError, load_config
from models import build_model, load_pretrained, resolve_kernels, use_kernels
from models.encoder import Block, SelfAttention, XLMRConfig, XLMREncoder
from models.encoder_fast import FastDropout, FastLinear, FastXLMREncoder, describe_kernels, kernels_of, scale_kept

pytestmark = pytest.mark.usefixtures("one_thread")
V, K, B, T = 40, 3, 3, 9


def make_model(dropout: float = 0.0, attention: str = "sdpa", std: float = 0.2) -> nn.Module:
    """A token classifier with the reference kernels, random weights (std 0.2 = 10x HF's: peaked
    attention, so a wrong score shows in the output), non-trivial biases and norms."""
    config = XLMRConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=20, layer_norm_eps=3e-4,
                        initializer_range=std,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, attention=attention)
    model = build_model(config, "token-classification", K, kernels="reference")
    model.init_weights(torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def make_batch(padded: bool | str, selected: bool):
    """ids (B, T); mask (B, T) bool, or None when not padded ("full": an all-True mask); select
    (B, T) bool or None, inside the mask, fewer positions than the real tokens, and a row whose
    selected positions are not a prefix."""
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(4, V, (B, T), generator=g)
    ids[:, 0] = 0
    mask = torch.ones(B, T, dtype=torch.bool) if padded == "full" else None
    if padded is True:
        mask = torch.arange(T)[None, :] < torch.tensor([[T], [6], [2]])  # (B, T) bool
        ids = ids.masked_fill(~mask, 1)
    select = None
    if selected:
        real = torch.ones(B, T, dtype=torch.bool) if mask is None else mask
        select = real & (torch.rand(B, T, generator=g) < 0.5)
        select[2, 0], select[2, 1] = True, False
    return ids, mask, select


def run(model, kernels, ids, mask, select, precision, grad=True):
    """Outputs at the real (or selected) positions, fp32, and every parameter's gradient of a fixed
    random weighting of them."""
    use_kernels(model, kernels, announce=False)
    model.zero_grad(set_to_none=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    with autocast, (nullcontext() if grad else torch.no_grad()):
        out = model(ids, mask, select=select).float()  # (B, T, K) or (M, K)
    if select is None and mask is not None:
        out = out[mask]  # (R, K): a pad's row is not compared (the reference computes it, fast zeroes it)
    if not grad:
        return out, {}
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("padded", [False, "full", True], ids=["no_mask", "full_mask", "padded"])
@pytest.mark.parametrize("selected", [False, True], ids=["all", "select"])
@pytest.mark.parametrize("attention", ["sdpa", "manual"])
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "mkl"])
def test_fast_equals_reference(precision, padded, selected, attention, grad, onednn, monkeypatch):
    if onednn and not fast.ONEDNN_LINEAR:
        pytest.skip("torch built without oneDNN")
    monkeypatch.setattr(fast, "ONEDNN_FP32", onednn)  # both fp32 routes, whatever this CPU's default
    # dropout 0: deterministic, yet the training branches; bf16 at HF's scale, where its rounding stays small
    model = make_model(attention=attention, std=0.02 if precision == "bf16" else 0.2).train()
    ids, mask, select = make_batch(padded, selected)
    want, want_grads = run(model, "reference", ids, mask, select, precision, grad)
    manual_calls, rows = [], []
    real_manual = fast.fast_manual_attention
    monkeypatch.setattr(fast, "fast_manual_attention", lambda *a: manual_calls.append(1) or real_manual(*a))
    hooks = [layer.ffn_in.register_forward_hook(lambda m, i, o: rows.append(tuple(i[0].shape[:-1])))
             for layer in model.encoder.layers]
    got, got_grads = run(model, "fast", ids, mask, select, precision, grad)
    for h in hooks:
        h.remove()
    # which branches ran: packing (R rows) when there are pads or a selection, the last layer on the
    # M selected rows, the manual attention for "manual" and for bf16 training with autograd
    R = B * T if mask is None else int(mask.sum())
    first = (R,) if padded is True or selected else (B, T)
    assert rows == [first, (int(select.sum()),) if selected else first]
    assert len(manual_calls) == (2 if attention == "manual" or (grad and precision == "bf16") else 0)
    tol = 3e-2 if precision == "bf16" else 1e-5
    assert got.shape == want.shape and torch.allclose(got, want, atol=tol, rtol=0)
    assert got_grads.keys() == want_grads.keys()
    for name, g in want_grads.items():
        assert torch.allclose(got_grads[name], g, atol=tol * max(1.0, g.abs().max().item()), rtol=0), name


class SharedMasks:
    """One dropout mask per call, the same for the reference and the fast model: the n-th dropout
    of a forward draws from seed n over the padded (B, T, ...) layout, so a packed (R, H) or
    selected (M, H) input gets the rows of its positions."""

    def __init__(self, mask, select):
        self.mask = torch.ones(B, T, dtype=torch.bool) if mask is None else mask
        self.select, self.calls = select, 0

    def keep(self, x: torch.Tensor, p: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(100 + self.calls)
        self.calls += 1
        if x.dim() == 2:  # rows of positions: the real tokens (R, H) or the selected ones (M, H)
            rows = self.mask if x.shape[0] == int(self.mask.sum()) else self.select
            assert x.shape[0] == int(rows.sum())
            return (torch.rand(B * T * x.shape[1], generator=g) >= p).view(B, T, -1)[rows].to(x.dtype)
        return (torch.rand(x.numel(), generator=g) >= p).view(x.shape).to(x.dtype)

    def reference_dropout(self, x, p=0.5, training=True, inplace=False):  # F.dropout's signature
        return x * self.keep(x, p) / (1 - p) if training and p > 0 else x

    def fast_dropout(self, x, p, training=True):
        return scale_kept(x, self.keep(x, p), 1 / (1 - p)) if training and p > 0 else x


@pytest.mark.parametrize("padded, selected", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("fast_attention", ["sdpa", "manual"])
def test_training_with_dropout_equals_the_reference_under_one_mask(padded, selected, fast_attention, monkeypatch):
    """Dropout 0.1 everywhere (embeddings, attention probabilities, both sublayers, the classifier).
    The reference trains with manual attention (sdpa draws its mask inside); the fast model with
    ``sdpa`` takes its manual path while training with dropout, which this pins to the reference."""
    model = make_model(dropout=0.1).train()
    ids, mask, select = make_batch(padded, selected)
    masks = SharedMasks(mask, select)
    monkeypatch.setattr(F, "dropout", masks.reference_dropout)
    model.encoder.set_attention("manual")
    want, want_grads = run(model, "reference", ids, mask, select, "fp32")
    reference_calls, masks.calls = masks.calls, 0
    monkeypatch.setattr(fast, "fast_dropout", masks.fast_dropout)
    monkeypatch.setattr(fast, "dropout_bmm", lambda probs, v, p: torch.bmm(masks.fast_dropout(probs, p), v))
    model.encoder.set_attention(fast_attention)
    got, got_grads = run(model, "fast", ids, mask, select, "fp32")
    assert masks.calls == reference_calls == 1 + 2 * 3 + 1  # embeddings, 3 per layer, classifier
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    for name, g in want_grads.items():
        assert torch.allclose(got_grads[name], g, atol=1e-5 * max(1.0, g.abs().max().item()), rtol=0), name


@pytest.mark.parametrize("attention", ["sdpa", "manual"])
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "no_onednn"])
def test_off_the_cpu_fast_is_the_reference_bit_for_bit(attention, onednn, monkeypatch):
    """The accelerator branches (every ``on_cpu`` test False), run on CPU tensors: no packing, no
    selected-rows layer, torch's linear, F.dropout and the configured attention -- the reference's
    own calls, so training with dropout under one seed gives identical outputs and gradients."""
    monkeypatch.setattr(fast, "on_cpu", lambda t: False)
    monkeypatch.setattr(fast, "ONEDNN_FP32", onednn and fast.ONEDNN_LINEAR)
    model = make_model(dropout=0.1, attention=attention).train()
    ids, mask, select = make_batch(padded=True, selected=True)
    results = []
    for kernels in ("reference", "fast"):
        torch.manual_seed(7)
        results.append(run(model, kernels, ids, mask, select, "fp32"))
    (want, want_grads), (got, got_grads) = results
    assert torch.equal(got, want)
    assert all(torch.equal(got_grads[n], g) for n, g in want_grads.items())
    torch.manual_seed(7)  # and the full output: pads as the reference computes them (not zeroed)
    with torch.no_grad():
        full = model(ids, mask)
    use_kernels(model, "reference", announce=False)
    torch.manual_seed(7)
    with torch.no_grad():
        assert torch.equal(full, model(ids, mask))


def test_select_outside_the_mask_is_refused_by_the_fast_kernels():
    model = use_kernels(make_model().eval(), "fast", announce=False)
    ids, mask, _ = make_batch(padded=True, selected=False)
    with pytest.raises(ValueError, match="outside attention_mask"):
        model(ids, mask, select=~mask)
    assert model(ids, mask, select=torch.zeros_like(mask)).shape == (0, K)


def test_use_kernels_switches_classes_in_place_and_keeps_parameters_and_state_dict():
    model = make_model(dropout=0.1)
    params = dict(model.named_parameters())
    keys = list(model.state_dict())
    use_kernels(model, "fast", announce=False)
    assert kernels_of(model) == "fast" and type(model.encoder) is FastXLMREncoder
    assert type(model.dropout) is FastDropout and type(model.encoder.embeddings.dropout) is FastDropout
    assert type(model.encoder.layers[1].attention.qkv) is FastLinear
    assert type(model.classifier) is nn.Linear  # only the encoder's linears
    assert list(model.state_dict()) == keys
    assert all(p is params[n] for n, p in model.named_parameters())
    use_kernels(model, "reference", announce=False)
    assert kernels_of(model) == "reference"
    assert {type(m) for m in model.modules()} <= {type(model), XLMREncoder, Block, SelfAttention, nn.Linear,
                                                  nn.Dropout, nn.LayerNorm, nn.Embedding, nn.ModuleList,
                                                  type(model.encoder.embeddings)}
    other = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))  # no encoder: left alone
    assert use_kernels(other, "fast") is other and type(other[1]) is nn.Dropout and kernels_of(other) is None


def test_auto_is_fast_on_the_cpu_and_reference_elsewhere():
    assert resolve_kernels("auto", "cpu") == "fast"
    assert resolve_kernels("auto", torch.device("cuda")) == "reference"
    assert resolve_kernels("auto") == ("reference" if torch.cuda.is_available() else "fast")
    assert resolve_kernels("reference", "cpu") == "reference" and resolve_kernels("fast", "cuda") == "fast"
    with pytest.raises(ValueError, match="kernels must be one of"):
        resolve_kernels("quick")


def test_the_kernels_line_is_printed_once_and_names_the_attention(capsys, monkeypatch):
    fast._print_once.cache_clear()
    model = make_model()
    use_kernels(model, "reference")
    use_kernels(model, "reference")
    assert capsys.readouterr().out == "kernels: reference (attention sdpa)\n"
    use_kernels(model, "fast")
    line = capsys.readouterr().out
    assert line.startswith("kernels: fast (cpu: packing, last layer on the selected rows, ")
    assert line.endswith("fast dropout; attention sdpa, manual while training with dropout or in bf16)\n")
    model.encoder.set_attention("manual")
    assert describe_kernels(model).endswith("; attention manual)")
    monkeypatch.setattr(fast, "ONEDNN_FP32", True)
    assert "last layer on the selected rows, onednn fp32 linear, fast dropout" in describe_kernels(model)
    monkeypatch.setattr(fast, "ONEDNN_FP32", False)
    assert describe_kernels(model) == "kernels: fast (cpu: packing, last layer on the selected rows, fast dropout; " \
                                      "attention manual)"


def test_model_kernels_config_reaches_the_model_a_task_builds(tmp_path):
    from data.conll import Sentence
    from tasks.ner import load_model, write_tiny_checkpoint

    assert load_config(None).model.kernels == "auto"
    with pytest.raises(ConfigError, match="model.kernels"):
        load_config(None, ["model.kernels=quick"])
    text = [Sentence(f"ein kleiner satz nummer {i} über wörter".split(), ["O"] * 6) for i in range(40)]
    write_tiny_checkpoint(tmp_path, text, vocab_size=60)
    for kernels, want in (("reference", "reference"), ("fast", "fast"), ("auto", "fast")):
        cfg = load_config(None, [f"model.name_or_path={tmp_path}", f"model.kernels={kernels}", "train.device=cpu"])
        model, _ = load_model(cfg, K)
        assert kernels_of(model) == want, kernels
    assert kernels_of(load_pretrained(tmp_path, kernels="reference")[0]) == "reference"


def test_bf16_weights_take_the_same_fast_paths():
    model = make_model().to(torch.bfloat16).eval()
    ids, mask, select = make_batch(padded=True, selected=True)
    with torch.no_grad():
        want = model(ids, mask)[select].float()
        use_kernels(model, "fast", announce=False)
        got = model(ids, mask, select=select).float()
    assert math.isclose(0, (got - want).abs().max().item(), abs_tol=5e-2)
