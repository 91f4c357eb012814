"""fast_align's model (Dyer et al. 2013) trained by EM in torch, symmetrisation, AER, similarity alignment.

    aligner = FastAlign().fit(src_sents, tgt_sents)       # word lists; source generates target
    forward = aligner.align(src_sents, tgt_sents)         # [set of (i, j)]: each target word <= 1 source
    links = symmetrize(src_sents, tgt_sents, "intersect") # both directions, then intersection / grow-diag-final
    aer(links, gold_sure, gold_possible)
    align_corpus(src_sents, tgt_sents, progress=progress_printer("[align] en-de", 5))  # a line every 30 s

Legend: S sentence pairs, n source length, m target length, C cells (one per target word and candidate
source position, NULL included: sum over pairs of m * (n + 1)), P distinct (source word, target word) pairs.

The model (IBM Model 2 with a diagonal prior): target word j (1-based) of a pair of lengths (n, m) picks
source position a_j: NULL with probability p0, else i in 1..n with (1 - p0) exp(lambda h(i, j)) / Z_j,
h = -|i/n - j/m|; then emits f_j ~ t(f | e_a). EM (all pairs at once, flat tensors, no Python loop over
sentences): posteriors over the cells, expected counts scattered into the P translation entries,
t normalised per source word (with a Dirichlet prior, fast_align's -v: exp(digamma(c + alpha) -
digamma(sum))). The tension lambda follows the expected h by fast_align's gradient steps (-o): 8 steps
of lambda += 20 (E_post[h] - E_prior[h]) after every iteration from the second, clipped to [0.1, 14].
Like fast_align, the first iteration has uniform t (its table is uninitialised: 1e-9 everywhere), so it
sees the prior only; the last iteration is the Viterbi pass. One deviation: fast_align's posterior
feature uses the target index j - 1 (a known off-by-one); we use j on both sides.

Progress: fit() and align() take an optional ``progress(iteration, phase)`` callable, called after each
phase of the work on the whole corpus (there is no loop over sentences to count): "cells" (the corpus laid
out) and "e-step" in iteration 1, "e-step" and (with optimize_tension) "tension step k/8" in each later EM
iteration, "viterbi" in the last iteration (align()). align_both and align_corpus take
``progress(direction, iteration, phase)``, direction "forward" (source generates target) or "reverse";
progress_printer turns it into a line at most every 30 s. The callable only observes: the results are the same with and without it.
"""
from __future__ import annotations

import functools
import time
from typing import Callable

import torch

Link = tuple[int, int]
Progress = Callable[[int, str], None]  # (1-based iteration, phase) of one direction


class Vocab:
    """Word -> id (0, 1, ...), built as words are seen."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def encode(self, sentences: list[list[str]], grow: bool = True) -> list[list[int]]:
        out = []
        for sentence in sentences:
            row = []
            for word in sentence:
                if word not in self.ids:
                    if not grow:
                        raise KeyError(f"word {word!r} was not in the aligned corpus")
                    self.ids[word] = len(self.ids)
                row.append(self.ids[word])
            out.append(row)
        return out

    def __len__(self) -> int:
        return len(self.ids)


def build_cells(src_ids: list[list[int]], tgt_ids: list[list[int]]) -> dict[str, torch.Tensor]:
    """The flat cell layout of a corpus: per target token, its n + 1 candidate source positions.

    Returns e (C,) source word id (0 = NULL), f (C,) target word id, token (C,) global target-token index,
    pos (C,) source position 0..n (0 = NULL), tpos (C,) target position 1..m, feature (C,) h (0 at NULL),
    sent (M,) the pair of each target token.
    """
    n = torch.tensor([len(s) for s in src_ids])  # (S,)
    m = torch.tensor([len(t) for t in tgt_ids])  # (S,)
    if bool((n == 0).any() | (m == 0).any()):
        bad = int(torch.nonzero((n == 0) | (m == 0))[0])
        raise ValueError(f"pair {bad + 1} has an empty side; the aligner needs words on both sides")
    src_flat = torch.tensor([w for s in src_ids for w in s])  # (sum n,)
    tgt_flat = torch.tensor([w for t in tgt_ids for w in t])  # (M,)
    src_start = torch.cumsum(n, 0) - n  # (S,)
    tgt_start = torch.cumsum(m, 0) - m  # (S,)
    sent = torch.repeat_interleave(torch.arange(len(n)), m)  # (M,)
    tpos = torch.arange(len(tgt_flat)) - tgt_start[sent] + 1  # (M,) 1-based
    per_token = n[sent] + 1  # (M,) candidates per target token
    token = torch.repeat_interleave(torch.arange(len(tgt_flat)), per_token)  # (C,)
    pos = torch.arange(len(token)) - (torch.cumsum(per_token, 0) - per_token)[token]  # (C,) 0..n
    cell_sent = sent[token]  # (C,)
    src_index = (src_start[cell_sent] + pos - 1).clamp_min(0)  # (C,)
    e = torch.where(pos > 0, src_flat[src_index] + 1, torch.zeros_like(pos))  # (C,) +1: 0 is NULL
    feature = -(pos.double() / n[cell_sent] - tpos[token].double() / m[cell_sent]).abs()  # (C,) fp64
    feature = torch.where(pos > 0, feature, torch.zeros_like(feature))
    return {"e": e, "f": tgt_flat[token], "token": token, "pos": pos, "tpos": tpos[token],
            "feature": feature, "sent": sent}


def segment_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    return values.new_zeros(size).index_add_(0, index, values)


class FastAlign:
    """IBM Model 2 with fast_align's diagonal prior; fit() then align() on the same or new pairs."""

    def __init__(self, iterations: int = 5, p0: float = 0.08, tension: float = 4.0, optimize_tension: bool = True,
                 alpha: float = 0.01, variational_bayes: bool = True, dtype: torch.dtype = torch.float64):
        self.iterations, self.p0, self.tension = iterations, p0, tension
        self.optimize_tension, self.alpha, self.vb, self.dtype = optimize_tension, alpha, variational_bayes, dtype
        self.src_vocab, self.tgt_vocab = Vocab(), Vocab()
        self.table: dict[int, float] | None = None
        self.log_likelihood: list[float] = []

    # ---- the prior ---------------------------------------------------------------------------
    def prior(self, cells: dict, tension: float) -> torch.Tensor:
        """p(a_j = pos | j, n, m) per cell (C,): p0 at NULL, the normalised diagonal elsewhere."""
        real = cells["pos"] > 0  # (C,)
        weight = torch.where(real, torch.exp(tension * cells["feature"].to(self.dtype)), 0.0)  # (C,)
        z = segment_sum(weight, cells["token"], int(cells["token"][-1]) + 1)  # (M,)
        return torch.where(real, (1 - self.p0) * weight / z[cells["token"]], self.p0)  # (C,)

    def expected_prior_feature(self, cells: dict, tension: float) -> float:
        """Mean over target tokens of E_prior[h] over the real positions (fast_align's ComputeDLogZ)."""
        prior = self.prior(cells, tension)
        real_mass = torch.where(cells["pos"] > 0, prior, 0.0) / (1 - self.p0)
        return float((real_mass * cells["feature"]).sum()) / (int(cells["token"][-1]) + 1)

    # ---- EM ----------------------------------------------------------------------------------
    def fit(self, src: list[list[str]], tgt: list[list[str]], progress: Progress | None = None) -> "FastAlign":
        """EM over the corpus (source generates target). Keeps the table for align()."""
        report = progress or (lambda iteration, phase: None)
        cells = build_cells(self.src_vocab.encode(src), self.tgt_vocab.encode(tgt))
        report(1, "cells")
        key = cells["e"] * len(self.tgt_vocab) + cells["f"]  # (C,)
        keys, pair = torch.unique(key, return_inverse=True)  # (P,), (C,)
        pair_e = torch.div(keys, len(self.tgt_vocab), rounding_mode="floor")  # (P,)
        tokens = int(cells["token"][-1]) + 1
        t = torch.full((len(keys),), 1e-9, dtype=self.dtype)  # fast_align: first iteration uniform
        tension = self.tension
        for it in range(self.iterations - 1):  # the last iteration is align()'s Viterbi pass
            prob = t[pair] * self.prior(cells, tension)  # (C,)
            total = segment_sum(prob, cells["token"], tokens)  # (M,)
            post = prob / total[cells["token"]]  # (C,)
            self.log_likelihood.append(float(total.log().sum()))
            counts = segment_sum(post, pair, len(keys))  # (P,)
            report(it + 1, "e-step")
            if self.optimize_tension and it > 0:
                empirical = float((post * cells["feature"]).sum()) / tokens
                for step in range(8):
                    tension += (empirical - self.expected_prior_feature(cells, tension)) * 20.0
                    tension = min(max(tension, 0.1), 14.0)
                    report(it + 1, f"tension step {step + 1}/8")
            t = self.normalise(counts, pair_e)
        self.tension = tension
        self.keys, self.t = keys, t
        return self

    def normalise(self, counts: torch.Tensor, pair_e: torch.Tensor) -> torch.Tensor:
        size = int(pair_e.max()) + 1
        if not self.vb:
            total = segment_sum(counts, pair_e, size)  # (E,)
            return counts / total[pair_e].clamp_min(1e-300)
        total = segment_sum(counts + self.alpha, pair_e, size)  # (E,)
        return torch.exp(torch.digamma(counts + self.alpha) - torch.digamma(total[pair_e]))

    # ---- Viterbi -----------------------------------------------------------------------------
    def align(self, src: list[list[str]], tgt: list[list[str]], progress: Progress | None = None) -> list[set[Link]]:
        """Best source position per target word (NULL = unaligned); links (i, j) 0-based."""
        cells = build_cells(self.src_vocab.encode(src, grow=False), self.tgt_vocab.encode(tgt, grow=False))
        key = cells["e"] * len(self.tgt_vocab) + cells["f"]  # (C,)
        slot = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)  # (C,)
        known = self.keys[slot] == key
        prob = torch.where(known, self.t[slot], 1e-9) * self.prior(cells, self.tension)  # (C,)
        tokens = int(cells["token"][-1]) + 1
        best = torch.full((tokens,), -1.0, dtype=prob.dtype).scatter_reduce(0, cells["token"], prob, "amax")
        is_best = prob == best[cells["token"]]  # (C,)
        big = torch.full((tokens,), len(prob), dtype=torch.long)
        first = big.scatter_reduce(0, cells["token"][is_best], torch.nonzero(is_best).squeeze(1), "amin")  # (M,)
        pos, tpos = cells["pos"][first], cells["tpos"][first]  # (M,)
        links: list[set[Link]] = [set() for _ in src]
        for s, i, j in zip(cells["sent"].tolist(), pos.tolist(), tpos.tolist()):
            if i > 0:
                links[s].add((i - 1, j - 1))
        if progress is not None:
            progress(self.iterations, "viterbi")
        return links


def align_both(src, tgt, progress: Callable[[str, int, str], None] | None = None,
               **options) -> tuple[list[set[Link]], list[set[Link]]]:
    """(forward, reverse) Viterbi links, both as (source i, target j); each direction is its own model.
    progress(direction, iteration, phase), if given, is called after each phase (module docstring)."""
    def fit_align(direction, src, tgt):
        report = functools.partial(progress, direction) if progress is not None else None
        return FastAlign(**options).fit(src, tgt, report).align(src, tgt, report)

    forward = fit_align("forward", src, tgt)
    backward = fit_align("reverse", tgt, src)
    return forward, [{(i, j) for j, i in links} for links in backward]


def progress_printer(prefix: str, iterations: int, every: float = 30.0,
                     print_fn: Callable[[str], None] = functools.partial(print, flush=True),
                     clock: Callable[[], float] = time.monotonic) -> Callable[[str, int, str], None]:
    """A progress(direction, iteration, phase) for align_both / align_corpus that prints a line when at least
    ``every`` seconds have passed since the last one (or since it was made): a long run shows where it is,
    a short one stays quiet."""
    started = last = clock()

    def progress(direction: str, iteration: int, phase: str) -> None:
        nonlocal last
        now = clock()
        if now - last >= every:
            last = now
            print_fn(f"{prefix} {direction} iteration {iteration}/{iterations}: {phase} ({now - started:.0f} s)")
    return progress


# ---- symmetrisation and filters ---------------------------------------------------------------
NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def grow_diag_final(forward: set[Link], reverse: set[Link]) -> set[Link]:
    """Koehn's grow-diag-final as in fast_align's atools: start from the intersection, add union links
    next to an alignment point (8 neighbours) while one end is unaligned, then any directional link
    with an unaligned end."""
    links = forward & reverse
    union = forward | reverse
    src_done = {i for i, _ in links}
    tgt_done = {j for _, j in links}

    def add(i, j):
        links.add((i, j))
        src_done.add(i)
        tgt_done.add(j)

    pending = sorted(union - links)
    grew = True
    while grew:
        grew = False
        added = []
        for i, j in pending:
            one_free = i not in src_done or j not in tgt_done
            if one_free and any((i + di, j + dj) in links for di, dj in NEIGHBOURS):
                add(i, j)
                added.append((i, j))
                grew = True
        pending = [p for p in pending if p not in set(added)]
    for direction in (forward, reverse):
        for i, j in sorted(direction):
            if (i, j) not in links and (i not in src_done or j not in tgt_done):
                add(i, j)
    return links


def one_to_one(links: set[Link]) -> set[Link]:
    """Keep the links whose two words have no other link."""
    src_degree, tgt_degree = {}, {}
    for i, j in links:
        src_degree[i] = src_degree.get(i, 0) + 1
        tgt_degree[j] = tgt_degree.get(j, 0) + 1
    return {(i, j) for i, j in links if src_degree[i] == 1 and tgt_degree[j] == 1}


def symmetrize(forward: list[set[Link]], reverse: list[set[Link]], method: str = "intersect") -> list[set[Link]]:
    if method == "intersect":
        return [a & b for a, b in zip(forward, reverse)]
    if method == "grow-diag-final":
        return [grow_diag_final(a, b) for a, b in zip(forward, reverse)]
    if method == "union":
        return [a | b for a, b in zip(forward, reverse)]
    raise ValueError(f"method must be intersect, grow-diag-final or union, got {method!r}")


def aer(predicted: list[set[Link]], sure: list[set[Link]], possible: list[set[Link]]) -> dict[str, float]:
    """Alignment error rate (Och & Ney 2003): 1 - (|A & S| + |A & P|) / (|A| + |S|), P includes S;
    with precision (against P) and recall (against S), over the whole corpus."""
    a = sum(len(p) for p in predicted)
    s = sum(len(x) for x in sure)
    a_s = sum(len(p & x) for p, x in zip(predicted, sure))
    a_p = sum(len(p & (x | y)) for p, x, y in zip(predicted, possible, sure))
    return {"aer": 1 - (a_s + a_p) / max(a + s, 1), "precision": a_p / max(a, 1), "recall": a_s / max(s, 1),
            "links": a}


def similarity_align(similarity: torch.Tensor) -> set[Link]:
    """SimAlign's argmax: (i, j) where j is i's best target and i is j's best source. similarity (n, m)."""
    if similarity.numel() == 0:
        return set()
    row_best = similarity.argmax(1)  # (n,)
    col_best = similarity.argmax(0)  # (m,)
    return {(i, j) for i, j in enumerate(row_best.tolist()) if col_best[j] == i}


def align_corpus(src: list[list[str]], tgt: list[list[str]], method: str = "intersect", iterations: int = 5,
                 lowercase: bool = True, keep_one_to_one: bool = True,
                 progress: Callable[[str, int, str], None] | None = None) -> list[set[Link]]:
    """The paper's recipe in one call: both directions, symmetrised, 1-to-1 links kept (lower-cased words).
    progress(direction, iteration, phase) as in align_both, e.g. progress_printer(...)."""
    if lowercase:
        src = [[w.lower() for w in s] for s in src]
        tgt = [[w.lower() for w in t] for t in tgt]
    forward, reverse = align_both(src, tgt, progress, iterations=iterations)
    links = symmetrize(forward, reverse, method)
    return [one_to_one(l) for l in links] if keep_one_to_one else links
