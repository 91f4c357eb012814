"""Solutions of the exercises of the book's chapters 06-10 (docs/book/), checked against the library."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


# ---- 06. word vectors, Procrustes and CSLS -------------------------------------------------------
def rotated_pair(n: int, d: int, noise: float, seed: int = 0):
    """(x (n, d), y (n, d), Q (d, d)): unit rows x, y[i] = x[i] Q plus noise, renormalised."""
    from models.csls import normalize

    g = torch.Generator().manual_seed(seed)
    x = normalize(torch.randn(n, d, generator=g))  # (n, d)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))  # (d, d)
    y = normalize(x @ q + noise * normalize(torch.randn(n, d, generator=g)))  # (n, d)
    return x, y, q


def test_ch06_exercise_1_only_r_tgt_ranks():
    from models.csls import csls_neighbourhoods, csls_topk

    x, y, q = rotated_pair(400, 32, noise=1.2)
    src = x @ q  # (S, d) the mapped source
    r_src, r_tgt = csls_neighbourhoods(src, y, k=10)
    full_scores, full = csls_topk(src, y, topk=5, k=10)
    shifted_scores, without_r_src = csls_topk(src, y, topk=5, k=10, neighbourhoods=(torch.zeros_like(r_src), r_tgt))
    assert torch.equal(full, without_r_src)  # the ranking of each query is unchanged
    torch.testing.assert_close(shifted_scores - r_src[:, None], full_scores)  # only the scores move, by r_src
    # and r_tgt does matter: plain cosine ranks differently on this noisy pair
    from models.csls import cosine_topk
    assert not torch.equal(cosine_topk(src, y, topk=5)[1], full)


def test_ch06_exercise_2_procrustes_needs_d_seed_pairs():
    from models.mapping import procrustes

    d = 64
    x, _, q = rotated_pair(200, d, noise=0.0)
    y = x @ q  # an exact rotation
    for p in (8, 32):
        w = procrustes(x[:p], y[:p])
        assert (w - q).norm() > 1.0  # far too few pairs: many rotations fit them
    for p in (d, d + 1, 100):
        assert torch.linalg.matrix_rank(x[:p].double().T @ y[:p].double()) >= d - 1
        torch.testing.assert_close(procrustes(x[:p], y[:p]), q, atol=1e-4, rtol=0)
    # d - 1 pairs: xs^T ys has rank d - 1; W fits every seed pair, and the one direction the
    # seeds do not span is free up to its sign: W is Q, or Q with that direction reflected
    xs, w = x[:d - 1], procrustes(x[:d - 1], y[:d - 1])
    assert torch.linalg.matrix_rank(xs.double().T @ (xs @ q).double()) == d - 1
    torch.testing.assert_close(xs @ w, xs @ q, atol=1e-4, rtol=0)
    gap = torch.linalg.svdvals((w - q).double())  # (d,)
    assert gap[1:].max() < 1e-4 and (gap[0] < 1e-4 or abs(float(gap[0]) - 2.0) < 1e-4)


# ---- 07. vocabulary extension ----------------------------------------------------------------
def tiny_mlm(vocab_size: int = 20, seed: int = 0):
    from models.encoder import XLMRConfig
    from models.heads import XLMRForMaskedLM

    config = XLMRConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    model = XLMRForMaskedLM(config)
    model.init_weights(generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # a trained model's biases are mostly negative
        model.lm_head.bias.copy_(-3 + torch.randn(vocab_size, generator=torch.Generator().manual_seed(seed + 1)))
    return model.eval()


def grow_by_hand(model, rows: torch.Tensor, bias: torch.Tensor):
    """The growth written with torch.cat: embeddings, decoder bias, the decoder re-tied."""
    embedding = model.encoder.embeddings.word_embeddings
    embedding.weight = torch.nn.Parameter(torch.cat([embedding.weight.detach(), rows]))  # (V + N, H)
    embedding.num_embeddings = embedding.weight.shape[0]
    model.lm_head.bias = torch.nn.Parameter(torch.cat([model.lm_head.bias.detach(), bias]))  # (V + N,)
    model.lm_head.decoder.weight = embedding.weight
    model.config.vocab_size = embedding.num_embeddings
    return model


def test_ch07_exercise_1_grow_by_hand_equals_grow_vocabulary():
    from models.extend import grow_vocabulary, word_embeddings

    base = tiny_mlm()
    g = torch.Generator().manual_seed(5)
    rows, bias = 0.02 * torch.randn(3, 16, generator=g), torch.randn(3, generator=g)  # (N, H), (N,)
    ours = grow_by_hand(copy.deepcopy(base), rows, bias)
    library = grow_vocabulary(copy.deepcopy(base), 3, init="rows", init_rows=rows, init_bias=bias)
    assert library.lm_head.decoder.weight is word_embeddings(library).weight
    assert ours.lm_head.decoder.weight is word_embeddings(ours).weight
    assert library.config.vocab_size == ours.config.vocab_size == 23
    ids = torch.tensor([[0, 5, 20, 21, 22, 7, 2]])  # (1, T) three new ids
    old_ids = torch.tensor([[0, 5, 6, 7, 2]])  # (1, T) base ids only
    with torch.no_grad():
        torch.testing.assert_close(library(ids), ours(ids), atol=0, rtol=0)
        # on old text the grown model is the base model, plus three new logits
        torch.testing.assert_close(library(old_ids)[..., :20], base(old_ids), atol=0, rtol=0)


def new_piece_probability_ratio(init: str) -> float:
    """Mean softmax probability of a new piece over that of an ordinary base piece, averaged over
    the positions of one sentence, after growing by 4 rows with ``init``."""
    from models.extend import FIRST_ORDINARY_ID, grow_vocabulary

    model = grow_vocabulary(tiny_mlm(), 4, init=init, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p = model(torch.tensor([[0, 5, 6, 7, 8, 2]])).softmax(-1)  # (1, T, V + N)
    return float(p[..., 20:].mean() / p[..., FIRST_ORDINARY_ID:20].mean())


def test_ch07_exercise_2_the_bias_of_a_new_piece():
    from models.extend import FIRST_ORDINARY_ID, grow_vocabulary

    base = tiny_mlm()
    mean_bias = base.lm_head.bias[FIRST_ORDINARY_ID:].detach().double().mean()
    random = grow_vocabulary(copy.deepcopy(base), 4, init="random", generator=torch.Generator().manual_seed(0))
    gaussian = grow_vocabulary(copy.deepcopy(base), 4, init="gaussian", generator=torch.Generator().manual_seed(0))
    assert torch.equal(random.lm_head.bias[20:], torch.zeros(4))
    torch.testing.assert_close(gaussian.lm_head.bias[20:].double(), mean_bias.expand(4), atol=1e-6, rtol=0)
    # bias 0 among biases near -3: a new piece starts about e^3 = 20 times as likely as a base piece
    assert new_piece_probability_ratio("random") > 10
    assert 0.3 < new_piece_probability_ratio("gaussian") < 3


# ---- 08. contextual alignment ----------------------------------------------------------------
def random_aligned_vectors(seed: int = 0, sentences: int = 30, hidden: int = 16):
    """Per-sentence word vectors of two sides (the target a noisy copy of the source, reversed
    word order) and the 1-to-1 links between them."""
    g = torch.Generator().manual_seed(seed)
    src, tgt, links = [], [], []
    for _ in range(sentences):
        n = int(torch.randint(3, 9, (1,), generator=g))
        s = torch.randn(n, hidden, generator=g)  # (W, H)
        src.append(s)
        tgt.append(s.flip(0) + 0.9 * torch.randn(n, hidden, generator=g))
        links.append({(i, n - 1 - i) for i in range(n)})
    return src, tgt, links


def test_ch08_exercise_1_retrieval_by_brute_force():
    from models.csls import normalize
    from models.retrieval import aligned_pairs, retrieval_accuracy

    src, tgt, links = random_aligned_vectors()
    pairs = aligned_pairs(links)  # [(sentence, i, j)]
    queries = normalize(torch.stack([src[s][i] for s, i, _ in pairs]))  # (Q, H)
    candidates = normalize(torch.stack([tgt[s][j] for s, _, j in pairs]))  # (Q, H)
    answer = torch.arange(len(pairs))  # query q's answer is candidate q
    sims = queries @ candidates.T  # (Q, Q)
    nn = float((sims.argmax(1) == answer).float().mean())
    k = 10
    r_q = sims.topk(k, dim=1).values.mean(1)  # (Q,)
    r_c = sims.topk(k, dim=0).values.mean(0)  # (Q,)
    csls = float(((2 * sims - r_q[:, None] - r_c[None, :]).argmax(1) == answer).float().mean())
    out = retrieval_accuracy(src, tgt, pairs, k=k)
    assert out["queries"] == len(pairs) > 100
    assert out["nn_s2t"] == pytest.approx(nn, abs=1e-12) and out["csls_s2t"] == pytest.approx(csls, abs=1e-12)
    assert 0.1 < nn < 0.95  # neither trivial nor hopeless


def test_ch08_exercise_2_collapse_zeroes_align_not_reg():
    from models.align_loss import alignment_loss

    g = torch.Generator().manual_seed(0)
    anchor0 = torch.randn(12, 8, generator=g)  # (A, H) the frozen model's anchor words
    point = torch.randn(1, 8, generator=g)  # one vector for every word
    src, tgt, anchor = point.expand(5, 8), point.expand(5, 8), point.expand(12, 8)  # all collapsed
    free = alignment_loss(src, tgt, anchor, anchor0, lam=0.0)
    held = alignment_loss(src, tgt, anchor, anchor0, lam=1.0)
    assert float(free["align"]) == 0.0 and float(free["loss"]) == 0.0  # collapse is a perfect L2 solution
    assert float(held["reg"]) == pytest.approx(float((point - anchor0).pow(2).sum()), rel=1e-6)
    assert float(held["reg"]) > 0
    assert float(held["loss"]) == pytest.approx(float(held["reg"]), rel=1e-6)
    # the anchor where f0 put it costs nothing: reg is what makes collapse expensive
    assert float(alignment_loss(anchor0[:5], anchor0[:5], anchor0, anchor0)["loss"]) == 0.0


# ---- 09. relation extraction -----------------------------------------------------------------
def test_ch09_exercise_1_where_focal_loss_is_a_tenth_of_ce():
    from models.losses import relation_loss

    p = 1 - math.sqrt(0.1)  # (1 - p)^2 = 1/10
    logits = torch.tensor([[math.log(p), math.log(1 - p)]])  # softmax = (p, 1 - p)
    gold = torch.tensor([0])
    ce, focal = relation_loss(logits, gold), relation_loss(logits, gold, gamma=2.0)
    assert float(focal / ce) == pytest.approx(0.1, rel=1e-5)
    assert p == pytest.approx(0.6838, abs=1e-4)


def micro_f1_by_brute_force(gold: list[int], pred: list[int], no_relation: int = 0) -> float:
    hit = found = wanted = 0
    for g, q in zip(gold, pred):
        found += q != no_relation
        wanted += g != no_relation
        hit += q == g != no_relation
    precision = hit / found if found else 0.0
    recall = hit / wanted if wanted else 0.0
    return 100 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_ch09_exercise_2_micro_f1_by_brute_force():
    from core.metrics import relation_micro_f1

    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        gold = torch.randint(0, 4, (30,), generator=g).tolist()
        pred = torch.randint(0, 4, (30,), generator=g).tolist()
        assert relation_micro_f1(gold, pred) == pytest.approx(micro_f1_by_brute_force(gold, pred), abs=1e-9)
    gold = [0, 0, 0, 0, 0, 0, 1, 2]
    noisy = [1, 1, 1, 1, 0, 0, 1, 2]  # finds both relations, and four that are not there
    silent = [0] * 8  # finds nothing
    accuracy = lambda pred: sum(a == b for a, b in zip(gold, pred)) / len(gold)  # noqa: E731
    assert accuracy(silent) > accuracy(noisy)
    assert relation_micro_f1(gold, silent) == 0.0
    assert relation_micro_f1(gold, noisy) == pytest.approx(50.0)


# ---- 10. profiling the hot loop --------------------------------------------------------------
class TinyTagging:
    """Random ids and tags for a 1-layer token classifier: a task for core.loop.fit."""
    metric_name = "neg_loss"

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.batches = [{"input_ids": torch.randint(4, 50, (4, 12), generator=g),
                         "attention_mask": torch.ones(4, 12, dtype=torch.bool),
                         "labels": torch.randint(0, 5, (4, 12), generator=g), "n_tokens": 48} for _ in range(8)]

    def build_model(self):
        from models.encoder import XLMRConfig
        from models.heads import XLMRForTokenClassification

        config = XLMRConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=32)
        model = XLMRForTokenClassification(config, num_labels=5)
        model.init_weights(generator=torch.Generator().manual_seed(0))
        return model

    def train_batches(self, epoch: int, rank: int = 0, world: int = 1):
        return self.batches[rank::world]

    def loss(self, model, batch):
        logits = model(batch["input_ids"], batch["attention_mask"]).float()  # (B, T, K)
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum")

    def evaluate(self, model):
        return {"neg_loss": -float(self.loss(model, self.batches[0])) / 48}


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """The trace events of 6 steps profiled with wait 2, warm-up 1, active 2."""
    from core.config import load_config
    from core.loop import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("profiled")
    cfg = load_config(None, ["train.device=cpu", "train.precision=fp32", "train.batch_size=4", "train.max_steps=6",
                             "train.log_every=6", "profile.enabled=true", "profile.wait=2", "profile.warmup=1",
                             "profile.active=2"])
    try:
        fit(cfg, TinyTagging(), run_dir)
    finally:
        torch.set_num_threads(threads)
    return json.loads((run_dir / "trace.json").read_text())["traceEvents"]


def complete(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e.get("ph") == "X" and e.get("name") == name]


def test_ch10_exercise_1_the_schedule(profiled_run):
    steps = sorted(e["name"] for e in profiled_run if e.get("ph") == "X"
                   and str(e.get("name", "")).startswith("ProfilerStep#"))
    assert steps == ["ProfilerStep#3", "ProfilerStep#4"]  # steps 0, 1 wait, 2 warms up, 3 and 4 are recorded
    assert len(complete(profiled_run, "optimizer")) == 2


def test_ch10_exercise_2_forward_nests_in_loss_and_phases_fit_in_a_step(profiled_run):
    from core.profiler import PHASES

    losses = complete(profiled_run, "loss")
    forwards = complete(profiled_run, "forward")
    assert len(forwards) == len(losses) == 2
    for f in forwards:
        assert any(l["ts"] <= f["ts"] and f["ts"] + f["dur"] <= l["ts"] + l["dur"] for l in losses)
    for step in (e for e in profiled_run if str(e.get("name", "")).startswith("ProfilerStep#")):
        lo, hi = step["ts"], step["ts"] + step["dur"]
        inside = [e for name in PHASES if name != "forward" for e in complete(profiled_run, name) if lo <= e["ts"] < hi]
        assert {e["name"] for e in inside} == {"data", "loss", "backward", "optimizer"}
        assert sum(e["dur"] for e in inside) <= step["dur"]
