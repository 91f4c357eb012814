"""AdamW groups, schedules, clipping and the lazy-embedding AdamW against torch.optim.AdamW.

Legend: B batch, T positions, H hidden, V vocabulary.
"""
from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from core.config import load_config
from core.lazy_adamw import LazyAdamW
from core.optim import build_optimizer, build_scheduler, clip_grad_norm, lr_lambda, no_decay_names

V, H = 48, 6


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


class Net(nn.Module):
    """An embedding whose rows matter through a LayerNorm and a Linear (weights feed the gradient)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, H, padding_idx=0)
        self.norm = nn.LayerNorm(H)
        self.out = nn.Linear(H, 3)

    def forward(self, ids):
        return self.out(self.norm(self.embed(ids)))  # (B, T, 3)


def train_cfg(**over):
    cfg = load_config(None, ["train.lr=0.03", "train.weight_decay=0.2", "train.lazy_embedding_min_rows=0",
                             "train.warmup_ratio=0.2", "train.schedule=linear"]).train
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def batches(n_steps: int, seed: int = 0):
    """Ids from a range that grows every step, so many rows are first touched late (some never)."""
    g = torch.Generator().manual_seed(seed)
    for step in range(n_steps):
        high = min(6 + 4 * step, V - 8)  # the last 8 rows are never touched
        yield torch.randint(0, high, (3, 5), generator=g), torch.randint(0, 3, (3, 5), generator=g)


def run(model, optimizer, scheduler, steps, clip=1.0, save_load_at=None):
    for i, (ids, target) in enumerate(steps):
        if i == save_load_at:  # round-trip model and optimizer through bytes into fresh objects
            if hasattr(optimizer, "materialize"):
                optimizer.materialize()
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "opt": optimizer.state_dict(), "sched": scheduler.state_dict()},
                       buffer)
            buffer.seek(0)
            state = torch.load(buffer, weights_only=False)
            fresh = Net()
            fresh.load_state_dict(state["model"])
            model.load_state_dict(fresh.state_dict())
            optimizer.load_state_dict(state["opt"])
            scheduler.load_state_dict(state["sched"])
        loss = nn.functional.cross_entropy(model(ids).flatten(0, 1), target.flatten(), reduction="sum")
        loss.backward()
        clip_grad_norm(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def reference_adamw(model, cfg):
    """What a Hugging Face fine-tuning script builds: torch.optim.AdamW (foreach), HF decay groups."""
    skip = {n for n, _ in model.named_parameters() if n.endswith("bias") or n.startswith("norm.")}
    groups = [{"params": [p for n, p in model.named_parameters() if n not in skip], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n in skip], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("save_load_at", [None, 5])
@pytest.mark.parametrize("fused", [True, False])
def test_lazy_adamw_equals_adamw(sparse, save_load_at, fused):
    torch.manual_seed(0)
    plain_model = Net()
    lazy_model = copy.deepcopy(plain_model)
    cfg = train_cfg(fused_adamw=fused)
    plain_opt = reference_adamw(plain_model, cfg)
    lazy_opt = build_optimizer(lazy_model, cfg, sparse_embeddings=sparse)
    assert isinstance(lazy_opt, LazyAdamW) and bool(lazy_opt.defaults["fused"]) == fused
    assert lazy_model.embed.sparse == sparse
    n = 12
    run(plain_model, plain_opt, build_scheduler(plain_opt, cfg, n), batches(n))
    run(lazy_model, lazy_opt, build_scheduler(lazy_opt, cfg, n), batches(n), save_load_at=save_load_at)

    untouched = slice(V - 8, V)
    # Before materialising, never-touched rows still hold their initial values: the decay is pending.
    assert not torch.allclose(lazy_model.embed.weight[untouched], plain_model.embed.weight[untouched])
    lazy_opt.materialize()
    for (name, a), b in zip(plain_model.named_parameters(), lazy_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    state_a, state_b = plain_opt.state[plain_model.embed.weight], lazy_opt.state[lazy_model.embed.weight]
    active, rows = state_b["active"], state_b["rows"]
    assert active.dtype == torch.bool and not active[untouched].any() and active[1:V - 8].sum() > 20
    # rows in first-touch order (appended as they come), slot the inverse map, -1 where untouched
    assert rows.dtype == torch.long and torch.equal(rows.sort().values, active.nonzero().squeeze(1))
    assert not torch.equal(rows, rows.sort().values)  # later batches touched lower ids: appended, not sorted in
    assert torch.equal(state_b["slot"][rows], torch.arange(len(rows))) and (state_b["slot"][~active] == -1).all()
    for key in ("exp_avg", "exp_avg_sq"):  # moments of the touched rows only; plain AdamW's others are zero
        assert state_b[key].shape == (len(rows), state_a[key].shape[1])
        torch.testing.assert_close(state_b[key], state_a[key][rows], rtol=1e-5, atol=1e-7)
        assert not state_a[key][~active].any()
    assert float(state_b["step"]) == float(state_a["step"]) == n


def test_lazy_adamw_reads_a_state_saved_with_full_moments():
    """A state dict from before the moments were compact ((V, H) moments, no "rows") resumes exactly."""
    torch.manual_seed(0)
    model = Net()
    opt = build_optimizer(model, train_cfg())
    steps = list(batches(6))
    run(model, opt, build_scheduler(opt, train_cfg(), 6), steps[:3])
    saved = copy.deepcopy(opt.state_dict())
    for state in saved["state"].values():
        if "rows" in state:  # the old layout: (V, H) moments with zero rows where untouched
            rows = state.pop("rows")
            for key in ("exp_avg", "exp_avg_sq"):
                full = state[key].new_zeros(V, H)
                full[rows] = state[key]
                state[key] = full
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, train_cfg())
    twin_opt.load_state_dict(saved)
    for m, o in ((model, opt), (twin, twin_opt)):
        m.embed.weight.grad = None
        run(m, o, build_scheduler(o, train_cfg(), 6), steps[3:])
        o.materialize()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    # the old layout is read in id order, then later rows are appended: the same rows, maybe in another order
    rows, twin_rows = opt.state[model.embed.weight]["rows"], twin_opt.state[twin.embed.weight]["rows"]
    assert torch.equal(rows.sort().values, twin_rows.sort().values)


def test_lazy_adamw_grows_moments_in_place_and_saves_them_exactly():
    """New rows are appended into buffers with room (no copy of the old moments while they fit); the
    saved state is exactly (A, H), copies not views, without the buffers, and resumes a step that
    touches no new row."""
    torch.manual_seed(0)
    model = Net()
    opt = build_optimizer(model, train_cfg(lazy_embedding_decay=True))
    steps = list(batches(4))
    run(model, opt, build_scheduler(opt, train_cfg(), 8), steps[:3])
    state = opt.state[model.embed.weight]
    touched, buffer = len(state["rows"]), state["exp_avg_buffer"]
    assert buffer.shape[0] >= touched and state["exp_avg"].data_ptr() == buffer.data_ptr()
    assert not state["grad_buffer"].any()  # zero again after the step
    old_ids = state["rows"][:2].view(1, 2)  # only rows already touched: no reallocation
    model(old_ids).sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert state["exp_avg_buffer"].data_ptr() == buffer.data_ptr() and len(state["rows"]) == touched

    saved = opt.state_dict()["state"]
    lazy = next(s for s in saved.values() if "rows" in s)
    assert not {"slot", "grad_buffer", "exp_avg_buffer", "exp_avg_sq_buffer"} & set(lazy)
    for key in ("exp_avg", "exp_avg_sq"):
        assert lazy[key].shape == (touched, H)
        assert lazy[key].untyped_storage().nbytes() == touched * H * lazy[key].element_size()  # not the buffer
        assert torch.equal(lazy[key], state[key])
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, train_cfg(lazy_embedding_decay=True))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    twin_opt.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(twin_opt.state[twin.embed.weight]["slot"], state["slot"])
    for m, o in ((model, opt), (twin, twin_opt)):
        m(old_ids).sum().backward()
        o.step()
        o.zero_grad(set_to_none=True)
        o.materialize()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_lazy_rows_read_by_forward_are_up_to_date():
    """A row first read after k steps must already carry k decays when the forward reads it."""
    torch.manual_seed(0)
    model = Net()
    opt = build_optimizer(model, train_cfg(schedule="constant", warmup_ratio=0.0))
    before = model.embed.weight[40].detach().clone()
    for _ in range(3):
        model(torch.tensor([[1, 2]])).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert torch.equal(model.embed.weight[40], before)  # pending
    seen = model.embed(torch.tensor([40]))[0]  # the pre-hook catches row 40 up
    torch.testing.assert_close(seen, before * (1 - 0.03 * 0.2) ** 3, rtol=1e-6, atol=0)


def test_fused_is_configurable():
    assert build_optimizer(Net(), train_cfg(lazy_embedding_decay=False)).defaults["fused"]
    assert not build_optimizer(Net(), train_cfg(lazy_embedding_decay=False, fused_adamw=False)).defaults["fused"]


def test_no_decay_for_bias_and_layernorm_only():
    names = no_decay_names(Net())
    assert names == {"norm.weight", "norm.bias", "out.bias"}
    opt = build_optimizer(Net(), train_cfg(lazy_embedding_decay=False))
    decays = {g["weight_decay"]: len(g["params"]) for g in opt.param_groups}
    assert decays == {0.2: 2, 0.0: 3}  # embed.weight, out.weight | norm.weight, norm.bias, out.bias


def test_no_decay_on_the_encoder():
    from models.encoder import XLMRConfig
    from models.heads import XLMRForTokenClassification

    config = XLMRConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40)
    model = XLMRForTokenClassification(config, 3)
    names = no_decay_names(model)
    norms = {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, nn.LayerNorm)}
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert norms and names == norms | biases
    assert "encoder.embeddings.word_embeddings.weight" not in names


def test_schedules_pinned():
    linear = [lr_lambda(s, 10, 2, "linear") for s in range(11)]
    assert linear == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0])
    assert [lr_lambda(s, 10, 2, "constant") for s in (0, 1, 5, 10)] == [0.5, 1.0, 1.0, 1.0]


def test_cosine_matches_transformers_after_warmup():
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    hf = get_cosine_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=20)
    for step in range(3, 21):
        assert lr_lambda(step, 20, 3, "cosine") == pytest.approx(hf.lr_lambdas[0](step), abs=1e-12)
    assert lr_lambda(20, 20, 3, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_lambda(11, 20, 3, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 17)))


def test_scheduler_warmup_from_ratio():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_scheduler(opt, train_cfg(warmup_ratio=0.25, lr=2.0), total_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 2.0, 2.0, 5 / 3, 4 / 3, 1.0, 2 / 3, 1 / 3])


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch_and_handles_sparse(max_norm):
    torch.manual_seed(0)
    dense, sparse = Net(), Net()
    sparse.load_state_dict(dense.state_dict())
    sparse.embed.sparse = True
    ids = torch.tensor([[1, 2, 2, 5], [7, 7, 1, 0]])  # duplicates: the sparse grad must be coalesced
    reference = copy.deepcopy(dense)
    for model in (dense, sparse, reference):
        model(ids).pow(2).sum().backward()
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
    for model in (dense, sparse):
        total = clip_grad_norm(model.parameters(), max_norm)
        torch.testing.assert_close(total, expected, rtol=1e-6, atol=0)
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad.to_dense(), q.grad, rtol=1e-6, atol=1e-7)
    assert sparse.embed.weight.grad.is_sparse and sparse.embed.weight.grad.is_coalesced()


def test_lazy_adamw_follows_grad_scaler_protocol():
    """Under an fp16 GradScaler a fused optimizer gets grad_scale / found_inf; the lazy rows obey them too."""
    torch.manual_seed(0)
    models = [Net() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [build_optimizer(m, train_cfg()) for m in models]
    ids = torch.tensor([[3, 4, 5]])
    for scale, (model, opt) in zip((1.0, 8.0), zip(models, opts)):
        (model(ids).sum() * scale).backward()
        if scale != 1.0:
            opt.grad_scale, opt.found_inf = torch.tensor(scale), torch.tensor(0.0)
        opt.step()
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    before = [p.detach().clone() for p in models[1].parameters()]
    models[1](ids).sum().backward()
    opts[1].found_inf = torch.tensor(1.0)  # an overflow: the whole step is skipped
    opts[1].step()
    assert all(torch.equal(p, q) for p, q in zip(before, models[1].parameters()))
