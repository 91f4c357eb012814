"""Skip-gram vectors: the written-out update equals autograd + SGD (plain and with char n-grams);
n-gram hashing is FNV-1a; the monolingual text leaves the test sets out; a toy corpus separates
its two topics; vectors survive a save/load round trip."""
import pytest
import torch

from data.monolingual import TEXT_SOURCES, TextSource, corpus_parts
from data.word_vectors import (WordVectors, char_ngram_ids, sgns_step, subword_rows, train_sgns)

pytestmark = pytest.mark.usefixtures("one_thread")


def autograd_step(center_rows, context_rows, center, targets, lr, rows=None, sizes=None):
    """Reference: the summed SGNS loss through autograd, then one plain SGD step on both tables.

    With n-grams the centre is the mean of its rows in the forward pass, but each row takes the
    mean's whole gradient (fastText's skip-gram rule): the mean is written as sum / size whose
    backward treats 1 / size as 1 -- s.detach() / size + (s - s.detach())."""
    cen = center_rows.clone().requires_grad_()
    ctx = context_rows.clone().requires_grad_()
    if rows is None:
        c = cen[center]  # (N, E)
    else:
        s = cen[rows[center]].sum(1)  # (N, E)
        c = s.detach() / sizes[center].unsqueeze(1) + (s - s.detach())
    scores = torch.einsum("nme,ne->nm", ctx[targets], c)  # (N, 1 + M)
    loss = -(torch.nn.functional.logsigmoid(scores[:, 0]).sum() + torch.nn.functional.logsigmoid(-scores[:, 1:]).sum())
    loss.backward()
    new_cen = cen.detach() - lr * cen.grad
    if rows is not None:
        new_cen[-1] = 0.0
    return new_cen, ctx.detach() - lr * ctx.grad, loss.detach()


def test_written_out_update_equals_autograd_with_repeated_words():
    gen = torch.Generator().manual_seed(0)
    center_rows, context_rows = torch.randn(7, 4, generator=gen), torch.randn(7, 4, generator=gen)
    center = torch.tensor([0, 3, 3, 6, 0])  # repeated centres and targets sum their gradients
    targets = torch.tensor([[1, 2, 2], [0, 4, 1], [5, 1, 0], [3, 3, 2], [6, 5, 4]])  # (N, 1 + M)
    want_cen, want_ctx, want_loss = autograd_step(center_rows, context_rows, center, targets, 0.1)
    loss = sgns_step(center_rows, context_rows, center, targets, 0.1)
    assert torch.allclose(center_rows, want_cen, atol=1e-6) and torch.allclose(context_rows, want_ctx, atol=1e-6)
    assert torch.allclose(loss, want_loss)


def test_written_out_update_equals_autograd_with_char_ngrams():
    words = ["haus", "hausen", "maus", "a"]
    rows, sizes = subword_rows(words, 2, 3, buckets=11)  # (V, G), padded with the spare row 4 + 11
    assert rows[3].tolist().count(len(words) + 11) == rows.shape[1] - int(sizes[3])  # "a" is short: padded
    gen = torch.Generator().manual_seed(1)
    center_rows = torch.randn(len(words) + 11 + 1, 3, generator=gen)
    center_rows[-1] = 0.0
    context_rows = torch.randn(len(words), 3, generator=gen)
    center, targets = torch.tensor([0, 1, 1, 3]), torch.tensor([[1, 2], [0, 3], [2, 2], [0, 1]])
    want_cen, want_ctx, want_loss = autograd_step(center_rows, context_rows, center, targets, 0.2, rows, sizes)
    loss = sgns_step(center_rows, context_rows, center, targets, 0.2, rows, sizes)
    assert torch.allclose(center_rows, want_cen, atol=1e-6) and torch.allclose(context_rows, want_ctx, atol=1e-6)
    assert torch.allclose(loss, want_loss)
    assert center_rows[-1].abs().max() == 0
    only_short = torch.tensor([3, 3])  # a batch of short words gathers fewer columns: the same update
    want_cen, want_ctx, _ = autograd_step(center_rows, context_rows, only_short, targets[:2], 0.2, rows, sizes)
    sgns_step(center_rows, context_rows, only_short, targets[:2], 0.2, rows, sizes)
    assert torch.allclose(center_rows, want_cen, atol=1e-6) and torch.allclose(context_rows, want_ctx, atol=1e-6)


def test_char_ngrams_are_fnv1a_hashes_of_the_padded_word():
    def fnv1a(text):
        h = 0x811C9DC5
        for byte in text.encode():
            h = ((h ^ byte) * 0x01000193) % 2**32
        return h
    assert fnv1a("a") == 0xE40C292C  # the published FNV-1a 32-bit test vector
    grams = ["<h", "ha", "au", "us", "s>", "<ha", "hau", "aus", "us>"]
    assert char_ngram_ids("haus", 2, 3, 1000) == [fnv1a(g) % 1000 for g in grams]
    assert len(char_ngram_ids("ab", 3, 4, 1000)) == 3  # "<ab", "ab>" and, as in fastText, "<ab>" itself


def test_text_source_column_skip_lines_eltec_and_repeats(tmp_path):
    (tmp_path / "pairs.txt").write_text("Hi.\tHallo!\nHi.\tGrüß Gott!\nRun!\tLauf!\n")
    (tmp_path / "skip.lines").write_text("3\n")
    assert TextSource("pairs.txt", 1, "skip.lines").lines(tmp_path) == ["Hallo!", "Grüß Gott!"]
    assert TextSource("pairs.txt", 0).lines(tmp_path) == ["Hi.", "Hi.", "Run!"]  # corpus_parts drops repeats
    (tmp_path / "pairs.txt").write_text("Hi.\tHallo!\nbad line\n")
    with pytest.raises(ValueError, match="pairs.txt:2"):
        TextSource("pairs.txt", 1, "skip.lines").lines(tmp_path)
    (tmp_path / "novel.txt").write_text("### DEU001.xml\nEin Theil.\n\nZwei.\n")
    assert TextSource("novel.txt", eltec=True).lines(tmp_path) == ["Ein Theil.", "Zwei."]
    with pytest.raises(FileNotFoundError, match="gone.txt"):
        TextSource("gone.txt").lines(tmp_path)


def test_no_test_text_in_the_sources():
    for lang, sources in TEXT_SOURCES.items():
        for source in sources:
            name = source.path.lower()
            assert "test2012" not in name and "devtest" not in name and "tatoeba_laser" not in name, name
            assert not any(part in name for part in ("/test", "val.", "-val", "test_2016")), name
            if "tatoeba_anki" in name:
                assert source.skip_lines, f"{name} must drop the LASER test overlap"


def test_tatoeba_anki_side_keeps_no_laser_test_sentence(data_root):
    laser = set((data_root / "tatoeba_laser/tatoeba.deu-eng.deu").read_text(encoding="utf-8").split("\n")) - {""}
    anki = next(s for s in TEXT_SOURCES["de"] if "tatoeba_anki" in s.path)
    lines = anki.lines(data_root)
    assert len(lines) > 160_000
    assert not laser & set(lines)


def test_dutch_is_panx_train_only(data_root):
    (name, sentences), = corpus_parts(data_root, "nl")
    assert name == "panx/nl/train" and len(sentences) == 20_000


def test_toy_corpus_separates_topics_and_ngrams_place_unseen_words():
    gen = torch.Generator().manual_seed(0)
    animals, tools = ["hund", "katze", "maus", "pferd"], ["hammer", "zange", "säge", "bohrer"]
    sentences = [[topic[int(i)] for i in torch.randint(4, (6,), generator=gen)]
                 for _ in range(300) for topic in (animals, tools)]
    vectors = train_sgns(sentences, dim=16, epochs=5, window=3, min_count=1, batch_size=64, seed=0,
                         sample=0, log=lambda *_: None)
    unit = vectors.matrix / vectors.matrix.norm(dim=1, keepdim=True)
    index = vectors.index()
    sim = unit @ unit.t()
    a, t = [index[w] for w in animals], [index[w] for w in tools]
    within = (sim[a][:, a].sum() - 4 + sim[t][:, t].sum() - 4) / 24
    across = sim[a][:, t].mean()
    assert within > across + 0.5
    sub = train_sgns(sentences, dim=16, epochs=5, window=3, min_count=1, batch_size=64, seed=0, ngrams=(3, 4),
                     buckets=997, sample=0, log=lambda *_: None)
    unseen = sub.subword_vector("hammers")  # never in the text: its n-grams are mostly "hammer"'s
    cos = torch.nn.functional.cosine_similarity(unseen.unsqueeze(0), sub.matrix, dim=1)
    near = {w: float(cos[i]) for i, w in enumerate(sub.words)}
    assert max(near, key=near.get) in tools and near["hammer"] > max(near[w] for w in animals)


def test_save_load_round_trip(tmp_path):
    vectors = WordVectors(["a", "b"], torch.randn(2, 3), torch.randn(5, 3), (3, 4), [7, 2])
    vectors.save(tmp_path / "v.pt")
    back = WordVectors.load(tmp_path / "v.pt")
    assert back.words == ["a", "b"] and torch.equal(back.matrix, vectors.matrix)
    assert back.ngrams == (3, 4) and torch.equal(back.ngram_rows, vectors.ngram_rows) and back.counts == [7, 2]
