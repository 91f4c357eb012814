"""Zero-resource stages follow the rule of every task: a stage returns its best-dev weights from
best.pt, and a killed stage resumed from its last.pt ends as the uninterrupted one."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from core.config import BiLSTMConfig, Config
from data.conll import Sentence
from data.vocab import Vocab
from models.bilstm_crf import build_bilstm_crf
from tasks.bilstm_crf import LABELS
from tasks.zeroresource import BilingualSpace, TaggingStage, fit_stage

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["anna", "lebt", "in", "berlin", ".", "die", "stadt", "hamburg", "peter", "arbeitet"]
SENTS = [Sentence(["Anna", "lebt", "in", "Berlin", "."], ["B-PER", "O", "O", "B-LOC", "O"]),
         Sentence(["Die", "Stadt", "Hamburg"], ["O", "O", "B-LOC"]),
         Sentence(["Peter", "arbeitet", "in", "Hamburg", "."], ["B-PER", "O", "O", "B-LOC", "O"])]


def _stage(cfg):
    g = torch.Generator().manual_seed(0)
    src = torch.nn.functional.normalize(torch.randn(len(WORDS), 4, generator=g), dim=1)  # (S, E)
    space = BilingualSpace(WORDS, src, WORDS, src.clone(), k=2, max_vocab=len(WORDS))
    space.chars = Vocab.build(Counter(ch for s in SENTS for w in s.words for ch in w))
    make = lambda: build_bilstm_crf(cfg.bilstm, space.rows, len(space.chars), LABELS, freeze_words=True)  # noqa: E731
    return TaggingStage(cfg, space, SENTS, SENTS[:2], "source", make)


def _cfg():
    cfg = Config()
    cfg.bilstm = BiLSTMConfig(word_dim=4, char_dim=5, char_hidden=4, hidden_size=6, dropout=0.3)
    cfg.train.precision, cfg.train.device, cfg.train.batch_size = "fp32", "cpu", 1
    cfg.train.lr, cfg.train.eval_every, cfg.train.log_every = 2e-2, 2, 1
    return cfg


def test_stage_returns_best_weights_and_resumes_to_the_same(tmp_path, monkeypatch):
    cfg = _cfg()
    model = fit_stage(cfg, _stage(cfg), tmp_path / "full", epochs=4)
    best_pt = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    assert best_pt["step"] < torch.load(tmp_path / "full" / "last.pt", weights_only=True)["step"]
    best = best_pt["model"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())  # best.pt, not the last

    original = TaggingStage.train_batches

    def crashing(self, epoch, rank, world):  # 3 steps per epoch: dies in step 8, after the step-6 save
        batches = list(original(self, epoch, rank, world))
        for i, batch in enumerate(batches):
            if (epoch, i) == (2, 1):
                raise KeyboardInterrupt("killed")
            yield batch
    with monkeypatch.context() as m:
        m.setattr(TaggingStage, "train_batches", crashing)
        with pytest.raises(KeyboardInterrupt):
            fit_stage(cfg, _stage(cfg), tmp_path / "cut", epochs=4)
    cfg.train.resume = True
    resumed = fit_stage(cfg, _stage(cfg), tmp_path / "cut", epochs=4)
    assert all(torch.equal(v, best[k]) for k, v in resumed.state_dict().items())
    assert torch.equal(torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]["out.weight"],
                       torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]["out.weight"])
