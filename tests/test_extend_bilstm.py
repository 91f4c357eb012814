"""model.head: bilstm_crf -- the frozen encoder + BiLSTM + CRF of models/frozen_bilstm.py."""
from __future__ import annotations

import pytest
import torch

from models.crf import CRF
from models.encoder import XLMRConfig
from models.frozen_bilstm import FrozenEncoderBiLSTM
from models.heads import XLMRForTokenClassification
from models.tagger import CRFTagger

pytestmark = pytest.mark.usefixtures("one_thread")


def tagger():
    cfg = XLMRConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=20, hidden_dropout_prob=0.3)
    base = XLMRForTokenClassification(cfg, num_labels=3)
    base.init_weights(torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    return CRFTagger(FrozenEncoderBiLSTM(base, hidden=5, dropout=0.0), CRF(3))


def test_encoder_frozen_only_head_learns():
    model = tagger().train()
    frozen = {k: v.clone() for k, v in model.tagger.base.state_dict().items()}
    assert not model.tagger.base.training and model.tagger.lstm.training  # no encoder dropout
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("tagger.lstm", "tagger.out", "crf")) for n in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 9, 2, 1, 1]])
    mask = ids.ne(1)
    before = model(ids, mask).detach()
    emissions = model(ids, mask)  # (B, T, K)
    loss = model.crf(emissions[:, 1:3], torch.tensor([[0, 1], [2, 0]]), mask[:, 1:3], reduction="sum")
    loss.backward()
    optimizer.step()
    assert all(torch.equal(v, frozen[k]) for k, v in model.tagger.base.state_dict().items())
    assert not torch.allclose(model(ids, mask), before)
    assert set(model.tagger.head_state()) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                                              "lstm.bias_hh_l0", "lstm.weight_ih_l0_reverse",
                                              "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse",
                                              "lstm.bias_hh_l0_reverse", "out.weight", "out.bias"}


def test_padding_does_not_change_real_positions():
    model = tagger().eval()
    ids = torch.tensor([[0, 9, 4, 2]])
    padded = torch.tensor([[0, 9, 4, 2, 1, 1, 1]])
    with torch.no_grad():
        alone = model(ids, ids.ne(1))
        batch = model(padded, padded.ne(1))
    assert torch.allclose(alone[0], batch[0, :4], atol=1e-6)
