"""models/extend_init.py: sparsemax, the WECHSEL/FOCUS mixes of base rows, the dictionary map, and the
grown model (old rows bit-identical)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from data.tokenizer import XLMRTokenizer
from models.encoder import XLMRConfig
from models.extend_init import dictionary_map, grow_from_vectors, mix_rows, sparsemax
from models.heads import XLMRForMaskedLM

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_sparsemax(z: list[float]) -> list[float]:
    """The closest point of the simplex, by trying every support set."""
    best, best_dist = None, math.inf
    for size in range(1, len(z) + 1):
        for support in itertools.combinations(range(len(z)), size):
            tau = (sum(z[j] for j in support) - 1) / size
            p = [z[j] - tau if j in support else 0.0 for j in range(len(z))]
            if min(p) < -1e-12:
                continue
            dist = sum((a - b) ** 2 for a, b in zip(p, z))
            if dist < best_dist:
                best, best_dist = p, dist
    return best


def test_sparsemax_known_values_and_brute_force():
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.6, 0.4, -1.0], [0.5, 0.2, 0.1], [2.0, 0.0, 1.9]],
                     dtype=torch.float64)
    expected = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.4, 0.0],
                             [0.5 + 0.2 / 3, 0.2 + 0.2 / 3, 0.1 + 0.2 / 3], [0.55, 0.0, 0.45]], dtype=torch.float64)
    torch.testing.assert_close(sparsemax(z), expected)
    assert torch.equal(sparsemax(z)[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # a clear winner: exact
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64) * 0.7
    for row in x:
        torch.testing.assert_close(sparsemax(row), torch.tensor(brute_sparsemax(row.tolist()), dtype=torch.float64))
    torch.testing.assert_close(sparsemax(x.T, dim=0), sparsemax(x).T)


def base(V=12, H=6):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(V, H, generator=gen), -torch.rand(V, generator=gen) * 3  # (V, H), (V,)


def test_new_piece_equal_to_an_anchor_gets_its_row():
    weight, bias = base()
    anchor_ids = torch.arange(4, 12)  # (A,) = 8 ordinary base pieces
    anchors = torch.eye(8)  # (A, d) orthogonal anchor vectors
    new = anchors[[3, 6]] * 2.5  # (2, d): the directions of anchors 3 and 6 (cosine 1, 0 to the others)
    one = mix_rows(new, anchors, anchor_ids, weight, bias, k=1, rule="softmax")  # WECHSEL with k = 1: exact
    assert torch.equal(one.rows, weight[[7, 10]]) and torch.equal(one.bias, bias[[7, 10]].double())
    sparse = mix_rows(new, anchors, anchor_ids, weight, bias, k=8, temperature=1.0, rule="sparsemax")  # FOCUS
    assert torch.equal(sparse.rows, weight[[7, 10]]) and torch.equal(sparse.bias, bias[[7, 10]].double())
    soft = mix_rows(new, anchors, anchor_ids, weight, bias)  # WECHSEL's k = 10 (here 8), tau = 0.1
    top = math.exp(10) / (math.exp(10) + 7)  # softmax of (1, 0 x 7) / 0.1
    assert soft.weights[:, 0].tolist() == pytest.approx([top, top], rel=1e-12)
    torch.testing.assert_close(soft.rows, weight[[7, 10]], atol=1e-3 * weight.abs().max().item(), rtol=0)


@pytest.mark.parametrize("rule, temperature", [("softmax", 0.1), ("softmax", 1.0), ("sparsemax", 1.0), ("sparsemax", 0.2)])
def test_weights_sum_to_one_and_rows_are_the_same_mix_as_bias(rule, temperature):
    weight, bias = base(V=30)
    gen = torch.Generator().manual_seed(2)
    anchor_ids = torch.randperm(26, generator=gen)[:15] + 4  # (A,)
    mix = mix_rows(torch.randn(9, 5, generator=gen), torch.randn(15, 5, generator=gen), anchor_ids, weight, bias,
                   k=6, temperature=temperature, rule=rule, chunk=4)
    assert mix.weights.shape == (9, 6) and (mix.weights >= 0).all()
    torch.testing.assert_close(mix.weights.sum(1), torch.ones(9, dtype=torch.float64))
    for i in range(9):  # brute force: the weighted sums, row and bias
        torch.testing.assert_close(mix.rows[i], (mix.weights[i, :, None] * weight[mix.anchors[i]].double()).sum(0).float())
        torch.testing.assert_close(mix.bias[i], (mix.weights[i] * bias[mix.anchors[i]].double()).sum())
    if rule == "sparsemax" and temperature == 1.0:
        assert (mix.weights == 0).any()  # sparse: some of the top k get nothing


class WordTokenizer:
    """encode_batch: one id per known word (a stand-in with a fixed segmentation)."""

    def __init__(self, vocab: dict[str, int]):
        self.vocab = vocab

    def encode_batch(self, texts):
        return [[self.vocab[w] for w in t.split() if w in self.vocab] for t in texts]


def test_dictionary_map_recovers_a_rotation_and_the_mapped_piece_gets_the_base_row():
    gen = torch.Generator().manual_seed(3)
    d, n = 8, 20
    base_vectors = torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=1)  # (n, d)
    rotation = torch.linalg.qr(torch.randn(d, d, generator=gen))[0]  # (d, d) orthogonal
    target_vectors = base_vectors @ rotation  # the target space: the base space rotated
    base_ids, target_ids = list(range(4, 4 + n)), list(range(100, 100 + n))
    base_tok = WordTokenizer({f"w{j}": 4 + j for j in range(n)})
    target_tok = WordTokenizer({f"t{j}": 100 + j for j in range(n)})
    pairs = [(f"w{j}", f"t{j}") for j in range(12)]  # a dictionary for 12 of the 20 words
    w, used = dictionary_map(base_tok, target_tok, (base_ids, base_vectors), (target_ids, target_vectors), pairs)
    assert used == 12
    torch.testing.assert_close(w, rotation.T, atol=1e-5, rtol=0)
    weight, bias = base(V=4 + n)
    mapped = target_vectors[15:18] @ w  # pieces outside the dictionary, mapped into the base space
    mix = mix_rows(mapped, base_vectors, torch.tensor(base_ids), weight, bias, k=1)
    assert torch.equal(mix.rows, weight[[19, 20, 21]])
    with pytest.raises(ValueError, match="none of the 1 dictionary pairs"):
        dictionary_map(base_tok, target_tok, (base_ids, base_vectors), (target_ids, target_vectors), [("x", "y")])


LATIN = ["der hund läuft schnell nach hause", "die katze schläft auf dem sofa", "ein kind spielt im garten",
         "der mann liest die zeitung", "die frau trinkt einen kaffee"]
CYRILLIC = ["собака бежит домой быстро", "кошка спит на диване", "ребёнок играет в саду",
            "мужчина читает газету", "женщина пьёт кофе дома"]


@pytest.fixture(scope="module")
def tokenizers():
    base_tok = XLMRTokenizer.train([s for _ in range(10) for s in LATIN], 60, None, num_threads=1)
    grown = base_tok.add_pieces([(p, -4.0 - i / 10) for i, p in enumerate(
        ["▁собака", "▁кошка", "▁дома", "▁газету", "▁кофе", "▁на", "▁в", "ет", "ит", "▁ребёнок", "▁никогда"])])
    return base_tok, grown


def tiny_model(V):
    model = XLMRForMaskedLM(XLMRConfig(vocab_size=V, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16, max_position_embeddings=32))
    model.init_weights(torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.lm_head.bias.copy_(-torch.rand(V, generator=torch.Generator().manual_seed(4)) * 3)
    return model


@pytest.mark.parametrize("rule", ["focus", "wechsel"])
def test_grow_from_vectors_keeps_old_rows_and_mixes_base_rows(tokenizers, rule):
    base_tok, grown = tokenizers
    V = base_tok.vocab_size
    model = tiny_model(V)
    old, old_bias = model.encoder.embeddings.word_embeddings.weight.detach().clone(), model.lm_head.bias.detach().clone()
    target_text = [f"{a} {b}" for a in CYRILLIC for b in LATIN] * 2  # mixed, so base pieces occur in it (anchors)
    pairs = [("hund", "собака"), ("katze", "кошка"), ("kaffee", "кофе"), ("zeitung", "газету"), ("die", "die")]
    report = grow_from_vectors(model, base_tok, grown, rule, target_text, base_text=LATIN * 10, pairs=pairs, k=4,
                               dim=8, epochs=2, min_count=1, generator=torch.Generator().manual_seed(0), log=lambda _: None)
    rows, bias = model.encoder.embeddings.word_embeddings.weight.detach(), model.lm_head.bias.detach()
    assert rows.shape == (grown.vocab_size, 8) and torch.equal(rows[:V], old) and torch.equal(bias[:V], old_bias)
    assert model.lm_head.decoder.weight is model.encoder.embeddings.word_embeddings.weight
    assert report["new_rows_from_vectors"] == 10 and report["new_rows_gaussian"] == 1  # ▁никогда is not in the text
    if rule == "wechsel":
        assert report["dictionary_pairs_used"] >= 4
    # every new row with a vector lies in the convex hull of the base rows: check one as a mix
    hull_lo, hull_hi = old[4:].min(0).values, old[4:].max(0).values
    inside = ((rows[V:] >= hull_lo - 1e-6) & (rows[V:] <= hull_hi + 1e-6)).all(1)
    assert inside.sum() >= 10
    assert bool(((bias[V:] >= old_bias[4:].min() - 1e-6) & (bias[V:] <= old_bias[4:].max() + 1e-6)).all())
    assert model(torch.tensor([grown.encode("собака дома")])).shape[-1] == grown.vocab_size


def test_rules_and_arguments_checked(tokenizers):
    base_tok, grown = tokenizers
    with pytest.raises(ValueError, match="rule must be one of"):
        grow_from_vectors(tiny_model(base_tok.vocab_size), base_tok, grown, "fasttext", CYRILLIC)
    with pytest.raises(ValueError, match="wechsel needs"):
        grow_from_vectors(tiny_model(base_tok.vocab_size), base_tok, grown, "wechsel", CYRILLIC * 4, dim=4, epochs=1,
                          min_count=1, log=lambda _: None)


def test_wechsel_maps_a_translated_language_onto_the_right_base_pieces():
    """End to end on a made-up pair: a Runic language that is the Latin one translated word for word
    (six word classes with their own positions). Vectors from each side's text, Procrustes on half the
    vocabulary: each new Runic whole-word piece's nearest base piece belongs to its translation's class."""
    import random

    from data.extend_vocab import extend_tokenizer, train_target_model
    from models.extend_init import anchor_rows, piece_vectors
    from test_extend_any_script import lexicon

    rng = random.Random(0)
    latin = lexicon("abdefgiklmnoprstu", 60, rng, shortest=4)
    runic = lexicon([chr(c) for c in range(0x16A0, 0x16B1)], 60, rng, shortest=4)
    classes = [list(range(c, 60, 6)) for c in range(6)]
    orders = [[0, 1, 2, 3], [0, 1, 4, 5], [2, 3, 0, 1, 5], [4, 5, 2, 3]]
    sentences = [[rng.choice(classes[c]) for c in rng.choice(orders)] for _ in range(3000)]
    base_text = [" ".join(latin[i] for i in s) for s in sentences[:1500]]
    target_text = [" ".join(runic[i] for i in s) for s in sentences[1500:]]  # other sentences, same grammar
    base = XLMRTokenizer.train(base_text, 100, None, num_threads=1)
    grown = extend_tokenizer(base, train_target_model(target_text, 150, num_threads=1), 60, base_text).tokenizer
    quiet = dict(dim=16, epochs=30, min_count=1, sample=1e-3, log=lambda _: None)
    base_ids, base_vecs = piece_vectors(base, base_text, **quiet)
    target_ids, target_vecs = piece_vectors(grown, target_text, **quiet)
    w, used = dictionary_map(base, grown, (base_ids, base_vecs), (target_ids, target_vecs),
                             [(latin[i], runic[i]) for i in range(0, 60, 2)])
    V = base.vocab_size
    keep = anchor_rows(base_ids, base, V)
    anchors = torch.tensor([base_ids[r] for r in keep])
    right = total = 0
    for r, i in enumerate(target_ids):
        piece = grown.id_to_token(i)
        if i >= V and piece.startswith("▁") and piece[1:] in runic:  # a new piece that is a whole Runic word
            word = runic.index(piece[1:])
            pieces_of_class = {p for j in classes[word % 6] for p in base.encode(latin[j], add_special_tokens=False)}
            top = mix_rows(target_vecs[r:r + 1] @ w, base_vecs[keep], anchors, torch.eye(V), None, k=1).anchors
            total += 1
            right += int(top[0, 0]) in pieces_of_class
    assert used == 30 and total >= 15
    assert right >= 0.9 * total  # chance: about 1 in 9 anchors is a piece of a given class
