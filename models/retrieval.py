"""Contextual word vectors per layer, and contextual word retrieval over word-aligned parallel text.

    states = layer_states(encoder, input_ids, attention_mask)           # L + 1 tensors (B, T, H)
    vecs = word_vectors(encoder, tokenizer, sentences, layers=[0, 4])  # {layer: [(W_s, H) per sentence]}
    pairs = aligned_pairs(links)                                        # [(sentence, i, j)] 1-to-1 links
    acc = retrieval_accuracy(src_vecs, tgt_vecs, pairs)                 # CSLS and NN, both directions

Legend: B batch, T subword positions, H hidden, W words of a sentence, L layers, Q aligned word pairs.

Cao et al. (2020), section 4: each aligned source word instance is a query; the candidates are every
aligned target word instance of the same corpus (contextual vectors, so two "the" are two candidates);
a query is right when its nearest candidate is the instance it is aligned to. With 1-to-1 links,
queries and candidates are in bijection: query q's answer is candidate q. A word vector is the pool
(mean, or the first/last piece) of its pieces at one layer (layer 0 = the embedding output); the
special tokens <s> and </s> are encoded but never pooled or counted; a word whose pieces were cut by
``max_pieces`` (or that has none) is left out and counted in ``skipped``. Rows are normalised one by
one; CSLS (k = 10) and plain cosine nearest neighbours come from models/csls.py, which holds only a
chunk of similarities at a time (its memory_mb), so memory is O(Q x H) for the vectors plus that chunk.
"""
from __future__ import annotations

import torch

from models.csls import cosine_topk, csls_topk, normalize
from models.encoder import XLMREncoder

POOLINGS = ("mean", "first", "last")

# Closed-class words (articles, pronouns, prepositions, conjunctions, auxiliaries, particles), lower case.
# A small hand list per language approximating the paper's part-of-speech split; every other word,
# punctuation excluded, counts as open class. Punctuation is its own class ("punct").
FUNCTION_WORDS = {
    "en": set("""a an the this that these those some any each every no and or but nor so if because as than
        of in on at to from by with for about into onto over under after before between through during
        without within up down out off i you he she it we they me him her us them my your his its our their
        mine yours who whom whose which what where when how there here is are was were be been being am
        has have had do does did will would shall should can could may might must not 's n't""".split()),
    "de": set("""der die das den dem des ein eine einen einem einer eines kein keine keinen keinem keiner
        dieser diese dieses diesen diesem jeder jede jedes jeden jedem und oder aber sondern denn weil dass
        ob wenn als wie in im ins an am ans auf aus bei beim mit nach von vom zu zum zur über unter vor
        hinter neben zwischen durch für gegen ohne um bis seit während ich du er sie es wir ihr mich dich
        sich uns euch ihn ihm ihnen mir dir mein meine dein deine sein seine ihre unser unsere euer wer was
        wo wann welche welcher welches ist sind war waren bin bist sein gewesen hat haben hatte hatten wird
        werden wurde wurden kann können muss müssen soll sollen will wollen darf nicht auch noch schon
        nur sehr zu da dort hier""".split()),
    "fr": set("""le la les l' un une des du de d' au aux ce cet cette ces mon ma mes ton ta tes son sa ses notre
        nos votre vos leur leurs et ou mais donc car ni que qu' si comme quand à dans en sur sous par pour
        avec sans entre vers chez avant après pendant depuis contre je tu il elle on nous vous ils elles me
        te se lui eux moi toi y qui quoi dont où est sont était étaient être été a ont avait avaient avoir
        fait va vont peut peuvent doit ne n' pas plus très aussi c' j' s' m' t'""".split()),
}


def layer_states(encoder: XLMREncoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """The output of the embeddings and of every block: L + 1 tensors (B, T, H) (pads not zeroed).

    Runs the encoder's own modules in order on the padded layout; the last entry equals
    ``encoder(input_ids, attention_mask)`` at the real positions (tests/test_retrieval.py)."""
    mask = attention_mask.bool()  # (B, T)
    key_mask = None if bool(mask.all()) else mask[:, None, None, :]  # (B, 1, 1, T)
    x = encoder.embeddings(input_ids)  # (B, T, H)
    states = [x]
    for layer in encoder.layers:
        x = layer(x, key_mask)  # (B, T, H)
        states.append(x)
    return states


def pool_words(states: torch.Tensor, word_index: torch.Tensor, num_words: int, pooling: str = "mean") -> torch.Tensor:
    """Word vectors (W, H) from piece vectors (P, H) and each piece's word (P,); a word without
    pieces gets a zero row (callers drop it)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    H = states.shape[1]
    if pooling == "mean":
        sums = states.new_zeros(num_words, H).index_add_(0, word_index, states)  # (W, H)
        counts = torch.bincount(word_index, minlength=num_words).clamp_min(1)  # (W,)
        return sums / counts[:, None].to(states.dtype)
    order = torch.arange(len(word_index))
    if pooling == "first":  # the smallest piece position of each word
        pick = torch.full((num_words,), len(word_index), dtype=torch.long).scatter_reduce(0, word_index, order, "amin")
    else:
        pick = torch.full((num_words,), -1, dtype=torch.long).scatter_reduce(0, word_index, order, "amax")
    out = states.new_zeros(num_words, H)
    have = (pick >= 0) & (pick < len(word_index))
    out[have] = states[pick[have]]
    return out


@torch.no_grad()
def word_vectors(encoder: XLMREncoder, tokenizer, sentences: list[list[str]], layers: list[int],
                 pooling: str = "mean", batch_size: int = 32, max_pieces: int = 254,
                 dtype: torch.dtype = torch.float32) -> tuple[dict[int, list[torch.Tensor]], list[torch.Tensor]]:
    """({layer: [(W_s, H) per sentence]}, [(W_s,) bool per sentence: the word has a vector]).

    Sentences are encoded in length-sorted batches as <s> pieces </s>; at most ``max_pieces`` pieces
    a sentence (the words past the cut have no vector). Vectors are stored in ``dtype`` (fp16 halves
    the memory of a large pool)."""
    encoder.eval()
    encoded = []
    for words in sentences:
        ids, word_index = tokenizer.encode_words(words)
        encoded.append((ids[:max_pieces], word_index[:max_pieces]))
    out = {layer: [None] * len(sentences) for layer in layers}
    valid = [None] * len(sentences)
    order = sorted(range(len(sentences)), key=lambda s: len(encoded[s][0]))
    for lo in range(0, len(order), batch_size):
        batch = order[lo:lo + batch_size]
        T = max(len(encoded[s][0]) for s in batch) + 2
        input_ids = torch.full((len(batch), T), tokenizer.pad_id, dtype=torch.long)  # (B, T)
        for b, s in enumerate(batch):
            ids = encoded[s][0]
            input_ids[b, :len(ids) + 2] = torch.tensor([tokenizer.bos_id, *ids, tokenizer.eos_id])
        mask = input_ids.ne(tokenizer.pad_id)  # (B, T)
        states = layer_states(encoder, input_ids, mask)
        for b, s in enumerate(batch):
            ids, word_index = encoded[s]
            index = torch.tensor(word_index, dtype=torch.long)  # (P,)
            num_words = len(sentences[s])
            valid[s] = torch.bincount(index, minlength=num_words) > 0 if len(index) else torch.zeros(num_words, dtype=torch.bool)
            for layer in layers:
                pieces = states[layer][b, 1:len(ids) + 1].float()  # (P, H): <s> and </s> left out
                out[layer][s] = pool_words(pieces, index, num_words, pooling).to(dtype)  # (W, H)
    return out, valid


def aligned_pairs(links: list[set[tuple[int, int]]], src_valid=None, tgt_valid=None) -> list[tuple[int, int, int]]:
    """(sentence, i, j) for every link whose two words both have a vector, in a fixed order."""
    pairs = []
    for s, sentence_links in enumerate(links):
        for i, j in sorted(sentence_links):
            if src_valid is not None and not (bool(src_valid[s][i]) and bool(tgt_valid[s][j])):
                continue
            pairs.append((s, i, j))
    return pairs


def gather(vectors: list[torch.Tensor], pairs: list[tuple[int, int, int]], side: int) -> torch.Tensor:
    """(Q, H) rows normalised one by one: the source (side 1) or target (side 2) word of each pair."""
    rows = torch.stack([vectors[p[0]][p[side]] for p in pairs]) if pairs else torch.zeros(0, 1)  # (Q, H)
    return normalize(rows.float())


def word_class(word: str, lang: str) -> str:
    """"closed" (in FUNCTION_WORDS[lang]), "punct" (no letter or digit), else "open"."""
    if not any(ch.isalnum() for ch in word):
        return "punct"
    return "closed" if word.lower() in FUNCTION_WORDS.get(lang, ()) else "open"


def retrieval_accuracy(src_vectors: list[torch.Tensor], tgt_vectors: list[torch.Tensor],
                       pairs: list[tuple[int, int, int]], k: int = 10, memory_mb: float = 256,
                       src_classes: list[str] | None = None, tgt_classes: list[str] | None = None) -> dict:
    """Accuracy@1 of CSLS and cosine NN, source->target and target->source, over the Q aligned pairs.

    src_classes / tgt_classes (Q,): a class per query word; adds "<method>_<dir>_<class>" entries."""
    src, tgt = gather(src_vectors, pairs, 1), gather(tgt_vectors, pairs, 2)  # (Q, H) each
    answer = torch.arange(len(pairs))  # (Q,): query q's answer is candidate q
    out: dict = {"queries": len(pairs)}
    for direction, queries, candidates, classes in (("s2t", src, tgt, src_classes), ("t2s", tgt, src, tgt_classes)):
        for method in ("csls", "nn"):
            if method == "csls":
                _, top = csls_topk(queries, candidates, topk=1, k=k, memory_mb=memory_mb)  # (Q, 1)
            else:
                _, top = cosine_topk(queries, candidates, topk=1, memory_mb=memory_mb)  # (Q, 1)
            hit = top[:, 0] == answer  # (Q,)
            out[f"{method}_{direction}"] = float(hit.float().mean()) if len(pairs) else 0.0
            for name in sorted(set(classes or ())):
                chosen = torch.tensor([c == name for c in classes])
                out[f"{method}_{direction}_{name}"] = float(hit[chosen].float().mean())
                out[f"n_{direction}_{name}"] = int(chosen.sum())
    return out
