"""CSLS: chunked equals unchunked brute force; a known hub is undone by CSLS, not by cosine; the
candidate search (bf16 or fp32 product, exact re-scoring, a proof per row) equals brute force,
including where its proofs fail and it falls back; its error bound holds."""
import pytest
import torch

from models import csls as csls_mod
from models.csls import cosine_topk, csls_neighbourhoods, csls_topk, normalize, precision_at_k

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force_csls(src, tgt, k):
    cos = normalize(src) @ normalize(tgt).t()  # (S, T)
    r_src = cos.topk(k, dim=1).values.mean(1)
    r_tgt = cos.topk(k, dim=0).values.mean(0)
    return 2 * cos - r_src[:, None] - r_tgt[None, :], r_src, r_tgt


def test_chunked_equals_unchunked():
    gen = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(300, 16, generator=gen), torch.randn(250, 16, generator=gen)
    full, r_src, r_tgt = brute_force_csls(src, tgt, k=5)
    tiny_budget = 0.05  # MB -> chunks of ~17 rows, many chunks
    got_src, got_tgt = csls_neighbourhoods(src, tgt, k=5, memory_mb=tiny_budget)
    assert torch.allclose(got_src, r_src, atol=1e-6) and torch.allclose(got_tgt, r_tgt, atol=1e-6)
    queries = torch.tensor([0, 7, 299, 42])
    scores, idx = csls_topk(src, tgt, topk=3, k=5, queries=queries, memory_mb=tiny_budget)
    ref = full[queries].topk(3, dim=1)
    assert torch.equal(idx, ref.indices) and torch.allclose(scores, ref.values, atol=1e-6)
    big_scores, big_idx = csls_topk(src, tgt, topk=3, k=5, queries=queries, memory_mb=1000)
    assert torch.equal(big_idx, idx) and torch.allclose(big_scores, scores, atol=1e-6)


def test_csls_undoes_a_hub():
    # Targets 0..3 are the true translations of sources 0..3 (same direction + small noise);
    # target 4 is a hub: the mean of everything, closer to each source than its own translation.
    gen = torch.Generator().manual_seed(1)
    base = torch.eye(4, 8) + 0.05 * torch.randn(4, 8, generator=gen)  # (4, 8)
    src = base + 0.6 * base.sum(0)  # sources share a common component
    hub = base.sum(0, keepdim=True) * 1.0
    tgt = torch.cat([base, hub])  # (5, 8)
    _, cos_idx = cosine_topk(src, tgt, topk=1)
    _, csls_idx = csls_topk(src, tgt, topk=1, k=2)
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
