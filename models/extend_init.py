"""New vocabulary rows initialised from static piece vectors: WECHSEL- and FOCUS-style rules.

    mix = mix_rows(new_vecs, anchor_vecs, anchor_ids, weight, bias, k=10, temperature=0.1, rule="softmax")
    ids, vecs = piece_vectors(tokenizer, sentences, dim=100, epochs=5)   # skip-gram over piece ids
    report = grow_from_vectors(model, base_tok, grown_tok, "wechsel", target_text, base_text, pairs)
    report = grow_from_vectors(model, base_tok, grown_tok, "focus", target_text)

Legend: N new pieces, A anchors (base pieces with a static vector), V base vocabulary, H hidden,
d static vector size, k anchors per new row, P dictionary pairs, C rows per chunk.

Both rules write new piece i as a convex mix of base embedding rows E[j], and its MLM decoder
bias as the same mix of the base biases b[j]:

    e_i = sum_{j in top_k(i)} w_ij E[j]      b_i = sum_{j in top_k(i)} w_ij b[j]      sum_j w_ij = 1, w_ij >= 0

where top_k(i) are the k anchors with the highest cosine c_ij = cos(t_i, s_j) of static vectors.

- ``wechsel`` (Minixhofer et al. 2022): t_i is new piece i's vector from skip-gram on the target
  text segmented by the grown tokenizer, mapped by an orthogonal W into the space of s_j, base
  piece j's vector from skip-gram on the base-language text segmented by the base tokenizer.
  W is Procrustes (models/mapping.py) on a bilingual dictionary, a word's vector being the mean of
  its pieces' vectors. w_i = softmax(c_i / tau) over the top k (WECHSEL's k = 10, tau = 0.1).
- ``focus`` (Dobler & de Melo 2023): no dictionary and one space: t_i and s_j both come from
  skip-gram on the target text segmented by the grown tokenizer; the anchors are the base pieces
  that occur in it. w_i = sparsemax(c_i) over the top k. Sparsemax's support is a run of the
  highest scores, so over the top k it equals sparsemax over all anchors whenever fewer than k
  anchors get weight; the report counts the rows whose support reached k (``rows_at_k``).

sparsemax(z) is the Euclidean projection of z onto the probability simplex (Martins & Astudillo
2016): p_j = max(z_j - tau(z), 0) with tau(z) the threshold that makes p sum to one, so a clear
winner gets all the weight (a new piece whose vector equals an anchor's, the others orthogonal,
gets exactly that anchor's row). The lone ``▁`` is never an anchor (it precedes every word of every
script). A new piece with no static vector (seen fewer than ``min_count`` times in the target
text), and every new piece when no anchor has a vector, gets the ``gaussian`` draw of
models/extend.py and the mean base bias.
The rows go through ``grow_vocabulary(init="rows")``: every old row stays bit-identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from data.word_vectors import center_and_normalize, train_sgns
from models.csls import chunk_rows, normalize
from models.extend import (_lm_heads, base_statistics, fill_gaussian, gaussian_factor, grow_vocabulary,
                           informative_piece, mean_base_bias, word_embeddings)
from models.mapping import procrustes

RULES = ("wechsel", "focus")


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Projection of z onto the probability simplex along ``dim`` (same shape as z)."""
    z = z.transpose(dim, -1)
    ordered = z.sort(dim=-1, descending=True).values  # (..., n)
    cumulative = ordered.cumsum(-1)  # (..., n)
    rank = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)  # (n,)
    size = (1 + rank * ordered > cumulative).sum(-1, keepdim=True)  # (..., 1) support size, >= 1
    tau = (cumulative.gather(-1, size - 1) - 1) / size.to(z.dtype)  # (..., 1)
    return (z - tau).clamp_min(0).transpose(dim, -1)


@dataclass
class Mix:
    rows: torch.Tensor  # (N, H) in the base weight's dtype
    bias: torch.Tensor  # (N,) fp64
    weights: torch.Tensor  # (N, k) fp64, each row sums to one
    anchors: torch.Tensor  # (N, k) base ids the weights refer to


@torch.no_grad()
def mix_rows(new_vectors: torch.Tensor, anchor_vectors: torch.Tensor, anchor_ids: torch.Tensor,
             weight: torch.Tensor, bias: torch.Tensor | None, k: int = 10, temperature: float = 0.1,
             rule: str = "softmax", chunk: int = 0, memory_mb: float = 256) -> Mix:
    """Rows for new vectors (N, d) as the ``rule`` ("softmax" of cos / temperature, or "sparsemax" of
    cos / temperature) weighted mix of the base rows ``weight[anchor_ids]`` of the k anchors (A, d)
    with the highest cosine; the bias the same mix of ``bias`` (V,) (0 when None). ``chunk`` new rows
    at a time (0: as many as keep a (C, A) block of cosines within ``memory_mb``)."""
    if rule not in ("softmax", "sparsemax"):
        raise ValueError(f"rule must be softmax or sparsemax, got {rule!r}")
    if temperature <= 0 or k < 1 or len(anchor_ids) == 0:
        raise ValueError(f"need temperature > 0, k >= 1 and anchors (got {temperature}, {k}, {len(anchor_ids)})")
    k = min(k, len(anchor_ids))
    t, s = normalize(new_vectors.float()), normalize(anchor_vectors.float())  # (N, d), (A, d)
    chunk = chunk or chunk_rows(len(s), memory_mb, copies=2)
    rows, biases, weights, anchors = [], [], [], []
    for lo in range(0, len(t), chunk):
        top = (t[lo:lo + chunk] @ s.T).topk(k, dim=1)  # (C, k) values and indices into the anchors
        scores = top.values.double() / temperature  # (C, k)
        w = scores.softmax(1) if rule == "softmax" else sparsemax(scores, 1)  # (C, k)
        ids = anchor_ids[top.indices]  # (C, k) base ids
        rows.append(torch.einsum("ck,ckh->ch", w, weight[ids].double()).to(weight.dtype))  # (C, H)
        biases.append((w * bias[ids].double()).sum(1) if bias is not None else torch.zeros(len(w), dtype=torch.float64))
        weights.append(w)
        anchors.append(ids)
    H = weight.shape[1]
    if not rows:
        return Mix(weight.new_zeros(0, H), torch.zeros(0, dtype=torch.float64),
                   torch.zeros(0, k, dtype=torch.float64), torch.zeros(0, k, dtype=torch.long))
    return Mix(torch.cat(rows), torch.cat(biases), torch.cat(weights), torch.cat(anchors))


def piece_vectors(tokenizer, sentences: list[str], dim: int = 100, epochs: int = 5, min_count: int = 2,
                  seed: int = 0, sample: float = 1e-4, log=print) -> tuple[list[int], torch.Tensor]:
    """(piece ids, (n, d) vectors, unit length and centred): skip-gram (data/word_vectors.py) over the
    sentences segmented by ``tokenizer``, each piece id one word (``sample``: word2vec's subsampling
    of frequent pieces; 0 keeps all, which a small text needs)."""
    corpus = [[str(i) for i in ids] for ids in tokenizer.encode_batch(sentences)]
    vectors = train_sgns(corpus, dim=dim, epochs=epochs, min_count=min_count, seed=seed, sample=sample, log=log)
    if not torch.isfinite(vectors.matrix).all():  # batched updates of a piece frequent within one batch
        raise ValueError(f"the skip-gram piece vectors of {len(sentences)} sentences came out non-finite: "
                         "give more text (or keep the subsampling of frequent pieces on)")
    return [int(w) for w in vectors.words], center_and_normalize(vectors.matrix)


def word_vectors(tokenizer, words: list[str], ids: list[int], matrix: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """(indices of the words that have one, (n, d)) a word's vector = the mean of its pieces' vectors."""
    row = {i: r for r, i in enumerate(ids)}
    kept, out = [], []
    for w, pieces in enumerate(tokenizer.encode_batch(words)):
        found = [row[i] for i in pieces if i in row]
        if found:
            kept.append(w)
            out.append(matrix[found].mean(0))
    return kept, torch.stack(out) if out else matrix.new_zeros(0, matrix.shape[1])


def dictionary_map(base_tok, grown_tok, base_vectors, target_vectors, pairs: list[tuple[str, str]]):
    """(W (d, d) with target @ W ~ base, pairs used): Procrustes on the dictionary pairs (base-language
    word, target word) whose words both have a vector."""
    src_kept, src = word_vectors(base_tok, [s for s, _ in pairs], *base_vectors)
    tgt_kept, tgt = word_vectors(grown_tok, [t for _, t in pairs], *target_vectors)
    both = sorted(set(src_kept) & set(tgt_kept))
    if not both:
        raise ValueError(f"none of the {len(pairs)} dictionary pairs has both words in the texts' piece vectors")
    src_row, tgt_row = {w: r for r, w in enumerate(src_kept)}, {w: r for r, w in enumerate(tgt_kept)}
    x = normalize(tgt[[tgt_row[w] for w in both]])  # (P, d)
    y = normalize(src[[src_row[w] for w in both]])  # (P, d)
    return procrustes(x, y), len(both)


def anchor_rows(ids: list[int], tokenizer, V: int) -> list[int]:
    """Indices into ``ids`` of ordinary base pieces: no specials, no <mask>, no new id, and not the
    lone ``▁`` (it stands before every word of every script, so it says nothing about a piece)."""
    return [r for r, i in enumerate(ids) if i < V and informative_piece(tokenizer, i)]


@torch.no_grad()
def grow_from_vectors(model: nn.Module, base_tok, grown_tok, rule: str, target_text: list[str],
                      base_text: list[str] | None = None, pairs: list[tuple[str, str]] | None = None, k: int = 10,
                      temperature: float = 0.1, dim: int = 100, epochs: int = 5, min_count: int = 2, seed: int = 0,
                      sample: float = 1e-4, generator: torch.Generator | None = None, log=print) -> dict:
    """Grow ``model`` to ``grown_tok`` with rows from the ``rule`` (``wechsel`` needs ``base_text``
    and dictionary ``pairs``; ``focus`` only the target text). Returns a report (counts and pairs used)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    embedding = word_embeddings(model).weight
    V, H = embedding.shape
    heads = _lm_heads(model)
    bias = heads[0].bias.detach() if heads else None
    n_new = grown_tok.vocab_size - V
    target_ids, target_matrix = piece_vectors(grown_tok, target_text, dim, epochs, min_count, seed, sample, log)
    report = {"rule": rule, "k": k, "target_pieces_with_vectors": len(target_ids)}
    if rule == "wechsel":
        if not base_text or not pairs:
            raise ValueError("wechsel needs base-language text and dictionary pairs")
        base_ids, base_matrix = piece_vectors(base_tok, base_text, dim, epochs, min_count, seed, sample, log)
        w, used = dictionary_map(base_tok, grown_tok, (base_ids, base_matrix), (target_ids, target_matrix), pairs)
        keep = anchor_rows(base_ids, base_tok, V)
        anchor_ids, anchor_vectors = torch.tensor([base_ids[r] for r in keep]), base_matrix[keep]  # (A,), (A, d)
        target_matrix = target_matrix @ w  # (n, d) into the base space
        report |= {"temperature": temperature, "dictionary_pairs": len(pairs), "dictionary_pairs_used": used}
        mix_rule = "softmax"
    else:
        keep = anchor_rows(target_ids, base_tok, V)
        anchor_ids, anchor_vectors = torch.tensor([target_ids[r] for r in keep]), target_matrix[keep]
        temperature, mix_rule = 1.0, "sparsemax"
    new = [(r, i - V) for r, i in enumerate(target_ids) if i >= V] if keep else []  # (vector row, new row)
    rows = torch.empty(n_new, H, dtype=embedding.dtype)  # (N, H)
    entries = torch.empty(n_new, dtype=torch.float64)  # (N,)
    placed = [j for _, j in new]
    support = torch.zeros(0, dtype=torch.long)  # (n,) anchors with weight, per placed row
    if new:
        mix = mix_rows(target_matrix[[r for r, _ in new]], anchor_vectors, anchor_ids, embedding.detach(), bias, k,
                       temperature, mix_rule)
        rows[placed], entries[placed] = mix.rows, mix.bias
        support = (mix.weights > 0).sum(1)
    missing = sorted(set(range(n_new)) - set(placed))
    if missing:  # no static vector: the gaussian rule's draw, in order (pinned by the generator)
        mean, cov = base_statistics(embedding.detach(), V)
        fill_gaussian(rows, missing, mean, gaussian_factor(cov), generator)
        entries[missing] = mean_base_bias(bias)
    report |= {"anchors": len(anchor_ids), "new_rows_from_vectors": len(placed), "new_rows_gaussian": len(missing),
               "mean_support": float(support.double().mean()) if len(support) else 0.0,
               "rows_at_k": int((support == min(k, len(anchor_ids))).sum())}
    grow_vocabulary(model, n_new, init="rows", init_rows=rows, init_bias=entries)
    return report
