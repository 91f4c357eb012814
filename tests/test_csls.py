"""CSLS: a naive few-line CSLS, the reference (models/csls.py) and the candidate search
(models/csls_fast.py) agree, also with ties and chunking; a known hub is undone by CSLS, not by
cosine; the candidate search (bf16 or fp32 product, exact re-scoring, a proof per row) equals brute
force, including where its proofs fail and it falls back; its error bound holds, also for the
TF32 product of a GPU (emulated on CPU tensors)."""
import pytest
import torch

from models import csls_fast as csls_mod
from models.csls import cosine_topk, csls_neighbourhoods, csls_topk, normalize, precision_at_k

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force_csls(src, tgt, k):
    cos = normalize(src) @ normalize(tgt).t()  # (S, T)
    r_src = cos.topk(k, dim=1).values.mean(1)
    r_tgt = cos.topk(k, dim=0).values.mean(0)
    return 2 * cos - r_src[:, None] - r_tgt[None, :], r_src, r_tgt


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_chunked_equals_unchunked(kernels):
    gen = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(300, 16, generator=gen), torch.randn(250, 16, generator=gen)
    full, r_src, r_tgt = brute_force_csls(src, tgt, k=5)
    tiny_budget = 0.05  # MB -> chunks of ~17 rows, many chunks
    got_src, got_tgt = csls_neighbourhoods(src, tgt, k=5, memory_mb=tiny_budget, kernels=kernels)
    assert torch.allclose(got_src, r_src, atol=1e-6) and torch.allclose(got_tgt, r_tgt, atol=1e-6)
    queries = torch.tensor([0, 7, 299, 42])
    scores, idx = csls_topk(src, tgt, topk=3, k=5, queries=queries, memory_mb=tiny_budget, kernels=kernels)
    ref = full[queries].topk(3, dim=1)
    assert torch.equal(idx, ref.indices) and torch.allclose(scores, ref.values, atol=1e-6)
    big_scores, big_idx = csls_topk(src, tgt, topk=3, k=5, queries=queries, memory_mb=1000, kernels=kernels)
    assert torch.equal(big_idx, idx) and torch.allclose(big_scores, scores, atol=1e-6)


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_csls_undoes_a_hub(kernels):
    # Targets 0..3 are the true translations of sources 0..3 (same direction + small noise);
    # target 4 is a hub: the mean of everything, closer to each source than its own translation.
    gen = torch.Generator().manual_seed(1)
    base = torch.eye(4, 8) + 0.05 * torch.randn(4, 8, generator=gen)  # (4, 8)
    src = base + 0.6 * base.sum(0)  # sources share a common component
    hub = base.sum(0, keepdim=True) * 1.0
    tgt = torch.cat([base, hub])  # (5, 8)
    _, cos_idx = cosine_topk(src, tgt, topk=1, kernels=kernels)
    _, csls_idx = csls_topk(src, tgt, topk=1, k=2, kernels=kernels)
    assert cos_idx.squeeze(1).tolist() == [4, 4, 4, 4]  # cosine: the hub wins everywhere
    assert csls_idx.squeeze(1).tolist() == [0, 1, 2, 3]  # CSLS: each source finds its translation


def test_precision_at_k_any_translation_counts():
    idx = torch.tensor([[3, 1], [0, 2], [5, 4]])
    gold = {10: {1, 7}, 11: {0}, 12: {9}}
    assert precision_at_k(idx, [10, 11, 12], gold) == {"p@1": 1 / 3, "p@5": 2 / 3}


# ---- the candidate search (bf16 or fp32 product + exact re-scoring + proof per row) -------------
DTYPES = [torch.bfloat16, torch.float32]


def fast(src, tgt, k, topk, **kw):
    """The candidate path forced on a small problem, with chunks of 8-16 rows."""
    kw.setdefault("memory_mb", 0.02)
    return csls_mod._search(src, tgt, k, topk, kw.pop("queries", None), kw.pop("memory_mb"),
                            brute_force_below=0, **kw)


def assert_same_as_brute_force(out, full, r_src, r_tgt, queries=None, topk=None):
    assert torch.allclose(out["r_src"], r_src, atol=1e-6) and torch.allclose(out["r_tgt"], r_tgt, atol=1e-6)
    if topk is not None:
        ref = full if queries is None else full[queries]
        ref = ref.topk(topk, dim=1)
        assert torch.equal(out["indices"][:, 0], ref.indices[:, 0])  # the same top-1 for every query
        assert torch.allclose(out["scores"], ref.values, atol=1e-6)  # exact scores at every rank
        # every returned index really has the returned score
        q = torch.arange(ref.values.shape[0]) if queries is None else queries
        assert torch.allclose(full[q[:, None], out["indices"]], out["scores"], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_candidate_path_equals_brute_force(dtype):
    gen = torch.Generator().manual_seed(3)
    src, tgt = torch.randn(700, 24, generator=gen), torch.randn(900, 24, generator=gen)
    full, r_src, r_tgt = brute_force_csls(src, tgt, k=5)
    out = fast(src, tgt, 5, 4, dtype=dtype)
    assert_same_as_brute_force(out, full, r_src, r_tgt, topk=4)
    assert out["stats"]["queries_from_first_pass"] > 600  # the candidate proof works for most queries


@pytest.mark.parametrize("dtype", DTYPES)
def test_candidate_path_with_queries_and_given_neighbourhoods(dtype):
    gen = torch.Generator().manual_seed(4)
    src, tgt = torch.randn(500, 16, generator=gen), torch.randn(650, 16, generator=gen)
    full, r_src, r_tgt = brute_force_csls(src, tgt, k=3)
    queries = torch.tensor([0, 499, 17, 17, 250])
    out = fast(src, tgt, 3, 6, queries=queries, dtype=dtype)
    assert_same_as_brute_force(out, full, r_src, r_tgt, queries=queries, topk=6)
    given = fast(src, tgt, 3, 6, queries=queries, dtype=dtype, neighbourhoods=(r_src, r_tgt))  # retrieval pass
    assert_same_as_brute_force(given, full, r_src, r_tgt, queries=queries, topk=6)
    zero = (torch.zeros(500), torch.zeros(650))  # cosine retrieval through the same pass
    cos = fast(src, tgt, 3, 2, dtype=dtype, neighbourhoods=zero)
    ref = (normalize(src) @ normalize(tgt).t()).topk(2, dim=1)
    assert torch.equal(cos["indices"][:, 0], ref.indices[:, 0])
    assert torch.allclose(cos["scores"] / 2, ref.values, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unprovable_rows_and_columns_fall_back_and_stay_exact(dtype):
    # Clusters of near-duplicates: dozens of candidates within the bf16 error of each other, so
    # the proofs fail for many rows/columns (margins of 1) and the fallbacks must give the answer.
    gen = torch.Generator().manual_seed(5)
    centres = torch.randn(6, 12, generator=gen)
    src = centres[torch.randint(0, 6, (300,), generator=gen)] + 1e-3 * torch.randn(300, 12, generator=gen)
    tgt = centres[torch.randint(0, 6, (400,), generator=gen)] + 1e-3 * torch.randn(400, 12, generator=gen)
    full, r_src, r_tgt = brute_force_csls(src, tgt, k=4)
    out = fast(src, tgt, 4, 3, dtype=dtype, row_margin=1, col_margin=1, retrieval_margin=1)
    assert torch.allclose(out["r_src"], r_src, atol=1e-6) and torch.allclose(out["r_tgt"], r_tgt, atol=1e-6)
    q = torch.arange(300)
    assert torch.allclose(full[q[:, None], out["indices"]], out["scores"], atol=1e-6)
    assert torch.allclose(out["scores"], full.topk(3, dim=1).values, atol=1e-6)
    stats = out["stats"]
    if dtype == torch.bfloat16:  # the fallbacks really ran
        assert stats["rows_recomputed"] > 0 and stats["cols_recomputed"] > 0 and stats["queries_recomputed"] > 0


def test_error_bound_holds():
    # |exact - bf16 product| <= the bound used by the proofs, for cos and for cos - r / 2
    gen = torch.Generator().manual_seed(6)
    src, tgt = normalize(torch.randn(200, 40, generator=gen)), normalize(torch.randn(300, 40, generator=gen))
    fold = torch.rand(300, generator=gen) * 0.6
    for r in (None, fold):
        ops = csls_mod._Operands(src, tgt, torch.bfloat16, 8, 64, fold=r)
        approx = (ops.a @ ops.bt).float()[:200, :300]
        exact = src @ tgt.t() - (0 if r is None else r / 2)
        err = (approx - exact).abs()
        assert (err <= ops.error_bound(approx)).all()
        assert err.max() > 1e-4  # bf16 really is approximate here (the bound is not vacuous)
    padded = (ops.a @ ops.bt).float()
    assert (padded[:200, 300:] <= csls_mod.PAD + 1).all() and (padded[200:, :300] <= csls_mod.PAD + 1).all()


def test_unit_rows_are_the_normalised_rows_without_a_copy(monkeypatch):
    gen = torch.Generator().manual_seed(8)
    raw = torch.randn(50, 12, generator=gen) * torch.rand(50, 1, generator=gen) * 10
    unit = csls_mod.UnitRows(raw)
    ids = torch.tensor([3, 0, 49, 3])
    assert torch.equal(unit[ids], normalize(raw)[ids]) and torch.equal(unit[5:9], normalize(raw)[5:9])  # bit for bit
    x = torch.randn(7, 12, generator=gen)
    assert torch.allclose(unit.matmul_t(x), x @ normalize(raw).t(), atol=1e-6)
    cols = torch.randint(50, (7, 5), generator=gen)
    want = (normalize(raw)[cols] * x[:, None, :]).sum(-1)  # (7, 5)
    assert torch.allclose(unit.dots(cols, x, torch.empty(100 * 12)), want, atol=1e-6)
    # the search itself never normalises a whole side (only the float64 tie-break's few rows)
    seen = []
    monkeypatch.setattr(csls_mod, "normalize", lambda v: seen.append(v.shape[0]) or normalize(v))
    src, tgt = torch.randn(700, 24, generator=gen), torch.randn(900, 24, generator=gen)
    csls_mod._search(src, tgt, 5, 1, None, 1.0, brute_force_below=0)
    assert all(n < 700 for n in seen)


def test_public_functions_take_the_candidate_path_on_large_inputs():
    # 2,100 x 2,000 is above BRUTE_FORCE_BELOW: the public functions must still match brute force
    gen = torch.Generator().manual_seed(7)
    src, tgt = torch.randn(2100, 32, generator=gen), torch.randn(2000, 32, generator=gen)
    full, r_src, r_tgt = brute_force_csls(src, tgt, k=10)
    got_src, got_tgt = csls_neighbourhoods(src, tgt, k=10)
    assert torch.allclose(got_src, r_src, atol=1e-6) and torch.allclose(got_tgt, r_tgt, atol=1e-6)
    scores, idx = csls_topk(src, tgt, topk=5, k=10)
    ref = full.topk(5, dim=1)
    assert torch.equal(idx[:, 0], ref.indices[:, 0]) and torch.allclose(scores, ref.values, atol=1e-6)
    scores2, idx2 = csls_topk(src, tgt, topk=1, k=10, neighbourhoods=(got_src, got_tgt))
    assert torch.equal(idx2[:, 0], ref.indices[:, 0])


def test_column_merges_split_into_slices(monkeypatch):
    # a column's candidate blocks merged over several slices (bounded memory) give the same r_tgt
    monkeypatch.setattr(csls_mod, "BLOCKS_PER_MERGE", 7)
    gen = torch.Generator().manual_seed(8)
    src, tgt = torch.randn(400, 20, generator=gen), torch.randn(300, 20, generator=gen)
    full, r_src, r_tgt = brute_force_csls(src, tgt, k=5)
    out = fast(src, tgt, 5, 2, memory_mb=0.1)
    assert_same_as_brute_force(out, full, r_src, r_tgt, topk=2)


def brute_force_csls_fp64(src, tgt, k):
    cos = normalize(src.double()) @ normalize(tgt.double()).t()
    return 2 * cos - cos.topk(k, dim=1).values.mean(1)[:, None] - cos.topk(k, dim=0).values.mean(0)[None, :]


@pytest.mark.parametrize("path", ["candidates", "brute force", "given neighbourhoods"])
def test_near_ties_are_decided_in_float64(path):
    # every target has a twin ~1e-7 away: the two CSLS scores differ by ~1e-8, below fp32's resolution;
    # the returned top-1 must be the float64 argmax for every query
    gen = torch.Generator().manual_seed(9)
    base = torch.randn(150, 16, generator=gen, dtype=torch.float64)
    tgt = torch.cat([base, base + 1e-7 * torch.randn(150, 16, generator=gen, dtype=torch.float64)])
    src = torch.randn(200, 16, generator=gen, dtype=torch.float64)
    src, tgt = src.float().double(), tgt.float().double()  # the fp32 inputs are what float64 must rank
    full64 = brute_force_csls_fp64(src, tgt, k=3)
    truth = full64.argmax(1)
    top2 = full64.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 1e-12  # a float64 winner exists
    if path == "given neighbourhoods":
        cos = normalize(src) @ normalize(tgt).t()
        hoods = (cos.topk(3, dim=1).values.mean(1).float(), cos.topk(3, dim=0).values.mean(0).float())
        full64 = 2 * cos - hoods[0].double()[:, None] - hoods[1].double()[None, :]
        truth = full64.argmax(1)
        out = fast(src.float(), tgt.float(), 3, 1, neighbourhoods=hoods)
    else:
        out = csls_mod._search(src.float(), tgt.float(), 3, 1, None, 1.0,
                               brute_force_below=0 if path == "candidates" else 10**9)
    assert out["stats"]["near_ties_fp64"] > 50  # the twins really are fp32 ties
    assert torch.equal(out["indices"][decided, 0], truth[decided])


# ---- reference == fast, with exact ties; the kernels argument; the accelerator branches -------------
def naive_csls(src, tgt, k):
    """CSLS in a few lines, the whole (S, T) matrix at once."""
    cos = normalize(src) @ normalize(tgt).t()  # (S, T)
    return 2 * cos - cos.topk(k, dim=1).values.mean(1, keepdim=True) - cos.topk(k, dim=0).values.mean(0, keepdim=True)


def assert_same_ranking(scores, indices, full_rows, atol=1e-6):
    """scores/indices equal the top of full_rows (Nq, T) up to the order of tied targets: the same score
    at every rank, each returned index really has its returned score, and no index twice in a row."""
    ref = full_rows.topk(scores.shape[1], dim=1)
    torch.testing.assert_close(scores, ref.values, rtol=0, atol=atol)
    torch.testing.assert_close(full_rows.gather(1, indices), scores, rtol=0, atol=atol)
    assert all(len(set(row)) == len(row) for row in indices.tolist())
    clear = (ref.values[:, 0] - full_rows.topk(2, dim=1).values[:, 1]) > 1e-5  # a unique winner
    assert torch.equal(indices[clear, 0], ref.indices[clear, 0])


def tied_vectors(seed=10):
    """Sources and targets with exact duplicates (tied scores) and integer coordinates (exact products)."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(-3, 4, (260, 12), generator=gen).float()
    tgt = torch.randint(-3, 4, (240, 12), generator=gen).float()
    tgt[200:] = tgt[:40]  # 40 targets twice
    src[250:] = src[:10]
    return src, tgt


@pytest.mark.parametrize("path", ["reference", "public fast", "candidates bf16", "candidates fp32"])
def test_naive_reference_and_fast_agree_with_ties(path):
    src, tgt = tied_vectors()
    full = naive_csls(src, tgt, k=4)
    cos = normalize(src) @ normalize(tgt).t()
    r_src, r_tgt = cos.topk(4, dim=1).values.mean(1), cos.topk(4, dim=0).values.mean(0)
    queries = torch.tensor([0, 250, 3, 3, 259, 100])
    if path in ("reference", "public fast"):
        kernels = "reference" if path == "reference" else "fast"
        hoods = csls_neighbourhoods(src, tgt, k=4, memory_mb=0.02, kernels=kernels)  # chunks of ~3 rows
        scores, idx = csls_topk(src, tgt, topk=5, k=4, memory_mb=0.02, kernels=kernels)
        q_scores, q_idx = csls_topk(src, tgt, topk=5, k=4, queries=queries, neighbourhoods=hoods, kernels=kernels)
        c_scores, c_idx = cosine_topk(src, tgt, topk=3, queries=queries, memory_mb=0.02, kernels=kernels)
    else:
        dtype = torch.bfloat16 if path == "candidates bf16" else torch.float32
        out = fast(src, tgt, 4, 5, dtype=dtype)
        hoods, scores, idx = (out["r_src"], out["r_tgt"]), out["scores"], out["indices"]
        given = fast(src, tgt, 4, 5, dtype=dtype, queries=queries, neighbourhoods=hoods)
        q_scores, q_idx = given["scores"], given["indices"]
        zero = fast(src, tgt, 4, 3, dtype=dtype, queries=queries, neighbourhoods=(torch.zeros(260), torch.zeros(240)))
        c_scores, c_idx = zero["scores"] / 2, zero["indices"]
    torch.testing.assert_close(hoods[0], r_src, rtol=0, atol=1e-6)
    torch.testing.assert_close(hoods[1], r_tgt, rtol=0, atol=1e-6)
    assert_same_ranking(scores, idx, full)
    assert_same_ranking(q_scores, q_idx, full[queries])
    assert_same_ranking(c_scores, c_idx, cos[queries])
    assert (scores[:, 0] - scores[:, 1]).eq(0).sum() > 10  # the duplicates really tie at the top


def test_reference_equals_fast_on_random_data():
    gen = torch.Generator().manual_seed(12)
    src, tgt = torch.randn(700, 24, generator=gen), torch.randn(900, 24, generator=gen)
    full = naive_csls(src, tgt, k=5)
    for kernels in ("reference", "fast", "auto"):
        r = csls_neighbourhoods(src, tgt, k=5, memory_mb=0.1, kernels=kernels)
        scores, idx = csls_topk(src, tgt, topk=4, k=5, memory_mb=0.1, kernels=kernels)
        assert_same_ranking(scores, idx, full)
        if kernels == "reference":
            want = r, scores, idx
        else:
            torch.testing.assert_close(r, want[0], rtol=0, atol=1e-6)
            torch.testing.assert_close(scores, want[1], rtol=0, atol=1e-6)
            assert torch.equal(idx[:, 0], want[2][:, 0])
    cand = fast(src, tgt, 5, 4)  # the candidate search, not its small-problem brute force
    torch.testing.assert_close(cand["scores"], want[1], rtol=0, atol=1e-6)
    assert torch.equal(cand["indices"][:, 0], want[2][:, 0])


def test_kernels_argument_picks_the_implementation(monkeypatch):
    src, tgt = torch.randn(30, 8), torch.randn(20, 8)
    with pytest.raises(ValueError, match="kernels"):
        csls_topk(src, tgt, kernels="bf16")
    calls = []
    original = csls_mod._search
    monkeypatch.setattr(csls_mod, "_search", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    csls_neighbourhoods(src, tgt, k=3, kernels="reference")
    csls_topk(src, tgt, k=3, kernels="reference")
    cosine_topk(src, tgt, kernels="reference")
    assert calls == []
    csls_neighbourhoods(src, tgt, k=3, kernels="fast")
    csls_topk(src, tgt, k=3)  # auto = fast
    cosine_topk(src, tgt, kernels="fast")
    assert len(calls) == 3


def test_product_dtype_branches(monkeypatch):
    import core.precision

    monkeypatch.setattr(core.precision, "cpu_supports_bf16", lambda: True)
    assert csls_mod.product_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(core.precision, "cpu_supports_bf16", lambda: False)
    assert csls_mod.product_dtype(torch.device("cpu")) == torch.float32
    assert csls_mod.product_dtype(torch.device("cuda")) == torch.float32  # no tensor is made on the device


def tf32(x: torch.Tensor) -> torch.Tensor:
    """fp32 rounded to TF32's 10-bit mantissa (round to nearest), what a GPU's TF32 matmul reads."""
    bits = x.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def test_error_bound_holds_for_a_tf32_product():
    # the GPU branch (fp32 product with TF32 inputs), forced on CPU tensors with emulated rounding
    gen = torch.Generator().manual_seed(13)
    src, tgt = normalize(torch.randn(200, 40, generator=gen)), normalize(torch.randn(300, 40, generator=gen))
    fold = torch.rand(300, generator=gen) * 0.6
    for r in (None, fold):
        ops = csls_mod._Operands(src, tgt, torch.float32, 8, 64, fold=r, tf32=True)
        plain = csls_mod._Operands(src, tgt, torch.float32, 8, 64, fold=r, tf32=False)
        assert csls_mod._Operands(src, tgt, torch.float32, 8, 64, fold=r).input_err == plain.input_err  # CPU: no TF32
        approx = (tf32(ops.a).double() @ tf32(ops.bt).double()).float()[:200, :300]
        exact = src.double() @ tgt.double().t() - (0 if r is None else r.double() / 2)
        err = (approx.double() - exact).abs()
        assert (err <= ops.error_bound(approx)).all()
        assert (err > plain.error_bound(approx)).any()  # the fp32 bound alone would not hold
