"""CSLS by candidate search (``kernels="fast"`` of models/csls.py): the reference's results, fast.

    r_src, r_tgt = csls_neighbourhoods(src, tgt, k=10)
    scores, idx = csls_topk(src, tgt, topk=5, k=10)          # (Nq, 5) each
    scores, idx = cosine_topk(src, tgt, topk=5)

Legend: S source words, T target words (here not subword positions), C rows per chunk, d dim,
M candidates kept per source row, K per target column.

cos(x, y) on unit vectors; r_src[i] = mean cosine of source i to its k nearest targets,
r_tgt[j] = mean cosine of target j to its k nearest sources; CSLS(i, j) = 2 cos - r_src[i] - r_tgt[j].
A hub (a target close to everything) has a large r_tgt and is pushed down.

How it is fast and still exact (every returned score is an fp32 score of the pair):

1. **Candidates from a cheap product.** Only C x T similarities exist at a time. Where the CPU
   multiplies bf16 natively (core.precision.cpu_supports_bf16) the chunk product runs in bf16
   (~2.5x an fp32 one here), else in fp32. Nothing is sorted over a whole row or column: a row's
   M best lie in its M best *blocks* (targets grouped by index modulo b; each block's max is one
   vectorised reduction), a column's in the row blocks whose max beats the column's running
   (K+1)-th best (few after the first chunks). So one pass gives each source row its M
   candidate targets and each target column its K candidate sources.
2. **Exact re-scoring.** The candidates are re-scored in fp32 (a gather and a small batched
   product), and r_src, r_tgt and the retrieval are computed from those exact scores.
3. **A proof, row by row, that nothing was missed.** Every non-candidate's approximate score is
   <= a known tau, and the approximation error is bounded (rounding of the inputs to bf16 by
   Cauchy-Schwarz, fp32 accumulation, bf16 rounding of the output: ``_error_bound``). When
   tau + bound is below the k-th (or topk-th) exact candidate score, the exact answer is among
   the candidates. A row or column where it is not (rare) is recomputed: retrieval rows by a
   second candidate pass with the known r folded into the product, anything left by brute force
   in fp32. So the results equal a brute-force fp32 CSLS up to fp32 rounding (ties aside).

Retrieval reuses the first pass when csls_topk computes the neighbourhoods itself (a query's
CSLS top is almost always among its M nearest targets: checked per query with r_tgt's minimum);
with given ``neighbourhoods`` it is one candidate pass where the product yields cos - r_tgt / 2
directly (r_tgt as two extra bf16 coordinates, hi + lo).
"""
from __future__ import annotations

import math

import torch

from models.csls import DEFAULT_MEMORY_MB, MAX_ROWS, chunk_rows, normalize
from models.csls import precision_at_k  # noqa: F401  (the reference's, so both modules offer the same functions)

ROW_MARGIN = 54  # candidates per source row beyond max(k, topk) (M = max(k, topk) + ROW_MARGIN)
COL_MARGIN = 14  # candidates per target column beyond k (K = k + COL_MARGIN)
RETRIEVAL_MARGIN = 14  # candidates per query in the retrieval pass beyond topk
ROW_BLOCK = 8  # source rows per block for the column maxima
BLOCKS_PER_MERGE = 1 << 17  # (row block, column) pairs expanded at a time in the column top-k
PAD = -100.0  # the product of a real row with a padding row (cosines are >= -1)
BRUTE_FORCE_BELOW = 4_000_000  # S x T below this: fp32 brute force (nothing to gain)


class UnitRows:
    """The rows of ``raw`` (N, d) at unit length, normalised when read: ``u[idx]`` equals
    ``normalize(raw)[idx]`` bit for bit, but no normalised copy of all N rows is ever held (at
    200k x 200k, d = 300, that copy of both sides would add 458 MB to the peak). Products with many rows
    divide the products by the norms afterwards (``dots``, ``matmul_t``), which differs from
    normalise-then-multiply by one fp32 rounding."""

    def __init__(self, raw: torch.Tensor, norm: torch.Tensor | None = None):
        self.raw = raw  # (N, d) float
        self.norm = raw.norm(dim=1).clamp_min(1e-12) if norm is None else norm  # (N,)
        self.shape, self.device = raw.shape, raw.device

    def __getitem__(self, idx) -> torch.Tensor:
        return self.raw[idx] / self.norm[idx].unsqueeze(-1)  # (n, d) or (d,)

    def new_empty(self, *size) -> torch.Tensor:
        return self.raw.new_empty(*size)

    def dots(self, ids: torch.Tensor, x: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """(R, M) dot products of unit rows ids (R, M) with x (R, d): the raw rows are gathered into
        ``buf`` (a reused buffer) and the (R, M) products divided by their norms, not the (R, M, d) rows."""
        R, M = ids.shape
        ys = torch.index_select(self.raw, 0, ids.flatten(), out=buf[:R * M * self.shape[1]].view(R * M, -1))
        return torch.bmm(ys.view(R, M, -1), x.unsqueeze(2)).squeeze(2).div_(self.norm[ids])

    def matmul_t(self, x: torch.Tensor) -> torch.Tensor:
        """x @ unit(rows)^T -> (n, N), as x @ raw^T with each column divided by its row's norm."""
        return (x @ self.raw.t()).div_(self.norm)


def _unit(vectors) -> UnitRows:
    """UnitRows as given; a tensor is taken to hold unit rows already (norms of one)."""
    if isinstance(vectors, UnitRows):
        return vectors
    return UnitRows(vectors, vectors.new_ones(vectors.shape[0]))


def product_dtype(device: torch.device) -> torch.dtype:
    """bf16 for the candidate product where the CPU runs it natively, else fp32."""
    if device.type == "cpu":
        from core.precision import cpu_supports_bf16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    return torch.float32


# ---------------------------------------------------------------------------------------------
# the approximate product and its error bound

ROUNDING_ROWS = 65536  # rows normalised, rounded or compared at a time while building the operands


def _rounding_norms(exact, rounded: torch.Tensor, rows: int = ROUNDING_ROWS) -> tuple[float, float]:
    """(max row norm of exact - rounded, max row norm of rounded), a slice of rows at a time."""
    err, norm = 0.0, 0.0
    for lo in range(0, exact.shape[0], rows):
        r = rounded[lo:lo + rows].float()
        err = max(err, (exact[lo:lo + rows] - r).norm(dim=1).max().item())
        norm = max(norm, r.norm(dim=1).max().item())
    return err, norm


class _Operands:
    """Unit rows of both sides, padded and rounded to the product dtype, with the bound's norms.

    a (S_pad, d_aug) and bt (d_aug, T_pad): a @ bt = cos - fold / 2 (fold = r_tgt or 0) for real
    pairs and <= PAD for a real row against a padding row. Extra coordinates: [hi, lo] of -fold/2
    (src side 1, 1), a padding marker for each side.
    """

    def __init__(self, src: torch.Tensor, tgt: torch.Tensor, dtype: torch.dtype, row_multiple: int,
                 col_multiple: int, fold: torch.Tensor | None = None, tf32: bool | None = None):
        S, d = src.shape
        T = tgt.shape[0]
        self.S, self.T, self.d, self.dtype = S, T, d, dtype
        self.S_pad = -(-S // row_multiple) * row_multiple
        self.T_pad = -(-T // col_multiple) * col_multiple
        d_aug = -(-(d + 4) // 16) * 16
        a = torch.zeros(self.S_pad, d_aug, dtype=dtype, device=src.device)
        bt = torch.zeros(d_aug, self.T_pad, dtype=dtype, device=tgt.device)  # built transposed: no second copy
        for r0 in range(0, S, ROUNDING_ROWS):  # unit rows a slice at a time (src may be UnitRows)
            r1 = min(S, r0 + ROUNDING_ROWS)
            a[r0:r1, :d] = src[r0:r1]
        for r0 in range(0, T, ROUNDING_ROWS):
            r1 = min(T, r0 + ROUNDING_ROWS)
            bt[:d, r0:r1] = tgt[r0:r1].t()
        half = (-0.5 * fold).float() if fold is not None else torch.zeros(T, device=tgt.device)
        hi = half.to(dtype)
        lo = (half - hi.float()).to(dtype)
        a[:S, d:d + 3] = 1.0
        bt[d, :T], bt[d + 1, :T] = hi, lo
        bt[d + 2, T:] = PAD  # a real source row against a padding target
        a[S:, d + 3] = PAD  # a padding source row against a real target
        bt[d + 3, :T] = 1.0
        self.a, self.bt = a, bt  # (S_pad, d_aug), (d_aug, T_pad)
        # the error bound (error_bound below): norms of the rounded rows and of their rounding errors
        ex, nx = _rounding_norms(src, a[:S, :d])
        ey, ny = _rounding_norms(tgt, bt[:d, :T].t())
        fold_err = (half - hi.float() - lo.float()).abs().max().item() if T else 0.0
        fold_mag = (hi.float().abs() + lo.float().abs()).max().item() if T else 0.0
        gamma = d_aug * 2.0**-24 / (1 - d_aug * 2.0**-24)  # fp32 accumulation of d_aug products
        self.input_err = ex * ny + nx * ey + ex * ey + fold_err + gamma * (nx * ny + fold_mag)
        if tf32 is None:  # an fp32 product on CUDA may round its inputs to TF32 (10-bit mantissa)
            tf32 = a.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
        if tf32 and dtype == torch.float32:
            self.input_err += (2 * 2.0**-11 + 2.0**-22) * (nx * ny + fold_mag)  # TF32 rounds the inputs
        self.output_u = 2.0**-8 / (1 - 2.0**-8) if dtype == torch.bfloat16 else 0.0
        # the fp32 re-scoring itself rounds (on both sides of every comparison)
        # (d products and sums, + 2 for UnitRows' division of a product by a norm and of a row by its own)
        self.slack = 2 * (d + 2) * 2.0**-24 / (1 - (d + 2) * 2.0**-24) * max(nx, 1.0) * max(ny, 1.0) + 1e-7

    def error_bound(self, approx: torch.Tensor) -> torch.Tensor:
        """Largest |exact - approx| for approximate scores ``approx`` (any shape, float)."""
        return self.input_err + self.output_u * approx.abs()


def _upper(ops: _Operands, tau: torch.Tensor) -> torch.Tensor:
    """Upper bound on the exact score of any pair whose approximate score is <= tau.

    s <= s~ + bound(s~) and s~ + input_err + u |s~| increases with s~, so tau's bound covers all."""
    tau = tau.float()
    return tau + ops.error_bound(tau) + ops.slack


_GATHER = {}  # one reused gather buffer per (device, dim): a fresh 60 MB block costs its page faults every time


def _exact_pairs(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 gather_mb: float = 32) -> torch.Tensor:
    """fp32 dot products x[rows[i]] . y[cols[i, m]] -> (R, M); rows (R,), cols (R, M).

    Gathered in slices of rows so the (R', M, d) copy of y stays under gather_mb."""
    R, M = cols.shape
    x, y = _unit(x), _unit(y)
    d = y.shape[1]
    step = max(1, int(gather_mb * 2**20 // (4 * max(M, 1) * d)))
    key = (y.device, d)
    buf = _GATHER.get(key)
    if buf is None or buf.numel() < min(step, R) * M * d:
        buf = _GATHER[key] = y.new_empty(max(min(step, R) * M * d, 1))
    out = x.new_empty(R, M)
    for lo in range(0, R, step):
        out[lo:lo + step] = y.dots(cols[lo:lo + step], x[rows[lo:lo + step]], buf)
    return out


def _release_buffers() -> None:
    _GATHER.clear()


def _block_width(num_cols: int, keep: int) -> int:
    """Number of residue blocks b for a row of num_cols: ~sqrt(keep * T) minimises b + keep * T / b."""
    return max(keep + 1, min(num_cols, int(math.sqrt(keep * num_cols))))


def _row_candidates(sims: torch.Tensor, b: int, keep: int):
    """Top ``keep`` columns of each row of sims (C, T_pad = nb * b) by approximate score.

    Returns (cols (C, keep) int64, approx (C, keep), tau (C,)): every other column's approximate
    score is <= tau. Targets are grouped in b blocks by index modulo b; a row's ``keep`` best lie
    in its ``keep`` blocks with the largest maxima."""
    C, T_pad = sims.shape
    nb = T_pad // b
    block_max = sims.view(C, nb, b).amax(1)  # (C, b): max over targets j = q * b + r
    top_blocks = block_max.topk(keep + 1, dim=1)  # (C, keep + 1)
    cols = (top_blocks.indices[:, :keep, None] + b * torch.arange(nb, device=sims.device)).flatten(1)  # (C, keep*nb)
    vals = sims.gather(1, cols)  # (C, keep * nb)
    n = min(keep + 1, vals.shape[1])
    top = vals.topk(n, dim=1)
    tau = top_blocks.values[:, keep].float()  # every column outside the chosen blocks
    if n > keep:
        tau = torch.maximum(tau, top.values[:, keep].float())  # chosen blocks, not kept
    return cols.gather(1, top.indices[:, :keep]), top.values[:, :keep], tau


class _ColumnTopK:
    """Running top-(K+1) source rows of every target column by approximate score, fed chunk by chunk."""

    def __init__(self, num_cols: int, K: int, device: torch.device):
        self.K = K
        self.vals = torch.full((num_cols, K + 1), float("-inf"), device=device)  # (T_pad, K+1)
        self.rows = torch.full((num_cols, K + 1), -1, dtype=torch.long, device=device)
        self.theta = torch.full((num_cols,), float("-inf"), device=device)  # (K+1)-th best so far

    def add(self, sims: torch.Tensor, row0: int, br: int) -> None:
        C, T_pad = sims.shape
        block_max = sims.view(C // br, br, T_pad).amax(1).t()  # (T_pad, C / br) view
        if torch.isinf(self.theta).all() and block_max.shape[1] >= self.K + 1:
            # first chunk: K+1 blocks hold an element >= their (K+1)-th largest maximum
            self.theta = block_max.topk(self.K + 1, dim=1).values[:, self.K].float()  # no fp32 copy
        # theta holds values of sims (or -inf), exact in sims' dtype: compare there
        col, blk = (block_max >= self.theta.to(sims.dtype)[:, None]).nonzero(as_tuple=True)  # sorted by column
        offsets = torch.arange(br, device=sims.device)
        for lo in range(0, col.numel(), BLOCKS_PER_MERGE):  # bounded memory; a column split in two merges twice
            c, b = col[lo:lo + BLOCKS_PER_MERGE], blk[lo:lo + BLOCKS_PER_MERGE]
            local = b[:, None] * br + offsets  # (P, br) rows in the chunk
            vals = sims[local, c[:, None]].float()  # (P, br)
            keep = vals >= self.theta[c][:, None]
            self._merge(c[:, None].expand_as(local)[keep], (local + row0)[keep], vals[keep])

    def _merge(self, cols: torch.Tensor, rows: torch.Tensor, vals: torch.Tensor) -> None:
        """Merge entries (grouped by column, in column order) into the running top-(K+1)."""
        counts = torch.bincount(cols, minlength=self.vals.shape[0])  # (T_pad,)
        start = counts.cumsum(0) - counts
        pos = torch.arange(cols.numel(), device=cols.device) - start[cols]  # rank within its column
        per_entry = counts[cols]
        width = 1
        remaining = int(counts.max())
        while True:  # columns grouped by entry count, padded to a power of two
            lo_w = width // 2
            sel_e = (per_entry > lo_w) & (per_entry <= width)
            if bool(sel_e.any()):
                sel = ((counts > lo_w) & (counts <= width)).nonzero().squeeze(1)  # affected columns
                slot = torch.full_like(counts, -1)
                slot[sel] = torch.arange(sel.numel(), device=sel.device)
                pad_v = vals.new_full((sel.numel(), width), float("-inf"))
                pad_r = rows.new_full((sel.numel(), width), -1)
                where = (slot[cols[sel_e]], pos[sel_e])
                pad_v[where], pad_r[where] = vals[sel_e], rows[sel_e]
                all_v = torch.cat([self.vals[sel], pad_v], 1)
                top = all_v.topk(self.K + 1, dim=1)
                self.vals[sel] = top.values
                self.rows[sel] = torch.cat([self.rows[sel], pad_r], 1).gather(1, top.indices)
                self.theta[sel] = top.values[:, self.K]
            if width >= remaining:
                break
            width *= 2


def _pass_chunks(ops: _Operands, rows_per_chunk: int):
    """(row0, sims (C, T_pad)) chunk by chunk; sims is one reused buffer."""
    buf = ops.a.new_empty(min(rows_per_chunk, ops.S_pad), ops.T_pad)
    for lo in range(0, ops.S_pad, rows_per_chunk):
        c = min(rows_per_chunk, ops.S_pad - lo)
        yield lo, torch.mm(ops.a[lo:lo + c], ops.bt, out=buf[:c])


def _rows_for_budget(T_pad: int, dtype: torch.dtype, memory_mb: float, multiple: int) -> int:
    """Chunk rows so the product buffer plus its reductions and gathers fit in memory_mb."""
    per_row = T_pad * (torch.finfo(dtype).bits // 8) * 2  # the buffer is half the budget
    rows = int(memory_mb * 2**20 // per_row)
    return max(multiple, min(MAX_ROWS, rows) // multiple * multiple)


# ---------------------------------------------------------------------------------------------
# brute force in fp32 (small problems, and rows or columns whose candidates could not be proved)

def _exact_topk(x: torch.Tensor, y: torch.Tensor, n: int, memory_mb: float, row_shift: torch.Tensor | None = None,
                col_shift: torch.Tensor | None = None):
    """Top-n of 2 x @ y^T - row_shift - col_shift per row of x (just x @ y^T without shifts)."""
    rows = chunk_rows(y.shape[0], memory_mb)
    y = _unit(y)
    values, indices = [], []
    for lo in range(0, x.shape[0], rows):
        sims = y.matmul_t(x[lo:lo + rows])  # (C, T)
        if row_shift is not None:
            sims.mul_(2).sub_(row_shift[lo:lo + rows].unsqueeze(1)).sub_(col_shift)
        top = sims.topk(min(n, y.shape[0]), dim=1)
        values.append(top.values)
        indices.append(top.indices)
    if not values:
        return x.new_empty(0, min(n, y.shape[0])), torch.empty(0, min(n, y.shape[0]), dtype=torch.long)
    return torch.cat(values), torch.cat(indices)


# ---------------------------------------------------------------------------------------------
# the candidate passes

def _neighbourhood_pass(src, tgt, k: int, keep: int, memory_mb: float, dtype: torch.dtype,
                        col_margin: int = COL_MARGIN, br: int = ROW_BLOCK):
    """One pass over source chunks: exact r_src, r_tgt, and each source row's ``keep`` candidates.

    Returns (r_src (S,), r_tgt (T,), cand (S, keep) target ids, cand_cos (S, keep) exact, tau_up (S,)):
    every target outside a row's candidates has an exact cosine <= tau_up."""
    S, T = src.shape[0], tgt.shape[0]
    k_src, k_tgt = min(k, T), min(k, S)
    keep = min(keep, T)
    b = _block_width(T, keep)
    ops = _Operands(src, tgt, dtype, br, b)
    rows = _rows_for_budget(ops.T_pad, dtype, memory_mb, br)
    K = min(k_tgt + col_margin, S)
    columns = _ColumnTopK(ops.T_pad, K, src.device)
    cand = torch.empty(S, keep, dtype=torch.long, device=src.device)
    cand_cos = src.new_empty(S, keep)
    tau_up = src.new_empty(S)
    for lo, sims in _pass_chunks(ops, rows):
        columns.add(sims, lo, br)
        n = min(sims.shape[0], S - lo)
        if n <= 0:
            continue
        cols, _, tau = _row_candidates(sims[:n], b, keep)
        exact = _exact_pairs(src, tgt, torch.arange(lo, lo + n, device=src.device), cols)  # (n, keep)
        exact, order = exact.sort(dim=1, descending=True)
        cand[lo:lo + n], cand_cos[lo:lo + n] = cols.gather(1, order), exact
        tau_up[lo:lo + n] = _upper(ops, tau)
    # rows: the k best exact scores are proved to be the true k best when the rest are below them
    r_src = cand_cos[:, :k_src].mean(1)
    bad_rows = (tau_up >= cand_cos[:, k_src - 1]).nonzero().squeeze(1)
    if bad_rows.numel():
        r_src[bad_rows] = _exact_topk(src[bad_rows], tgt, k_src, memory_mb)[0].mean(1)
    # columns: the K candidate sources, re-scored
    col_rows = columns.rows[:T, :K]  # (T, K), -1 = none
    valid = col_rows >= 0
    col_exact = _exact_pairs(tgt, src, torch.arange(T, device=src.device), col_rows.clamp_min(0))
    col_exact = col_exact.masked_fill(~valid, float("-inf")).sort(dim=1, descending=True).values
    r_tgt = col_exact[:, :k_tgt].mean(1)
    col_tau = columns.vals[:T, K] if columns.vals.shape[1] > K else torch.full_like(r_tgt, float("-inf"))
    bad_cols = (_upper(ops, col_tau) >= col_exact[:, k_tgt - 1]).nonzero().squeeze(1)
    if bad_cols.numel():
        r_tgt[bad_cols] = _exact_topk(tgt[bad_cols], src, k_tgt, memory_mb)[0].mean(1)
    if bad_rows.numel():
        tau_up[bad_rows] = float("inf")  # their candidates prove nothing for retrieval either
    stats = dict(rows_recomputed=int(bad_rows.numel()), cols_recomputed=int(bad_cols.numel()))
    return r_src, r_tgt, cand, cand_cos, tau_up, stats


def _retrieval_pass(src, tgt, r_src, r_tgt, topk: int, queries: torch.Tensor, memory_mb: float,
                    dtype: torch.dtype, margin: int = RETRIEVAL_MARGIN):
    """CSLS top-``topk`` of the query rows with known r: candidates from a product that yields
    cos - r_tgt / 2, re-scored exactly; unproved rows by brute force. Returns (scores, indices, stats)."""
    T = tgt.shape[0]
    n_top = min(topk, T)
    n_out = min(n_top + 1, T)  # one more than asked: the runner-up, for _break_ties (not proved)
    keep = min(n_top + max(margin, 1), T)
    b = _block_width(T, keep)
    every = queries.numel() == src.shape[0] and bool((queries == torch.arange(src.shape[0], device=queries.device)).all())
    x = src if every else src[queries]  # (Q, d) unit rows (no copy when the queries are all rows in order)
    ops = _Operands(x, tgt, dtype, 1, b, fold=r_tgt)
    rows = _rows_for_budget(ops.T_pad, dtype, memory_mb, 1)
    Q = x.shape[0]
    scores = src.new_empty(Q, n_out)
    indices = torch.empty(Q, n_out, dtype=torch.long, device=src.device)
    bad = []
    for lo, sims in _pass_chunks(ops, rows):
        n = sims.shape[0]
        cols, _, tau = _row_candidates(sims, b, keep)
        ids = queries[lo:lo + n]
        exact = 2 * _exact_pairs(src, tgt, ids, cols) - r_src[ids, None] - r_tgt[cols]  # (n, keep) CSLS
        top = exact.topk(n_out, dim=1)
        scores[lo:lo + n], indices[lo:lo + n] = top.values, cols.gather(1, top.indices)
        # approximate scores are cos - r_tgt / 2 = (CSLS + r_src) / 2
        bound = 2 * _upper(ops, tau) - r_src[ids]
        bad.append((bound >= top.values[:, n_top - 1]).nonzero().squeeze(1) + lo)
    bad = torch.cat(bad) if bad else queries.new_empty(0)
    if bad.numel():
        ids = queries[bad]
        scores[bad], indices[bad] = _exact_topk(src[ids], tgt, n_out, memory_mb, r_src[ids], r_tgt)
    return scores, indices, dict(queries_recomputed=int(bad.numel()))


def _search(src, tgt, k: int, topk: int | None, queries, memory_mb: float, neighbourhoods=None,
            dtype: torch.dtype | None = None, row_margin: int = ROW_MARGIN, col_margin: int = COL_MARGIN,
            retrieval_margin: int = RETRIEVAL_MARGIN, brute_force_below: int = BRUTE_FORCE_BELOW):
    """The engine behind csls_neighbourhoods / csls_topk. topk None = neighbourhoods only.

    Returns dict(r_src, r_tgt, scores, indices, stats)."""
    raw = (src, tgt)  # for the float64 tie-break
    src, tgt = UnitRows(src.float()), UnitRows(tgt.float())  # unit rows, normalised as they are read
    S, T = src.shape[0], tgt.shape[0]
    if dtype is None:
        dtype = product_dtype(src.device)
    if queries is None:
        queries = torch.arange(S, device=src.device)
    out = dict(stats={})
    try:
        return _search_inner(src, tgt, k, topk, queries, memory_mb, neighbourhoods, dtype, row_margin, col_margin,
                             retrieval_margin, S * T < brute_force_below, out, raw)
    finally:
        _release_buffers()


def _search_inner(src, tgt, k, topk, queries, memory_mb, neighbourhoods, dtype, row_margin, col_margin,
                  retrieval_margin, small, out, raw):
    S, T = src.shape[0], tgt.shape[0]
    if neighbourhoods is None:
        if small:
            out["r_src"] = _exact_topk(src, tgt, min(k, T), memory_mb)[0].mean(1)
            out["r_tgt"] = _exact_topk(tgt, src, min(k, S), memory_mb)[0].mean(1)
        else:
            keep = max(k, topk) + row_margin if topk is not None else k + col_margin  # r_src alone needs fewer
            r_src, r_tgt, cand, cand_cos, tau_up, stats = _neighbourhood_pass(src, tgt, k, keep, memory_mb, dtype,
                                                                              col_margin)
            out.update(r_src=r_src, r_tgt=r_tgt, stats=stats)
            if topk is not None:  # retrieval from the candidates, proved per query
                n_top = min(topk, T)
                c = cand[queries]
                csls = 2 * cand_cos[queries] - r_src[queries, None] - r_tgt[c]  # (Q, keep)
                top = csls.topk(min(n_top + 1, T), dim=1)  # + the runner-up for _break_ties
                bound = 2 * tau_up[queries] - r_src[queries] - r_tgt.min()
                scores, indices = top.values, c.gather(1, top.indices)
                bad = (bound >= top.values[:, n_top - 1]).nonzero().squeeze(1)
                stats["queries_from_first_pass"] = int(queries.numel() - bad.numel())
                if bad.numel():
                    s2, i2, st2 = _retrieval_pass(src, tgt, r_src, r_tgt, n_top, queries[bad], memory_mb, dtype,
                                                  retrieval_margin)
                    scores[bad], indices[bad] = s2, i2
                    stats.update(st2)
                out["scores"], out["indices"] = _break_ties(raw, k, queries, scores, indices, n_top, None, stats)
                return out
        r_src, r_tgt = out["r_src"], out["r_tgt"]
    else:
        r_src, r_tgt = (r.float().to(src.device) for r in neighbourhoods)
        out.update(r_src=r_src, r_tgt=r_tgt)
    if topk is not None:
        n_top = min(topk, T)
        if small:
            ids = queries
            scores, indices = _exact_topk(src[ids], tgt, min(n_top + 1, T), memory_mb, r_src[ids], r_tgt)
        else:
            scores, indices, st = _retrieval_pass(src, tgt, r_src, r_tgt, n_top, queries, memory_mb, dtype,
                                                  retrieval_margin)
            out["stats"].update(st)
        given = r_tgt if neighbourhoods is not None else None
        out["scores"], out["indices"] = _break_ties(raw, k, queries, scores, indices, n_top, given, out["stats"])
    return out


TIE_EPS = 1e-6  # fp32 CSLS scores closer than this to the best one are ordered in float64


def _break_ties(raw, k: int, queries, scores, indices, n_top: int, given_r_tgt, stats: dict):
    """Order each query's targets whose fp32 CSLS is within TIE_EPS of its best by float64 CSLS, then
    keep ``n_top``. fp32 scores carry ~1e-7 of rounding (here and in any fp32 reference), so a near
    tie would otherwise be decided by the order of the additions. r_src cancels within a row; r_tgt
    is recomputed in float64 (or the given one is used). Scores stay the fp32 ones of each index."""
    if scores.shape[1] > 1:
        rows = (scores[:, 1] >= scores[:, 0] - TIE_EPS).nonzero().squeeze(1)  # queries with a near tie
        stats["near_ties_fp64"] = int(rows.numel())
        if rows.numel():
            raw_src, raw_tgt = raw
            group = scores[rows] >= scores[rows, :1] - TIE_EPS  # (n, n_out): a prefix of each row
            cols = indices[rows]  # (n, n_out)
            J = cols[group].unique()  # sorted target ids involved
            y = normalize(raw_tgt[J].double())  # (|J|, d)
            if given_r_tgt is None:
                best = None
                for lo in range(0, raw_src.shape[0], 16384):
                    sims = normalize(raw_src[lo:lo + 16384].double()) @ y.t()  # (C, |J|)
                    both = sims if best is None else torch.cat([best, sims])
                    best = both.topk(min(k, both.shape[0]), dim=0).values
                r64 = best.mean(0)  # (|J|,)
            else:
                r64 = given_r_tgt[J].double()
            pos = torch.searchsorted(J, cols)  # (n, n_out); meaningful where group
            pos = pos.clamp_max(J.numel() - 1)
            x = normalize(raw_src[queries[rows]].double())  # (n, d)
            value = 2 * (y[pos] * x[:, None, :]).sum(-1) - r64[pos]  # (n, n_out) float64 CSLS + r_src
            value = value.masked_fill(~group, float("-inf"))
            order = value.argsort(dim=1, descending=True, stable=True)  # the rest keeps its order
            indices[rows], scores[rows] = cols.gather(1, order), scores[rows].gather(1, order)
    return scores[:, :n_top], indices[:, :n_top]


# ---------------------------------------------------------------------------------------------
# public API

@torch.no_grad()
def csls_neighbourhoods(src: torch.Tensor, tgt: torch.Tensor, k: int = 10,
                        memory_mb: float = DEFAULT_MEMORY_MB) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_src (S,), r_tgt (T,)): mean cosine to the k nearest neighbours on the other side."""
    out = _search(src, tgt, k, None, None, memory_mb)
    return out["r_src"], out["r_tgt"]


@torch.no_grad()
def csls_topk(src: torch.Tensor, tgt: torch.Tensor, topk: int = 1, k: int = 10,
              queries: torch.Tensor | None = None, memory_mb: float = DEFAULT_MEMORY_MB,
              neighbourhoods: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Top-``topk`` targets by CSLS for each query (source rows ``queries``, default all).

    Returns (scores (Nq, topk), indices (Nq, topk)). ``neighbourhoods`` reuses (r_src, r_tgt).
    """
    out = _search(src, tgt, k, topk, queries, memory_mb, neighbourhoods)
    return out["scores"], out["indices"]


@torch.no_grad()
def cosine_topk(src: torch.Tensor, tgt: torch.Tensor, topk: int = 1, queries: torch.Tensor | None = None,
                memory_mb: float = DEFAULT_MEMORY_MB):
    """Plain nearest neighbours by cosine (the baseline CSLS corrects), chunked the same way."""
    zeros = (src.new_zeros(src.shape[0]), tgt.new_zeros(tgt.shape[0]))
    scores, indices = csls_topk(src, tgt, topk, queries=queries, memory_mb=memory_mb, neighbourhoods=zeros)
    return scores / 2, indices
