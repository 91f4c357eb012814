# %% [markdown]
# # 01. The tokenizer and word/piece alignment
#
# A named-entity tagger labels *words*, but XLM-R reads *pieces*: sentencepiece splits every word
# into one or more sub-word units from a fixed vocabulary. This chapter trains a tiny
# sentencepiece model, maps its ids to XLM-R's, and follows the bookkeeping that lets a word-level
# label meet a piece-level model: the word index of each piece, the first-piece mask, labels on
# first pieces, and windows over a sentence longer than the model reads at once.
#
# ```bash
# python docs/book/01_tokenizer.py
# ```
#
# The vocabulary here is trained in a second on six German sentences, so it knows whole words for
# what it saw often and single letters for the rest. The real XLM-R vocabulary (250k pieces over
# 100 languages) and the mini's (16k, `python train.py configs/mini_pretrain.yaml`) split
# real text the same way, with more and longer pieces.
#
# Shapes: T subword positions of a window, W words of a sentence.

# %%
from _common import pyplot, save_figure  # docs/book/_common.py: also puts the repository root on sys.path

from data.tokenizer import XLMRTokenizer

CORPUS = """Der Bürgermeister von Berlin spricht mit der Bürgermeisterin von Hamburg .
Die Bürger der Stadt wählen den Stadtrat und die Stadträtin im Rathaus .
Der Berliner Senat und der Hamburger Senat treffen sich in der Hauptstadt .
Angela Merkel besucht das Rathaus in Paris und die Rathäuser in Frankreich .
Die Journalisten der Zeitung schreiben über den Besuch der Bürgermeister .
Die Zeitungen berichten über die Stadtratswahl und die Bürgermeisterwahl in Berlin .""".splitlines()

# a unigram model, as XLM-R's; vocab_size counts XLM-R ids, and sentencepiece stops early when the
# text has no more pieces worth keeping
tokenizer = XLMRTokenizer.train(CORPUS * 20, vocab_size=90, out_dir=None)
print("vocabulary:", tokenizer.vocab_size, "ids")
print(tokenizer.convert_ids_to_tokens(tokenizer.encode(CORPUS[2], add_special_tokens=False)))

# %% [markdown]
# ## 1. Pieces and ids
#
# `▁` (U+2581) marks a piece that starts a word: sentencepiece turns spaces into it, so
# `decode` can put the spaces back. Frequent words are one piece (`▁Bürgermeister`); rarer ones
# are built from parts (`▁Hamburg` + `er`), and a letter the model never kept as a piece of its
# own becomes `<unk>`.
#
# XLM-R's ids are sentencepiece's shifted by one (a fairseq heritage): ids 0-3 are `<s>`,
# `<pad>`, `</s>`, `<unk>`, then spm id i is XLM-R id i + 1, except that spm's own `<unk>` (0)
# is XLM-R's 3. `<mask>` comes last. Naively, by hand:

# %%
text = "Die Hamburgerin besucht Köln ."
spm_ids = tokenizer.sp.encode(text)                                      # sentencepiece's own ids
naive = [tokenizer.bos_id] + [tokenizer.unk_id if i == 0 else i + 1 for i in spm_ids] + [tokenizer.eos_id]
library = tokenizer.encode(text)                                         # (T,) with <s> and </s>
print("spm ids  ", spm_ids)
print("XLM-R ids", library)
print("pieces   ", tokenizer.convert_ids_to_tokens(library))
print("decoded  ", tokenizer.decode(library))                            # <unk> is lost: the vocabulary has no piece for 'K' or 'ö'
assert naive == library
print("<mask> is id", tokenizer.mask_id, "=", tokenizer.vocab_size - 1)

# %% [markdown]
# ## 2. Which word does each piece come from?
#
# A CoNLL file gives words already split. Each word is encoded as if a space came before it, and
# every piece remembers the index of its word. Naively: one tokenizer call per word.

# %%
words = ["Die", "Bürgermeisterin", "von", "Hamburg", "besucht", "die", "Hamburger", "Stadträtin", "."]
tags = ["O", "O", "O", "B-LOC", "O", "O", "B-MISC", "O", "O"]

naive_ids, naive_index = [], []
for w, word in enumerate(words):
    ids = tokenizer.encode(word, add_special_tokens=False)
    naive_ids += ids
    naive_index += [w] * len(ids)

piece_ids, word_index = tokenizer.encode_words(words)  # one batched call, no <s> </s>
assert (piece_ids, word_index) == (naive_ids, naive_index)
pieces = tokenizer.convert_ids_to_tokens(piece_ids)
for w, word in enumerate(words):
    print(f"{word:>16} -> {[p for p, i in zip(pieces, word_index) if i == w]}")

# %% [markdown]
# ## 3. The first-piece mask and labels on first pieces
#
# A word gets exactly one prediction: the one at its first piece. So its label goes on its first
# piece, and every other piece gets `-100` (`IGNORE_INDEX`), which the loss skips. A piece is a
# first piece when it starts the sentence or its word differs from the previous piece's.
# `data/windows.py` does this and adds `<s>` and `</s>` (both unlabelled).

# %%
from data.labels import IGNORE_INDEX, build_label_set
from data.conll import Sentence
from data.windows import build_windows

labels = build_label_set(["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC"])
first_piece = [j == 0 or word_index[j - 1] != word_index[j] for j in range(len(piece_ids))]  # (T - 2,)
naive_labels = [labels.id(tags[w]) if first else IGNORE_INDEX for w, first in zip(word_index, first_piece)]

(window,) = build_windows([Sentence(words, tags)], tokenizer, labels, max_length=128, stride=32)
print("window length T =", len(window), "=", len(piece_ids), "pieces + <s> + </s>")
assert window.input_ids == [tokenizer.bos_id] + piece_ids + [tokenizer.eos_id]
assert window.labels == [IGNORE_INDEX] + naive_labels + [IGNORE_INDEX]
assert window.word_ids == [-1] + [w if first else -1 for w, first in zip(word_index, first_piece)] + [-1]
for p, lab in zip(tokenizer.convert_ids_to_tokens(window.input_ids), window.labels):
    print(f"{p:>14} {labels.tag(lab) if lab != IGNORE_INDEX else '-100'}")

# %% [markdown]
# ## 4. What happens to a long word, and to a word with no piece
#
# A long word the vocabulary never saw costs many pieces, down to single letters, but still one
# label and one prediction. A "word" that sentencepiece turns into nothing (an empty string, a
# zero-width space) would have no piece to carry its label; `align_pieces` gives it `<unk>`, so
# that every word is predicted.

# %%
from data.windows import align_pieces

long_words = ["Bürgermeisterwahlkampf", "\u200b", "Hamburg"]
ids, index = tokenizer.encode_words(long_words)
print("encode_words:", tokenizer.convert_ids_to_tokens(ids), index)      # word 1 has no piece
ids, index = align_pieces(tokenizer, long_words)
print("align_pieces:", tokenizer.convert_ids_to_tokens(ids), index)      # word 1 is <unk>
assert sorted(set(index)) == [0, 1, 2] and index.count(0) > 5

# %% [markdown]
# ## 5. Windows over a long sentence
#
# The encoder reads at most `max_length` positions (512 for XLM-R; the NER configs use 128 for
# speed). A longer sentence is cut into windows of `max_length - 2` pieces that overlap by
# `stride` pieces, so that a word near a cut still sees context on both sides in *some* window.
# Each word is owned by one window only, the one in which its first piece is farthest from an edge;
# only that window labels it in training and predicts it at test time, and `stitch` puts the
# predictions of all windows back into one per word.

# %%
from data.windows import stitch

long_sentence = Sentence(words * 3, tags * 3)                             # W = 27 words
windows = build_windows([long_sentence], tokenizer, labels, max_length=16, stride=3)
n_pieces = len(tokenizer.encode_words(long_sentence.words)[0])
print(f"{len(long_sentence.words)} words, {n_pieces} pieces -> {len(windows)} windows of at most 14 pieces")
for k, win in enumerate(windows):
    owned = [w for w in win.word_ids if w >= 0]
    print(f"window {k}: T = {len(win):2d}, owns words {owned[0]}..{owned[-1]}")

# every position of every window "predicts" its word's index: stitch must give back 0, 1, ..., W - 1
(per_word,) = stitch(windows, [win.word_ids for win in windows], [len(long_sentence.words)])
assert per_word == list(range(len(long_sentence.words)))

# %% [markdown]
# The windows as a picture: one row per window, one column per piece of the sentence. Dark
# cells are the first pieces a window owns (where it is trained and read); light cells are
# context it sees but does not predict.

# %%
import numpy as np

from data.windows import window_spans

spans = window_spans(n_pieces, max_length=16, stride=3)
grid = np.zeros((len(windows), n_pieces))                                 # (windows, pieces)
for k, ((start, end), win) in enumerate(zip(spans, windows)):
    grid[k, start:end] = 1                                                # seen
    grid[k, start:end][np.array(win.word_ids[1:-1]) >= 0] = 2             # owned first pieces
plt = pyplot()
fig, ax = plt.subplots(figsize=(11, 2.2))
ax.imshow(grid, cmap="Blues", aspect="auto", vmin=0, vmax=2)
ax.set_xlabel("piece of the sentence")
ax.set_ylabel("window")
ax.set_yticks(range(len(windows)))
ax.set_title("windows of 14 pieces, stride 3: seen (light) and owned first pieces (dark)")
save_figure(fig, "01_windows.png")

# %% [markdown]
# ## Exercises
#
# 1. `build_windows(..., label_all_pieces=True)` labels every piece of a word, not only the first:
#    the first piece keeps the word's tag and the others get the tag with `B-` turned into `I-`
#    (when that tag exists). Write the label row of a window yourself, from `word_index` and the
#    tags, and check it against the library for the nine-word sentence above.
# 2. Which window owns each word of `long_sentence`? Compute it from `window_spans` and the rule
#    "the window in which the word's first piece is farthest from an edge, the first on a tie",
#    without `build_windows`, and check it against each window's `word_ids`.
