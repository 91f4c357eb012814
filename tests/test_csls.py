"""CSLS: chunked equals unchunked brute force; a known hub is undone by CSLS, not by cosine."""
import torch

from models.csls import cosine_topk, csls_neighbourhoods, csls_topk, normalize, precision_at_k


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
