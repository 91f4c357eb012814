"""models.encoder_fast's CPU kernels one by one: fast_dropout is a dropout (rate, scale, gradient,
exact in bf16, F.dropout off the CPU), the oneDNN fp32 linear gives torch's linear's numbers and
gradients (and steps aside under autocast, off the CPU and without oneDNN), and oneDNN's primitive
cache holds more shapes than its default once set_up_onednn_cache ran -- never as a side effect of
an import. The whole encoder, reference == fast on every path: tests/test_encoder_paths.py."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import models.encoder_fast as fast
from models.encoder_fast import (FastLinear, GeluLinear, dropout_bmm, fast_dropout, gelu_linear, scale_kept,
                                 set_up_onednn_cache)

pytestmark = pytest.mark.usefixtures("one_thread")
SCALE_01 = 65536 / (65536 - round(0.1 * 65536))  # fast_dropout's scale for p = 0.1


def test_fast_dropout_rate_scale_and_gradient():
    x = torch.ones(400_000, requires_grad=True)
    y = fast_dropout(x, 0.1)
    kept = y != 0
    drop_rate = 1 - kept.float().mean().item()
    assert abs(drop_rate - 0.1) < 0.003  # 400k draws: 4.7 standard deviations
    assert torch.equal(y[kept], torch.full_like(y[kept], SCALE_01))  # kept values scaled exactly
    assert abs(y.mean().item() - 1) < 0.004  # unbiased
    g = torch.randn(400_000)
    y.backward(g)
    assert torch.allclose(x.grad, g * kept * SCALE_01)
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    odd = fast_dropout(torch.ones(3, 7), 0.5)  # a size that is not a multiple of 4
    assert odd.shape == (3, 7) and set(odd.unique().tolist()) <= {0.0, 2.0}


def test_fast_dropout_bf16_keeps_x_times_scale_exactly():
    # the 0/1 mask in x's dtype: a kept value is x * scale rounded once (as x.mul(scale)), the rest 0
    torch.manual_seed(0)
    x = torch.randn(3, 1000, dtype=torch.bfloat16, requires_grad=True)
    y = fast_dropout(x, 0.1)
    assert y.dtype == torch.bfloat16
    kept = y != 0
    assert 0.08 < 1 - kept.float().mean().item() < 0.12
    assert torch.equal(y[kept], x.detach().mul(SCALE_01)[kept])
    g = torch.randn(3, 1000, dtype=torch.bfloat16)
    y.backward(g)
    assert torch.equal(x.grad, torch.where(kept, g.mul(SCALE_01), torch.zeros((), dtype=torch.bfloat16)))


def test_scale_kept_with_a_fixed_mask_is_x_times_mask_times_scale():
    torch.manual_seed(1)
    x = torch.randn(4, 6)
    keep = (torch.rand(4, 6) > 0.3).float()
    assert torch.equal(scale_kept(x, keep, 1.25), x * keep * 1.25)


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward while ``fn()`` runs (one tensor kept twice counts once)."""
    sizes = {}

    def pack(t):
        sizes[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes.values())


def test_dropout_redraws_the_forward_mask_in_backward_and_keeps_none():
    """Backward multiplies by the forward's mask even when other draws come in between, and the
    mask (as large as x) is not among the saved tensors."""
    torch.manual_seed(3)
    x = torch.randn(5, 999, requires_grad=True)
    y = fast_dropout(x, 0.1)
    torch.rand(1000)  # the generator moves on before backward
    kept = (y != 0).float()
    g = torch.randn(5, 999)
    y.backward(g)
    assert torch.equal(x.grad, g * kept * SCALE_01)
    assert saved_bytes(lambda: fast_dropout(torch.randn(64, 64, requires_grad=True), 0.1)) == 0


def test_dropout_bmm_equals_dropout_then_bmm_and_keeps_no_dropped_copy():
    """Under one seed, dropout_bmm = bmm(fast_dropout(probs), v): values and both gradients; it keeps
    probs and v only (autograd would also keep the dropped copy of probs)."""
    g = torch.Generator().manual_seed(5)
    probs = torch.rand(6, 9, 9, generator=g).softmax(-1).requires_grad_()  # (B * N, T, T)
    v = torch.randn(6, 9, 4, generator=g, requires_grad=True)  # (B * N, T, D)
    grad = torch.randn(6, 9, 4, generator=g)
    torch.manual_seed(7)
    y = dropout_bmm(probs, v, 0.1)
    torch.rand(100)  # the generator moves on before backward
    got = torch.autograd.grad(y, (probs, v), grad)
    torch.manual_seed(7)
    y_ref = torch.bmm(fast_dropout(probs, 0.1), v)
    ref = torch.autograd.grad(y_ref, (probs, v), grad)
    assert torch.equal(y, y_ref)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    scores = probs.detach().log().requires_grad_()  # as in attention: softmax keeps its output
    kept = saved_bytes(lambda: dropout_bmm(scores.softmax(-1), v, 0.1))
    assert kept == (probs.numel() + v.numel()) * 4
    assert saved_bytes(lambda: torch.bmm(fast_dropout(scores.softmax(-1), 0.1), v)) - kept == probs.numel() * 4
    assert torch.equal(dropout_bmm(probs, v, 0.0), torch.bmm(probs, v))
    with torch.no_grad():  # no backward to come: the plain path, the same mask for the same seed
        torch.manual_seed(8)
        y = dropout_bmm(probs, v, 0.1)
        torch.manual_seed(8)
        assert torch.equal(y, torch.bmm(fast_dropout(probs, 0.1), v))


def test_gelu_linear_equals_autograd_and_keeps_only_its_input():
    torch.manual_seed(4)
    out = torch.nn.Linear(32, 8)
    h = torch.randn(3, 5, 32, requires_grad=True)
    y = gelu_linear(h, out)
    g = torch.randn(3, 5, 8)
    grads = torch.autograd.grad(y, (h, out.weight, out.bias), g)
    h_ref = h.detach().clone().requires_grad_()
    y_ref = torch.nn.functional.linear(torch.nn.functional.gelu(h_ref), out.weight, out.bias)
    ref = torch.autograd.grad(y_ref, (h_ref, out.weight, out.bias), g)
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # autograd keeps h and gelu(h), two (15, 32) tensors; GeluLinear h alone (plus the weight)
    kept = saved_bytes(lambda: GeluLinear.apply(h, out.weight, out.bias))
    plain = saved_bytes(lambda: out(torch.nn.functional.gelu(h)))
    assert kept == h.numel() * 4 + out.weight.numel() * 4
    assert plain - kept == h.numel() * 4


def test_fast_dropout_draws_differ_between_calls():
    a, b = fast_dropout(torch.ones(1000), 0.5), fast_dropout(torch.ones(1000), 0.5)
    assert not torch.equal(a, b)
    torch.manual_seed(3)
    c = fast_dropout(torch.ones(1000), 0.5)
    torch.manual_seed(3)
    assert torch.equal(c, fast_dropout(torch.ones(1000), 0.5))  # torch's generator: seeds reproduce


def test_fast_dropout_is_f_dropout_off_the_cpu_and_for_p_one(monkeypatch):
    x = torch.randn(50, 40)
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))  # p >= 1: F.dropout's all-zero output
    monkeypatch.setattr(fast, "on_cpu", lambda t: False)  # the accelerator branch, on CPU tensors
    torch.manual_seed(4)
    ours = fast_dropout(x, 0.3)
    torch.manual_seed(4)
    assert torch.equal(ours, F.dropout(x, 0.3, True))  # the same draw: F.dropout itself


@pytest.fixture
def onednn_on(monkeypatch):
    """The oneDNN fp32 route, whatever this CPU's default (``ONEDNN_FP32``) is."""
    if not fast.ONEDNN_LINEAR:
        pytest.skip("torch built without oneDNN")
    monkeypatch.setattr(fast, "ONEDNN_FP32", True)


@pytest.mark.parametrize("capability, want", [("AVX512", True), ("AVX512_BF16", True), ("AVX2", False),
                                              ("DEFAULT", False)])
def test_onednn_fp32_route_is_taken_on_avx512_cpus_only(capability, want, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert fast._onednn_fp32_is_faster() == (want and fast.ONEDNN_LINEAR)
    monkeypatch.setattr(fast, "ONEDNN_LINEAR", False)  # no oneDNN op in this torch: never
    assert not fast._onednn_fp32_is_faster()


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_matches_torch_linear_and_its_gradients(bias, onednn_on):
    torch.manual_seed(0)
    layer = FastLinear(48, 24, bias=bias)
    x = torch.randn(3, 7, 48, requires_grad=True)
    y = layer(x)
    assert type(y.grad_fn).__name__ == "OneDnnLinearBackward"
    ref = F.linear(x, layer.weight, layer.bias)
    assert y.shape == (3, 7, 24) and torch.allclose(y, ref, atol=1e-5)
    g = torch.randn(7, 3, 24).transpose(0, 1)  # a non-contiguous incoming gradient
    ours = torch.autograd.grad(y, [x, *layer.parameters()], g)
    theirs = torch.autograd.grad(ref, [x, *layer.parameters()], g)
    assert len(ours) == (3 if bias else 2)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)


def test_onednn_linear_computes_only_the_gradients_asked_for(onednn_on):
    torch.manual_seed(0)
    layer = FastLinear(12, 6)
    layer.weight.requires_grad_(False)  # a frozen weight: no dW
    x = torch.randn(4, 12, requires_grad=True)
    y = layer(x)
    assert type(y.grad_fn).__name__ == "OneDnnLinearBackward"
    gx, gb = torch.autograd.grad(y.square().sum(), [x, layer.bias])
    want_gx, want_gb = torch.autograd.grad(F.linear(x, layer.weight, layer.bias).square().sum(), [x, layer.bias])
    assert torch.allclose(gx, want_gx, atol=1e-5) and torch.allclose(gb, want_gb, atol=1e-5)
    layer.weight.requires_grad_(True)
    y = layer(torch.randn(4, 12))  # an input without grad: no dx
    (gw,) = torch.autograd.grad(y.sum(), [layer.weight])
    assert gw.shape == (6, 12)


def test_onednn_sees_row_counts_in_buckets_and_the_result_is_f_linear(monkeypatch, onednn_on):
    """A training step's products reach oneDNN with M rounded up to a multiple of ROW_BUCKET (zero
    rows added, then cut off), so a run compiles a kernel per bucket, not per batch."""
    seen, kernel = [], fast._onednn_kernel
    monkeypatch.setattr(fast, "_onednn_kernel", lambda x, w, b: seen.append(x.shape[0]) or kernel(x, w, b))
    torch.manual_seed(0)
    layer = FastLinear(12, 6)
    for m in (1, 63, 64, 65, 200):
        x = torch.randn(m, 12, requires_grad=True)
        y = layer(x)
        gx, gw = torch.autograd.grad(y.square().sum(), [x, layer.weight])
        want = F.linear(x, layer.weight, layer.bias)
        want_gx, want_gw = torch.autograd.grad(want.square().sum(), [x, layer.weight])
        assert y.shape == (m, 6) and torch.allclose(y, want, atol=1e-5)
        assert torch.allclose(gx, want_gx, atol=1e-5) and torch.allclose(gw, want_gw, atol=1e-4)
    assert seen == [64, 64, 64, 64, 64, 64, 128, 128, 256, 256]  # forward and dx of each
    assert all(n % fast.ROW_BUCKET == 0 for n in seen)


def test_linear_falls_back_to_torch_under_autocast_and_for_empty_inputs(onednn_on):
    layer = FastLinear(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(5, 16, requires_grad=True))
    assert y.dtype == torch.bfloat16 and "OneDnn" not in type(y.grad_fn).__name__
    assert layer(torch.randn(0, 16)).shape == (0, 8)  # no real tokens in a packed batch
    assert torch.equal(layer(torch.zeros(2, 16)), layer.bias.detach().expand(2, 8))


@pytest.mark.parametrize("branch", ["off the cpu", "mkl route"])
def test_linear_is_f_linear_off_the_cpu_and_on_the_mkl_route(branch, monkeypatch):
    monkeypatch.setattr(fast, "ONEDNN_FP32", branch == "off the cpu")
    if branch == "off the cpu":
        monkeypatch.setattr(fast, "on_cpu", lambda t: False)
    torch.manual_seed(0)
    layer = FastLinear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)
    y = layer(x)
    assert "OneDnn" not in type(y.grad_fn).__name__
    assert torch.equal(y, F.linear(x, layer.weight, layer.bias))


def test_set_up_onednn_cache_keeps_a_value_the_user_set(monkeypatch):
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "777")
    assert set_up_onednn_cache() == "777" and os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "777"
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    assert set_up_onednn_cache() == "4096" and os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "4096"


CACHE_PROBE = """
import os, sys
sys.path.insert(0, sys.argv[1])
import torch
import models, models.encoder, models.encoder_fast  # importing sets nothing
print("IMPORTED", os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"), flush=True)
models.encoder_fast.set_up_onednn_cache()  # before oneDNN's first primitive
w = torch.ones(8, 8)
for _ in range(2):  # 1,100 shapes, twice: with a cache of 1,024 (oneDNN's default) the LRU cycles
    for rows in range(1, 1101):
        torch.ops.mkldnn._linear_pointwise(torch.ones(rows, 8), w, None, "none", [], "")
    print("PASS", flush=True)
"""


@pytest.mark.skipif(not fast.ONEDNN_LINEAR, reason="torch built without oneDNN")
@pytest.mark.parametrize("capacity, hits", [(None, 1100), ("1024", 0)])
def test_onednn_cache_keeps_the_primitives_of_many_shapes(tmp_path, capacity, hits):
    """Importing models sets no variable; after set_up_onednn_cache, a second pass over 1,100 shapes
    finds every oneDNN primitive in the cache (the first pass made them); a capacity the user sets
    (here oneDNN's default, 1,024) is kept, and then the cache cycles."""
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    env.update(ONEDNN_VERBOSE="profile_create", OMP_NUM_THREADS="1")
    if capacity:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = capacity
    out = subprocess.run([sys.executable, "-c", CACHE_PROBE, str(Path(__file__).resolve().parents[1])],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert f"IMPORTED {capacity}" in out
    second = out.split("PASS")[1]  # oneDNN's verbose lines of the second pass
    misses, found = second.count("create:cache_miss"), second.count("create:cache_hit")
    assert (misses, found) == (1100 - hits, hits)
