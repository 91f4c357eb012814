"""Model FLOPs of an XLM-R step, counted from the shapes, and the roofline line the benches print.

    from bench.flops import step_flops, roofline_line
    f = step_flops(H=768, L=12, I=3072, lengths=[40, 31, ...], head=("classifier", 7), backward=True)
    f["total"], f["phases"]        # FLOPs of the step; per phase: embeddings, attention projections,
                                   # attention scores/values, FFN, head
    print(roofline_line(f["total"], seconds, peak_gflops, "bf16"))

What is counted: the matrix products (2 FLOPs per multiply-add), on the *useful* work: every
position-wise layer on the R real tokens of the batch, attention on the real query x real key
pairs of each sequence (sum of L_b^2), not on pads. A padded implementation executes more than
this; the count is the same for ours and the reference, so GFLOP/s ratios equal speed ratios.
Per layer, forward, with R = sum L_b and P = sum L_b^2:
    attention projections  2 R H (3H)  +  2 R H H          (fused q/k/v, output)
    attention scores/values 2 P H  +  2 P H                 (q k^T and probs v, all heads)
    FFN                    2 R H I  +  2 R I H
    head                   classifier 2 R H K; masked-LM 2 R H H + 2 R H V
    embeddings             0 (a lookup; LayerNorm, GELU, softmax are elementwise and not counted)
When the loss reads only M = sum M_b positions (``selected``: M_b per sequence; MLM's masked
pieces, NER's labelled ones), the rest of the last layer is not useful work either: there the
key/value projections stay on R rows, the query and output projections and the FFN count M rows,
the scores/values sum M_b L_b pairs, and the head scores M rows (models/encoder_fast.py does this).
Backward = 2 x forward for every product (the input gradient and the weight gradient; for the
scores/values the gradients of q and k, probs and v), so forward + backward = 3 x forward.
Elementwise work (LayerNorm, GELU, softmax, dropout, the optimizer) is not in the count: the
roofline is against the GEMM peak (bench/matmul.py's gemm_peak in the same process, precision
and thread count).
"""
from __future__ import annotations

PHASES = ("embeddings", "attention projections", "attention scores/values", "FFN", "head")


def step_flops(H: int, L: int, I: int, lengths, head: tuple[str, int] = ("classifier", 7),
               backward: bool = False, selected=None) -> dict:
    """FLOPs of one forward (or forward + backward) over sequences of the given real lengths.

    head: ("classifier", K) for token classification, ("masked-lm", V), or ("none", 0) for the
    bare encoder. selected: the positions the loss reads per sequence (M_b), or None for all."""
    lengths = [int(n) for n in lengths]
    chosen = lengths if selected is None else [int(m) for m in selected]
    R, M = sum(lengths), sum(chosen)
    P = sum(n * n for n in lengths)
    P_last = sum(m * n for m, n in zip(chosen, lengths))  # the last layer's query x key pairs
    fwd = {
        "embeddings": 0,
        "attention projections": (L - 1) * (2 * R * H * 3 * H + 2 * R * H * H)
        + 2 * R * H * 2 * H + 2 * M * H * H + 2 * M * H * H,  # last layer: k, v on R rows; q, output on M
        "attention scores/values": (L - 1) * (2 * P * H + 2 * P * H) + 2 * P_last * H + 2 * P_last * H,
        "FFN": (L - 1) * (2 * R * H * I + 2 * R * I * H) + 2 * M * H * I + 2 * M * I * H,
    }
    kind, size = head
    if kind == "classifier":
        fwd["head"] = 2 * M * H * size
    elif kind == "masked-lm":
        fwd["head"] = 2 * M * H * H + 2 * M * H * size
    elif kind == "none":
        fwd["head"] = 0
    else:
        raise ValueError(f"head must be classifier | masked-lm | none, got {kind!r}")
    factor = 3 if backward else 1
    phases = {name: factor * fwd[name] for name in PHASES}
    return {"phases": phases, "total": sum(phases.values()), "tokens": R, "pairs": P}


def flops_of_batch(model_size: dict, attention_mask, num_labels: int, backward: bool, select=None) -> dict:
    """step_flops for a bench's model-size dict (HF config names), a (B, T) bool mask, and the
    (B, T) bool positions the loss reads (None: all)."""
    lengths = attention_mask.sum(1).tolist()
    selected = None if select is None else select.sum(1).tolist()
    return step_flops(model_size["hidden_size"], model_size["num_hidden_layers"], model_size["intermediate_size"],
                      lengths, ("classifier", num_labels), backward, selected)


def phase_summary(flops: dict) -> str:
    """'attention projections 29%, ...' shares of the step's FLOPs."""
    total = max(flops["total"], 1)
    return ", ".join(f"{name} {100 * v / total:.0f}%" for name, v in flops["phases"].items() if v)


def roofline_line(total_flops: float, seconds: float, peak_gflops: float, precision: str, who: str = "ours") -> str:
    achieved = total_flops / seconds / 1e9
    return (f"roofline {who}: {total_flops / 1e9:.1f} GFLOP per step / {seconds * 1e3:.0f} ms = {achieved:.0f} GFLOP/s"
            f" = {100 * achieved / peak_gflops:.0f}% of the measured {precision} GEMM peak ({peak_gflops:.0f} GFLOP/s)")
