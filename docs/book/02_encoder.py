# %% [markdown]
# # 02. One sentence through the encoder
#
# This chapter follows one German sentence from words to an entity F1 score: pieces, word ids,
# embeddings, attention, logits, loss, one optimizer step, and seqeval. Each step is computed by
# hand first and then checked against the module that does it in the library.
#
# ```bash
# python docs/book/02_encoder.py                                               # a tiny random checkpoint, made in a second
# XLT_BOOK_MODEL=runs/mini_pretrain/model python docs/book/02_encoder.py       # the mini model
# ```
#
# By default the chapter loads a tiny random XLM-R (2 layers, H 32) with a 120-id vocabulary
# trained on a few German sentences: every shape and every equality below holds, but the
# numbers (losses, attention, predictions) are those of a random model. With the mini model
# (`python train.py configs/mini_pretrain.yaml` writes it, ~25 minutes) or any checkpoint in the
# Hugging Face XLM-R layout, the pieces are real sub-words and the attention means something.
#
# Shapes: B batch, T subword positions, W words, H hidden, N heads, D head dim, K tags.

# %% [markdown]
# ## 1. Words and tags
#
# A sentence is a list of words with one IOB2 tag each (`data/conll.py` reads them from CoNLL
# files). The seven PAN-X labels are the classes; a tag's position is its id.

# %%
from _common import model_dir, pyplot, save_figure  # docs/book/_common.py: also puts the repository root on sys.path

import torch
import torch.nn.functional as F

from data.conll import Sentence
from data.labels import IGNORE_INDEX, build_label_set

labels = build_label_set()
sentence = Sentence(words=["Angela", "Merkel", "besucht", "das", "Rathaus", "in", "Paris", "."],
                    tags=["B-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "O"], lang="de")
print(labels.tags)                       # ('O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC')
print(labels.ids(sentence.tags))         # [1, 2, 0, 0, 0, 0, 5, 0]

# %% [markdown]
# ## 2. Pieces and word ids
#
# The sentencepiece tokenizer splits each word into pieces; `encode_words` also says which word
# each piece came from (chapter 01 takes this apart). The model is loaded with a fresh 7-way
# classifier on top of the encoder.

# %%
from models import load_pretrained

checkpoint = model_dir()  # $XLT_BOOK_MODEL, or the tiny checkpoint (made on first use)
torch.manual_seed(0)      # the fresh classifier's initial weights
model, tokenizer = load_pretrained(checkpoint, task="token-classification", num_labels=len(labels),
                                   kernels="reference")  # the modules of models/encoder.py, the ones read here
model.eval()  # no dropout while we compare numbers

piece_ids, word_index = tokenizer.encode_words(sentence.words)
print(tokenizer.convert_ids_to_tokens(piece_ids))  # ['▁Angela', '▁Merkel', '▁besucht', ...]: pieces of the tiny vocabulary
print(word_index)                                   # the word of each piece
assert sorted(set(word_index)) == list(range(len(sentence.words)))  # here every word got a piece

# %% [markdown]
# ## 3. The window: labels on first pieces
#
# `data/windows.py` adds `<s>` and `</s>`, puts each word's label on its first piece and `-100`
# (ignored by the loss) everywhere else. `word_ids` marks the first piece of every word this
# window predicts; a sentence longer than `max_length` would become several overlapping windows.
# `collate` pads a list of windows into tensors.

# %%
from data.batching import collate
from data.windows import build_windows

(window,) = build_windows([sentence], tokenizer, labels, max_length=128, stride=32)
batch = collate([window], pad_id=tokenizer.pad_id)
input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]  # (1, T) long, (1, T) bool
print("input_ids", tuple(input_ids.shape), "labelled words", int(batch["n_tokens"]))
first_piece = batch["word_ids"] >= 0                                     # (1, T) bool
assert input_ids[0, 0] == tokenizer.bos_id and input_ids[0, -1] == tokenizer.eos_id
assert batch["labels"][first_piece].tolist() == labels.ids(sentence.tags)
assert int(batch["n_tokens"]) == len(sentence.words)

# %% [markdown]
# ## 4. Embeddings
#
# Each piece id selects a row of the word-embedding matrix (V x H). XLM-R adds a learned
# position embedding whose ids start *after* the padding id (1), so the first real position is
# 2 (a fairseq heritage that is easy to get wrong), and a single token-type row; then LayerNorm.

# %%
emb = model.encoder.embeddings
positions = torch.cumsum(input_ids.ne(tokenizer.pad_id), dim=1) + tokenizer.pad_id  # (1, T): 2, 3, ...
x = emb.word_embeddings(input_ids) + emb.position_embeddings(positions)  # (1, T, H)
x = emb.norm(x + emb.token_type_embeddings.weight[0])                    # (1, T, H)
print("positions", positions[0, :4].tolist(), "embeddings", tuple(x.shape))
torch.testing.assert_close(x, emb(input_ids))

# %% [markdown]
# ## 5. Attention (first layer)
#
# One fused projection gives queries, keys and values; N heads of size D = H / N each score
# every position against every other, softmax turns the scores into weights, and the weighted
# values are projected back, added to the input and normalised (post-LN).

# %%
layer = model.encoder.layers[0].attention
B, T, H = x.shape
N, D = layer.num_heads, layer.head_dim
q, k, v = layer.qkv(x).view(B, T, 3, N, D).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (1, N, T, D)
weights = (q @ k.transpose(-1, -2) / D ** 0.5).softmax(-1)                  # (1, N, T, T)
context = (weights @ v).transpose(1, 2).reshape(B, T, H)                    # (1, T, H)
after_attention = layer.norm(x + layer.out(context))                        # (1, T, H)
print("weights", tuple(weights.shape), "context", tuple(context.shape))
torch.testing.assert_close(weights.sum(-1), torch.ones(B, N, T))
torch.testing.assert_close(after_attention, layer(x, None), rtol=1e-4, atol=1e-5)

pieces = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())  # T strings, <s> and </s> included
top = weights[0, 0, 1].topk(3)                                   # head 0, from the first word's first piece
print(f"head 0: {pieces[1]!r} attends most to",
      [(pieces[j], round(w, 3)) for w, j in zip(top.values.tolist(), top.indices.tolist())])

# %% [markdown]
# The whole first layer's attention, head by head: row i is where piece i looks. In the tiny
# random model every weight is within a few thousandths of 1 / T (mind the colour scale); in the
# mini, heads specialise (neighbouring pieces, `</s>`, the pieces of the same word).

# %%
plt = pyplot()
fig, axes = plt.subplots(1, N, figsize=(5.2 * N, 4), layout="constrained")
for head, ax in enumerate(axes):
    image = ax.imshow(weights[0, head].detach(), cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(T), pieces, rotation=90, fontsize=7)
    ax.set_yticks(range(T), pieces, fontsize=7)
    ax.set_title(f"layer 0, head {head}")
save_figure(fig, "02_attention.png")

# %% [markdown]
# ## 6. All layers, then logits
#
# Each block is attention then a feed-forward sublayer (H -> I -> H with GELU), each followed by
# residual + LayerNorm. The classifier maps every position's hidden state to K tag scores.

# %%
hidden = model.encoder(input_ids, attention_mask)     # (1, T, H)
logits = model.classifier(model.dropout(hidden))      # (1, T, K)
torch.testing.assert_close(logits, model(input_ids, attention_mask))
print("hidden", tuple(hidden.shape), "logits", tuple(logits.shape))

# %% [markdown]
# Training on a CPU runs the same maths with faster kernels (`models/encoder_fast.py`: the real
# tokens packed without their padding, oneDNN's linear layers, a faster dropout), chosen by
# `model.kernels: reference | fast | auto`; they are subclasses with the same parameters, switched
# in place, and give the same numbers.

# %%
import copy

from models import use_kernels

fast_model = use_kernels(copy.deepcopy(model), "fast")    # prints which kernels run, once per process
torch.testing.assert_close(fast_model(input_ids, attention_mask), logits, rtol=1e-4, atol=1e-5)
print(type(model.encoder.layers[0].attention).__module__, "==", type(fast_model.encoder.layers[0].attention).__module__)

# %% [markdown]
# ## 7. Loss
#
# Cross-entropy at the labelled positions only (`-100` is skipped), summed; the training loop
# divides by the number of labelled tokens of the whole optimizer step (`n_tokens`), so long and
# short batches weigh each token the same (chapter 03).

# %%
loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(),
                           ignore_index=IGNORE_INDEX, reduction="sum")
loss = loss_sum / batch["n_tokens"]
print("loss", round(float(loss.detach()), 4))  # about ln(7) = 1.95 for an untrained classifier
manual = -logits[first_piece].log_softmax(-1)[torch.arange(8), batch["labels"][first_piece]].mean()
torch.testing.assert_close(loss, manual)

# %% [markdown]
# ## 8. One optimizer step
#
# Backpropagation fills every parameter's `.grad`; AdamW moves each weight against its gradient
# (with weight decay). The loop in `core/loop.py` does the same with autocast, gradient
# accumulation, clipping and a schedule around it (chapter 03).

# %%
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
loss.backward()
print("classifier gradient", tuple(model.classifier.weight.grad.shape))  # (K, H)
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
optimizer.step()
optimizer.zero_grad(set_to_none=True)
with torch.no_grad():
    new_logits = model(input_ids, attention_mask)     # (1, T, K)
    new_loss = F.cross_entropy(new_logits.flatten(0, 1), batch["labels"].flatten(),
                               ignore_index=IGNORE_INDEX, reduction="sum") / batch["n_tokens"]
print("loss", round(float(loss.detach()), 4), "->", round(float(new_loss), 4))
assert new_loss < loss                                # one step downhill on this sentence

# %% [markdown]
# ## 9. Predictions back to words, and seqeval
#
# The prediction of a word is the arg-max at its first piece (`stitch` collects them across
# windows; here there is one window). seqeval groups tags into entities: an entity counts only
# if its type and both boundaries match.

# %%
from core.metrics import entity_scores
from data.windows import stitch

predicted_ids = new_logits.argmax(-1)                                   # (1, T)
(word_ids_pred,) = stitch([window], predicted_ids.tolist(), [len(sentence.words)])
predicted_tags = [labels.tag(i) for i in word_ids_pred]
scores = entity_scores([sentence.tags], [predicted_tags])
print(predicted_tags)
print({k: scores[k] for k in ("precision", "recall", "f1")})           # gold has 2 entities: PER, LOC
perfect = entity_scores([sentence.tags], [sentence.tags])
assert perfect["f1"] == 1.0 and perfect["support"] == 2

# %% [markdown]
# That is the whole path. `tasks/ner.py` runs steps 3-9 over batches of windows for every
# sentence of the training set, and `evaluate.py` runs step 9 over whole test sets. To tag
# sentences with a model, the library does steps 2-9 in one call (windows of 128 pieces, batches
# of similar length, the logits at first pieces only, stitching; PAN-X's labels unless given):

# %%
from tasks.ner import predict_tags

library_tags = predict_tags(model, [sentence.words, ["Paris", "ist", "groß"]], tokenizer, precision="fp32")
print(library_tags)
assert library_tags[0] == predicted_tags

# %% [markdown]
# ## Exercises
#
# 1. Count the parameters of the encoder from its config alone (V, H, L, I = intermediate size,
#    P = max positions, and the norms' weights and biases) and check your formula against
#    `sum(p.numel() for p in model.encoder.parameters())`.
# 2. Padding must not change anything: put the sentence in a batch beside a longer one, so that it
#    is padded on the right, and show that its hidden states at the real positions equal those
#    of step 6 (up to float rounding).
