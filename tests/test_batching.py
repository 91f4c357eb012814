"""Dynamic-padding collate and the length-bucketed, rank-sharded sampler."""
from __future__ import annotations

import torch

from data.batching import LengthBucketSampler, collate
from data.labels import IGNORE_INDEX
from data.windows import Window


def test_collate_pads_to_longest_and_counts_labelled_tokens():
    a = Window(0, [0, 11, 12, 2], [IGNORE_INDEX, 3, IGNORE_INDEX, IGNORE_INDEX], [-1, 0, -1, -1])
    b = Window(4, [0, 13, 2], [IGNORE_INDEX, 0, IGNORE_INDEX], [-1, 0, -1])
    batch = collate([a, b], pad_id=1)
    assert batch["input_ids"].tolist() == [[0, 11, 12, 2], [0, 13, 2, 1]]
    assert batch["attention_mask"].dtype == torch.bool
    assert batch["attention_mask"].tolist() == [[True] * 4, [True, True, True, False]]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["word_ids"][1].tolist() == [-1, 0, -1, -1]
    assert batch["sent_ids"].tolist() == [0, 4] and int(batch["n_tokens"]) == 2


def _lengths(n=203, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 60, (n,), generator=g).tolist()


def test_sampler_covers_everything_once_and_is_deterministic():
    lengths = _lengths()
    s = LengthBucketSampler(lengths, batch_size=8, seed=5, pool_batches=4)
    e0, e0_again, e1 = s.batches(0), s.batches(0), s.batches(1)
    assert e0 == e0_again and e0 != e1
    assert sorted(i for b in e0 for i in b) == list(range(len(lengths)))
    assert len(e0) == len(s) == 26


def test_buckets_reduce_padding():
    lengths = _lengths()

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    bucketed = LengthBucketSampler(lengths, 8, seed=5, pool_batches=4).batches(0)
    plain = LengthBucketSampler(lengths, 8, seed=5, bucket=False).batches(0)
    assert sorted(i for b in plain for i in b) == list(range(len(lengths)))
    assert padded(bucketed) < 0.8 * padded(plain)


def test_ranks_get_disjoint_equal_shards():
    lengths = _lengths(n=100)
    s = LengthBucketSampler(lengths, batch_size=8, seed=1)  # 13 batches over 3 ranks -> 5 each
    shards = [s.batches(2, rank=r, world=3) for r in range(3)]
    assert [len(x) for x in shards] == [5, 5, 5]
    full = s.batches(2)
    assert [b for r in range(3) for b in shards[r][:4]] == [b for r in range(3) for b in full[r::3][:4]]
    seen = [i for shard in shards for b in shard for i in b]
    assert set(seen) == set(range(100))  # everything seen; 2 batches repeated to even out the ranks


def test_eval_order_is_longest_first_and_fixed():
    lengths = [5, 9, 2, 9, 7]
    s = LengthBucketSampler(lengths, batch_size=2, shuffle=False)
    assert s.batches() == [[1, 3], [4, 0], [2]]
