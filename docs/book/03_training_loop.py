# %% [markdown]
# # 03. The training loop
#
# Every system here trains with one loop, `core/loop.py`: a task says how to build the model,
# which batches to read and what the loss of a batch is, and the loop does the rest. This chapter
# takes one optimizer step apart: token-weighted gradient accumulation, autocast and the
# GradScaler (unscale before clipping), gradient clipping, the lazy AdamW of big embedding
# tables, the learning-rate schedule, and what a resume restores, each against a naive version.
#
# ```bash
# python docs/book/03_training_loop.py
# ```
#
# The model is a toy tagger (an embedding table and a linear layer) on random "sentences", so the
# whole chapter runs in seconds; the loop does not know the difference. With the mini
# (`python train.py configs/mini_zeroshot_de.yaml`) the same loop writes `runs/<name>/metrics.jsonl`,
# whose loss and gradient-norm columns are the quantities computed here.
#
# Legend: B batch, T positions, V vocabulary, H hidden, K tags.

# %%
from _common import pyplot, save_figure  # docs/book/_common.py: also puts the repository root on sys.path

import torch
import torch.nn.functional as F
from torch import nn

from core.config import TrainConfig
from core.loop import train_step
from core.optim import build_scheduler, clip_grad_norm
from core.train_state import TrainState, build_train_state
from data.labels import IGNORE_INDEX

V, H, K = 12_000, 8, 5


class Tagger(nn.Module):
    """ids (B, T) -> tag scores (B, T, K): a row per token, dropout, a linear layer."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(H, K)

    def forward(self, ids):
        return self.out(self.dropout(self.embed(ids)))  # (B, T, K)


class ToyTask:
    """What the loop asks of a task (here only the loss): the SUM of the token losses of a batch."""

    def loss(self, model, batch):
        logits = model(batch["input_ids"])  # (B, T, K)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(),
                               ignore_index=IGNORE_INDEX, reduction="sum")


def make_batch(sentences):
    """Pad (ids, tags) pairs into a batch; padding is id 0 with label -100."""
    T = max(len(ids) for ids, _ in sentences)
    input_ids = torch.zeros(len(sentences), T, dtype=torch.long)      # (B, T)
    labels = torch.full((len(sentences), T), IGNORE_INDEX)            # (B, T)
    for b, (ids, tags) in enumerate(sentences):
        input_ids[b, :len(ids)], labels[b, :len(ids)] = ids, tags
    return {"input_ids": input_ids, "labels": labels, "n_tokens": int((labels != IGNORE_INDEX).sum())}


generator = torch.Generator().manual_seed(0)
sentences = []
for length in [2, 3, 12, 11, 4, 5, 9, 7]:                             # eight sentences of different lengths
    ids = torch.randint(1, V, (length,), generator=generator)
    sentences.append((ids, ids % K))                                  # the tag is a function of the token
task = ToyTask()
cfg = TrainConfig(lr=0.05, weight_decay=0.01, clip_grad_norm=1.0, warmup_ratio=0.0, schedule="constant",
                  lazy_embedding_min_rows=10_000)                     # the 12,000-row table is lazy


def fresh_state(dropout: float = 0.0, seed: int = 0) -> TrainState:
    """Model, optimizer, schedule and scaler at step 0, the model seeded."""
    torch.manual_seed(seed)
    return build_train_state(Tagger(dropout), cfg, total_steps=100)  # fp32 on the CPU: the scaler is off


state = fresh_state()
print(type(state.optimizer).__name__, [len(g["params"]) for g in state.optimizer.param_groups], "params per group")

# %% [markdown]
# ## 1. Token-weighted gradient accumulation
#
# A batch of 8 sentences may not fit in memory; 4 micro-batches of 2 do, and their gradients add
# up before the optimizer steps. But what should each micro-batch's loss be divided by? The loss
# of the big batch is the mean over its *labelled tokens*. Dividing each micro-batch's mean by
# the number of micro-batches gives every micro-batch the same weight, so a token of a short
# micro-batch weighs more than a token of a long one. The loop divides each micro-batch's *sum*
# by the labelled tokens of the whole step instead, which is exactly the big batch's mean.
# `train_step(state, task, micro_batches)` does one such step (its `labelled` is the sum of the
# micro-batches' `n_tokens` unless given; under DDP, of every rank's).

# %%
big = make_batch(sentences)                                           # (8, 12)
micro = [make_batch(sentences[i:i + 2]) for i in range(0, 8, 2)]      # 4 x (2, T_i)
tokens = [m["n_tokens"] for m in micro]
print("labelled tokens per micro-batch", tokens, "total", sum(tokens))

model = fresh_state().model
with torch.no_grad():
    reference = task.loss(model, big) / big["n_tokens"]               # the mean over all 53 tokens
    naive = sum(task.loss(model, m) / m["n_tokens"] for m in micro) / len(micro)
    weighted = sum(task.loss(model, m) for m in micro) / sum(tokens)
print(f"mean over tokens {float(reference):.5f}; naive mean of means {float(naive):.5f}; "
      f"token-weighted {float(weighted):.5f}")
torch.testing.assert_close(weighted, reference)

one = fresh_state()
loss_one, norm_one = train_step(one, task, [big], clip=cfg.clip_grad_norm)  # labelled: the batches' n_tokens
four = fresh_state()
loss_four, norm_four = train_step(four, task, micro, labelled=sum(tokens), clip=cfg.clip_grad_norm)  # said out loud
one.optimizer.materialize(), four.optimizer.materialize()             # lazy rows up to date (section 4)
for (name, p), q in zip(one.model.named_parameters(), four.model.parameters()):
    torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
print(f"batch 8 x accum 1 == batch 2 x accum 4: loss sum {float(loss_one):.4f} == {float(loss_four):.4f}, "
      f"grad norm {float(norm_one):.4f} == {float(norm_four):.4f}, step {one.step} == {four.step}")

# %% [markdown]
# ## 2. Clipping
#
# The gradient norm is the L2 norm of all gradients as one vector; if it exceeds the limit, every
# gradient is scaled by limit / norm. `clip_grad_norm` also returns the norm *before* clipping,
# which the loop logs (without a host sync: `.item()` only on logging steps).

# %%
torch.manual_seed(0)
model = Tagger()                                                      # dense gradients (no LazyAdamW attached)
(task.loss(model, big) / big["n_tokens"]).backward()
grads = [p.grad.clone() for p in model.parameters()]
norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))       # ()
scale = min(1.0, 0.1 / (float(norm) + 1e-6))                         # clip to 0.1, to see it act
library_norm = clip_grad_norm(model.parameters(), 0.1)
print(f"norm before {float(norm):.4f} (library {float(library_norm):.4f}), scale {scale:.4f}")
for g, p in zip(grads, model.parameters()):
    torch.testing.assert_close(p.grad, g * scale)
torch.testing.assert_close(library_norm, norm)

# %% [markdown]
# ## 3. Autocast, and the GradScaler: unscale before clipping
#
# Under `torch.autocast`, matrix products run in a 16-bit type while reductions stay in fp32. The
# loop picks one context for the run (`core/precision.py`; `train.precision: auto` is bf16 where
# the device has it, else fp32 on a CPU and fp16 with a GradScaler on an older GPU), and the loss
# is computed in fp32 (`.float()`). bf16 has fp32's exponent
# range; fp16 does not: a small gradient underflows to zero. The GradScaler multiplies the loss by
# a large scale S before backward, so the gradients are S times larger and survive, and divides
# them by S again (`unscale_`) before the optimizer uses them. Clipping must come after that
# division, or it measures S times the true norm.

# %%
with torch.autocast("cpu", dtype=torch.bfloat16):
    logits = model(big["input_ids"])                                  # (B, T, K)
    loss = task.loss(model, big).float()
print("under autocast: logits", logits.dtype, "; the loss", loss.dtype)

tiny_gradient = torch.tensor(1e-8)
print(f"1e-8 in fp16: {float(tiny_gradient.half())}; scaled by 65536 first: {float((tiny_gradient * 65536).half()):.3e}")

model = Tagger()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)           # fp16 training would enable it on CUDA
scaler.scale(task.loss(model, big) / big["n_tokens"]).backward()
scaled_norm = float(clip_grad_norm(model.parameters(), 0.0))          # 0 = measure only
scaler.unscale_(optimizer)                                            # gradients / S, in place
true_norm = float(clip_grad_norm(model.parameters(), 1.0))
print(f"norm of the scaled gradients {scaled_norm:.1f} = S x {scaled_norm / 2 ** 16:.4f}; after unscale_ {true_norm:.4f}")
assert abs(scaled_norm / 2 ** 16 - true_norm) < 1e-3 * true_norm

scaler.step(optimizer)                                                # finite gradients: a normal step
scaler.update()
optimizer.zero_grad(set_to_none=True)

# a step whose gradients overflowed is skipped, and the scale halves
scaler.scale(task.loss(model, big) / big["n_tokens"]).backward()
model.out.bias.grad[0] = float("inf")
before = model.out.weight.detach().clone()
scaler.step(optimizer)                                                # unscale_ finds the inf: no update
scaler.update()
assert torch.equal(model.out.weight, before)
print("an inf gradient: step skipped, scale", 2 ** 16, "->", scaler.get_scale())

# %% [markdown]
# ## 4. Lazy AdamW
#
# An embedding table of V rows gets a gradient on the rows of the batch's tokens only, yet plain
# AdamW updates all V rows every step: an untouched row still decays (weight decay is decoupled,
# `w *= 1 - lr * wd`). `LazyAdamW` (`core/lazy_adamw.py`) keeps the product of those decay
# factors and applies it to a row only when the row is next read (a hook on the embedding),
# touched, or saved (`materialize`). Same weights as plain AdamW, without a (V, H) update per step.

# %%
lazy = fresh_state()
torch.manual_seed(0)
plain_model = Tagger()                                                # the same initial weights, dense gradients
plain = torch.optim.AdamW([{"params": [plain_model.embed.weight, plain_model.out.weight], "weight_decay": 0.01},
                           {"params": [plain_model.out.bias], "weight_decay": 0.0}], lr=0.05)
for step in range(3):
    train_step(lazy, task, micro[step:step + 1], clip=cfg.clip_grad_norm)
    (task.loss(plain_model, micro[step]) / micro[step]["n_tokens"]).backward()
    clip_grad_norm(plain_model.parameters(), cfg.clip_grad_norm)
    plain.step()
    plain.zero_grad(set_to_none=True)
touched = lazy.optimizer.state[lazy.model.embed.weight]["active"]     # (V,) bool
print(f"rows ever touched: {int(touched.sum())} of {V}; the other {V - int(touched.sum())} only decay")
lazy.optimizer.materialize()
for p, q in zip(lazy.model.parameters(), plain_model.parameters()):
    torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
print("LazyAdamW == AdamW after materialize()")

# %% [markdown]
# ## 5. The learning-rate schedule
#
# Warmup then decay: the multiplier of the base learning rate rises linearly over the first
# `warmup_ratio` of the steps (the first step already trains), then falls linearly or along a
# cosine to zero, or stays constant.

# %%
plt = pyplot()
fig, ax = plt.subplots(figsize=(6, 3))
for schedule in ("linear", "cosine", "constant"):
    sched_cfg = TrainConfig(lr=1.0, warmup_ratio=0.1, schedule=schedule)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(opt, sched_cfg, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        opt.step()
        scheduler.step()
    ax.plot(lrs, label=schedule)
ax.set_xlabel("optimizer step")
ax.set_ylabel("lr / base lr")
ax.set_title("warmup 10%, then the schedule")
ax.legend()
save_figure(fig, "03_schedules.png")

# %% [markdown]
# ## 6. What a resume restores
#
# `TrainState` holds everything a run changes: the weights, the optimizer's moments, the schedule's
# position, the scaler's scale, the step, the epoch and the batches of it consumed, the best
# metric, and the RNG states (dropout draws from them). `last.pt` is that state; a resumed run
# continues exactly as if it had never stopped. Here with dropout on, three steps, save, a fresh
# process's objects, restore, three more steps, against six steps in one go.

# %%
import tempfile
from pathlib import Path

from core.checkpoint import load_train_state

steps = [micro[i % 4] for i in range(6)]
straight = fresh_state(dropout=0.3)
for batch in steps:
    train_step(straight, task, [batch])

first = fresh_state(dropout=0.3)
for batch in steps[:3]:
    train_step(first, task, [batch])
with tempfile.TemporaryDirectory() as folder:
    last_pt = first.save(Path(folder) / "last.pt")                    # atomic, with last.pt.sha256 beside it
    saved = load_train_state(last_pt)                                 # checked, weights_only: runs no code
print("last.pt holds:", sorted(saved))

resumed = fresh_state(dropout=0.3, seed=123)                          # other weights, other RNG
resumed.restore(saved)
for batch in steps[3:]:
    train_step(resumed, task, [batch])
straight.optimizer.materialize(), resumed.optimizer.materialize()
for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
    torch.testing.assert_close(p, q, rtol=0, atol=0)
print(f"resumed at step 3 == uninterrupted, bit for bit, at step {resumed.step}")

# %% [markdown]
# ## Exercises
#
# 1. Fix the naive accumulation of section 1 without changing what each micro-batch computes
#    (its *mean* loss): find the weight of each micro-batch's mean so that the accumulated
#    gradient equals the big batch's, and check it parameter by parameter.
# 2. What if a resume forgot the RNG state? Restore everything of section 6 except the RNG
#    (keep the fresh state's seed) and show the result differs from the uninterrupted run with
#    dropout 0.3, and equals it with dropout 0.
