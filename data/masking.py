"""Dynamic masking for masked-language-model pretraining (BERT/RoBERTa 80/10/10).

    inputs, labels = mask_tokens(input_ids, maskable, mask_id, vocab_size, generator)

Each maskable piece is chosen with probability ``mask_prob`` (15%); a chosen piece is
replaced by ``<mask>`` 80% of the time, by a random ordinary piece 10% and kept unchanged
10%. ``labels`` holds the original id at chosen positions and -100 (ignored) everywhere
else. Special tokens (<s>, </s>, <pad>, <unk>, <mask>) are never chosen and never drawn as
random replacements. The draw is a pure function of the generator's state, so a batch is
reproducible from (seed, epoch, batch index).

Shapes: B batch, T subword positions.
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100


def special_ids_mask(input_ids: torch.Tensor, special_ids: list[int]) -> torch.Tensor:
    """True where a position holds one of ``special_ids`` (pad included)."""
    special = torch.zeros_like(input_ids, dtype=torch.bool)  # (B, T)
    for token_id in special_ids:
        special |= input_ids == token_id
    return special


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mask_prob: float = 0.15,
    first_random_id: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked copy of ``input_ids`` (B, T) and its labels (B, T).

    ``maskable`` (B, T) bool marks the pieces that may be chosen (not special, not pad).
    Random replacements are drawn uniformly from ``[first_random_id, vocab_size)`` minus
    ``mask_id``: the ids after the four fairseq specials <s> <pad> </s> <unk>.
    """
    if maskable.dtype != torch.bool:
        raise TypeError(f"maskable must be a bool mask, got {maskable.dtype}")
    shape = input_ids.shape
    # All draws are made for every position, in a fixed order, so the result does not depend
    # on how many positions were chosen before (and stays reproducible across batch layouts).
    choose = torch.rand(shape, generator=generator) < mask_prob  # (B, T)
    action = torch.rand(shape, generator=generator)  # (B, T) 80 / 10 / 10 split
    n_ordinary = vocab_size - first_random_id - 1  # ordinary ids exclude the <mask> id
    random_ids = torch.randint(0, n_ordinary, shape, generator=generator) + first_random_id  # (B, T)
    random_ids = random_ids + (random_ids >= mask_id).long()  # skip over <mask>

    chosen = choose & maskable  # (B, T)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))  # (B, T)
    to_mask = chosen & (action < 0.8)  # (B, T)
    to_random = chosen & (action >= 0.8) & (action < 0.9)  # (B, T)
    inputs = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)  # (B, T)
    inputs = torch.where(to_random, random_ids, inputs)  # (B, T)
    return inputs, labels


class MaskingCollator:
    """Pads packed sequences to a batch and masks them: a list of id lists -> batch dict.

    The batch holds ``input_ids`` (B, T) masked, ``attention_mask`` (B, T) bool, ``labels``
    (B, T) with -100 outside the chosen positions, and ``n_tokens``: the number of labelled
    positions (the loss is a sum over them).
    """

    def __init__(self, mask_id: int, vocab_size: int, pad_id: int = 1, special_ids: tuple[int, ...] = (0, 1, 2, 3),
                 mask_prob: float = 0.15):
        self.mask_id = mask_id
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.special_ids = sorted(set(special_ids) | {pad_id, mask_id})
        self.mask_prob = mask_prob

    def __call__(self, sequences: list[list[int]], generator: torch.Generator) -> dict[str, torch.Tensor]:
        longest = max(len(seq) for seq in sequences)
        input_ids = torch.full((len(sequences), longest), self.pad_id, dtype=torch.long)  # (B, T)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask = input_ids != self.pad_id  # (B, T)
        maskable = ~special_ids_mask(input_ids, self.special_ids)  # (B, T)
        inputs, labels = mask_tokens(input_ids, maskable, self.mask_id, self.vocab_size, generator,
                                     self.mask_prob)
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels,
                "n_tokens": int((labels != IGNORE_INDEX).sum())}
