"""torchrun + DDP set-up: one process per device, rank 0 logs and saves.

    torchrun --nproc_per_node=2 train.py configs/x.yaml      # gloo on CPU, nccl on CUDA

``init_distributed`` reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK); without
it the run is a single process and every helper here is a cheap no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun (or a test) described in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world=world, local_rank=local_rank)


def is_main_process() -> bool:
    """Rank 0 writes results: the process group's rank once joined, torchrun's RANK before that."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """cuda -> this process's GPU (cuda:LOCAL_RANK); cpu stays cpu."""
    return torch.device("cuda", info.local_rank) if device.type == "cuda" and info.world > 1 else device


def all_reduce(tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce when distributed; the tensor itself otherwise."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=op)
    return tensor


def any_rank(flag: bool, device) -> bool:
    """Whether ``flag`` is true on any rank (one MAX all-reduce); ``flag`` itself in a single process,
    with no device tensor and so no host sync."""
    if world_size() == 1:
        return flag
    tensor = torch.tensor(float(flag), device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor > 0)


def world_size() -> int:
    """Processes in the joined group (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under a DistributedDataParallel wrapper (``.module``); the model itself otherwise."""
    return getattr(model, "module", model)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
