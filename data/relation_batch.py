"""Collation for relation extraction: marked examples (data/markers.py ``Encoded``) -> padded tensors.

Legend: B examples, T subword positions.

    batch = collate_relations(items, labels, pad_id)
    logits = model(*(batch[k] for k in MODEL_INPUTS))        # models/re_head.py RelationClassifier

The span masks are what the pooling reads (models/pooling.py): an entity's own pieces,
``Encoded.subj_span`` = [start, end); for ``entity_mask``, whose entity has no pieces of its own,
the mask holds the mask token at the marker position.
"""
from __future__ import annotations

import torch

MODEL_INPUTS = ("input_ids", "attention_mask", "subj_marker", "obj_marker", "subj_mask", "obj_mask")


def collate_relations(items: list, labels: list[int] | None, pad_id: int) -> dict[str, torch.Tensor]:
    """Encoded examples -> input_ids (B, T), attention_mask (B, T) bool, subj/obj_marker (B,),
    subj/obj_mask (B, T) bool (the entity's own pieces; its marker when it has none), labels (B,), n_tokens."""
    B, T = len(items), max(len(it) for it in items)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    subj_mask = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    obj_mask = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    for b, it in enumerate(items):
        input_ids[b, :len(it)] = torch.tensor(it.input_ids)
        attention_mask[b, :len(it)] = True
        for mask, (start, end), marker in ((subj_mask, it.subj_span, it.subj_marker),
                                           (obj_mask, it.obj_span, it.obj_marker)):
            if end > start:
                mask[b, start:end] = True
            else:
                mask[b, marker] = True
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "subj_mask": subj_mask, "obj_mask": obj_mask,
             "subj_marker": torch.tensor([it.subj_marker for it in items]),  # (B,)
             "obj_marker": torch.tensor([it.obj_marker for it in items]),  # (B,)
             "n_tokens": torch.tensor(B)}
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)  # (B,)
    return batch
