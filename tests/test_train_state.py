"""build_train_state gives the optimizer, schedule and scaler that the separate builders give (the calls
core.loop.build_training makes), and one optimizer step moves the weights the same way."""
import pytest
import torch
from torch import nn

from core.config import TrainConfig
from core.optim import build_optimizer, build_scheduler
from core.precision import build_grad_scaler
from core.train_state import TrainState, build_train_state

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = TrainConfig(lr=0.01, weight_decay=0.1, warmup_ratio=0.2, schedule="cosine", lazy_embedding_min_rows=50)


class Tagger(nn.Module):
    """A lazy embedding table (50 rows), a decayed linear layer, an undecayed layer norm."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 3)

    def forward(self, ids):
        return self.out(self.norm(self.embed(ids)))  # (B, T, 3)


def twin_models():
    torch.manual_seed(0)
    first = Tagger()
    second = Tagger()
    second.load_state_dict(first.state_dict())
    return first, second


def group_names(model, optimizer):
    """Each param group as (parameter names, every other setting)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [([names[id(p)] for p in g["params"]], {k: v for k, v in g.items() if k != "params"})
            for g in optimizer.param_groups]


def test_build_train_state_equals_the_separate_builders():
    model, twin = twin_models()
    state = build_train_state(model, CFG, total_steps=40)
    optimizer = build_optimizer(twin, CFG)
    scheduler, scaler = build_scheduler(optimizer, CFG, 40), build_grad_scaler("cpu", "fp32")

    assert isinstance(state, TrainState) and state.model is model and state.step == 0 and state.best is None
    assert type(state.optimizer) is type(optimizer) and type(state.optimizer).__name__ == "LazyAdamW"
    assert group_names(model, state.optimizer) == group_names(twin, optimizer)
    assert len(state.optimizer.param_groups) == 3  # decay, no decay, lazy rows
    assert [state.scheduler.lr_lambdas[0](k) for k in range(45)] == [scheduler.lr_lambdas[0](k) for k in range(45)]
    assert state.scaler.is_enabled() is scaler.is_enabled() is False
    assert model.embed.sparse is twin.embed.sparse is True

    ids = torch.tensor([[1, 2, 3], [4, 5, 1]])  # (B, T)
    for m, opt, sched in ((model, state.optimizer, state.scheduler), (twin, optimizer, scheduler)):
        m(ids).square().sum().backward()
        opt.step()
        sched.step()
    state.optimizer.materialize(), optimizer.materialize()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(a, b), name


def test_build_train_state_options():
    model, _ = twin_models()
    state = build_train_state(model, CFG, total_steps=10, sparse_embeddings=False)
    assert model.embed.sparse is False  # dense gradients for DDP; the optimizer still updates rows lazily
    assert not build_train_state(Tagger(), CFG, 10, "cpu", "auto").scaler.is_enabled()  # bf16 or fp32: no scaling
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        build_train_state(Tagger(), CFG, 10, "cpu", "fp16")
    assert state.scheduler.get_last_lr() == [CFG.lr * 0.5] * 3  # warmup 0.2 x 10 = 2 steps: the first at half
