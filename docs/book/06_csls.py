# %% [markdown]
# # 06. Word vectors, Procrustes and CSLS
#
# Zero-resource NER (docs/ZERORESOURCE.md) translates a sentence word by word: the source
# language's word vectors are rotated onto the target language's (`models/mapping.py`), and
# each source word takes the target word nearest to it under CSLS (`models/csls.py`). Real
# word vectors come from skip-gram on each language's text (`data/word_vectors.py`,
# `train_sgns`); here synthetic ones stand in, because only then is the right answer known:
# language B is language A rotated by a hidden orthogonal matrix, plus noise. Each step is
# checked against it:
#
# 1. Procrustes recovers the rotation from a seed dictionary (exactly, without noise).
# 2. Plain nearest neighbours suffer from *hubs*: a few targets are the nearest neighbour of
#    many queries. CSLS, written naively in five lines, penalises them; the library's
#    `csls_topk` returns the same answers, and also for vocabularies of 200,000 words, whose
#    (S, T) similarity matrix the naive version could not hold: its reference
#    (`kernels="reference"`, models/csls.py) works one chunk of rows at a time, its fast path
#    (`kernels="fast"`, models/csls_fast.py) searches candidates in bf16 and re-scores them in fp32.
#
# Legend: S source words, T target words, d vector size, P seed pairs.
# Run: `python docs/book/06_csls.py` (a few seconds, no data needed). Real vectors are learnt
# from the public data by `python train.py configs/zeroresource_de_en.yaml` (skip-gram, then
# Procrustes with refinement and CSLS word translation; docs/ZERORESOURCE.md), where the
# dictionaries are real; its P@1 table puts NN beside CSLS.

# %%
from _common import pyplot, save_figure

import torch

from models.csls import cosine_topk, csls_neighbourhoods, csls_topk, normalize, precision_at_k
from models.mapping import procrustes

torch.manual_seed(0)

# %% [markdown]
# ## Two languages with a known answer
#
# Word i of language A is `x[i]`; its translation is word i of language B, `y[i] = x[i] Q + noise`,
# with Q a random orthogonal matrix. Real vocabularies are not uniform: some words are "generic"
# (frequent, close to many others). Each word gets a share `a[i]` of one common direction `c`;
# the few with a large share sit in a dense region, which is where hubs come from.

# %%
def two_languages(n: int = 1000, d: int = 64, noise: float = 1.5, generic: float = 2.0, seed: int = 0):
    """(x (n, d), y (n, d), Q (d, d)): unit rows, y[i] the noisy rotation of x[i]."""
    g = torch.Generator().manual_seed(seed)
    z = normalize(torch.randn(n, d, generator=g))  # (n, d)
    c = normalize(torch.randn(1, d, generator=g))  # (1, d) the common direction
    a = generic * torch.rand(n, 1, generator=g) ** 2  # (n, 1) most words barely generic, a few very
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))  # (d, d) orthogonal
    x = normalize(z + a * c)  # (n, d)
    y = normalize((z + a * c) @ q + noise * normalize(torch.randn(n, d, generator=g)))  # (n, d)
    return x, y, q


x, y, Q = two_languages()
print("x", tuple(x.shape), "y", tuple(y.shape), "Q", tuple(Q.shape))
torch.testing.assert_close(Q @ Q.T, torch.eye(64), atol=1e-5, rtol=0)  # Q is orthogonal

# %% [markdown]
# ## Procrustes, naive and library
#
# Given P seed pairs (rows of `xs` and `ys`), the orthogonal W minimising `||xs W - ys||_F` is
# `W = U V^T` where `U S V^T = svd(xs^T ys)` (Schönemann 1966). Without noise it is Q itself.

# %%
def procrustes_naive(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    u, _, vt = torch.linalg.svd(xs.T @ ys)  # (d, d), (d,), (d, d)
    return u @ vt


clean_x, clean_y, clean_Q = two_languages(noise=0.0)
clean_y = clean_x @ clean_Q  # noise 0 and no renormalisation: exactly a rotation
W = procrustes(clean_x[:300], clean_y[:300])  # (d, d)
torch.testing.assert_close(procrustes_naive(clean_x[:300], clean_y[:300]), W, atol=1e-5, rtol=0)
torch.testing.assert_close(W, clean_Q, atol=1e-5, rtol=0)
print("noise-free: |W - Q| =", f"{(W - clean_Q).norm():.2e}")

# %% [markdown]
# With noise, W is an estimate; what matters is whether mapped words land nearest their
# translations. Seeds are the first 300 pairs; the test queries are the other 700.

# %%
W = procrustes(x[:300], y[:300])
mapped = normalize(x @ W)  # (S, d)
queries = torch.arange(300, 1000)
gold = {int(i): {int(i)} for i in queries}
_, nn_top = cosine_topk(mapped, y, topk=5, queries=queries)  # (700, 5)
_, csls_top = csls_topk(mapped, y, topk=5, k=10, queries=queries)  # (700, 5)
for name, top in (("NN  ", nn_top), ("CSLS", csls_top)):
    print(name, {k: round(v, 3) for k, v in precision_at_k(top, queries.tolist(), gold).items()})

# %% [markdown]
# ## CSLS in five lines
#
# `r_src[i]` is the mean cosine of source i to its k nearest targets, `r_tgt[j]` the mean
# cosine of target j to its k nearest sources; `CSLS(i, j) = 2 cos(i, j) - r_src[i] - r_tgt[j]`.
# A hub has a large `r_tgt` and is pushed down. The naive version holds the whole (S, T)
# matrix, which is fine here (1000 x 1000) and impossible at 200,000 x 200,000 (160 GB in
# fp32); the library bounds its memory (`memory_mb`) and returns the same answers, on both
# of its paths.

# %%
def csls_naive(src: torch.Tensor, tgt: torch.Tensor, k: int = 10) -> torch.Tensor:
    sims = src @ tgt.T  # (S, T) cosines (rows are unit length)
    r_src = sims.topk(k, dim=1).values.mean(1)  # (S,)
    r_tgt = sims.topk(k, dim=0).values.mean(0)  # (T,)
    return 2 * sims - r_src[:, None] - r_tgt[None, :]  # (S, T)


full = csls_naive(mapped, y)  # (S, T)
print("CSLS matrix", tuple(full.shape))
naive_scores, naive_top = full[queries].topk(5, dim=1)  # (700, 5)
for kernels in ("reference", "fast"):
    lib_scores, lib_top = csls_topk(mapped, y, topk=5, k=10, queries=queries, kernels=kernels)
    assert torch.equal(naive_top, lib_top)
    torch.testing.assert_close(naive_scores, lib_scores)
    print(f"kernels={kernels!r:12} same top-5: {torch.equal(naive_top, lib_top)}, max score difference "
          f"{(naive_scores - lib_scores).abs().max():.1e}")
r_src, r_tgt = csls_neighbourhoods(mapped, y, k=10)  # (S,), (T,)
print("r_tgt: min", f"{r_tgt.min():.3f}", "max", f"{r_tgt.max():.3f}")

# %% [markdown]
# ## Hubness, seen
#
# How often is each target word the top answer of some query? Under NN a few targets answer
# many queries (and hundreds never answer any); under CSLS the counts bunch up at one.

# %%
nn_counts = torch.bincount(cosine_topk(mapped, y, topk=1)[1][:, 0], minlength=len(y))  # (T,)
csls_counts = torch.bincount(csls_topk(mapped, y, topk=1)[1][:, 0], minlength=len(y))  # (T,)
for name, counts in (("NN", nn_counts), ("CSLS", csls_counts)):
    print(f"{name:4}: most retrieved target answers {int(counts.max())} queries; "
          f"{int((counts == 0).sum())} targets never retrieved")
hub = int(nn_counts.argmax())
print(f"the biggest NN hub is target {hub}: r_tgt {r_tgt[hub]:.3f} (mean r_tgt {r_tgt.mean():.3f})")

plt = pyplot()
fig, ax = plt.subplots(figsize=(6.4, 3.4))
top = int(max(nn_counts.max(), csls_counts.max()))
bins = torch.arange(top + 2) - 0.5
ax.hist([nn_counts.numpy(), csls_counts.numpy()], bins=bins.numpy(), label=["nearest neighbour", "CSLS"], log=True)
ax.set_xlabel("times a target word is retrieved (k-occurrence, k = 1)")
ax.set_ylabel("target words")
ax.set_title("Hubness: a few targets answer many queries under NN")
ax.legend()
save_figure(fig, "06_hubness.png")

# %% [markdown]
# ## Exercises
#
# 1. **Only r_tgt matters for retrieval.** For one query i, `r_src[i]` shifts every candidate's
#    score by the same amount, so it cannot change the ranking. Check it with the library: pass
#    `neighbourhoods=(zeros, r_tgt)` to `csls_topk` and compare the indices with the full CSLS.
# 2. **Fewer seeds.** In the noise-free pair, how many seed pairs does Procrustes need to
#    recover Q (|W - Q| < 1e-4)? Try P = 8, 32, 63, 64 with d = 64, and explain the answer from
#    the rank of `xs^T ys`.
#
# `tests/test_book_exercises_b.py` holds worked answers.
