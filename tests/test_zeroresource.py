"""The zero-resource pipeline's steps on tiny synthetic inputs (docs/ZERORESOURCE.md): word-by-word
translation (mutual-only vs all, what is copied, case), weight sharing (the target model starts as
the source model), feature augmentation (frozen source features concatenated), the length schedule."""
from __future__ import annotations

import pytest
import torch

from core.config import load_config
from data.conll import Sentence
from data.vocab import Vocab, count_chars
from models.bilstm_crf import build_bilstm_crf
from tasks.bilstm_crf import LABELS
from tasks.zeroresource import BilingualSpace, TaggingStage, share_weights, translate_sentences

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

SRC = ["haus", "katze", "hund", "berlin", "baum", "stadt"]
TGT = ["house", "cat", "dog", "berlin", "tree"]
E = 8  # vector size


def tiny_space() -> BilingualSpace:
    """Target word j sits exactly on its source translation; 'stadt' is close to 'baum' only, so its
    nearest target word is 'tree' but the nearest source word of 'tree' is 'baum': not mutual."""
    basis, _ = torch.linalg.qr(torch.randn(E, E, generator=torch.Generator().manual_seed(0)))  # orthonormal rows
    src = torch.cat([basis[:5], (basis[4] + 0.3 * basis[5]).unsqueeze(0)])  # (6, E)
    src = src / src.norm(dim=1, keepdim=True)
    return BilingualSpace(SRC, src, TGT, basis[:5].clone(), k=1, max_vocab=6)


def test_translation_table_and_mutual_neighbours():
    space = tiny_space()
    assert space.translation == ["house", "cat", "dog", "berlin", "tree", "tree"]
    assert space.mutual == [True, True, True, True, True, False]  # 'stadt' -> 'tree' -> 'baum'
    assert space.tables["target"].shape == (8, E) and space.tables["target"][:2].abs().sum() == 0  # <pad>, <unk>


def test_word_by_word_translation_mutual_only_vs_all():
    space = tiny_space()
    words = ["Haus", "HUND", "katze", "Berlin", "Stadt", "2020", "Zug", "U.S.", "K"]
    tags = ["O", "B-ORG", "O", "B-LOC", "O", "O", "O", "B-LOC", "O"]
    sent = Sentence(words, tags, "de")
    (mutual,) = translate_sentences([sent], space, mutual_only=True)
    # translated with the case restored; copied: a word the target also has (a name), an unreliable
    # (non-mutual) translation, a number, an unknown word, a non-alphabetic word
    assert mutual.words == ["House", "DOG", "cat", "Berlin", "Stadt", "2020", "Zug", "U.S.", "K"]
    (every,) = translate_sentences([sent], space, mutual_only=False)
    assert every.words == ["House", "DOG", "cat", "Berlin", "Tree", "2020", "Zug", "U.S.", "K"]
    assert mutual.tags == tags and mutual.tags is not sent.tags  # labels carried over, not shared
    assert sent.words[0] == "Haus"  # the input is untouched


def _cfg(**bilstm):
    sizes = {"word_dim": E, "char_dim": 4, "char_hidden": 5, "hidden_size": 6, "dropout": 0.0, **bilstm}
    return load_config(None, [f"bilstm.{k}={v}" for k, v in sizes.items()] + ["train.batch_size=4", "train.seed=3"])


def _sentences(n=12):
    pool = SRC + ["Berlin", "in", "der"]
    return [Sentence([pool[(i + j) % len(pool)] for j in range(1 + i % 7)], ["O"] * (1 + i % 7)) for i in range(n)]


def _stage_parts(extra_dim: int):
    cfg = _cfg()
    space = tiny_space()
    sentences = _sentences()
    space.chars = Vocab.build(count_chars(sentences))
    build = lambda extra=0: build_bilstm_crf(cfg.bilstm, space.rows, len(space.chars), LABELS,  # noqa: E731
                                             freeze_words=True, extra_dim=extra)
    torch.manual_seed(0)
    source = build().eval()
    torch.manual_seed(1)  # the target starts from different random weights
    target = build(extra_dim)
    return cfg, space, sentences, source, target


def test_weight_sharing_target_starts_as_the_source():
    """After share_weights every source tensor is in the target; the output layer's extra columns
    are 0, so the target's emissions equal the source's whatever the extra features are."""
    cfg, space, sentences, source, target = _stage_parts(extra_dim=12)
    src_state = source.state_dict()
    assert not torch.equal(target.lstm.weight_ih_l0, source.lstm.weight_ih_l0)  # different before
    share_weights(target, source)
    for name, value in target.state_dict().items():
        if name == "out.weight":
            assert torch.equal(value[:, :12], src_state[name]) and value[:, 12:].abs().sum() == 0
        else:
            assert torch.equal(value, src_state[name]), name
    stage = TaggingStage(cfg, space, sentences, sentences, "source", lambda: target)
    batch = next(iter(stage.train_batches(0, 0, 1)))
    noise = torch.randn(*batch["words"].shape, 12)  # (B, W, F) any augmentation features
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(batch["words"], batch["chars"], batch["mask"], noise),
                                   source(batch["words"], batch["chars"], batch["mask"]), rtol=0, atol=1e-6)


def test_feature_augmentation_concatenates_frozen_source_features():
    cfg, space, sentences, source, target = _stage_parts(extra_dim=12)  # 2 x hidden 6
    stage = TaggingStage(cfg, space, sentences, sentences, "source", lambda: target, source_model=source)
    model = stage.build_model()
    assert model.out.weight.shape == (len(LABELS), 12 + 12)  # own BiLSTM states + the source's
    assert torch.equal(model.words.weight, space.tables["source"]) and not model.words.weight.requires_grad
    batch = next(iter(stage.train_batches(0, 0, 1)))
    extra = stage.extra(model, batch)  # (B, W, 2H)
    assert extra.shape == (*batch["words"].shape, 12) and not extra.requires_grad
    with torch.no_grad():
        assert torch.equal(extra, source.features(batch["words"], batch["chars"], batch["mask"]))
    stage.loss(model, batch).backward()
    assert all(p.grad is None for p in source.parameters())  # the source model stays frozen
    assert model.out.weight.grad[:, 12:].abs().sum() > 0  # the extra features feed the output layer
    assert model.words.weight.grad is None  # the word table is frozen too
    plain = TaggingStage(cfg, space, sentences, sentences, "source", lambda: source)
    assert plain.extra(source, batch) is None  # without augmentation nothing is concatenated


def test_length_schedule_short_first_every_sentence_once_deterministic():
    cfg, space, _, source, _ = _stage_parts(extra_dim=0)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 30, (40,), generator=gen).tolist()
    train = [Sentence(["haus"] * n, ["O"] * n) for n in lengths]
    stage = TaggingStage(cfg, space, train, train[:2], "source", lambda: source, length_schedule=True)
    epochs = [[id(s) for batch in stage.train_batches(e, 0, 1).batches for s in batch] for e in range(3)]
    assert all(sorted(order) == sorted(map(id, train)) for order in epochs)  # each sentence once
    assert [len(b) for b in stage.train_batches(0, 0, 1).batches] == [4] * 10
    again = TaggingStage(cfg, space, train, train[:2], "source", lambda: source, length_schedule=True)
    assert [id(s) for b in again.train_batches(1, 0, 1).batches for s in b] == epochs[1]  # same seed + epoch
    assert epochs[0] != epochs[1]  # a new order each epoch
    position = {id(s): i for i, s in enumerate(train)}
    for order in epochs:
        ranks = [stage.length_rank[position[i]] for i in order]
        # rank + U(0, 0.5): a sentence can only come before one whose rank is at most 0.5 lower
        assert all(ranks[a] - ranks[b] < 0.5 for a in range(len(ranks)) for b in range(a + 1, len(ranks)))
        assert ranks != sorted(ranks)  # noisy, not a plain sort
        first, last = ranks[:10], ranks[-10:]
        assert max(first) < 0.7 and min(last) > 0.3 and sum(first) < sum(last)
    shards = [[id(s) for b in stage.train_batches(0, r, 2).batches for s in b] for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(epochs[0]) and not set(shards[0]) & set(shards[1])
    plain = TaggingStage(cfg, space, train, train[:2], "source", lambda: source, length_schedule=False)
    ranks = [stage.length_rank[position[id(s)]] for b in plain.train_batches(0, 0, 1).batches for s in b]
    assert max(ranks[:10]) > 0.7  # without the schedule long sentences come early too


def test_build_task_names_missing_files_before_any_vectors(tmp_path):
    """A data root without the target's test file: one error naming it, raised by build_task
    (before the word vectors and the models take minutes), no cache written."""
    from data.sources import MissingDataError
    from tasks.zeroresource import build_task

    for lang in ("de", "en", "es", "nl"):
        for name in ("train.conllu", "val.conllu", "test.conllu"):
            path = tmp_path / "panx" / lang / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if (lang, name) != ("en", "test.conllu"):
                path.write_text("Berlin\tB-LOC\n\n", encoding="utf-8")
    cfg = load_config(overrides=[f"data.root={tmp_path}", "task=zeroresource", "mapping.target_lang=en"])
    with pytest.raises(MissingDataError, match=r"panx/en/test\.conllu"):
        build_task(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panx"]


def test_vector_ngrams_reach_the_vectors_and_key_the_source_model_cache(tmp_path, monkeypatch):
    """mapping.vector_ngrams=[3, 5] trains (or loads) fastText-style vectors for both languages, and
    the cached source model's key names them (so it is never reused across the two kinds)."""
    import tasks.zeroresource as zr
    from data.word_vectors import WordVectors

    asked = []
    words = ["berlin", "paris", "haus", "house", "und", "and"]

    def fake_load_or_train(cache, root, lang, *settings, log=print, ngrams=None):
        asked.append((lang, tuple(ngrams) if ngrams else None))
        return WordVectors(words, torch.randn(len(words), 8, generator=torch.Generator().manual_seed(len(lang))))

    monkeypatch.setattr(zr, "load_or_train", fake_load_or_train)
    cfg = load_config(overrides=[f"data.root={tmp_path}", "task=zeroresource", "mapping.vector_dim=8",
                                 "mapping.vector_ngrams=[3, 5]", "mapping.refinement_steps=0"])
    space = zr.build_space(cfg, log=lambda *_: None)
    assert asked == [("de", (3, 5)), ("en", (3, 5))]
    assert space.vectors_name.endswith("_ng35.pt")
    plain = zr.build_space(load_config(overrides=[f"data.root={tmp_path}", "task=zeroresource", "mapping.vector_dim=8",
                                                  "mapping.refinement_steps=0"]), log=lambda *_: None)
    assert asked[-1] == ("en", None) and not plain.vectors_name.endswith("_ng35.pt")
