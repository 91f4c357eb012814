"""The training loop: accumulation, resume and logging equivalences on a toy tagger.

Legend: B sentences, T positions, H hidden, K tags, V vocabulary.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import load_train_state
from core.config import load_config
from core.loop import fit

V, H, K = 64, 16, 5


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


class ToyTagger(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(V, H, padding_idx=0)
        self.norm = nn.LayerNorm(H)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(H, K)

    def forward(self, input_ids, attention_mask):
        hidden = self.dropout(self.norm(self.embed(input_ids)))  # (B, T, H)
        return self.classifier(hidden)  # (B, T, K)


class ToyTask:
    """Sentences of 3..12 tokens; some positions unlabelled (-100), so micro-batches differ in n_tokens.

    Batches are a pure function of (epoch, rank, world): the global micro-batch i holds
    ``batch_size * world`` sentences of a (seed, epoch) permutation; rank r takes its r-th slice.
    ``crash_at=(epoch, i)`` raises instead of handing out micro-batch i of that epoch (a killed run).
    """
    metric_name = "neg_loss"

    def __init__(self, cfg, n_sentences: int = 32, dropout: float = 0.0, crash_at: tuple[int, int] | None = None,
                 vocab_offset: int = 0):
        g = torch.Generator().manual_seed(1234)
        self.cfg, self.dropout, self.crash_at = cfg, dropout, crash_at
        lengths = torch.randint(3, 13, (n_sentences,), generator=g)
        self.sentences = []
        for n in lengths.tolist():
            ids = torch.randint(1, V // 2, (n,), generator=g) + vocab_offset * torch.randint(0, 2, (n,), generator=g)
            labels = torch.randint(0, K, (n,), generator=g)
            labels[torch.rand(n, generator=g) < 0.3] = -100
            self.sentences.append((ids.clamp_max(V - 1), labels))
        self.evaluated = 0

    def build_model(self):
        return ToyTagger(self.dropout)

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1):
        order = torch.randperm(len(self.sentences), generator=torch.Generator().manual_seed(self.cfg.train.seed
                                                                                               + epoch)).tolist()
        size = self.cfg.train.batch_size
        for i, start in enumerate(range(0, len(order) - size * world + 1, size * world)):
            index = order[start + rank * size: start + (rank + 1) * size]
            if self.crash_at == (epoch, i):
                raise KeyboardInterrupt("simulated crash")
            yield collate([self.sentences[i] for i in index])

    def loss(self, model, batch):
        logits = model(batch["input_ids"], batch["attention_mask"]).float()  # (B, T, K)
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100, reduction="sum")

    def evaluate(self, model):
        self.evaluated += 1
        batch = collate(self.sentences[:8])
        with torch.no_grad():
            loss = self.loss(model, batch) / batch["n_tokens"]
        return {"neg_loss": -float(loss)}

    def run(self, cfg, run_dir):
        from core.task import fit_best
        result = fit_best(cfg, self, run_dir)
        return {"best_metric": result["best_metric"], "step": result["step"]}


def collate(items):
    T = max(len(ids) for ids, _ in items)
    input_ids = torch.zeros(len(items), T, dtype=torch.long)  # (B, T) 0 = padding
    labels = torch.full((len(items), T), -100)  # (B, T)
    for row, (ids, tags) in enumerate(items):
        input_ids[row, :len(ids)], labels[row, :len(tags)] = ids, tags
    return {"input_ids": input_ids, "attention_mask": input_ids != 0, "labels": labels,
            "n_tokens": int((labels != -100).sum())}


def toy_config(tmp_path, *overrides):
    base = ["train.precision=fp32", "train.device=cpu", "train.lr=0.05", "train.warmup_ratio=0.25",
            "train.epochs=2", "train.log_every=2", "train.lazy_embedding_min_rows=0", "train.clip_grad_norm=1.0",
            "train.weight_decay=0.1", f"train.out_dir={tmp_path}/{{name}}", "train.name=toy"]
    return load_config(None, base + list(overrides))


def final_weights(result):
    return {k: v.detach().clone() for k, v in result["model"].state_dict().items()}


@pytest.mark.parametrize("lazy", [True, False])
def test_batch8_equals_batch2_accum4(tmp_path, lazy):
    big = toy_config(tmp_path, "train.batch_size=8", "train.accum_steps=1", f"train.lazy_embedding_decay={lazy}")
    small = toy_config(tmp_path, "train.batch_size=2", "train.accum_steps=4", f"train.lazy_embedding_decay={lazy}")
    micro = [b["n_tokens"] for b in ToyTask(small).train_batches(0)][:4]
    assert len(set(micro)) > 1, "the test needs micro-batches with different labelled-token counts"
    a = final_weights(fit(big, ToyTask(big), tmp_path / "big"))
    b = final_weights(fit(small, ToyTask(small), tmp_path / "small"))
    initial = ToyTask(big).build_model  # weights moved far from init: the comparison is not vacuous
    torch.manual_seed(big.train.seed)
    assert (initial().classifier.weight - a["classifier.weight"]).abs().max() > 1e-2
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    # Adam would hide a constant gradient factor; the logged pre-clip gradient norms would not.
    norms = [[r["grad_norm"] for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
              if "grad_norm" in r] for run in ("big", "small")]
    assert len(norms[0]) == 4 and norms[0] == pytest.approx(norms[1], rel=1e-5)


def test_a_hand_written_loop_over_train_state_equals_fit(tmp_path):
    """The TrainState API as a reader would use it (core/train_state.py's docstring) gives fit's weights."""
    from core.loop import seed_everything, train_step
    from core.train_state import TrainState, build_train_state

    cfg = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=5", "train.lazy_embedding_decay=false")
    task = ToyTask(cfg, dropout=0.2)
    expected = final_weights(fit(cfg, task, tmp_path / "fit"))
    seed_everything(cfg.train.seed)
    model = task.build_model()
    state = build_train_state(model, cfg.train, total_steps=5)  # fp32 on the CPU, as fit runs here
    seed_everything(cfg.train.seed + 0)  # as fit does after building: dropout's stream is seed + rank
    model.train()
    for batch in list(task.train_batches(epoch=0))[:5]:
        train_step(state, task, [batch], clip=cfg.train.clip_grad_norm)
    assert (state.step, state.epoch, state.batch_in_epoch) == (5, 0, 5)
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    state.save(tmp_path / "last.pt", config=cfg)
    fresh = TrainState(ToyTask(cfg).build_model())
    fresh.restore(load_train_state(tmp_path / "last.pt"))
    assert fresh.step == 5 and all(torch.equal(a, b) for a, b in zip(fresh.model.parameters(), model.parameters()))


def test_token_weighting_differs_from_mean_of_micro_means(tmp_path):
    """Dividing each micro-batch by its own tokens would give other weights: the test above can fail."""
    cfg = toy_config(tmp_path, "train.batch_size=2", "train.accum_steps=4", "train.max_steps=1",
                     "train.clip_grad_norm=0", "train.weight_decay=0", "train.warmup_ratio=0")
    task = ToyTask(cfg)
    micro = list(task.train_batches(0))[:4]
    torch.manual_seed(cfg.train.seed)
    model = task.build_model()
    total = sum(b["n_tokens"] for b in micro)
    exact = torch.autograd.grad(sum(task.loss(model, b) for b in micro) / total, model.classifier.bias)[0]
    naive = torch.autograd.grad(sum(task.loss(model, b) / b["n_tokens"] for b in micro) / 4, model.classifier.bias)[0]
    assert not torch.allclose(exact, naive, atol=1e-4)
    # AdamW's first step moves each weight by lr * g / (|g| + eps): compare signs of the exact gradient.
    result = fit(cfg, task, tmp_path / "one")
    moved = result["model"].classifier.bias.detach() - model.classifier.bias.detach()
    assert torch.equal(torch.sign(moved), -torch.sign(exact))


@pytest.mark.parametrize("lazy", [True, False])
def test_crashed_and_resumed_run_equals_uninterrupted(tmp_path, lazy):
    """Kill the run mid-epoch 1 (after the step-12 save), resume from last.pt: identical weights.

    16 micro-batches per epoch = 8 steps; 2.5 epochs = 20 steps, linear schedule with warmup, dropout on.
    """
    over = ["train.batch_size=2", "train.accum_steps=2", "train.epochs=2.5", "train.save_every=3",
            "train.eval_every=4", f"train.lazy_embedding_decay={lazy}"]
    cfg = toy_config(tmp_path, *over)
    full = final_weights(fit(cfg, ToyTask(cfg, dropout=0.2), tmp_path / "full"))

    crashed = ToyTask(cfg, dropout=0.2, crash_at=(1, 9))  # while fetching step 13
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, crashed, tmp_path / "cut")
    saved = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (12, 1, 8)
    resumed_cfg = toy_config(tmp_path, *over, "train.resume=true")
    resumed = final_weights(fit(resumed_cfg, ToyTask(cfg, dropout=0.2), tmp_path / "cut"))
    for name in full:
        assert torch.equal(full[name], resumed[name]), name


@pytest.mark.parametrize("lazy", [False, True])
def test_stop_at_max_steps_then_resume(tmp_path, lazy):
    """Stop mid-epoch with max_steps (constant schedule), resume with a larger max_steps.

    With lazy embeddings the stopped run materialised the pending decay at step 5 and the
    uninterrupted one did not: equal up to fp32 rounding instead of bit for bit.
    """
    over = ["train.batch_size=4", "train.schedule=constant", "train.warmup_ratio=0",
            f"train.lazy_embedding_decay={lazy}"]
    cfg = toy_config(tmp_path, *over, "train.max_steps=11")
    full = final_weights(fit(cfg, ToyTask(cfg, dropout=0.2), tmp_path / "full"))
    first = toy_config(tmp_path, *over, "train.max_steps=5")
    fit(first, ToyTask(first, dropout=0.2), tmp_path / "cut")
    second = toy_config(tmp_path, *over, "train.max_steps=11", "train.resume=true", "train.resume_allow_changes=true")
    resumed = final_weights(fit(second, ToyTask(second, dropout=0.2), tmp_path / "cut"))
    for name in full:
        if lazy:
            torch.testing.assert_close(full[name], resumed[name], rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(full[name], resumed[name]), name


def test_run_dir_outputs(tmp_path):
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.epochs=2")
    task = ToyTask(cfg)
    result = fit(cfg, task, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    eval_records = [r for r in records if "neg_loss" in r]
    assert [r["step"] for r in train_records] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [r["step"] for r in eval_records] == [8, 16] and task.evaluated == 2  # once per epoch
    assert result["best_metric"] == max(r["neg_loss"] for r in eval_records)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["neg_loss"] == result["best_metric"]
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["step"] == 16 and last["config"]["train"]["batch_size"] == 4
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "best.pt.sha256", "config.yaml",
                                                                    "last.pt", "last.pt.sha256", "metrics.jsonl"]
    for name in ("best.pt", "last.pt"):  # each checkpoint with the sha256 of its bytes beside it
        digest = hashlib.sha256((tmp_path / "run" / name).read_bytes()).hexdigest()
        assert (tmp_path / "run" / f"{name}.sha256").read_text() == f"{digest}  {name}\n"


def test_profiler_writes_trace_with_phases(tmp_path):
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=5", "profile.enabled=true", "profile.wait=1",
                     "profile.warmup=1", "profile.active=2")
    fit(cfg, ToyTask(cfg), tmp_path / "prof")
    trace = json.loads((tmp_path / "prof" / "trace.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {"data", "forward", "loss", "backward", "optimizer"} <= names
    steps = {n for n in names if n and n.startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#2", "ProfilerStep#3"}  # wait 1 + warmup 1, then 2 active steps
    assert "Self CPU" in (tmp_path / "prof" / "ops.txt").read_text()


def test_profiler_off_writes_nothing(tmp_path):
    cfg = toy_config(tmp_path, "train.batch_size=4", "train.max_steps=2")
    fit(cfg, ToyTask(cfg), tmp_path / "plain")
    assert not (tmp_path / "plain" / "trace.json").exists()


def test_train_py_runs_registry_task_and_writes_config(tmp_path, monkeypatch, capsys):
    import train

    monkeypatch.setitem(train.TASKS, "toy", ToyTask)
    config = tmp_path / "toy.yaml"
    config.write_text("task: toy\ntrain:\n  batch_size: 8\n  epochs: 1\n  precision: fp32\n")
    args = [str(config), f"train.out_dir={tmp_path}/{{name}}", "train.lazy_embedding_min_rows=0"]
    assert train.main(args) == 0
    written = yaml.safe_load((tmp_path / "toy" / "config.yaml").read_text())
    assert written["task"] == "toy" and written["train"]["batch_size"] == 8 and written["train"]["resume"] is False
    assert torch.load(tmp_path / "toy" / "last.pt", weights_only=False)["step"] == 4
    assert train.main(args + ["train.epochs=2", "--resume-force"]) == 0  # continues from step 4
    assert torch.load(tmp_path / "toy" / "last.pt", weights_only=True)["step"] == 8
    out = capsys.readouterr().out
    assert "resumed at step 4" in out and "train.epochs" in out  # the allowed change is named
    assert train.main([args[0], "--resume-force", *args[1:], "train.epochs=3"]) == 0  # flag before overrides
    assert torch.load(tmp_path / "toy" / "last.pt", weights_only=True)["step"] == 12
    assert yaml.safe_load((tmp_path / "toy" / "config.yaml").read_text())["train"]["epochs"] == 3


def test_train_py_setup_error_exits_2_without_traceback(tmp_path, monkeypatch, capsys):
    import train

    def missing(cfg):
        raise FileNotFoundError("no checkpoint at runs/mini_pretrain/model (model.name_or_path)")

    monkeypatch.setitem(train.TASKS, "toy", missing)
    config = tmp_path / "toy.yaml"
    config.write_text("task: toy\n")
    assert train.main([str(config), f"train.out_dir={tmp_path}/{{name}}"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint at runs/mini_pretrain/model" in err and "Traceback" not in err
    assert not (tmp_path / "toy").exists()  # nothing written before the task could be built
    assert train.main([str(config), "train.lr=oops"]) == 2
    assert "train.lr" in capsys.readouterr().err
