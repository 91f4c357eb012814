"""Windows -> padded batches, and a length-bucketed sampler sharded by rank.

Legend: B windows in the batch, T the longest window of the batch (dynamic padding).
"""
from __future__ import annotations

import torch

from data.labels import IGNORE_INDEX
from data.windows import Window


def collate(windows: list[Window], pad_id: int, pin_memory: bool = False) -> dict[str, torch.Tensor]:
    """Pad to the longest window of the batch.

    Returns input_ids (B, T), attention_mask (B, T) bool, labels (B, T) with IGNORE_INDEX on
    padding, word_ids (B, T) with -1 on padding, sent_ids (B,), n_tokens (labelled positions).
    """
    T = max(len(w) for w in windows)
    B = len(windows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    word_ids = torch.full((B, T), -1, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    for b, w in enumerate(windows):
        n = len(w)
        input_ids[b, :n] = torch.tensor(w.input_ids)
        labels[b, :n] = torch.tensor(w.labels)
        word_ids[b, :n] = torch.tensor(w.word_ids)
        attention_mask[b, :n] = True
    batch = {
        "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "word_ids": word_ids,
        "sent_ids": torch.tensor([w.sent_id for w in windows], dtype=torch.long),  # (B,)
        "n_tokens": (labels != IGNORE_INDEX).sum(),  # 0-d; counted on the CPU, before any copy
    }
    return pin_batch(batch) if pin_memory else batch


def pin_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Page-locked copies so the loop's ``.to(device, non_blocking=True)`` overlaps (CUDA only)."""
    if not torch.cuda.is_available():
        return batch
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class LengthBucketSampler:
    """Batches of indices of similar length, deterministic for (seed, epoch), sharded by rank.

    Each epoch: shuffle all indices, cut them into pools of ``pool_batches`` batches, sort each
    pool by length and cut it into batches (little padding), then shuffle the batch order.
    Rank r of ``world`` takes batches r, r + world, ...; the list is first extended by cycling
    so that every rank gets the same number of batches (DDP steps in lockstep).
    ``shuffle=False`` gives length-sorted batches in a fixed order (evaluation).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, shuffle: bool = True,
                 bucket: bool = True, pool_batches: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.bucket = bucket
        self.pool = batch_size * pool_batches

    def batches(self, epoch: int = 0, rank: int = 0, world: int = 1) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: (-self.lengths[i], i)) if self.bucket else list(range(n))
            return self._shard(self._cut(order), rank, world)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen).tolist()
        pools = [sorted(order[s:s + self.pool], key=lambda i: self.lengths[i]) for s in range(0, n, self.pool)] \
            if self.bucket else [order]
        batches = [batch for pool in pools for batch in self._cut(pool)]
        perm = torch.randperm(len(batches), generator=gen).tolist()
        return self._shard([batches[i] for i in perm], rank, world)

    def _cut(self, order: list[int]) -> list[list[int]]:
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    @staticmethod
    def _shard(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world {world}")
        if world == 1 or not batches:
            return batches
        per_rank = -(-len(batches) // world)
        padded = [batches[i % len(batches)] for i in range(per_rank * world)]
        return padded[rank::world]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)
