# %% [markdown]
# # 10. Profiling the hot loop
#
# Every task trains through one loop, `core.loop.fit`. Its profiler (`core/profiler.py`) is one
# object that does nothing unless `profile.enabled=true`; when on, each step is cut into five
# labelled phases -- `data`, `loss` (with the model's own `forward` inside it), `backward` and
# `optimizer` -- and after a wait/warm-up/active schedule it writes two files to the run folder:
#
# - `trace.json`: every operator and phase on a time line (open it in https://ui.perfetto.dev),
# - `ops.txt`: operators sorted by their own ("self") time.
#
# It also prints a phase summary (kept in `profile_summary.txt`): where a step's time goes,
# phase by phase, and which kinds of operators take it. This chapter trains a tiny token
# classifier for a few steps with the profiler on, reads the files, and computes the phase
# summary again from the trace by hand.
#
# Legend: B sentences, T positions, K tags, V vocabulary.
# Run: `python docs/book/10_profiling.py`. On a real run:
# `python train.py configs/mini_zeroshot_de.yaml profile.enabled=true train.max_steps=20`
# (there the matrix products take most of a step; with a model this small, and a machine
# shared with other work, the shares move from run to run).

# %%
from _common import pyplot, save_figure

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from core.config import load_config
from core.loop import fit
from core.profiler import PHASES
from models.encoder import XLMRConfig
from models.encoder_fast import use_kernels
from models.heads import XLMRForTokenClassification

torch.manual_seed(0)

# %% [markdown]
# ## A tiny task for the loop
#
# `fit` needs a *task*: `build_model()`, `train_batches(epoch, rank, world)` (dicts of CPU
# tensors with `n_tokens`, the labelled tokens), `loss(model, batch)` (a SUM over tokens),
# `evaluate(model)` and `metric_name`. Random sentences with random tags are enough to time it.

# %%
V, K, B, T = 100, 7, 8, 24


class TinyTagging:
    metric_name = "neg_loss"

    def __init__(self, n_batches: int = 8):
        g = torch.Generator().manual_seed(0)
        self.batches = []
        for _ in range(n_batches):
            ids = torch.randint(4, V, (B, T), generator=g)  # (B, T)
            self.batches.append({"input_ids": ids, "attention_mask": torch.ones(B, T, dtype=torch.bool),
                                 "labels": torch.randint(0, K, (B, T), generator=g), "n_tokens": B * T})

    def build_model(self):
        config = XLMRConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64)
        model = XLMRForTokenClassification(config, num_labels=K)
        model.init_weights(generator=torch.Generator().manual_seed(0))
        return use_kernels(model, "fast")  # what a CPU run trains with (model.kernels: auto)

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1):
        return self.batches[rank::world]

    def loss(self, model, batch):
        logits = model(batch["input_ids"], batch["attention_mask"]).float()  # (B, T, K)
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum")

    def evaluate(self, model):
        with torch.no_grad():
            return {"neg_loss": -float(self.loss(model, self.batches[0])) / (B * T)}


workdir = tempfile.TemporaryDirectory(prefix="xlt-book-profile-")  # removed when the process ends
run_dir = Path(workdir.name)
cfg = load_config(None, ["train.device=cpu", "train.precision=fp32", "train.batch_size=8", "train.max_steps=6",
                         "train.log_every=3", "profile.enabled=true", "profile.wait=1", "profile.warmup=1",
                         "profile.active=3"])
result = fit(cfg, TinyTagging(), run_dir)  # prints the library's phase summary when the profiled block ends
print("files:", sorted(p.name for p in run_dir.iterdir()))

# %% [markdown]
# ## The operator table
#
# `ops.txt` sums every operator over the active steps. "Self" time excludes the operators it
# called; the phases (`loss`, `backward`, ...) appear as rows too, with a large total and a
# small self time. On a model this small the order changes from run to run (a few
# milliseconds of work, against whatever else the machine does); on the mini the matrix
# products (`aten::addmm`, `aten::mm`, `aten::bmm`, oneDNN's `mkldnn::_linear_pointwise`) take
# the top rows.

# %%
table = (run_dir / "ops.txt").read_text().splitlines()
print("\n".join(table[:14]))

# %% [markdown]
# ## From the trace to a phase summary, by hand
#
# The trace is a list of events; complete events (`"ph": "X"`) have a start `ts` and a
# duration `dur` in microseconds. The schedule wait 1, warm-up 1, active 3 records steps 2, 3
# and 4 (`ProfilerStep#2` ..). Each phase event falls inside one step's range. `forward` is
# nested inside `loss`, so the loss's own share is `loss - forward`.

# %%
events = json.loads((run_dir / "trace.json").read_text())["traceEvents"]
steps = sorted((e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith("ProfilerStep#")),
               key=lambda e: e["ts"])
assert [e["name"] for e in steps] == ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]
print("recorded steps:", [e["name"] for e in steps])


def phase_summary(events: list[dict], steps: list[dict]) -> dict[str, dict[str, float]]:
    """{step name: {phase: milliseconds}} from the phase events inside each step's range."""
    out = {}
    for step in steps:
        lo, hi = step["ts"], step["ts"] + step["dur"]
        times = defaultdict(float, {"step": step["dur"] / 1000})
        for e in events:
            if e.get("ph") == "X" and e.get("name") in PHASES and lo <= e["ts"] < hi:
                times[e["name"]] += e["dur"] / 1000
        times["loss"] -= times["forward"]  # the loss's own work: forward is inside it
        out[step["name"]] = dict(times)
    return out


summary = phase_summary(events, steps)
print(f"{'step':16}" + "".join(f"{p:>10}" for p in (*PHASES, "step")))
for name, times in summary.items():
    print(f"{name:16}" + "".join(f"{times.get(p, 0.0):10.2f}" for p in (*PHASES, "step")))
mean = {p: sum(t.get(p, 0.0) for t in summary.values()) / len(summary) for p in (*PHASES, "step")}
print("share of a step:", ", ".join(f"{p} {mean[p] / mean['step']:.0%}" for p in PHASES),
      f"(the rest, {1 - sum(mean[p] for p in PHASES) / mean['step']:.0%}, is the loop's own bookkeeping)")

# %% [markdown]
# The library's summary (`profile_summary.txt`, the table `fit` printed above) comes from the
# profiler's own averages rather than the trace; its ms/step column is the same numbers.

# %%
library = {}
for line in (run_dir / "profile_summary.txt").read_text().splitlines():
    name, _, numbers = line.partition("  ")
    if name.split(" (")[0] in PHASES and len(numbers.split()) == 2:
        library[name.split(" (")[0]] = float(numbers.split()[0])  # ms per step
print("library ms/step:", library)
for phase in PHASES:
    assert abs(library[phase] - mean[phase]) <= 0.01 + 0.01 * mean[phase], (phase, library[phase], mean[phase])

# %% [markdown]
# The same picture as the trace viewer, reduced to the phases of the recorded steps:

# %%
colours = dict(zip(PHASES, ("tab:grey", "tab:blue", "tab:orange", "tab:red", "tab:green")))
t0 = steps[0]["ts"]
plt = pyplot()
fig, ax = plt.subplots(figsize=(7.5, 2.8))
for e in events:
    if e.get("ph") == "X" and e.get("name") in PHASES and steps[0]["ts"] <= e["ts"] <= steps[-1]["ts"] + steps[-1]["dur"]:
        row = PHASES.index(e["name"])
        ax.barh(row, e["dur"] / 1000, left=(e["ts"] - t0) / 1000, color=colours[e["name"]])
for step in steps:
    ax.axvline((step["ts"] - t0) / 1000, color="black", lw=0.6, ls=":")
ax.set_yticks(range(len(PHASES)), PHASES)
ax.invert_yaxis()
ax.set_xlabel("milliseconds from the first recorded step (dotted: step starts)")
ax.set_title("Phases of three training steps")
save_figure(fig, "10_phases.png")

# %% [markdown]
# ## Exercises
#
# 1. **The schedule.** With `profile.wait=2 profile.warmup=1 profile.active=2`, which
#    `ProfilerStep#` ranges does the trace hold, and how many `optimizer` phase events?
#    Run it and check.
# 2. **Nesting.** Show from the trace that every `forward` event lies inside a `loss` event of
#    the same step (so `loss - forward` is never negative), and that the phases of one step
#    never add up to more than the step.
#
# `tests/test_book_exercises_b.py` holds worked answers.
