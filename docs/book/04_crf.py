# %% [markdown]
# # 04. The CRF
#
# A tagger that picks each word's best tag on its own can produce `O I-PER`, a person that starts
# in the middle. A linear-chain CRF scores whole tag paths instead: each word's emission scores
# (from the encoder or a BiLSTM) plus a learned score for every pair of neighbouring tags. Training
# maximises the probability of the gold path among *all* paths; decoding finds the best path.
# Both sound exponential (K^W paths) and both take W steps of a K x K table: the forward
# algorithm and Viterbi. This chapter checks them against brute force over every path of a short
# sentence.
#
# ```bash
# python docs/book/04_crf.py
# ```
#
# Legend: B batch, W words, K tags. The library's CRF is `models/crf.py` (read top to bottom;
# `models/crf_fast.py` is the same maths made faster, chosen by `CRF(kernels=...)`). Here the
# emissions are random numbers; `python train.py configs/mini_zeroshot_de.yaml` puts the same CRF
# over the mini's first-piece emissions (`model.head: crf`) on PAN-X, and the `crf.transitions` of
# its `best.pt` can be drawn as in section 5, learned from real German sentences.

# %%
from _common import pyplot, save_figure  # docs/book/_common.py: also puts the repository root on sys.path

import itertools
import math

import torch

from models.crf import CRF, bio_allowed

torch.manual_seed(0)
labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
words = ["Angela", "Merkel", "in", "Paris"]
K, W = len(labels), len(words)
crf = CRF(K, kernels="reference")              # no labels: no constraints (section 4 adds them)
with torch.no_grad():
    crf.transitions.normal_(0, 1)              # (K, K) from, to: random, so that they matter
emissions = torch.randn(1, W, K)               # (B, W, K) what an encoder would say about each word
start, trans, end = (p.detach() for p in (crf.start_transitions, crf.transitions, crf.end_transitions))  # (K,), (K, K), (K,)
print("emissions", tuple(emissions.shape), "transitions", tuple(trans.shape))

# %% [markdown]
# ## 1. The score of one path
#
# A path y = (y_0, ..., y_{W-1}) scores
#
#     score(y) = start[y_0] + e_0[y_0] + sum_t (trans[y_{t-1}, y_t] + e_t[y_t]) + end[y_{W-1}]
#
# and its probability is exp(score(y)) / Z, with Z the sum of exp(score) over all K^W paths.

# %%
def score(path, e=emissions[0]):
    """score(y) of one path (a tuple of tag ids) by the formula."""
    s = start[path[0]] + e[0, path[0]] + end[path[-1]]
    for t in range(1, len(path)):
        s = s + trans[path[t - 1], path[t]] + e[t, path[t]]
    return s


gold = (1, 2, 0, 3)                                               # B-PER I-PER O B-LOC
print("score(gold) =", round(float(score(gold)), 4))

# %% [markdown]
# ## 2. The partition function: brute force and the forward algorithm
#
# Brute force enumerates all 5^4 = 625 paths. The forward algorithm keeps, for each tag j, alpha[j]
# = log of the summed exp-scores of all paths of the words so far that end in j; one more word
# is one log-sum-exp over the previous tag: W steps of K x K work instead of K^W paths.

# %%
all_paths = list(itertools.product(range(K), repeat=W))
all_scores = torch.stack([score(p) for p in all_paths])           # (K^W,)
log_z_brute = torch.logsumexp(all_scores, 0)

alpha = start + emissions[0, 0]                                   # (K,)
for t in range(1, W):
    alpha = torch.logsumexp(alpha[:, None] + trans, dim=0) + emissions[0, t]  # (K,): (K, 1) + (K, K), over from
log_z_forward = torch.logsumexp(alpha + end, 0)

nll = crf(emissions, torch.tensor([gold]), reduction="none").detach()  # (B,) = log Z - score(gold)
print(f"log Z: brute {float(log_z_brute):.4f}, forward {float(log_z_forward):.4f}, "
      f"library {float(nll[0] + score(gold)):.4f}")
torch.testing.assert_close(log_z_forward, log_z_brute)
torch.testing.assert_close(nll[0], log_z_brute - score(gold))
fast = CRF(K, kernels="fast")                                     # models/crf_fast.py: the same numbers
fast.load_state_dict(crf.state_dict())
torch.testing.assert_close(fast(emissions, torch.tensor([gold]), reduction="none").detach(), nll)
print(f"P(gold) = {math.exp(-float(nll[0])):.4f}; all {len(all_paths)} probabilities sum to "
      f"{float((all_scores - log_z_brute).exp().sum()):.6f}")

# %% [markdown]
# ## 3. Viterbi: the best path
#
# The same recursion with max instead of log-sum-exp, remembering for each tag which previous tag
# won (the back-pointers); at the end, walk the pointers back from the best last tag.

# %%
best_brute = all_paths[int(all_scores.argmax())]

delta, pointers = start + emissions[0, 0], []                     # (K,)
for t in range(1, W):
    best, pointer = (delta[:, None] + trans).max(dim=0)           # (K,) each: over the from-tag
    delta, pointers = best + emissions[0, t], pointers + [pointer]
path = [int((delta + end).argmax())]
for pointer in reversed(pointers):
    path.insert(0, int(pointer[path[0]]))

decoded = crf.decode(emissions)                                   # (B, W) long
print("best path:", [labels[i] for i in path])
assert tuple(path) == best_brute == tuple(decoded[0].tolist())

# %% [markdown]
# ## 4. BIO constraints
#
# With IOB2 tags, some paths are not entities at all: `O -> I-PER`, `B-PER -> I-LOC`, a sentence
# that starts with `I-`. `bio_allowed` lists the allowed transitions and first tags; a CRF given
# the labels gives the others a score of -10,000 when it decodes (and in the loss too with
# `constrain_training=True`). Below the emissions are pushed so that the unconstrained best path
# is invalid: word 2 says I-LOC loudly.

# %%
allowed, start_allowed = bio_allowed(labels)                      # (K, K), (K,) bool
print("allowed from O:", [labels[j] for j in range(K) if allowed[0, j]])

pushed = emissions.clone()
pushed[0, 2] = torch.tensor([0.0, 0.0, 0.0, 0.0, 6.0])            # "in" looks like I-LOC
pushed[0, 1] = torch.tensor([3.0, 0.0, 0.0, 0.0, 0.0])            # "Merkel" looks like O


def valid(path):
    return bool(start_allowed[path[0]]) and all(allowed[a, b] for a, b in zip(path, path[1:]))


scores_pushed = torch.stack([score(p, pushed[0]) for p in all_paths])  # (K^W,)
best_any = all_paths[int(scores_pushed.argmax())]
best_valid = max((p for p in all_paths if valid(p)), key=lambda p: float(score(p, pushed[0])))

constrained = CRF(K, labels=labels, kernels="reference")
constrained.load_state_dict(crf.state_dict())                    # same scores, now with constraints
print("unconstrained:", [labels[i] for i in crf.decode(pushed)[0]], "valid:", valid(best_any))
print("constrained:  ", [labels[i] for i in constrained.decode(pushed)[0]])
assert tuple(crf.decode(pushed)[0].tolist()) == best_any and not valid(best_any)
assert tuple(constrained.decode(pushed)[0].tolist()) == best_valid
print(f"{sum(map(valid, all_paths))} of {len(all_paths)} paths are valid BIO")

# %% [markdown]
# ## 5. A batch with padding, and learning the transitions
#
# Sentences of different lengths share a batch: the mask (B, W) is True on real words, left-aligned,
# and a padded sentence scores exactly as it would alone.

# %%
batch_emissions = torch.randn(2, W, K)                            # (B, W, K)
mask = torch.tensor([[True] * W, [True, True, False, False]])     # (B, W) bool: the second has 2 words
tags = torch.tensor([gold, (1, 2, 0, 0)])                         # (B, W) long, anything where masked
padded = crf(batch_emissions, tags, mask, reduction="none").detach()  # (B,)
alone = crf(batch_emissions[1:, :2], tags[1:, :2], reduction="none").detach()
torch.testing.assert_close(padded[1], alone[0])
print("nll per sentence", [round(v, 4) for v in padded.tolist()], "decode", crf.decode(batch_emissions, mask).tolist())

# %% [markdown]
# Now fit a fresh CRF's transitions alone, on toy sentences drawn from a tiny BIO grammar with
# noisy emissions (the right tag gets +1, every tag gets noise). Nothing tells the CRF the BIO rules;
# it learns from data that `O -> I-PER` never happens and that `B-PER` is followed by `I-PER`.

# %%
generator = torch.Generator().manual_seed(0)
entity_tags = [(1, 2), (3, 4)]                                    # (B-, I-) of PER and LOC
toy = []
for _ in range(64):
    path = []
    while len(path) < 8:
        b, i = entity_tags[int(torch.randint(2, (), generator=generator))]
        path += [0] * int(torch.randint(0, 3, (), generator=generator)) + [b] + [i] * int(
            torch.randint(0, 2, (), generator=generator))
    toy.append(path[:8])
toy_tags = torch.tensor(toy)                                      # (64, 8) long
toy_emissions = torch.nn.functional.one_hot(toy_tags, K).float() + torch.randn(64, 8, K, generator=generator)

learner = CRF(K)
optimizer = torch.optim.Adam(learner.parameters(), lr=0.1)
for step in range(100):
    loss = learner(toy_emissions, toy_tags)                       # mean nll over the 64 sentences
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
print(f"toy nll after training: {float(loss.detach()):.3f}")
learned = learner.transitions.detach()                            # (K, K)
assert learned[0, 2] < learned[1, 2] and learned[0, 4] < learned[3, 4]  # O -> I-X below B-X -> I-X

plt = pyplot()
fig, ax = plt.subplots(figsize=(4.6, 4))
image = ax.imshow(learned, cmap="RdBu_r", vmin=-float(learned.abs().max()), vmax=float(learned.abs().max()))
ax.set_xticks(range(K), labels, rotation=45)
ax.set_yticks(range(K), labels)
ax.set_xlabel("to")
ax.set_ylabel("from")
ax.set_title("learned transition scores")
fig.colorbar(image)
save_figure(fig, "04_transitions.png")

# %% [markdown]
# ## Exercises
#
# 1. The gradient of log Z with respect to the emissions is the marginal probability of each tag
#    at each word, P(y_t = j). Compute the marginals of the sentence of sections 1-3 by brute force
#    over all paths and check them against autograd through the library's
#    `models.crf.log_partition`.
# 2. Count the valid BIO paths of W = 4 words over the five labels without enumerating them: run
#    the forward algorithm on counts (sum and product instead of log-sum-exp and plus) over
#    `bio_allowed`. Then show that the *constrained* library log Z of all-zero scores is the log
#    of that count.
