"""bench/flops.py: the step's FLOPs by hand for a tiny config, and against torch's own FLOP counter
run on our model (forward and forward + backward)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import phase_summary, step_flops
from models.encoder import XLMRConfig
from models import encoder_fast
from models.encoder_fast import use_kernels
from models.heads import XLMRForTokenClassification

pytestmark = pytest.mark.usefixtures("one_thread")


def test_hand_count_tiny_config():
    # H=4, L=2, I=8, K=3, two sequences of 2 and 3 real tokens: R = 5, P = 4 + 9 = 13
    f = step_flops(H=4, L=2, I=8, lengths=[2, 3], head=("classifier", 3))
    assert f["tokens"] == 5 and f["pairs"] == 13
    assert f["phases"] == {
        "embeddings": 0,
        "attention projections": 2 * (2 * 5 * 4 * 12 + 2 * 5 * 4 * 4),  # 2 * (480 + 160) = 1280
        "attention scores/values": 2 * (2 * 13 * 4 * 2),  # 416
        "FFN": 2 * (2 * 5 * 4 * 8 * 2),  # 1280
        "head": 2 * 5 * 4 * 3,  # 120
    }
    assert f["total"] == 1280 + 416 + 1280 + 120
    both = step_flops(H=4, L=2, I=8, lengths=[2, 3], head=("classifier", 3), backward=True)
    assert both["total"] == 3 * f["total"]
    assert "FFN 41%" in phase_summary(f)
    # the loss reads M_b = 1 and 1 positions: the last layer keeps k, v on R = 5 rows, the rest on M = 2
    mlm = step_flops(H=4, L=2, I=8, lengths=[2, 3], head=("masked-lm", 10), selected=[1, 1])
    assert mlm["phases"] == {
        "embeddings": 0,
        "attention projections": (2 * 5 * 4 * 12 + 2 * 5 * 4 * 4) + (2 * 5 * 4 * 8 + 2 * 2 * 4 * 4 * 2),  # 640 + 416
        "attention scores/values": 2 * 13 * 4 * 2 + 2 * (1 * 2 + 1 * 3) * 4 * 2,  # 208 + 80
        "FFN": 2 * 5 * 4 * 8 * 2 + 2 * 2 * 4 * 8 * 2,  # 640 + 256
        "head": 2 * 2 * 4 * 4 + 2 * 2 * 4 * 10,  # dense + decoder on M = 2
    }
    assert step_flops(H=4, L=2, I=8, lengths=[2, 3], head=("classifier", 3), selected=[2, 3]) == f  # all = none


@pytest.mark.parametrize("kernels", ["reference", "fast"])
@pytest.mark.parametrize("backward", [False, True])
def test_matches_torch_flop_counter_on_our_model(backward, kernels, monkeypatch):
    monkeypatch.setattr(encoder_fast, "ROW_BUCKET", 1)  # oneDNN's row buckets add zero rows: useful work only
    config = XLMRConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=40, max_position_embeddings=40, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attention="manual")  # the counter skips CPU sdpa
    model = use_kernels(XLMRForTokenClassification(config, 5), kernels, announce=False)
    ids = torch.randint(4, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)  # unpadded: the counter sees exactly the useful work
    # the counter has no formula for oneDNN's linear (the fast kernels' FastLinear in fp32): 2 M K N
    onednn = {torch.ops.mkldnn._linear_pointwise: lambda x, w, *_, **__: 2 * math.prod(x) * w[0]}
    with FlopCounterMode(display=False, custom_mapping=onednn) as counter:
        logits = model(ids, mask)
        if backward:
            F.cross_entropy(logits.flatten(0, 1), torch.zeros(21, dtype=torch.long)).backward()
    ours = step_flops(16, 2, 40, [7, 7, 7], ("classifier", 5), backward=backward)["total"]
    assert counter.get_total_flops() == ours


def test_selection_matches_torch_flop_counter(monkeypatch):
    """With ``select`` the fast kernels' last layer does the selected rows' work only -- except that it
    still scores all T query rows of the (B, T) layout (the unselected ones are zeros), which the count
    leaves out. The reference computes every row and indexes."""
    monkeypatch.setattr(encoder_fast, "ROW_BUCKET", 1)  # oneDNN's row buckets add zero rows: useful work only
    config = XLMRConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=40, max_position_embeddings=40, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attention="manual")
    model = XLMRForTokenClassification(config, 5)
    ids = torch.randint(4, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    select = torch.zeros(3, 7, dtype=torch.bool)
    select[0, :3], select[1, 5], select[2, :] = True, True, True  # M_b = 3, 1, 7
    onednn = {torch.ops.mkldnn._linear_pointwise: lambda x, w, *_, **__: 2 * math.prod(x) * w[0]}
    counts = {}
    for kernels in ("reference", "fast"):
        use_kernels(model, kernels, announce=False)
        with FlopCounterMode(display=False, custom_mapping=onednn) as counter:
            logits = model(ids, mask, select=select)  # (M, K)
            F.cross_entropy(logits, torch.zeros(11, dtype=torch.long)).backward()
        counts[kernels] = counter.get_total_flops()
    useful = step_flops(16, 2, 40, [7, 7, 7], ("classifier", 5), backward=True, selected=[3, 1, 7])["total"]
    unselected_pairs = (7 - 3) * 7 + (7 - 1) * 7  # query rows the (B, T) layout scores anyway
    assert counts["fast"] == useful + 3 * 4 * unselected_pairs * 16
    every_row = step_flops(16, 2, 40, [7, 7, 7], ("classifier", 5), backward=True)["total"]
    assert counts["reference"] == every_row - 3 * 2 * 16 * 5 * (21 - 11)  # the head alone on the 11 selected
