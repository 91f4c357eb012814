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


def test_initial_table_takes_scaled_vectors_and_draws_the_rest():
    from data.word_vectors import WordVectors
    from tasks.bilstm_crf import initial_table
    vectors = WordVectors(["berlin", "in", "nie"], torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 5.0]]))
    words = Vocab.build(Counter({"in": 3, "anna": 2}), extra=vectors.words)  # <pad> <unk> in anna berlin nie
    table = initial_table(words, vectors, seed=0)
    std = vectors.matrix.std()
    for word, row in (("berlin", 0), ("in", 1), ("nie", 2)):
        assert torch.equal(table[words.index(word)], vectors.matrix[row] / std)
    drawn = torch.randn(len(words), 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(table[words.index("anna")], drawn[words.index("anna")])
    model = build_bilstm_crf(BiLSTMConfig(word_dim=2, char_dim=3, char_hidden=3, hidden_size=3), len(words), 5,
                             LABELS, word_vectors=table)
    assert torch.equal(model.words.weight[words.index("nie")], table[words.index("nie")])
    assert not model.words.weight[0].any()  # the padding row stays zero


@pytest.mark.parametrize("override,message", [({"word_vectors": "sgns"}, "bilstm.lowercase"),
                                              ({"word_vectors": "sgns", "lowercase": True, "word_dim": 50},
                                               "bilstm.word_dim"),
                                              ({"word_vectors": "glove"}, "bilstm.word_vectors")])
def test_word_vector_settings_are_checked_before_any_work(override, message):
    from core.config import Config
    from tasks.bilstm_crf import BiLSTMCRFTask
    cfg = Config()
    for key, value in override.items():
        setattr(cfg.bilstm, key, value)
    with pytest.raises(ValueError, match=message):
        BiLSTMCRFTask(cfg, SENTS, SENTS, SENTS)


def test_run_writes_results_json_scoring_the_best_checkpoint(tmp_path):
    import json
    from core.config import Config
    from tasks.bilstm_crf import BiLSTMCRFTask, f1_on
    cfg = Config()
    cfg.bilstm = BiLSTMConfig(word_dim=8, char_dim=6, char_hidden=5, hidden_size=7, dropout=0.0)
    cfg.train.precision, cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = "fp32", 3, 2, 1e-2
    task = BiLSTMCRFTask(cfg, SENTS, SENTS[:2], SENTS[1:])
    returned = task.run(cfg, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == returned
    model = task.build_model()
    model.load_state_dict(torch.load(tmp_path / "best.pt", map_location="cpu")["model"])
    assert returned["test_f1"] == f1_on(model, SENTS[1:], task.words, task.chars, False)
    assert returned["best_dev_f1"] == f1_on(model, SENTS[:2], task.words, task.chars, False)


def _resumable_cfg():
    from core.config import Config
    cfg = Config()
    cfg.bilstm = BiLSTMConfig(word_dim=8, char_dim=6, char_hidden=5, hidden_size=7, dropout=0.3)
    cfg.train.precision, cfg.train.device, cfg.train.epochs, cfg.train.batch_size = "fp32", "cpu", 4, 1
    cfg.train.lr, cfg.train.eval_every, cfg.train.log_every = 1e-2, 2, 1
    return cfg


def test_killed_and_resumed_run_reports_what_the_uninterrupted_run_reports(tmp_path, monkeypatch):
    import json
    from tasks.bilstm_crf import BiLSTMCRFTask

    cfg = _resumable_cfg()
    task = BiLSTMCRFTask(cfg, SENTS, SENTS[:2], SENTS[1:])
    expected = task.run(cfg, tmp_path / "full")
    best = torch.load(tmp_path / "full" / "best.pt", weights_only=True)["model"]

    original = BiLSTMCRFTask.train_batches

    def crashing(self, epoch, rank, world):  # 3 steps per epoch: dies fetching step 8, after the step-6 save
        for i, batch in enumerate(original(self, epoch, rank, world)):
            if (epoch, i) == (2, 1):
                raise KeyboardInterrupt("killed")
            yield batch
    with monkeypatch.context() as m:
        m.setattr(BiLSTMCRFTask, "train_batches", crashing)
        with pytest.raises(KeyboardInterrupt):
            BiLSTMCRFTask(cfg, SENTS, SENTS[:2], SENTS[1:]).run(cfg, tmp_path / "cut")
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"] == 6
    cfg.train.resume = True
    for _ in range(2):  # the resume, then resuming the finished run
        assert BiLSTMCRFTask(cfg, SENTS, SENTS[:2], SENTS[1:]).run(cfg, tmp_path / "cut") == expected
        assert json.loads((tmp_path / "cut" / "results.json").read_text()) == expected
        resumed_best = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)["model"]
        assert all(torch.equal(best[k], resumed_best[k]) for k in best)


def test_caps_are_fixed_seed_samples_and_the_test_set_is_not_capped_by_the_dev_cap(tmp_path):
    from core.config import load_config
    from data.conll import write_conll
    from data.sampling import downsample
    from data.sources import load_split
    from tasks.bilstm_crf import build_task

    sents = [Sentence([f"w{i}", "x"], ["B-PER", "O"]) for i in range(20)]
    (tmp_path / "panx/de").mkdir(parents=True)
    for split in ("train", "val", "test"):
        write_conll(tmp_path / f"panx/de/{split}.conllu", sents)
    cfg = load_config(None, [f"data.root={tmp_path}", "data.max_eval_sentences=5", "data.max_train_sentences=7",
                             "data.max_test_sentences=0", "task=bilstm_crf"])
    task = build_task(cfg)
    assert len(task.test) == 20  # max_test_sentences=0: all of them, whatever the dev cap says
    dev = load_split(cfg.data, "de", "dev")
    assert [s.words for s in task.dev] == [s.words for s in downsample(dev, 5, cfg.train.seed)]
    assert [s.words for s in task.dev] != [s.words for s in dev[:5]]  # a sample, not the first five
    assert len(task.train) == 7
