# %% [markdown]
# # 05. The BiLSTM-CRF with characters
#
# Before pretrained transformers, the strong NER tagger was a BiLSTM-CRF (Lample et al. 2016; Ma
# & Hovy 2016), and it is still the tagger of the zero-resource systems here (`tasks/bilstm_crf.py`,
# `tasks/zeroresource.py`), because it can start from word vectors mapped across languages. Each
# word gets two vectors: a row of a word table, and features computed from its characters by a
# small CNN (so that an unknown `Hamburgerin` still looks like `Hamburger`). A bidirectional LSTM
# reads the sentence both ways, a linear layer turns its states into emission scores, and the CRF
# of chapter 04 scores tag paths.
#
# ```bash
# python docs/book/05_bilstm_crf.py
# ```
#
# Legend: B batch, W words, C characters per word, E word-embedding size, Hc character features,
# H LSTM hidden per direction, K tags. Sizes here are tiny; `configs/bilstm_crf_de.yaml` trains the
# real one (E 100, Hc 100, H 200) on PAN-X German.

# %%
from _common import pyplot, save_figure  # docs/book/_common.py: also puts the repository root on sys.path

import torch

from core.config import BiLSTMConfig
from data.conll import Sentence
from data.vocab import Vocab, count_chars, count_words, encode_batch
from models.bilstm_crf import build_bilstm_crf

labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
train = [Sentence("Angela Merkel besucht Paris .".split(), ["B-PER", "I-PER", "O", "B-LOC", "O"]),
         Sentence("Olaf Scholz spricht in Hamburg".split(), ["B-PER", "I-PER", "O", "O", "B-LOC"]),
         Sentence("Berlin und Paris".split(), ["B-LOC", "O", "B-LOC"]),
         Sentence("Der Bürgermeister von Hamburg besucht Berlin .".split(), ["O", "O", "O", "B-LOC", "O", "B-LOC", "O"]),
         Sentence("Merkel spricht".split(), ["B-PER", "O"])]
words = Vocab.build(count_words(train, lowercase=False))         # 0 <pad>, 1 <unk>, then by frequency
chars = Vocab.build(count_chars(train))
label_index = {tag: i for i, tag in enumerate(labels)}
batch = encode_batch(train[:3], words, chars, label_index)
for key in ("words", "chars", "mask", "tags"):
    print(f"{key:5} {tuple(batch[key].shape)} {batch[key].dtype}")  # (B, W), (B, W, C), (B, W), (B, W)
print("'Paris' as characters:", batch["chars"][0, 3].tolist())      # padded with 0 to C

torch.manual_seed(0)
cfg = BiLSTMConfig(word_dim=12, char_dim=8, char_encoder="cnn", char_hidden=10, hidden_size=16, dropout=0.0)
model = build_bilstm_crf(cfg, num_words=len(words), num_chars=len(chars), labels=labels)
model.eval()
print(model)

# %% [markdown]
# ## 1. Character features: a CNN and max-pooling
#
# Each character is embedded, a convolution of width 3 looks at every character with its two
# neighbours (zero padding at the ends), and max-pooling over the word's *real* characters keeps,
# for each filter, its strongest response anywhere in the word: a bag of detected trigrams, of a
# fixed size whatever the word's length. By hand, with the windows cut out by `unfold`:

# %%
cnn = model.chars
x = cnn.embed(batch["chars"])                                       # (B, W, C, char_dim)
B, W, C, char_dim = x.shape
padded = torch.nn.functional.pad(x, (0, 0, 1, 1))                   # (B, W, C + 2, char_dim)
windows = padded.unfold(2, 3, 1)                                    # (B, W, C, char_dim, 3)
kernel = cnn.conv.weight                                            # (Hc, char_dim, 3)
responses = windows.flatten(-2) @ kernel.flatten(1).T + cnn.conv.bias  # (B, W, C, Hc): each window . each filter
responses = responses.masked_fill(batch["chars"][..., None] == 0, float("-inf"))  # padding never wins
char_features = responses.amax(dim=2)                               # (B, W, Hc)
char_features = torch.where(char_features.isinf(), 0.0, char_features)  # padded words: zeros
print("char features", tuple(char_features.shape))
torch.testing.assert_close(char_features, cnn(batch["chars"]))

# %% [markdown]
# ## 2. Word rows, then the BiLSTM
#
# The word table gives each word a row (an unknown word gets row 1, `<unk>`); the word's
# character features are appended. The LSTM reads the sentence left to right, and a second one
# right to left; each word's state is the two directions side by side (2H). One LSTM step, by
# hand: four gates from the input and the previous state, a cell that forgets and adds, an
# output gate.

# %%
inputs = torch.cat([model.words(batch["words"]), char_features], dim=-1)  # (B, W, E + Hc)
print("LSTM input", tuple(inputs.shape))

lstm = model.lstm
H = lstm.hidden_size
n = int(batch["mask"][0].sum())                                     # the first sentence's length
h, c = torch.zeros(H), torch.zeros(H)
forward_states = []
for t in range(n):                                                  # the left-to-right direction
    gates = lstm.weight_ih_l0 @ inputs[0, t] + lstm.bias_ih_l0 + lstm.weight_hh_l0 @ h + lstm.bias_hh_l0  # (4H,)
    i, f, g, o = gates.chunk(4)                                     # input, forget, cell, output: (H,) each
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()                    # (H,)
    h = o.sigmoid() * c.tanh()                                      # (H,)
    forward_states.append(h)

states = model.features(batch["words"], batch["chars"], batch["mask"])  # (B, W, 2H)
print("BiLSTM states", tuple(states.shape))
torch.testing.assert_close(torch.stack(forward_states), states[0, :n, :H])

# %% [markdown]
# The backward direction must start at each sentence's *own* last word, not at the padding after
# it: the model packs the batch (`pack_padded_sequence`), so padding never enters the LSTM. Each
# sentence run alone gives the same states, and the padding's states are zeros.

# %%
for b, sentence in enumerate(train[:3]):
    alone = encode_batch([sentence], words, chars, label_index)
    n = len(sentence.words)
    torch.testing.assert_close(model.features(alone["words"], alone["chars"], alone["mask"])[0],
                               states[b, :n], rtol=1e-5, atol=1e-6)
    assert not states[b, n:].any()
print("every sentence: batched states == alone")

# %% [markdown]
# ## 3. Emissions and the CRF
#
# A linear layer maps each state to K emission scores; the CRF's negative log-likelihood is the
# loss, and Viterbi (with the BIO constraints, since the labels are IOB2) decodes.

# %%
emissions = model.out(states)                                       # (B, W, K)
loss = model.crf(emissions, batch["tags"], batch["mask"], reduction="sum")
torch.testing.assert_close(loss, model.loss(batch, reduction="sum"))
print("emissions", tuple(emissions.shape), "loss", round(float(loss.detach()), 3))
print("decoded (untrained)", model.decode(batch).tolist())          # (B, W), -1 on padding

# %% [markdown]
# ## 4. Training on five sentences
#
# The real task (`tasks/bilstm_crf.py`) trains with the loop of chapter 03; here a few Adam
# steps on the five sentences are enough to fit them. Then a word never seen in training:
# `Hamburgerin` has the `<unk>` row, but its characters share `Hamburg` with a city it saw.

# %%
full = encode_batch(train, words, chars, label_index)
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
model.train()
losses = []
for step in range(25):
    loss = model.loss(full, reduction="sum") / full["n_tokens"]     # the mean nll per word
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    losses.append(float(loss.detach()))
model.eval()
predicted = [[labels[t] for t in path if t >= 0] for path in model.decode(full).tolist()]
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; fits the training tags: {predicted == [s.tags for s in train]}")

test = Sentence("Die Hamburgerin besucht Merkel".split(), ["O"] * 4)
test_batch = encode_batch([test], words, chars, None)
print("word ids", test_batch["words"][0].tolist(), "(1 = <unk>)")
with torch.no_grad():
    test_emissions = model(test_batch["words"], test_batch["chars"], test_batch["mask"])[0]  # (W, K)
print("tags", [labels[t] for t in model.decode(test_batch)[0].tolist()])

plt = pyplot()
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
left.plot(losses)
left.set_xlabel("step")
left.set_ylabel("nll per word")
left.set_title("training on five sentences")
right.imshow(test_emissions.T, cmap="viridis")
right.set_xticks(range(len(test.words)), test.words, rotation=30)
right.set_yticks(range(len(labels)), labels)
right.set_title("emission scores of an unseen sentence")
save_figure(fig, "05_bilstm_crf.png")

# %% [markdown]
# ## Exercises
#
# 1. Two different unknown words get the same word row (`<unk>`) but different character
#    features. Show it for `Hamburgerin` and `Parisienne`, and show that a word's character
#    features do not depend on the other words of the batch or on how much character padding
#    the batch needs (put it beside a much longer word).
# 2. Count the parameters of the model above from its sizes alone (the word and character
#    tables, the convolution, the two LSTM directions with four gates each and two bias vectors,
#    the output layer, the CRF's K x K + 2K) and check the count against
#    `sum(p.numel() for p in model.parameters())`.
