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
    head                   classifier 2 R H K; masked-LM 2 M H H + 2 M H V for M selected positions
    embeddings             0 (a lookup; LayerNorm, GELU, softmax are elementwise and not counted)
Backward = 2 x forward for every product (the input gradient and the weight gradient; for the
scores/values the gradients of q and k, probs and v), so forward + backward = 3 x forward.
Elementwise work (LayerNorm, GELU, softmax, dropout, the optimizer) is not in the count: the
roofline is against the GEMM peak (bench/matmul.py's gemm_peak in the same process, precision
and thread count).
"""
from __future__ import annotations

PHASES = ("embeddings", "attention projections", "attention scores/values", "FFN", "head")


def step_flops(H: int, L: int, I: int, lengths, head: tuple[str, int] = ("classifier", 7),
               backward: bool = False, vocab_size: int | None = None, selected: int | None = None) -> dict:
    """FLOPs of one forward (or forward + backward) over sequences of the given real lengths.

    head: ("classifier", K) for token classification, ("masked-lm", V) with ``selected`` = M
    positions scored (all R if None), or ("none", 0) for the bare encoder."""
    lengths = [int(n) for n in lengths]
    R = sum(lengths)
    P = sum(n * n for n in lengths)
    fwd = {
        "embeddings": 0,
        "attention projections": L * (2 * R * H * 3 * H + 2 * R * H * H),
        "attention scores/values": L * (2 * P * H + 2 * P * H),
        "FFN": L * (2 * R * H * I + 2 * R * I * H),
    }
    kind, size = head
    if kind == "classifier":
        fwd["head"] = 2 * R * H * size
    elif kind == "masked-lm":
        M = R if selected is None else int(selected)
        fwd["head"] = 2 * M * H * H + 2 * M * H * size
    elif kind == "none":
        fwd["head"] = 0
    else:
        raise ValueError(f"head must be classifier | masked-lm | none, got {kind!r}")
    factor = 3 if backward else 1
    phases = {name: factor * fwd[name] for name in PHASES}
    return {"phases": phases, "total": sum(phases.values()), "tokens": R, "pairs": P}


def flops_of_batch(model_size: dict, attention_mask, num_labels: int, backward: bool) -> dict:
    """step_flops for a bench's model-size dict (HF config names) and a (B, T) bool mask."""
    lengths = attention_mask.sum(1).tolist()
    return step_flops(model_size["hidden_size"], model_size["num_hidden_layers"], model_size["intermediate_size"],
                      lengths, ("classifier", num_labels), backward)


def phase_summary(flops: dict) -> str:
    """'attention projections 29%, ...' shares of the step's FLOPs."""
    total = max(flops["total"], 1)
    return ", ".join(f"{name} {100 * v / total:.0f}%" for name, v in flops["phases"].items() if v)


def roofline_line(total_flops: float, seconds: float, peak_gflops: float, precision: str, who: str = "ours") -> str:
    achieved = total_flops / seconds / 1e9
    return (f"roofline {who}: {total_flops / 1e9:.1f} GFLOP per step / {seconds * 1e3:.0f} ms = {achieved:.0f} GFLOP/s"
            f" = {100 * achieved / peak_gflops:.0f}% of the measured {precision} GEMM peak ({peak_gflops:.0f} GFLOP/s)")
