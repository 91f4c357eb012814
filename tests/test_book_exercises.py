"""Solutions of the exercises of the book's chapters 01-05 (docs/book/), checked against the library."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "book"))
from _common import tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


# ---- 01. the tokenizer ------------------------------------------------------------------------
CORPUS_01 = """Der Bürgermeister von Berlin spricht mit der Bürgermeisterin von Hamburg .
Die Bürger der Stadt wählen den Stadtrat und die Stadträtin im Rathaus .
Der Berliner Senat und der Hamburger Senat treffen sich in der Hauptstadt .
Angela Merkel besucht das Rathaus in Paris und die Rathäuser in Frankreich .
Die Journalisten der Zeitung schreiben über den Besuch der Bürgermeister .
Die Zeitungen berichten über die Stadtratswahl und die Bürgermeisterwahl in Berlin .""".splitlines()
WORDS_01 = ["Die", "Bürgermeisterin", "von", "Hamburg", "besucht", "die", "Hamburger", "Stadträtin", "."]
TAGS_01 = ["O", "O", "O", "B-LOC", "O", "O", "B-MISC", "O", "O"]


@pytest.fixture(scope="module")
def tokenizer_01():
    """Chapter 01's tokenizer, trained the same way."""
    from data.tokenizer import XLMRTokenizer

    return XLMRTokenizer.train(CORPUS_01 * 20, vocab_size=90, out_dir=None)


def test_ch01_exercise_1_label_all_pieces_by_hand(tokenizer_01):
    from data.conll import Sentence
    from data.labels import IGNORE_INDEX, build_label_set
    from data.windows import build_windows

    labels = build_label_set(["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC"])
    _, word_index = tokenizer_01.encode_words(WORDS_01)
    row = [IGNORE_INDEX]  # <s>
    for j, w in enumerate(word_index):
        tag = TAGS_01[w]
        if j > 0 and word_index[j - 1] == w and tag.startswith("B-") and "I-" + tag[2:] in labels:
            tag = "I-" + tag[2:]
        row.append(labels.id(tag))
    row.append(IGNORE_INDEX)  # </s>
    (window,) = build_windows([Sentence(WORDS_01, TAGS_01)], tokenizer_01, labels, label_all_pieces=True)
    assert window.labels == row
    assert labels.id("I-MISC") in row  # "Hamburger" has two pieces: the second is I-MISC


def test_ch01_exercise_2_window_owners_from_the_rule(tokenizer_01):
    from data.conll import Sentence
    from data.labels import build_label_set
    from data.windows import build_windows, window_spans

    words, tags = WORDS_01 * 3, TAGS_01 * 3
    _, word_index = tokenizer_01.encode_words(words)
    spans = window_spans(len(word_index), max_length=16, stride=3)
    owner = {}
    for j, w in enumerate(word_index):
        if j > 0 and word_index[j - 1] == w:
            continue  # not a first piece
        margins = [min(j - start, end - 1 - j) if start <= j < end else -1 for start, end in spans]
        owner[w] = margins.index(max(margins))  # index() takes the first of equal margins
    windows = build_windows([Sentence(words, tags)], tokenizer_01, build_label_set(["O", "B-LOC", "I-LOC", "B-MISC",
                                                                                      "I-MISC"]), 16, 3)
    from_library = {w: k for k, win in enumerate(windows) for w in win.word_ids if w >= 0}
    assert from_library == owner and len(owner) == len(words) and len(set(owner.values())) == len(spans)


# ---- 02. the encoder -------------------------------------------------------------------------
def test_ch02_exercise_1_parameter_count_from_the_config():
    from models import load_pretrained

    encoder, _ = load_pretrained(tiny_checkpoint(), task="encoder", with_tokenizer=False)
    c = encoder.config
    V, H, L, I, P = c.vocab_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.max_position_embeddings
    embeddings = V * H + P * H + c.type_vocab_size * H + 2 * H   # three tables + LayerNorm
    attention = (H * 3 * H + 3 * H) + (H * H + H) + 2 * H       # fused q/k/v, output, LayerNorm
    feed_forward = (H * I + I) + (I * H + H) + 2 * H           # up, down, LayerNorm
    assert embeddings + L * (attention + feed_forward) == sum(p.numel() for p in encoder.parameters())


def test_ch02_exercise_2_right_padding_changes_nothing():
    from data.batching import collate
    from data.conll import Sentence
    from data.labels import build_label_set
    from data.windows import build_windows
    from models import load_pretrained

    model, tokenizer = load_pretrained(tiny_checkpoint(), task="encoder")
    words = ["Angela", "Merkel", "besucht", "das", "Rathaus", "in", "Paris", "."]
    short, long = Sentence(words, ["O"] * 8), Sentence(words + words[:5], ["O"] * 13)
    labels = build_label_set()
    alone = collate(build_windows([short], tokenizer, labels, 128, 32), pad_id=tokenizer.pad_id)
    both = collate(build_windows([short, long], tokenizer, labels, 128, 32), pad_id=tokenizer.pad_id)
    T = alone["input_ids"].shape[1]
    assert both["input_ids"].shape[1] > T and not both["attention_mask"][0, T:].any()  # really padded
    with torch.no_grad():
        hidden_alone = model(alone["input_ids"], alone["attention_mask"])  # (1, T, H)
        hidden_both = model(both["input_ids"], both["attention_mask"])     # (2, T', H)
    torch.testing.assert_close(hidden_both[0, :T], hidden_alone[0], rtol=1e-5, atol=1e-5)


# ---- 03. the training loop -------------------------------------------------------------------
def _toy_03(dropout: float = 0.0, seed: int = 0):
    """Chapter 03's toy tagger, task, micro-batches and TrainState factory, compactly."""
    import torch.nn.functional as F
    from torch import nn

    from core.config import TrainConfig
    from core.train_state import build_train_state
    from data.labels import IGNORE_INDEX

    V, H, K = 12_000, 8, 5

    class Task:
        def loss(self, model, batch):
            logits = model(batch["input_ids"])  # (B, T, K)
            return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(),
                                   ignore_index=IGNORE_INDEX, reduction="sum")

    def make_batch(sentences):
        T = max(len(ids) for ids, _ in sentences)
        input_ids, labels = torch.zeros(len(sentences), T, dtype=torch.long), torch.full((len(sentences), T), -100)
        for b, (ids, tags) in enumerate(sentences):
            input_ids[b, :len(ids)], labels[b, :len(ids)] = ids, tags
        return {"input_ids": input_ids, "labels": labels, "n_tokens": int((labels != -100).sum())}

    g = torch.Generator().manual_seed(0)
    sentences = [(ids, ids % K) for ids in (torch.randint(1, V, (n,), generator=g) for n in [2, 3, 12, 11, 4, 5, 9, 7])]
    cfg = TrainConfig(lr=0.05, clip_grad_norm=1.0, schedule="constant", lazy_embedding_min_rows=10_000)

    def fresh(dropout=dropout, seed=seed):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Embedding(V, H), nn.Dropout(dropout), nn.Linear(H, K))
        return build_train_state(model, cfg, total_steps=100)  # fp32 on the CPU: the scaler is off

    return Task(), make_batch(sentences), [make_batch(sentences[i:i + 2]) for i in range(0, 8, 2)], fresh


def test_ch03_exercise_1_micro_batch_means_weighted_by_their_tokens():
    from torch import nn

    task, big, micro, _ = _toy_03()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(12_000, 8), nn.Linear(8, 5))

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    reference = grads(task.loss(model, big) / big["n_tokens"])
    total = sum(m["n_tokens"] for m in micro)
    weights = [m["n_tokens"] / total for m in micro]  # the answer: n_i / N
    fixed = grads(sum(w * task.loss(model, m) / m["n_tokens"] for w, m in zip(weights, micro)))
    naive = grads(sum(task.loss(model, m) / m["n_tokens"] for m in micro) / len(micro))
    for r, f, n in zip(reference, fixed, naive):
        torch.testing.assert_close(f, r)
    assert not all(torch.allclose(n, r) for n, r in zip(naive, reference))


@pytest.mark.parametrize("dropout, same", [(0.3, False), (0.0, True)])
def test_ch03_exercise_2_a_resume_without_the_rng_state(tmp_path, dropout, same):
    from core.checkpoint import load_train_state, rng_state, set_rng_state
    from core.loop import train_step

    task, _, micro, fresh = _toy_03(dropout)
    steps = [micro[i % 4] for i in range(6)]
    straight = fresh()
    for batch in steps:
        train_step(straight, task, [batch])
    first = fresh()
    for batch in steps[:3]:
        train_step(first, task, [batch])
    saved = load_train_state(first.save(tmp_path / "last.pt"))
    resumed = fresh(seed=123)
    own_rng = rng_state()
    resumed.restore(saved)
    set_rng_state(own_rng)  # everything restored but the RNG
    for batch in steps[3:]:
        train_step(resumed, task, [batch])
    straight.optimizer.materialize()
    resumed.optimizer.materialize()
    equal = all(torch.equal(p, q) for p, q in zip(straight.model.parameters(), resumed.model.parameters()))
    assert equal == same


# ---- 04. the CRF -----------------------------------------------------------------------------
LABELS_04 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_ch04_exercise_1_marginals_are_the_gradient_of_log_z():
    import itertools

    from models.crf import log_partition

    K, W = len(LABELS_04), 4
    g = torch.Generator().manual_seed(0)
    emissions = torch.randn(1, W, K, generator=g, dtype=torch.float64, requires_grad=True)  # (B, W, K)
    start, trans, end = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in [(K,), (K, K), (K,)])
    mask = torch.ones(1, W, dtype=torch.bool)
    (grad,) = torch.autograd.grad(log_partition(emissions, mask, start, trans, end).sum(), emissions)  # (1, W, K)

    e = emissions.detach()[0]
    paths = list(itertools.product(range(K), repeat=W))
    scores = torch.stack([start[p[0]] + end[p[-1]] + sum(e[t, p[t]] for t in range(W))
                          + sum(trans[p[t - 1], p[t]] for t in range(1, W)) for p in paths])  # (K^W,)
    probs = (scores - torch.logsumexp(scores, 0)).exp()
    marginals = torch.zeros(W, K, dtype=torch.float64)
    for p, prob in zip(paths, probs):
        for t in range(W):
            marginals[t, p[t]] += prob
    torch.testing.assert_close(grad[0], marginals)
    torch.testing.assert_close(marginals.sum(1), torch.ones(W, dtype=torch.float64))


def test_ch04_exercise_2_count_valid_bio_paths():
    import itertools
    import math

    from models.crf import CRF, bio_allowed

    K, W = len(LABELS_04), 4
    allowed, start_allowed = bio_allowed(LABELS_04)  # (K, K), (K,) bool
    counts = start_allowed.long()  # (K,) valid paths of one word ending in each tag
    for _ in range(W - 1):
        counts = counts @ allowed.long()  # (K,): sum over the previous tag of count x allowed
    n_valid = int(counts.sum())
    brute = sum(bool(start_allowed[p[0]]) and all(allowed[a, b] for a, b in zip(p, p[1:]))
                for p in itertools.product(range(K), repeat=W))
    assert n_valid == brute == 153

    crf = CRF(K, labels=LABELS_04, constrain_training=True)
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
    zeros = torch.zeros(1, W, K)  # (B, W, K)
    log_z = crf(zeros, torch.zeros(1, W, dtype=torch.long), reduction="none").detach()  # log Z - score(O O O O)
    assert float(log_z) == pytest.approx(math.log(n_valid), abs=1e-5)


# ---- 05. the BiLSTM-CRF with characters ----------------------------------------------------
def _bilstm_05():
    from core.config import BiLSTMConfig
    from data.conll import Sentence
    from data.vocab import Vocab, count_chars, count_words
    from models.bilstm_crf import build_bilstm_crf

    train = [Sentence("Angela Merkel besucht Paris .".split(), ["B-PER", "I-PER", "O", "B-LOC", "O"]),
             Sentence("Olaf Scholz spricht in Hamburg".split(), ["B-PER", "I-PER", "O", "O", "B-LOC"])]
    words, chars = Vocab.build(count_words(train, False)), Vocab.build(count_chars(train))
    cfg = BiLSTMConfig(word_dim=12, char_dim=8, char_encoder="cnn", char_hidden=10, hidden_size=16, dropout=0.0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    return build_bilstm_crf(cfg, len(words), len(chars), labels).eval(), words, chars, cfg, labels


def test_ch05_exercise_1_unknown_words_differ_by_their_characters():
    from data.conll import Sentence
    from data.vocab import encode_batch

    model, words, chars, _, _ = _bilstm_05()
    short = encode_batch([Sentence(["Hamburgerin", "Parisienne"], ["O", "O"])], words, chars, None)
    assert short["words"][0].tolist() == [1, 1]  # both <unk>
    with torch.no_grad():
        rows = model.words(short["words"])[0]  # (W, E)
        features = model.chars(short["chars"])[0]  # (W, Hc)
    assert torch.equal(rows[0], rows[1]) and not torch.allclose(features[0], features[1])
    # beside a much longer word (more character padding) and in another batch position: the same features
    long = encode_batch([Sentence(["Donaudampfschifffahrtsgesellschaft", "Parisienne"], ["O", "O"]),
                         Sentence(["Hamburgerin"], ["O"])], words, chars, None)
    assert long["chars"].shape[-1] > short["chars"].shape[-1]
    with torch.no_grad():
        other = model.chars(long["chars"])  # (2, 2, Hc)
    torch.testing.assert_close(other[0, 1], features[1])
    torch.testing.assert_close(other[1, 0], features[0])


def test_ch05_exercise_2_parameter_count_from_the_sizes():
    model, words, chars, cfg, labels = _bilstm_05()
    V, A, E, D, Hc, H, K = len(words), len(chars), cfg.word_dim, cfg.char_dim, cfg.char_hidden, cfg.hidden_size, len(labels)
    tables = V * E + A * D
    conv = Hc * D * 3 + Hc
    lstm = 2 * (4 * H * (E + Hc) + 4 * H * H + 2 * 4 * H)  # two directions: input and hidden weights, two biases
    out = 2 * H * K + K
    crf = K * K + 2 * K
    assert tables + conv + lstm + out + crf == sum(p.numel() for p in model.parameters())
