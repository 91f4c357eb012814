# %% [markdown]
# # 09. Relation extraction: markers, pooling, focal loss, micro-F1
#
# A relation example is a sentence with two marked entities, subject and object; the model
# says which relation (or `no_relation`) holds between them (Zhou & Chen 2021; docs/RE.md).
# Four hand-written parts make it, each checked here against a brute-force version:
#
# 1. `data/markers.py`: typed entity markers around each entity, and where its pieces are.
# 2. `models/pooling.py`: the entity's vector -- its start marker, the mean or max of its
#    pieces, or a learned attention over them.
# 3. `models/losses.py`: one formula for cross-entropy, label smoothing and focal loss.
# 4. `core/metrics.py`: micro-F1 that leaves `no_relation` out (KLUE-RE's definition).
#
# Legend: B examples, T subword positions, H hidden, K relations.
# Run: `python docs/book/09_relation.py`. A real run on KLUE-RE with the Korean mini:
# `python train.py configs/mini_re_klue.yaml` (docs/RE.md has the pooling and loss ablations;
# `scripts/re_grid.py` the focal gamma / alpha grid).

# %%
from _common import pyplot, save_figure

import math

import torch
import torch.nn.functional as F

from core.metrics import relation_micro_f1
from data.markers import MarkerEncoder, marker_tokens
from data.relation_batch import MODEL_INPUTS, collate_relations
from data.relation import Entity, RelationExample
from data.tokenizer import XLMRTokenizer
from models.losses import relation_loss
from models.encoder import XLMRConfig, XLMREncoder, init_weights
from models.pooling import SpanAttention, gather_positions, span_max, span_mean
from models.re_head import RelationClassifier

torch.manual_seed(0)

# %% [markdown]
# ## Typed entity markers
#
# An entity is given by its characters (`start`, `end` inclusive) and a type. The style
# `typed_entity_marker_punct` writes the type as words between punctuation the vocabulary
# already has (`@ * person * Bill @`); `typed_entity_marker` uses new special tokens
# (`[SUBJ-PER] Bill [/SUBJ-PER]`), which the vocabulary and the embeddings must first grow by
# (chapter 7). Each segment is tokenised on its own, so an entity's pieces are exactly the
# pieces of its characters.

# %%
text = ["Bill Gates founded Microsoft in Albuquerque .", "Marie Curie worked in Paris with Pierre Curie .",
        "@ * person * # ^ organization ^ location @ #"] * 20
tokenizer = XLMRTokenizer.train(text, 100, None, num_threads=1)
sentence = "Bill Gates founded Microsoft in Albuquerque ."
example = RelationExample("ex-1", sentence, subj=Entity("Bill Gates", 0, 9, "PER"),
                          obj=Entity("Microsoft", 19, 27, "ORG"), label="org:founded_by")
assert sentence[example.obj.start:example.obj.end + 1] == "Microsoft"

punct = MarkerEncoder(tokenizer, "typed_entity_marker_punct").encode(example)
print("punct style:", " ".join(tokenizer.convert_ids_to_tokens(punct.input_ids)))

new_tokens = marker_tokens("typed_entity_marker", ["PER", "ORG"])
grown, new_ids = tokenizer.add_special_tokens(new_tokens)
print("new tokens:", dict(zip(new_tokens, new_ids)))
typed = MarkerEncoder(grown, "typed_entity_marker", special_ids=dict(zip(new_tokens, new_ids))).encode(example)
pieces = grown.convert_ids_to_tokens(typed.input_ids)
print("typed style:", " ".join(pieces))
print("subject marker at", typed.subj_marker, repr(pieces[typed.subj_marker]), "; subject pieces",
      pieces[slice(*typed.subj_span)], "; object pieces", pieces[slice(*typed.obj_span)])

# %% [markdown]
# ## Pooling against brute force
#
# A batch of two encoded examples, a random `h` standing in for the encoder's output, and the
# span masks built from `subj_span` / `obj_span` (markers excluded) -- by hand, then by the
# library's collation (`data/relation_batch.py`), which pads the batch the same way.

# %%
other = RelationExample("ex-2", "Marie Curie worked in Paris with Pierre Curie .", Entity("Marie Curie", 0, 10, "PER"),
                        Entity("Paris", 22, 26, "LOC"), "per:city_of_residence")
tokens = marker_tokens("typed_entity_marker", ["PER", "ORG", "LOC"])
grown, ids = tokenizer.add_special_tokens(tokens)
encoder = MarkerEncoder(grown, "typed_entity_marker", special_ids=dict(zip(tokens, ids)))
items = [encoder.encode(example), encoder.encode(other)]
B, T, H = len(items), max(len(e) for e in items), 8
h = torch.randn(B, T, H)  # (B, T, H)
subj_mask = torch.zeros(B, T, dtype=torch.bool)  # (B, T)
obj_mask = torch.zeros(B, T, dtype=torch.bool)  # (B, T)
for b, e in enumerate(items):
    subj_mask[b, slice(*e.subj_span)] = True
    obj_mask[b, slice(*e.obj_span)] = True
subj_marker = torch.tensor([e.subj_marker for e in items])  # (B,)
batch = collate_relations(items, labels=None, pad_id=grown.pad_id)  # dict of (B, T) and (B,) tensors
assert torch.equal(batch["subj_mask"], subj_mask) and torch.equal(batch["obj_mask"], obj_mask)
assert torch.equal(batch["subj_marker"], subj_marker)
print("h", tuple(h.shape), "subj_mask", tuple(subj_mask.shape), "subj_marker", subj_marker.tolist())

brute_start = torch.stack([h[b, e.subj_marker] for b, e in enumerate(items)])  # (B, H)
brute_mean = torch.stack([h[b, slice(*e.subj_span)].mean(0) for b, e in enumerate(items)])
brute_max = torch.stack([h[b, slice(*e.subj_span)].max(0).values for b, e in enumerate(items)])
torch.testing.assert_close(gather_positions(h, subj_marker), brute_start, atol=0, rtol=0)
torch.testing.assert_close(span_mean(h, subj_mask), brute_mean)
torch.testing.assert_close(span_max(h, subj_mask), brute_max, atol=0, rtol=0)
print("start:", torch.equal(gather_positions(h, subj_marker), brute_start),
      " mean:", torch.allclose(span_mean(h, subj_mask), brute_mean, atol=1e-6),
      " max:", torch.equal(span_max(h, subj_mask), brute_max))

# %% [markdown]
# Attention pooling scores every piece with a learned query `q`, `s_t = h_t . q / sqrt(H)`,
# and takes the softmax-weighted sum over the span. Its query starts at zero, where every
# weight is equal: attention pooling starts as the span mean.

# %%
attention = SpanAttention(H)
torch.testing.assert_close(attention(h, subj_mask), span_mean(h, subj_mask))
print("zero query == span mean:", torch.allclose(attention(h, subj_mask), span_mean(h, subj_mask), atol=1e-6))
with torch.no_grad():
    attention.query.normal_()
brute = []
for b, e in enumerate(items):
    span = h[b, slice(*e.subj_span)]  # (n, H)
    weights = [math.exp(float(row @ attention.query.detach()) / math.sqrt(H)) for row in span]
    brute.append(sum(w * row for w, row in zip(weights, span)) / sum(weights))
torch.testing.assert_close(attention(h, subj_mask).detach(), torch.stack(brute))
print("learned query == brute force:", torch.allclose(attention(h, subj_mask), torch.stack(brute), atol=1e-5))

# %% [markdown]
# The classifier (`models/re_head.py`) puts it together: encoder -> pooled subject and object
# (2H features) -> a small MLP -> one logit per relation. Here on a tiny random encoder whose
# vocabulary includes the new marker tokens.

# %%
config = XLMRConfig(vocab_size=grown.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64)
tiny = XLMREncoder(config)
init_weights(tiny, generator=torch.Generator().manual_seed(0))
classifier = RelationClassifier(tiny, num_labels=3, pooling="attention").eval()
with torch.no_grad():
    relation_logits = classifier(*(batch[k] for k in MODEL_INPUTS))  # (B, K)
print({k: tuple(batch[k].shape) for k in MODEL_INPUTS}, "-> logits", tuple(relation_logits.shape))

# %% [markdown]
# ## Focal loss against cross-entropy
#
# `loss_i = sum_k q_ik alpha_k (1 - p_ik)^gamma (-log p_ik)`: with gamma = 0 and alpha = 1 it
# is cross-entropy. gamma > 0 shrinks the loss of examples the model already gets right
# (large `p_true`), so the many easy `no_relation` examples stop dominating the gradient;
# alpha rescales classes (a scalar scales everything, a (K,) vector weighs each class).

# %%
logits = torch.randn(6, 4)  # (B, K)
labels = torch.tensor([0, 1, 2, 3, 0, 0])  # (B,)
torch.testing.assert_close(relation_loss(logits, labels), F.cross_entropy(logits, labels, reduction="sum"))
print("gamma 0 == cross-entropy:", torch.allclose(relation_loss(logits, labels), F.cross_entropy(logits, labels, reduction="sum")))
p_true = F.softmax(logits, -1)[torch.arange(6), labels]  # (B,)
focal = relation_loss(logits, labels, gamma=2.0, reduction="none")  # (B,)
print("gamma 2 == (1 - p)^2 CE:", torch.allclose(focal, (1 - p_true) ** 2 * -p_true.log()))
alpha = torch.tensor([0.25, 1.0, 1.0, 1.0])  # no_relation (class 0) weighs a quarter
print("per-class alpha:", torch.allclose(relation_loss(logits, labels, alpha=alpha, reduction="none"),
                                         alpha[labels] * F.cross_entropy(logits, labels, reduction="none")))

p = torch.linspace(0.01, 0.99, 99)  # p_true
two_class = torch.stack([p.log(), (1 - p).log()], dim=1)  # (99, 2) logits whose softmax is (p, 1 - p)
gold = torch.zeros(99, dtype=torch.long)
plt = pyplot()
fig, ax = plt.subplots(figsize=(6.0, 3.8))
for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
    ax.plot(p, relation_loss(two_class, gold, gamma=gamma, reduction="none"), label=f"gamma {gamma:g}")
ax.plot(p, relation_loss(two_class, gold, gamma=2.0, alpha=0.25, reduction="none"), "k--", label="gamma 2, alpha 0.25")
ax.set_xlabel("p_true (the model's probability of the gold relation)")
ax.set_ylabel("loss of one example")
ax.set_ylim(0, 4)
ax.set_title("Focal loss: easy examples (large p_true) stop counting")
ax.legend()
save_figure(fig, "09_focal_loss.png")

# %% [markdown]
# ## Micro-F1 without no_relation
#
# KLUE-RE scores relations only: a predicted `no_relation` finds nothing, a gold `no_relation`
# needs nothing. A model that always says `no_relation` is often highly *accurate* (most pairs
# are unrelated) and scores F1 0.

# %%
gold_labels = [0, 0, 0, 0, 0, 0, 1, 2, 2, 3]  # 0 = no_relation
lazy = [0] * 10
guess = [0, 0, 0, 1, 0, 0, 1, 2, 0, 3]
for name, pred in (("always no_relation", lazy), ("a model", guess)):
    accuracy = sum(g == q for g, q in zip(gold_labels, pred)) / len(pred)
    print(f"{name:18}: accuracy {accuracy:.2f}, micro-F1 {relation_micro_f1(gold_labels, pred):.1f}")
hit = sum(g == q != 0 for g, q in zip(gold_labels, guess))
found, wanted = sum(q != 0 for q in guess), sum(g != 0 for g in gold_labels)
assert abs(relation_micro_f1(gold_labels, guess) - 200 * hit / (found + wanted)) < 1e-9
print(f"by hand: precision {hit}/{found}, recall {hit}/{wanted}, F1 {200 * hit / (found + wanted):.1f}")

# %% [markdown]
# ## Exercises
#
# 1. **How easy is easy?** At which `p_true` is the focal loss with gamma = 2 exactly a tenth
#    of the cross-entropy? Solve it on paper, then check it with `relation_loss`.
# 2. **Micro-F1 by brute force.** Write micro-F1 without `no_relation` from its definition (a
#    loop over examples counting hits, predictions and gold relations) and check it against
#    `relation_micro_f1` on random labels; find a prediction list whose accuracy goes up while
#    its micro-F1 goes down.
#
# `tests/test_book_exercises_b.py` holds worked answers.
