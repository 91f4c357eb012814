"""Our model holding the very weights of a transformers model, for the side-by-side benchmarks.

    ref = XLMRobertaForTokenClassification(hf_config)
    ours = ours_like(ref, "token-classification", num_labels=7, kernels="fast")
"""
from __future__ import annotations

from torch import nn


def ours_like(ref: nn.Module, task: str = "token-classification", num_labels: int | None = None,
              kernels: str = "auto", share: bool = False) -> nn.Module:
    """``ref``'s weights loaded into ours (models.load_from_source); task: encoder | token-classification.

    The tensors are copied, so training one model leaves the other as it was; ``share=True`` lets ours
    use ref's storage (no second copy in memory: for inference, or when ``ref`` is dropped after).
    """
    from models import load_from_source
    from models.encoder import XLMRConfig
    from models.weights import DictSource

    state = ref.state_dict() if share else {k: v.detach().clone() for k, v in ref.state_dict().items()}
    return load_from_source(DictSource(state), XLMRConfig.from_hf_dict(ref.config.to_dict()), task, num_labels,
                            kernels=kernels)
