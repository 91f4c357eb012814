# %% [markdown]
# # 07. Vocabulary extension
#
# A model whose vocabulary never saw a script reads every word of it as `▁ <unk>`. EXTEND
# (Wang et al. 2020; docs/EXTEND.md) grows the vocabulary with pieces of the new language and
# the model with rows for them, then continues MLM pretraining on the new text. This chapter
# runs the first two steps on a tiny base model, in seconds:
#
# 1. `data/extend_vocab.py`: a unigram model of the target text; the pieces the base lacks
#    that leave base-language words segmented exactly as before.
# 2. `models/extend.py`: the word embeddings, the tied MLM decoder and its bias get one row per
#    new piece; every old row stays bit-identical; the new rows get an initialisation rule.
#
# Legend: V base vocabulary, N new pieces, H hidden.
# Run: `python docs/book/07_extend.py`. On the mini (which never saw Cyrillic),
# `python train.py configs/mini_extend_ru.yaml` adds Russian pieces and continues MLM on Russian
# text; docs/EXTEND.md compares the init rules of this chapter (random, mean) by NER F1 after it.

# %%
from _common import pyplot, save_figure, tiny_sentences

import torch

from data.extend_vocab import extend_tokenizer, segmentation_stats, train_target_model
from data.tokenizer import XLMRTokenizer
from models.encoder import XLMRConfig
from models.extend import FIRST_ORDINARY_ID, UNK_ID, grow_for_tokenizer, piece_sources, word_embeddings
from models.heads import XLMRForMaskedLM

# %% [markdown]
# ## A base that cannot read Cyrillic, and the pieces it gains
#
# The base tokenizer is trained on a German-ish text (the book's shared `tiny_sentences()`); the target
# text is Russian with two German words mixed in.

# %%
base_text = [" ".join(sentence.words) for sentence in tiny_sentences()]  # every rotation of TEXT, 8 times
russian = ["Мэр Берлина говорит с журналистами газеты .", "Журналисты газеты пишут о городе Гамбург .",
           "В городе живут журналисты , мэр и Journalistin .", "Ангела Меркель посещает ратушу в Париже .",
           "Мэр города говорит о визите во Францию .", "Журналистка пишет о мэре Берлина и о Hamburger Rathaus ."]
base = XLMRTokenizer.train(base_text, 120, None, num_threads=1)
target = train_target_model(russian * 20, 100, num_threads=1)
extension = extend_tokenizer(base, target, new_pieces=40, base_text=base_text)
grown = extension.tokenizer
V, N = base.vocab_size, grown.vocab_size - base.vocab_size
print(f"base vocabulary V = {V}, new pieces N = {N}, grown vocabulary {grown.vocab_size}")
print("report:", {k: v for k, v in extension.report.items() if k != "dropped_examples"})

for word in ["журналистами", "городе", "Journalistin", "Berlin", "Hamburger"]:
    before = base.convert_ids_to_tokens(base.encode(word, add_special_tokens=False))
    after = grown.convert_ids_to_tokens(grown.encode(word, add_special_tokens=False))
    print(f"{word:13} {' '.join(before):30} -> {' '.join(after)}")

# %% [markdown]
# The words of the base text come out unchanged (`extend_tokenizer` drops any piece that
# would change one of them); a German word outside that text (`Journalistin`) may change: the
# protection covers the text it was given. The Russian words become real pieces. Pieces per word *rises*: the base's `▁ <unk>` was
# two pieces that said nothing, so the `<unk>` rate is the number to read, not the length.

# %%
for name, tok in (("base", base), ("grown", grown)):
    stats = segmentation_stats(tok, russian)
    print(f"{name:5}: <unk> pieces {stats['unk_piece_rate']:.1%}, words with <unk> {stats['unk_word_rate']:.1%}, "
          f"pieces per word {stats['pieces_per_word']:.2f}")

# %% [markdown]
# ## Growing the model
#
# A tiny random MLM model for the base vocabulary. Its decoder is tied to the word embeddings
# (one (V, H) tensor) and has its own bias (V,); a trained model's biases are mostly negative,
# so we give it some before growing.

# %%
config = XLMRConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
model = XLMRForMaskedLM(config)
model.init_weights(generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    model.lm_head.bias.copy_(-3 + torch.randn(V, generator=torch.Generator().manual_seed(1)))
old_rows = word_embeddings(model).weight.detach().clone()  # (V, H)
old_bias = model.lm_head.bias.detach().clone()  # (V,)
print("before: embeddings", tuple(old_rows.shape), "bias", tuple(old_bias.shape))

grow_for_tokenizer(model, base, grown, init="mean", generator=torch.Generator().manual_seed(0))
rows = word_embeddings(model).weight.detach()  # (V + N, H)
bias = model.lm_head.bias.detach()  # (V + N,)
print("after:  embeddings", tuple(rows.shape), "bias", tuple(bias.shape), "config.vocab_size", model.config.vocab_size)
assert torch.equal(rows[:V], old_rows) and torch.equal(bias[:V], old_bias)
assert model.lm_head.decoder.weight is word_embeddings(model).weight
print("old rows bit-identical:", torch.equal(rows[:V], old_rows), " old bias bit-identical:", torch.equal(bias[:V], old_bias))
print("decoder still tied:", model.lm_head.decoder.weight is word_embeddings(model).weight)
ids = torch.tensor([grown.encode("Мэр говорит с журналистами")])  # (1, T)
print("the grown model reads new ids:", ids.tolist(), "->", tuple(model(ids).shape))

# %% [markdown]
# ## Which rule each new row got (`init="mean"`)
#
# Each new piece's string is segmented by the *base* tokenizer (`piece_sources`). `<unk>` is
# dropped from those sources; what is left is averaged (row and bias). A piece with nothing
# left -- a script the base never saw -- is drawn from a Gaussian with the base rows' mean
# and covariance, with the mean ordinary bias. A word-initial Cyrillic piece decomposes as
# `▁ <unk>`: a lone `▁` says nothing about the piece, so `piece_sources` hands it no sources
# and it gets its own Gaussian draw too (a copy of the `▁` row would start all such pieces
# identical).

# %%
new_pieces = grown.convert_ids_to_tokens(range(V, V + N))
sources = piece_sources(base, new_pieces)
rule = []
for piece, ids in zip(new_pieces, sources):
    kept = [i for i in ids if i != UNK_ID]
    rule.append("gaussian" if not kept else "mean")
for kind in ("mean", "gaussian"):
    examples = [p for p, r in zip(new_pieces, rule) if r == kind]
    print(f"{kind:10} {len(examples):2} pieces, e.g. {examples[:5]}")
j = rule.index("mean")
torch.testing.assert_close(rows[V + j], old_rows[sources[j]].mean(0))
print(f"{new_pieces[j]!r} = mean of base rows {base.convert_ids_to_tokens(sources[j])}:",
      torch.allclose(rows[V + j], old_rows[sources[j]].mean(0)))
print("mean ordinary base bias", f"{old_bias[FIRST_ORDINARY_ID:].mean():.4f}", "; a Gaussian row's bias",
      f"{bias[V + rule.index('gaussian')]:.4f}")

# %% [markdown]
# Two principal components of every row: the Gaussian rows fall among the base rows, the
# averaged ones inside them.

# %%
centred = rows - rows[FIRST_ORDINARY_ID:V].mean(0)  # (V + N, H)
_, _, vt = torch.linalg.svd(centred[FIRST_ORDINARY_ID:V], full_matrices=False)
xy = centred @ vt[:2].T  # (V + N, 2)
plt = pyplot()
fig, ax = plt.subplots(figsize=(5.6, 4.2))
ax.scatter(*xy[FIRST_ORDINARY_ID:V].T, s=12, c="lightgrey", label="base rows")
for kind, colour in (("gaussian", "tab:blue"), ("mean", "tab:green")):
    chosen = [V + i for i, r in enumerate(rule) if r == kind]
    ax.scatter(*xy[chosen].T, s=28, c=colour, label=f"new: {kind} ({len(chosen)})")
ax.set_title("New embedding rows under init='mean'")
ax.legend(fontsize=8)
save_figure(fig, "07_new_rows.png")

# %% [markdown]
# ## Exercises
#
# 1. **Grow by hand.** Write the growth with `torch.cat` (embeddings, bias, and the decoder
#    re-tied) for given new rows and biases, and check it gives the same model as
#    `grow_vocabulary(model, N, init="rows", init_rows=..., init_bias=...)`: same logits on a
#    sentence with new ids, decoder still the embedding tensor.
# 2. **The bias of a new piece.** With `init="random"` (the paper's rule) a new piece's bias is
#    0, while the trained biases here are near -3. Compute, for one position, the softmax
#    probability the grown model gives a new piece under `random` and under `gaussian`, and
#    say which starts closer to an ordinary base piece.
#
# `tests/test_book_exercises_b.py` holds worked answers.
