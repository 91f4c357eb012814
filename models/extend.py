"""Grow an XLM-R model's vocabulary: word embeddings, tied MLM decoder and decoder bias together.

    tok2 = tok.add_pieces(pieces)                         # or: tok2, ids = tok.add_special_tokens([...])
    grow_for_tokenizer(model, tok, tok2, init="mean")     # one call: the rows tok2 added, initialised
    grow_vocabulary(model, n_new, init="random")          # N(0, 0.02), bias 0 (Wang et al. 2020)
    grow_vocabulary(model, n_new, init="mean", sources=[[812, 99], [], ...])   # base ids per new row
    grow_vocabulary(model, n_new, init="rows", init_rows=rows)                 # given (n_new, H) rows

Legend: V old vocabulary, N new rows, H hidden.

The model is changed in place (and returned): every old row, and every old entry of the MLM
decoder bias, stays bit-identical; the new rows are appended, so new ids are V .. V + N - 1.
Call it before an optimizer is built (its state would not know the new rows). Memory: one new
(V + N, H) tensor is allocated and the old rows copied in once; the old tensor is freed as soon
as the caller drops its own references (no second full copy, no full-size random init;
bench/extend.py measures it against torch.cat).

Initialisations (``init``):
- ``random``: rows ~ N(0, initializer_range), decoder bias 0 -- the paper's.
- ``mean``: each row the mean of the base rows of its ``sources`` (the base tokenizer's pieces of
  the new piece's string, ``piece_sources``); its bias the mean of their biases. Where the
  sources are empty or only <unk> (an unseen script: ``piece_sources`` also empties a
  decomposition that is only ``▁ <unk>``) the row is drawn from a Gaussian with the
  mean and covariance of the base rows, and the bias is the mean base bias -- a zero bias among
  negative ones would give a new piece outsized MLM probability from the first step.
- ``gaussian``: every row from that Gaussian, bias the mean base bias.
- ``rows``: ``init_rows`` (N, H) as given; bias ``init_bias`` (N,) or the mean base bias (the
  ``wechsel`` and ``focus`` rules of models/extend_init.py come in this way).
"""
from __future__ import annotations

import torch
from torch import nn

from models.encoder import Embeddings, XLMRConfig

INITS = ("random", "mean", "gaussian", "rows")
FIRST_ORDINARY_ID = 4  # after <s> <pad> </s> <unk>: the rows statistics are taken over
UNK_ID = 3


def word_embeddings(model: nn.Module) -> nn.Embedding:
    found = [m for m in model.modules() if isinstance(m, Embeddings)]
    if len(found) != 1:
        raise TypeError(f"expected one XLM-R Embeddings module in {type(model).__name__}, found {len(found)}")
    return found[0].word_embeddings


def _lm_heads(model: nn.Module) -> list[nn.Module]:
    from models.heads import MaskedLMHead

    return [m for m in model.modules() if isinstance(m, MaskedLMHead)]


@torch.no_grad()
def base_statistics(weight: torch.Tensor, n_rows: int, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (H,), covariance (H, H)) in fp64 of rows FIRST_ORDINARY_ID .. n_rows - 1. Chunks of rows,
    shifted by the first chunk's mean (no cancellation), are multiplied in their own dtype and summed
    in fp64: no fp64 (or any full) copy of the matrix is made."""
    H = weight.shape[1]
    first = weight[FIRST_ORDINARY_ID:min(FIRST_ORDINARY_ID + chunk, n_rows)]
    shift = first.double().mean(0) if len(first) else torch.zeros(H, dtype=torch.float64)  # (H,)
    total = torch.zeros(H, dtype=torch.float64)
    outer = torch.zeros(H, H, dtype=torch.float64)
    for start in range(FIRST_ORDINARY_ID, n_rows, chunk):
        block = weight[start:min(start + chunk, n_rows)].float() - shift.float()  # (C, H)
        total += block.sum(0).double()
        outer += (block.T @ block).double()
    count = max(n_rows - FIRST_ORDINARY_ID, 2)
    offset = total / count  # (H,) mean - shift
    cov = (outer - count * torch.outer(offset, offset)) / (count - 1)  # (H, H)
    return shift + offset, cov


def gaussian_factor(cov: torch.Tensor) -> torch.Tensor:
    """Cholesky factor (H, H) of cov, with a small jitter so it exists for a rank-deficient cov."""
    H = cov.shape[0]
    jitter = 1e-6 * float(cov.diagonal().mean().clamp_min(1e-12))
    return torch.linalg.cholesky(cov + jitter * torch.eye(H, dtype=torch.float64))


def fill_gaussian(out: torch.Tensor, rows: list[int] | range, mean: torch.Tensor, factor: torch.Tensor,
                  generator: torch.Generator | None, chunk: int = 4096) -> None:
    """out[rows] <- draws from N(mean, factor factor^T), in chunks (no (N, H) fp64 temporary)."""
    rows = list(rows)
    for start in range(0, len(rows), chunk):
        index = rows[start:start + chunk]
        z = torch.randn(len(index), mean.shape[0], generator=generator, dtype=torch.float64)  # (C, H)
        out[index] = (mean + z @ factor.T).to(out.dtype)


def mean_base_bias(bias: torch.Tensor | None) -> torch.Tensor:
    """The fp64 mean of the ordinary pieces' MLM decoder biases (V,) (the specials' are not typical); 0 without a bias."""
    ordinary = bias[FIRST_ORDINARY_ID:] if bias is not None else None
    return ordinary.double().mean() if ordinary is not None and len(ordinary) else torch.zeros((), dtype=torch.float64)


@torch.no_grad()
def fill_new_rows(out: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, init: str, std: float,
                  sources: list[list[int]] | None = None, init_rows: torch.Tensor | None = None,
                  init_bias: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Write the new rows into ``out`` (N, H) (a view of the grown matrix) from the base ``weight``
    (V, H) and ``bias`` (V,); returns the new bias entries (N,) in fp64."""
    n_new, H = out.shape
    V = weight.shape[0]
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    base_bias = mean_base_bias(bias)
    if init == "random":
        out.normal_(0.0, std, generator=generator)
        return torch.zeros(n_new, dtype=torch.float64)
    if init == "rows":
        if init_rows is None or tuple(init_rows.shape) != (n_new, H):
            raise ValueError(f"init='rows' needs init_rows of shape ({n_new}, {H}), got "
                             f"{None if init_rows is None else tuple(init_rows.shape)}")
        out.copy_(init_rows)
        return init_bias.double() if init_bias is not None else base_bias.expand(n_new).clone()
    if init == "mean" and (sources is None or len(sources) != n_new):
        raise ValueError(f"init='mean' needs sources: one list of base ids per new row ({n_new}), "
                         f"got {None if sources is None else len(sources)}")
    mean, cov = base_statistics(weight, V)
    factor = gaussian_factor(cov)
    if init == "gaussian":
        fill_gaussian(out, range(n_new), mean, factor, generator)
        return base_bias.expand(n_new).clone()
    entries = torch.empty(n_new, dtype=torch.float64)  # (N,)
    fallback = []
    for j, ids in enumerate(sources):
        ids = [i for i in ids if i != UNK_ID and 0 <= i < V]
        if not ids:
            fallback.append(j)
            continue
        index = torch.tensor(ids)
        out[j] = weight[index].double().mean(0).to(out.dtype)
        entries[j] = bias[index].double().mean() if bias is not None else 0.0
    if fallback:  # drawn in order, so pinned by the generator
        fill_gaussian(out, fallback, mean, factor, generator)
        entries[fallback] = base_bias
    return entries


@torch.no_grad()
def grow_vocabulary(model: nn.Module, n_new: int, init: str = "random", sources: list[list[int]] | None = None,
                    init_rows: torch.Tensor | None = None, init_bias: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> nn.Module:
    """Append ``n_new`` rows to the word embeddings (and the tied MLM decoder and its bias, when the
    model has an MLM head); the config's vocab_size follows. Returns the same model."""
    if n_new < 0:
        raise ValueError(f"n_new must be >= 0, got {n_new}")
    embedding = word_embeddings(model)
    old = embedding.weight
    V, H = old.shape
    heads = _lm_heads(model)
    bias = heads[0].bias if heads else None
    std = next((m.config.initializer_range for m in model.modules() if isinstance(getattr(m, "config", None), XLMRConfig)), 0.02)
    grown = torch.empty(V + n_new, H, dtype=old.dtype, device=old.device)  # (V + N, H): the one new tensor
    grown[:V].copy_(old)
    entries = fill_new_rows(grown[V:], grown[:V], None if bias is None else bias.detach(), init, std, sources,
                            init_rows, init_bias, generator)
    embedding.weight = nn.Parameter(grown, requires_grad=old.requires_grad)
    embedding.num_embeddings = V + n_new
    del old
    for head in heads:
        b = head.bias
        head.bias = nn.Parameter(torch.cat([b.detach(), entries.to(b.dtype)]), requires_grad=b.requires_grad)
        head.decoder.weight = embedding.weight  # re-tie
        head.decoder.out_features = V + n_new
    for m in model.modules():
        config = getattr(m, "config", None)
        if isinstance(config, XLMRConfig):
            config.vocab_size = V + n_new
    return model


def informative_piece(tokenizer, i: int) -> bool:
    """Whether id ``i`` says something about a word: not a special id, not <mask>, not the lone ``▁``
    (it stands before every word of every script)."""
    return i >= FIRST_ORDINARY_ID and i != tokenizer.mask_id and tokenizer.id_to_token(i) != "\u2581"


def piece_sources(base_tokenizer, pieces: list[str]) -> list[list[int]]:
    """For each piece string, the base tokenizer's ids of its surface text (``▁`` read as a space).
    A piece that continues a word (no leading ``▁``) drops the lone ``▁`` the base tokenizer
    puts before a word. A decomposition that holds nothing but a lone ``▁``, <unk> and special
    ids (``▁Москва`` -> ``▁ <unk>`` for a base that never saw the script) says nothing about the
    piece and comes back empty, so ``init="mean"`` draws that row from the Gaussian instead of
    copying the ``▁`` row into every such piece."""
    texts = [p.replace("\u2581", " ") for p in pieces]
    out = []
    for piece, ids in zip(pieces, base_tokenizer.encode_batch(texts)):
        if not piece.startswith("\u2581") and ids and base_tokenizer.id_to_token(ids[0]) == "\u2581":
            ids = ids[1:]
        out.append(ids if any(informative_piece(base_tokenizer, i) for i in ids) else [])
    return out


def grow_for_tokenizer(model: nn.Module, base_tokenizer, grown_tokenizer, init: str = "mean",
                       generator: torch.Generator | None = None) -> nn.Module:
    """Grow ``model`` (built for ``base_tokenizer``) to ``grown_tokenizer``: the rows of the ids the
    latter added, initialised by ``init`` (``mean`` decomposes each new piece with the base tokenizer)."""
    V = word_embeddings(model).num_embeddings
    if V != base_tokenizer.vocab_size:
        raise ValueError(f"the model has {V} embedding rows but the base tokenizer {base_tokenizer.vocab_size} ids")
    n_new = grown_tokenizer.vocab_size - V
    new_pieces = grown_tokenizer.convert_ids_to_tokens(range(V, V + n_new))
    sources = piece_sources(base_tokenizer, new_pieces) if init == "mean" else None
    return grow_vocabulary(model, n_new, init=init, sources=sources, generator=generator)
