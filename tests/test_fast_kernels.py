"""models.encoder's CPU training kernels: fast_dropout is a dropout (rate, scale, gradient), the
manual attention it trains with on the CPU gives sdpa's numbers, the oneDNN fp32 Linear gives
torch's linear's numbers and gradients, and oneDNN's primitive cache holds more shapes than its default."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import models.encoder as enc
from models.encoder import Linear, XLMRConfig, fast_dropout
from models.heads import XLMRForTokenClassification

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fast_dropout_rate_scale_and_gradient():
    x = torch.ones(400_000, requires_grad=True)
    y = fast_dropout(x, 0.1)
    kept = y != 0
    drop_rate = 1 - kept.float().mean().item()
    assert abs(drop_rate - 0.1) < 0.003  # 400k draws: 4.7 standard deviations
    scale = 65536 / (65536 - round(0.1 * 65536))
    assert torch.equal(y[kept], torch.full_like(y[kept], scale))  # kept values scaled exactly
    assert abs(y.mean().item() - 1) < 0.004  # unbiased
    g = torch.randn(400_000)
    y.backward(g)
    assert torch.allclose(x.grad, g * kept * scale)
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    odd = fast_dropout(torch.ones(3, 7), 0.5)  # a size that is not a multiple of 4
    assert odd.shape == (3, 7) and set(odd.unique().tolist()) <= {0.0, 2.0}


def test_fast_dropout_bf16_keeps_x_times_scale_exactly():
    # the 0/1 mask in x's dtype: a kept value is x * scale rounded once (as x.mul(scale)), the rest 0
    torch.manual_seed(0)
    x = torch.randn(3, 1000, dtype=torch.bfloat16, requires_grad=True)
    y = fast_dropout(x, 0.1)
    assert y.dtype == torch.bfloat16
    scale = 65536 / (65536 - round(0.1 * 65536))
    kept = y != 0
    assert 0.08 < 1 - kept.float().mean().item() < 0.12
    assert torch.equal(y[kept], x.detach().mul(scale)[kept])
    g = torch.randn(3, 1000, dtype=torch.bfloat16)
    y.backward(g)
    assert torch.equal(x.grad, torch.where(kept, g.mul(scale), torch.zeros((), dtype=torch.bfloat16)))


def test_fast_dropout_draws_differ_between_calls():
    a, b = fast_dropout(torch.ones(1000), 0.5), fast_dropout(torch.ones(1000), 0.5)
    assert not torch.equal(a, b)
    torch.manual_seed(3)
    c = fast_dropout(torch.ones(1000), 0.5)
    torch.manual_seed(3)
    assert torch.equal(c, fast_dropout(torch.ones(1000), 0.5))  # torch's generator: seeds reproduce


def _grads(model, ids, mask, precision):
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    with ctx:
        logits = model(ids, mask)
    F.cross_entropy(logits.float().flatten(0, 1), torch.zeros(ids.numel(), dtype=torch.long)).backward()
    return logits.float().detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_manual_training_path_matches_sdpa(precision, monkeypatch):
    # dropout 0 so both paths are deterministic; bf16 training takes the manual path on the CPU
    config = XLMRConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=20, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = XLMRForTokenClassification(config, 3, classifier_dropout=0.0).train()
    ids = torch.randint(4, 40, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    calls = []
    real = enc.manual_attention
    monkeypatch.setattr(enc, "manual_attention", lambda *a: calls.append(1) or real(*a))
    fast_logits, fast = _grads(model, ids, mask, precision)
    assert bool(calls) == (precision == "bf16")  # which path ran
    monkeypatch.setattr(enc, "CPU_TRAINING_KERNELS", False)
    ref_logits, ref = _grads(model, ids, mask, precision)
    tol = 3e-2 if precision == "bf16" else 1e-5
    real_tokens = mask.unsqueeze(-1).expand_as(fast_logits)
    assert torch.allclose(fast_logits[real_tokens], ref_logits[real_tokens], atol=tol)
    for name, g in ref.items():
        assert torch.allclose(fast[name], g, atol=tol * max(1.0, g.abs().max().item())), name


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_matches_torch_linear_and_its_gradients(bias):
    torch.manual_seed(0)
    layer = Linear(48, 24, bias=bias)
    x = torch.randn(3, 7, 48, requires_grad=True)
    y = layer(x)
    assert type(y.grad_fn).__name__ == "OneDnnLinearBackward"  # the oneDNN path ran
    ref = F.linear(x, layer.weight, layer.bias)
    assert y.shape == (3, 7, 24) and torch.allclose(y, ref, atol=1e-5)
    g = torch.randn(7, 3, 24).transpose(0, 1)  # a non-contiguous incoming gradient
    ours = torch.autograd.grad(y, [x, *layer.parameters()], g)
    theirs = torch.autograd.grad(ref, [x, *layer.parameters()], g)
    assert len(ours) == (3 if bias else 2)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)


def test_linear_falls_back_to_torch_under_autocast_and_for_empty_inputs():
    layer = Linear(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(5, 16, requires_grad=True))
    assert y.dtype == torch.bfloat16 and "OneDnn" not in type(y.grad_fn).__name__
    assert layer(torch.randn(0, 16)).shape == (0, 8)  # no real tokens in a packed batch
    assert torch.equal(layer(torch.zeros(2, 16)), layer.bias.detach().expand(2, 8))


CACHE_PROBE = """
import os, sys
sys.path.insert(0, sys.argv[1])
import torch
import models.encoder  # sets ONEDNN_PRIMITIVE_CACHE_CAPACITY unless the caller did
w = torch.ones(8, 8)
for _ in range(2):  # 1,100 shapes, twice: with a cache of 1,024 (oneDNN's default) the LRU cycles
    for rows in range(1, 1101):
        torch.ops.mkldnn._linear_pointwise(torch.ones(rows, 8), w, None, "none", [], "")
    print("PASS", flush=True)
"""


@pytest.mark.skipif(not enc.ONEDNN_LINEAR, reason="torch built without oneDNN")
@pytest.mark.parametrize("capacity", [None, "1024"])
def test_onednn_cache_keeps_the_primitives_of_many_shapes(tmp_path, capacity):
    """After importing models.encoder, a second pass over 1,100 shapes finds every oneDNN primitive in
    the cache (the first pass made them); a capacity the user sets (here oneDNN's default) is kept."""
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    env.update(ONEDNN_VERBOSE="profile_create", OMP_NUM_THREADS="1")
    if capacity:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = capacity
    out = subprocess.run([sys.executable, "-c", CACHE_PROBE, str(Path(__file__).resolve().parents[1])],
                         env=env, capture_output=True, text=True, check=True).stdout
    second = out.split("PASS")[1]  # oneDNN's verbose lines of the second pass
    misses, hits = second.count("create:cache_miss"), second.count("create:cache_hit")
    assert misses + hits == 1100
    assert (misses, hits) == ((0, 1100) if capacity is None else (1100, 0))
