"""Contextual word retrieval: per-layer states equal the encoder's output, pooling and specials by hand,
retrieval on a constructed case, its CSLS against brute force, the function-word classes."""
import pytest
import torch

from data.tokenizer import XLMRTokenizer
from models.csls import normalize
from models.encoder import XLMRConfig, XLMREncoder
from models.retrieval import (aligned_pairs, layer_states, pool_words, retrieval_accuracy, word_class,
                              word_vectors)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = ["ein kleines haus am see", "the small house by the lake", "une petite maison"] * 30


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    tok = XLMRTokenizer.train(TEXT, 60, tmp_path_factory.mktemp("tok"), character_coverage=1.0)
    config = XLMRConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    encoder = XLMREncoder(config)
    encoder.init_weights(torch.Generator().manual_seed(0))
    return encoder.eval(), tok


def test_layer_states_end_with_the_encoder_output(tiny):
    encoder, _ = tiny
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = ids.ne(1)
    states = layer_states(encoder, ids, mask)
    assert len(states) == 4 and states[0].shape == (2, 5, 16)
    with torch.no_grad():
        out = encoder(ids, mask)
    assert torch.allclose(states[-1][mask], out[mask], atol=1e-5)
    assert torch.allclose(states[0], encoder.embeddings(ids))


def test_pool_words_by_hand():
    pieces = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0]])  # word of each piece: 0 0 1 3
    index = torch.tensor([0, 0, 1, 3])
    assert torch.equal(pool_words(pieces, index, 4, "mean"), torch.tensor([[2.0, 1.0], [5, 4], [0, 0], [7, 6]]))
    assert torch.equal(pool_words(pieces, index, 4, "first")[0], torch.tensor([1.0, 0.0]))
    assert torch.equal(pool_words(pieces, index, 4, "last")[0], torch.tensor([3.0, 2.0]))
    assert torch.equal(pool_words(pieces, index, 4, "last")[2], torch.zeros(2))  # no pieces: a zero row


def test_word_vectors_skip_specials_and_mark_cut_words(tiny):
    encoder, tok = tiny
    words = ["ein", "kleines", "haus"]
    ids, word_index = tok.encode_words(words)
    vecs, valid = word_vectors(encoder, tok, [words, ["see"]], layers=[0, 3], pooling="mean")
    states = layer_states(encoder, torch.tensor([[0, *ids, 2]]), torch.ones(1, len(ids) + 2, dtype=torch.bool))
    for layer in (0, 3):
        body = states[layer][0, 1:-1]  # without <s> and </s>
        want = torch.stack([body[[p for p, w in enumerate(word_index) if w == k]].mean(0) for k in range(3)])
        assert torch.allclose(vecs[layer][0], want, atol=1e-5)
    assert valid[0].tolist() == [True, True, True]
    _, cut = word_vectors(encoder, tok, [words], layers=[3], max_pieces=word_index.index(2))
    assert cut[0].tolist() == [True, True, False]  # "haus" lost its pieces to the cut
    assert aligned_pairs([{(0, 0), (2, 1)}], cut, [torch.tensor([True, True])]) == [(0, 0, 0)]


def brute_force_csls(q, c, k):
    cos = normalize(q) @ normalize(c).t()
    r_q = cos.topk(k, dim=1).values.mean(1)
    r_c = cos.topk(k, dim=0).values.mean(0)
    return 2 * cos - r_q[:, None] - r_c[None, :]


def test_retrieval_on_a_constructed_case_and_csls_against_brute_force():
    gen = torch.Generator().manual_seed(3)
    # Two sentences per side; pair q: source word -> target word. Targets = sources + noise, except a
    # hub target (the mean of all) that cosine prefers for several queries.
    src_words = torch.randn(30, 8, generator=gen)
    tgt_words = src_words + 0.8 * torch.randn(30, 8, generator=gen)
    tgt_words[29] = src_words.mean(0) * 6
    src_vecs = [src_words[:15], src_words[15:]]
    tgt_vecs = [tgt_words[:15], tgt_words[15:]]
    pairs = [(0, i, i) for i in range(15)] + [(1, i, i) for i in range(15)]
    got = retrieval_accuracy(src_vecs, tgt_vecs, pairs, k=5)
    answer = torch.arange(30)
    for direction, q, c in (("s2t", src_words, tgt_words), ("t2s", tgt_words, src_words)):
        want_csls = (brute_force_csls(q, c, 5).argmax(1) == answer).float().mean().item()
        want_nn = ((normalize(q) @ normalize(c).t()).argmax(1) == answer).float().mean().item()
        assert got[f"csls_{direction}"] == pytest.approx(want_csls)
        assert got[f"nn_{direction}"] == pytest.approx(want_nn)
    assert got["queries"] == 30 and 0 < got["nn_s2t"] < 1
    perfect = retrieval_accuracy(src_vecs, src_vecs, pairs, k=5, src_classes=["open"] * 29 + ["closed"],
                                 tgt_classes=["open"] * 30)
    assert perfect["csls_s2t"] == 1.0 and perfect["nn_t2s_open"] == 1.0 and perfect["n_s2t_closed"] == 1


def test_word_classes():
    assert word_class("Der", "de") == "closed" and word_class("Haus", "de") == "open"
    assert word_class(",", "en") == "punct" and word_class("the", "en") == "closed"
    assert word_class("maison", "fr") == "open" and word_class("les", "fr") == "closed"
