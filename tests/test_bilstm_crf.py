"""BiLSTM-CRF: vocabularies, padding invariance (packed LSTM, char encoders), learning a toy task."""
from collections import Counter

import pytest
import torch

from core.config import BiLSTMConfig
from data.conll import Sentence
from data.vocab import Vocab, encode_batch, word_key
from models.bilstm_crf import build_bilstm_crf
from models.char_encoder import CharCNN, CharLSTM
from tasks.bilstm_crf import LABELS, length_batches



pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


SENTS = [Sentence(["Anna", "lebt", "in", "Berlin", "."], ["B-PER", "O", "O", "B-LOC", "O"]),
         Sentence(["Die", "Stadt", "Hamburg"], ["O", "O", "B-LOC"]),
         Sentence(["Peter", "Müller", "arbeitet", "bei", "Siemens", "AG", "seit", "2019"],
                  ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "O"])]


def small_model(kind="cnn", seed=0):
    torch.manual_seed(seed)
    cfg = BiLSTMConfig(word_dim=8, char_dim=6, char_encoder=kind, char_hidden=5, hidden_size=7, dropout=0.0)
    words = Vocab.build(Counter(word_key(w, False) for s in SENTS for w in s.words))
    chars = Vocab.build(Counter(ch for s in SENTS for w in s.words for ch in w))
    return build_bilstm_crf(cfg, len(words), len(chars), LABELS), words, chars


def test_vocab_and_batch():
    vocab = Vocab.build(Counter({"b": 2, "a": 2, "c": 1}), min_count=2)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b"] and vocab.encode(["b", "zz"]) == [3, 1]
    assert word_key("Mai 2019", lowercase=True) == "mai 0000"
    _, words, chars = small_model()
    batch = encode_batch(SENTS, words, chars, {t: i for i, t in enumerate(LABELS)})
    assert batch["words"].shape == (3, 8) and batch["chars"].shape == (3, 8, 8)
    assert batch["mask"].sum(1).tolist() == [5, 3, 8] and batch["n_tokens"] == 16
    assert batch["tags"][2].tolist() == [1, 2, 0, 0, 3, 4, 0, 0]
    assert (batch["chars"][1, 3:] == 0).all()  # padded words have no characters


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_padding_does_not_change_a_sentence(kind):
    model, words, chars = small_model(kind)
    model.eval()
    together = encode_batch(SENTS, words, chars, None)
    alone = encode_batch(SENTS[1:2], words, chars, None)
    emissions = model(together["words"], together["chars"], together["mask"])  # (3, 8, K)
    single = model(alone["words"], alone["chars"], alone["mask"])  # (1, 3, K)
    assert torch.allclose(emissions[1, :3], single[0], atol=1e-6)


@pytest.mark.parametrize("encoder", [CharCNN(20, 4, 6), CharLSTM(20, 4, 3)])
def test_char_encoders_ignore_padding_characters(encoder):
    chars = torch.tensor([[[5, 6, 7, 0, 0]]])  # (1, 1, 5)
    trimmed = chars[:, :, :3]
    assert torch.allclose(encoder(chars), encoder(trimmed), atol=1e-6)
    assert encoder(torch.zeros(1, 2, 4, dtype=torch.long)).abs().sum() == 0  # padding words -> zeros


def test_learns_a_toy_task_and_decodes_valid_bio():
    model, words, chars = small_model(seed=1)
    batch = encode_batch(SENTS, words, chars, {t: i for i, t in enumerate(LABELS)})
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(batch).item()
    for _ in range(60):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert model.loss(batch).item() < 0.05 * first
    assert torch.equal(model.decode(batch), batch["tags"].masked_fill(~batch["mask"], -1))


def test_length_batches_cover_every_sentence_once():
    sents = [Sentence(["w"] * n, ["O"] * n) for n in range(1, 40)]
    batches = length_batches(sents, batch_size=4, seed=3)
    assert sorted(len(s.words) for b in batches for s in b) == list(range(1, 40))
    assert length_batches(sents, 4, seed=3) == batches
