"""NER prediction with a CRF head, pinned against brute force. tasks/ner.predict_words (windows,
padded batches, first-piece packing, the mask it gives CRF.decode, stitching) must give every word
the tag of the best BIO-valid path over its owner window's first pieces, found by enumerating every
path of that window alone (no batch, no padding); tasks/bilstm_crf.predict_tags likewise per sentence."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from data.conll import Sentence
from data.labels import build_label_set
from data.windows import build_windows
from models.crf import CRF
from models.tagger import CRFTagger
from tasks.ner import predict_words
from test_crf import brute_force_scores, random_crf
from test_windows import ChunkTokenizer

LABELS = build_label_set()
TAGS = list(LABELS.tags)
K = len(TAGS)
DATA = SimpleNamespace(max_length=7, stride=2)  # windows of 5 pieces sharing 2: at most 5 owned words

pytestmark = pytest.mark.usefixtures("one_thread")


class ContextTable(nn.Module):
    """Emissions from the piece, its position in the window, the mean over the window's real pieces
    and their number: padding that leaked in, or a wrong position, changes a window's emissions."""

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.piece = nn.Parameter(2 * torch.randn(100, K, generator=gen))  # (V, K)
        self.position = nn.Parameter(torch.randn(DATA.max_length, K, generator=gen))  # (T, K)
        self.context = nn.Parameter(2 * torch.randn(100, K, generator=gen))  # (V, K)
        self.length = nn.Parameter(3 * torch.randn(DATA.max_length + 1, K, generator=gen))  # (T + 1, K)

    def forward(self, input_ids, attention_mask, select=None):
        real = attention_mask.unsqueeze(2).float()  # (B, T, 1)
        context = (self.context[input_ids] * real).sum(1, keepdim=True) / real.sum(1, keepdim=True)  # (B, 1, K)
        length = self.length[attention_mask.sum(1)].unsqueeze(1)  # (B, 1, K)
        logits = self.piece[input_ids] + self.position[:input_ids.shape[1]] + context + length  # (B, T, K)
        return logits if select is None else logits[select]


def sentences(seed: int = 0) -> list[Sentence]:
    rng = random.Random(seed)
    out = []
    for _ in range(14):
        words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 7))]
        out.append(Sentence(words, ["O"] * len(words)))
    out.append(Sentence(["x" * 30, "ab", "c"], ["O"] * 3))  # 10 pieces of one word: windows that own no word
    out.append(Sentence(["z"], ["O"]))  # one word, one piece
    return out


def bio_valid(path: torch.Tensor) -> torch.Tensor:
    """(P,) whether each tag path (P, n) is valid IOB2: I-X only after B-X or I-X."""
    ok = torch.ones(path.shape[0], dtype=torch.bool)
    for t in range(path.shape[1]):
        for j, tag in enumerate(TAGS):
            if tag.startswith("I-"):
                if t == 0:
                    ok &= path[:, 0] != j
                else:
                    before = path[:, t - 1]
                    allowed = torch.tensor([TAGS.index("B-" + tag[2:]), j])
                    ok &= (path[:, t] != j) | torch.isin(before, allowed)
    return ok


def brute_force_best(emissions: torch.Tensor, crf: CRF) -> list[int]:
    """The best valid path of one window's first-piece emissions (n, K), over all K^n paths."""
    path, score = brute_force_scores(emissions, emissions.shape[0], crf.start_transitions, crf.transitions,
                                     crf.end_transitions)  # (P, n), (P,)
    score = score.masked_fill(~bio_valid(path), float("-inf"))
    return path[int(score.argmax())].tolist()


@pytest.mark.parametrize("kernels", ["reference", "fast"])
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_crf_prediction_equals_brute_force_per_owner_window(kernels, batch_size):
    sents = sentences()
    tokenizer = ChunkTokenizer()
    crf = random_crf(K, TAGS, kernels, seed=1, scale=2.0)  # scores large enough to change the best path
    model = CRFTagger(ContextTable(), crf)
    tags, _ = predict_words(model, sents, tokenizer, LABELS, DATA, batch_size=batch_size, precision="fp32")

    want = [[None] * len(s.words) for s in sents]
    windows = build_windows(sents, tokenizer, LABELS, DATA.max_length, DATA.stride)
    empty = 0
    with torch.no_grad():
        for window in windows:
            owned = [t for t, w in enumerate(window.word_ids) if w >= 0]
            if not owned:
                empty += 1
                continue
            ids = torch.tensor([window.input_ids])  # (1, T) this window alone, no padding
            emissions = model(ids, torch.ones_like(ids, dtype=torch.bool))[0]  # (T, K)
            for t, tag in zip(owned, brute_force_best(emissions[owned], crf)):
                want[window.sent_id][window.word_ids[t]] = TAGS[tag]
    assert empty > 0 and max(len(w) for w in windows) > min(len(w) for w in windows)  # both paths are exercised
    assert tags == want


def test_bilstm_crf_prediction_equals_brute_force_per_sentence():
    # tasks/bilstm_crf.predict_tags: length-sorted padded batches, decode with the batch's mask, paths
    # cut to each sentence's length; every sentence must get the best valid path of it alone
    from collections import Counter

    from core.config import BiLSTMConfig
    from data.vocab import Vocab, encode_batch, word_key
    from models.bilstm_crf import build_bilstm_crf
    from tasks.bilstm_crf import LABELS as BILSTM_LABELS
    from tasks.bilstm_crf import predict_tags as bilstm_predict

    assert list(BILSTM_LABELS) == TAGS  # brute_force_best's BIO rules are written for these tags
    sents = [s for s in sentences(seed=3) if len(s.words) <= 5][:10]
    words = Vocab.build(Counter(word_key(w, False) for s in sents for w in s.words))
    chars = Vocab.build(Counter(ch for s in sents for w in s.words for ch in w))
    torch.manual_seed(0)
    cfg = BiLSTMConfig(word_dim=8, char_dim=6, char_hidden=5, hidden_size=7, dropout=0.0)
    model = build_bilstm_crf(cfg, len(words), len(chars), BILSTM_LABELS)
    with torch.no_grad():
        model.out.weight.mul_(20)  # emissions of a few units, so the paths differ from sentence to sentence
        for p in (model.crf.start_transitions, model.crf.end_transitions, model.crf.transitions):
            p.copy_(2 * torch.randn(p.shape))
    got = bilstm_predict(model, sents, words, chars, lowercase=False, batch_size=3)
    want = []
    with torch.no_grad():
        model.eval()
        for s in sents:
            alone = encode_batch([s], words, chars, None)
            emissions = model(alone["words"], alone["chars"], alone["mask"])[0]  # (W, K)
            want.append([TAGS[t] for t in brute_force_best(emissions, model.crf)])
    assert len({len(s.words) for s in sents}) > 2 and len(set(map(tuple, want))) > 3
    assert got == want


@pytest.mark.parametrize("head", ["crf", "bilstm_crf"])
@pytest.mark.parametrize("kernels,device,want", [("reference", "cpu", "reference"), ("fast", "cpu", "fast"),
                                                 ("auto", "cpu", "fast"), ("auto", "cuda", "reference")])
def test_the_task_builds_its_crf_with_model_kernels(monkeypatch, head, kernels, device, want):
    # the CRF head follows model.kernels as the encoder does (auto: fast on the CPU), so the run log's
    # kernels line says what runs
    import models
    from core.config import load_config
    from tasks.ner import load_model

    class Encoder(ContextTable):
        dropout = nn.Dropout(0.1)
        config = SimpleNamespace(hidden_size=4, vocab_size=ChunkTokenizer.vocab_size)
        num_labels = K

    monkeypatch.setattr(models, "load_pretrained", lambda *a, **kw: (Encoder(), ChunkTokenizer()))
    cfg = load_config(overrides=[f"model.head={head}", f"model.kernels={kernels}", f"train.device={device}"])
    model, _ = load_model(cfg, K)
    assert isinstance(model, CRFTagger) and model.crf.kernels == want
