"""Dynamic MLM masking: 15% chosen, 80/10/10, specials and pads untouched, reproducible."""
from __future__ import annotations

import math

import torch

from data.masking import IGNORE_INDEX, MaskingCollator, mask_tokens, special_ids_mask

VOCAB, MASK = 1000, 999  # <mask> is the last id, as in XLM-R


def _batch(rows: int = 64, length: int = 256, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, MASK, (rows, length), generator=g)  # (B, T) ordinary pieces
    ids[:, 0] = 0  # <s>
    ids[:, 100] = 2  # </s> inside a packed sequence
    ids[:, -1] = 2
    ids[::2, -30:] = 1  # padding on every other row
    ids[5, 7] = 3  # an <unk>
    return ids


def test_rates_follow_15_and_80_10_10():
    ids = _batch()
    maskable = ~special_ids_mask(ids, [0, 1, 2, 3, MASK])
    inputs, labels = mask_tokens(ids, maskable, MASK, VOCAB, torch.Generator().manual_seed(0))
    chosen = labels != IGNORE_INDEX
    n_maskable, n_chosen = int(maskable.sum()), int(chosen.sum())
    # Binomial(n, 0.15): 5 standard deviations is a test that fails only on a real bug.
    sd = math.sqrt(n_maskable * 0.15 * 0.85)
    assert abs(n_chosen - 0.15 * n_maskable) < 5 * sd
    as_mask = int((inputs[chosen] == MASK).sum())
    kept = int((inputs[chosen] == ids[chosen]).sum())
    replaced = n_chosen - as_mask - kept
    for count, share in ((as_mask, 0.8), (kept, 0.1), (replaced, 0.1)):
        sd = math.sqrt(n_chosen * share * (1 - share))
        assert abs(count - share * n_chosen) < 5 * sd, (count, share, n_chosen)
    # A random replacement can hit the original id (1 in ~995): "kept" is then 10% + a hair.
    assert torch.equal(labels[chosen], ids[chosen])


def test_specials_and_pads_are_never_chosen_or_drawn():
    ids = _batch()
    maskable = ~special_ids_mask(ids, [0, 1, 2, 3, MASK])
    inputs, labels = mask_tokens(ids, maskable, MASK, VOCAB, torch.Generator().manual_seed(3), mask_prob=0.9)
    assert (labels[~maskable] == IGNORE_INDEX).all()
    assert torch.equal(inputs[~maskable], ids[~maskable])
    changed = (labels != IGNORE_INDEX) & (inputs != MASK)
    assert (inputs[changed] >= 4).all() and (inputs[changed] < MASK).all()  # random ids are ordinary


def test_random_ids_cover_the_ordinary_range_only():
    ids = torch.full((1, 200_000), 10)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    inputs, _ = mask_tokens(ids, maskable, mask_id=9, vocab_size=12, generator=torch.Generator().manual_seed(0),
                            mask_prob=1.0)
    drawn = set(inputs[(inputs != 9) & (inputs != 10)].tolist())
    assert drawn == {4, 5, 6, 7, 8, 11}  # 9 is <mask>: skipped; 10 shows up as "kept"


def test_same_generator_state_same_batch_and_pinned_values():
    ids = torch.tensor([[0, 11, 12, 13, 14, 15, 16, 2, 17, 18, 2, 1],
                        [0, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 2]])  # (B, T)
    maskable = ~special_ids_mask(ids, [0, 1, 2, 3, MASK])
    a = mask_tokens(ids, maskable, MASK, VOCAB, torch.Generator().manual_seed(7), mask_prob=0.5)
    b = mask_tokens(ids, maskable, MASK, VOCAB, torch.Generator().manual_seed(7), mask_prob=0.5)
    c = mask_tokens(ids, maskable, MASK, VOCAB, torch.Generator().manual_seed(8), mask_prob=0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert a[0].tolist() == PINNED_INPUTS
    assert a[1].tolist() == PINNED_LABELS


# Generator seed 7, mask_prob 0.5. Row 1 position 7 is chosen but kept (27); row 0 position 6 got a random id.
PINNED_INPUTS = [[0, 999, 12, 13, 999, 999, 709, 2, 999, 18, 2, 1], [0, 999, 999, 999, 24, 999, 26, 27, 28, 999, 30, 2]]
PINNED_LABELS = [[-100, 11, -100, -100, 14, 15, 16, -100, 17, -100, -100, -100],
                 [-100, 21, 22, 23, -100, 25, -100, 27, -100, 29, -100, -100]]


def test_collator_pads_and_counts():
    collate = MaskingCollator(mask_id=MASK, vocab_size=VOCAB)
    batch = collate([[0, 5, 6, 7, 2], [0, 8, 2]], torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[True] * 5, [True, True, True, False, False]]
    assert batch["input_ids"][1, 3:].tolist() == [1, 1]
    assert batch["n_tokens"] == int((batch["labels"] != IGNORE_INDEX).sum())
    assert (batch["labels"][:, 0] == IGNORE_INDEX).all() and (batch["labels"][1, 2:] == IGNORE_INDEX).all()
