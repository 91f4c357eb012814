# %% [markdown]
# # 08. Contextual alignment
#
# Cao, Kitaev & Klein (2020) make a multilingual encoder put a word and its translation at the
# same place, in context: word-align parallel sentences (`models/word_align.py`), then train
# the encoder so each aligned pair's vectors meet, while the anchor language's vectors stay
# where the original model had them (`models/align_loss.py`). Success is measured by
# contextual word retrieval with CSLS (`models/retrieval.py`). `tasks/align.py` runs it all;
# here each step runs by hand on a toy pair of languages whose right answer is known:
# **language B is language A spelled backwards**, word for word, in the same order.
#
# Legend: B sentence pairs, T subword positions, H hidden, W words, Q aligned word pairs.
# Run: `python docs/book/08_align.py`. A real run: `python train.py configs/mini_align_de.yaml`
# (docs/ALIGN.md has its before/after retrieval table).

# %%
from _common import pyplot, save_figure

import copy
import random

import torch

from core.config import load_config
from data.parallel import ParallelCorpus
from data.tokenizer import XLMRTokenizer
from models.align_loss import alignment_loss
from models.encoder import XLMRConfig, XLMREncoder, init_weights
from models.retrieval import aligned_pairs, retrieval_accuracy, word_vectors
from models.word_align import aer, align_corpus
from tasks.align import AlignTask, make_items, side_vectors

torch.manual_seed(0)

# %% [markdown]
# ## A pair of languages with a known answer

# %%
lexicon = ("hund katze maus haus garten stadt fluss wald sieht jagt sucht liebt findet kennt der die das "
           "ein eine im am rote alte kleine schnelle gern oft nie").split()
rng = random.Random(0)


def sentence_a() -> list[str]:
    return [rng.choice(lexicon) for _ in range(rng.randint(4, 8))]


lang_a = [sentence_a() for _ in range(360)]
lang_b = [[w[::-1] for w in s] for s in lang_a]  # the same words, spelled backwards
print(" ".join(lang_a[0]), "|", " ".join(lang_b[0]))
gold = [{(i, i) for i in range(len(s))} for s in lang_a]  # word i of B is word i of A
train = ParallelCorpus("b", "a", lang_b[:300], lang_a[:300])  # B moves, A is the anchor
dev = ParallelCorpus("b", "a", lang_b[300:], lang_a[300:])

# %% [markdown]
# ## Word alignment
#
# fast_align's model (IBM Model 2 with a diagonal prior) trained by EM, in both directions,
# intersected and kept 1-to-1 (`align_corpus`). AER against the gold links (0 is perfect):

# %%
links = align_corpus(train.src + dev.src, train.tgt + dev.tgt)
assert aer(links, gold, gold)["aer"] < 0.05  # the toy is easy: nearly every link is right
print("AER:", {k: round(v, 3) for k, v in aer(links, gold, gold).items()})
train_links, dev_links = links[:300], links[300:]
print("links of sentence 0:", sorted(train_links[0]))

# %% [markdown]
# ## A model that sees two unrelated vocabularies
#
# One tokenizer for both languages and a tiny random encoder. A word vector is the mean of
# the word's pieces at a layer; retrieval asks, for every aligned B word in the dev text,
# whether its nearest A word vector (CSLS, k = 10, or plain cosine) is its own translation.
# Queries and candidates are word *instances*: each A word occurs about seven times in the dev
# text, so a model that only knew word types would score about 1/7; above that is context.

# %%
tokenizer = XLMRTokenizer.train([" ".join(s) for s in lang_a + lang_b], 160, None, num_threads=1)
config = XLMRConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
original = XLMREncoder(config)
init_weights(original, generator=torch.Generator().manual_seed(0))
original.eval()


LAYER = 2  # the last layer (0 is the embeddings' output)


def evaluate(encoder, reference=None) -> dict:
    """Accuracy@1 of B -> A word retrieval on the dev text (CSLS and cosine NN); with ``reference``
    (the A side's vectors under the original model) also the anchor drift: the mean squared
    distance of each A word's vector from where the original model put it."""
    vec_b, ok_b = word_vectors(encoder, tokenizer, dev.src, [LAYER])
    vec_a, ok_a = word_vectors(encoder, tokenizer, dev.tgt, [LAYER])
    pairs = aligned_pairs(dev_links, ok_b, ok_a)  # [(sentence, i, j)]: Q queries
    out = retrieval_accuracy(vec_b[LAYER], vec_a[LAYER], pairs)
    drift = 0.0 if reference is None else \
        float(torch.cat([(x - y).pow(2).sum(1) for x, y in zip(vec_a[LAYER], reference)]).mean())
    return {"queries": out["queries"], "csls": out["csls_s2t"], "nn": out["nn_s2t"], "drift": drift}


print("pieces:", tokenizer.convert_ids_to_tokens(tokenizer.encode_words(lang_b[0])[0]))
print("before training:", {k: round(v, 3) for k, v in evaluate(original).items()})
original_a = word_vectors(original, tokenizer, dev.tgt, [LAYER])[0][LAYER]  # [(W_s, H) per A sentence]

# %% [markdown]
# ## The loss and the regulariser
#
# For a batch, both sides go through the model in one padded batch; `side_vectors` pools the
# pieces into word vectors. With Q aligned pairs (s_q in B, t_q in A) and the A words a of the
# batch:
#
# `align = sum_q ||f(s_q) - f(t_q)||^2`, `reg = sum_a ||f(a) - f0(a)||^2`, `loss = align + lam reg`,
#
# f0 the frozen original encoder. Without `reg`, nothing stops both sides from moving -- the
# cheapest way to make `align` zero is to map every word to the same vector.

# %%
cfg = load_config(None, ["task=align", "align.anchor=a", "align.layer=-1", "train.batch_size=16"])
items = make_items(tokenizer, train, train_links, max_pieces=64)
task = AlignTask(cfg, copy.deepcopy(original), tokenizer, items, {})
batch = task.collate(items[:16])
words = side_vectors(original, batch["both"], -1, "mean")  # (W_b + W_a, H)
anchor = words[batch["first_anchor_word"]:]  # (W_a, H)
anchor0 = side_vectors(task.frozen, batch["anchors"], -1, "mean")  # (W_a, H)
parts = alignment_loss(words[batch["src_words"]], words[batch["tgt_words"]], anchor, anchor0)
print("input_ids", tuple(batch["both"]["input_ids"].shape), "words", tuple(words.shape),
      "aligned pairs Q =", batch["n_tokens"])
print({k: round(float(v.detach()), 4) for k, v in parts.items()}, "<- reg is 0 at f = f0")
torch.testing.assert_close(task.loss(original, batch), parts["loss"])  # the task computes exactly this
assert float(parts["reg"].detach()) == 0.0

# %% [markdown]
# ## Training, with and without the regulariser
#
# Two dozen Adam steps over the training pairs (the loss divided by Q, as the loop does). We
# track dev retrieval and how far the anchor's vectors drifted from f0 (mean squared distance
# per A word of the dev text).

# %%
def train_alignment(lam: float, steps: int = 24, every: int = 6, lr: float = 1e-2) -> list[dict]:
    task = AlignTask(load_config(None, ["task=align", f"align.lam={lam}", "train.batch_size=16"]),
                     copy.deepcopy(original), tokenizer, items, {})
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = [{"step": 0, **evaluate(model.eval(), original_a)}]
    step, epoch = 0, 0
    while step < steps:
        for batch in task.train_batches(epoch):
            model.train()
            loss = task.loss(model, batch) / batch["n_tokens"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % every == 0:
                history.append({"step": step, **evaluate(model.eval(), original_a)})
            if step == steps:
                break
        epoch += 1
    return history


runs = {lam: train_alignment(lam) for lam in (1.0, 0.0)}
for lam, history in runs.items():
    last = history[-1]
    print(f"lam {lam}: CSLS {history[0]['csls']:.2f} -> {last['csls']:.2f}, NN {history[0]['nn']:.2f} -> "
          f"{last['nn']:.2f}, anchor drift {last['drift']:.4f}")

# %% [markdown]
# With `lam = 1` the B words find their translations and the A side stays near f0. With
# `lam = 0` both sides are free: the loss falls fastest by pulling everything together, the A
# side drifts far from where it was, and retrieval falls back to chance.

# %%
plt = pyplot()
fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
for lam, history in runs.items():
    steps = [h["step"] for h in history]
    left.plot(steps, [h["csls"] for h in history], marker="o", label=f"lam {lam:g}")
    right.plot(steps, [h["drift"] for h in history], marker="o", label=f"lam {lam:g}")
left.set_xlabel("step")
left.set_ylabel("dev retrieval B -> A (CSLS acc@1)")
right.set_xlabel("step")
right.set_ylabel("anchor drift (mean ||f(a) - f0(a)||^2)")
left.legend()
right.legend()
fig.suptitle("Alignment moves B onto A; the regulariser keeps A in place")
save_figure(fig, "08_alignment.png")

# %% [markdown]
# ## Exercises
#
# 1. **Retrieval by brute force.** Gather the Q dev query vectors (B) and candidate vectors (A)
#    of `aligned_pairs`, normalise them, and compute accuracy@1 of plain cosine nearest
#    neighbours with one matrix product; check it equals `retrieval_accuracy`'s `nn_s2t`. Then
#    do the same for CSLS with a naive CSLS (chapter 6) and `csls_s2t`.
# 2. **Collapse.** Show that mapping every word of both sides to one vector makes `align`
#    exactly zero, and that `reg` is then what keeps the loss from being zero too.
#
# `tests/test_book_exercises_b.py` holds worked answers.
