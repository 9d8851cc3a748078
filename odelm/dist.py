"""Small collectives for multi-process training (DDP). Each is a no-op in a single process.

Every function must be called by every process at the same point (they are collectives)."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if initialized() else 1


def rank() -> int:
    """This process's global rank (0 outside a process group)."""
    return dist.get_rank() if initialized() else 0


def is_rank_zero() -> bool:
    """Rank zero, also before the process group exists: a process that Lightning or SLURM started
    as another rank says so in its environment (RANK, SLURM_PROCID, LOCAL_RANK, NODE_RANK)."""
    if initialized():
        return dist.get_rank() == 0
    return all(int(os.environ.get(key, 0) or 0) == 0 for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def any_true(flag: bool) -> bool:
    """True on every process if `flag` is true on any (one all-reduce of one number)."""
    if not initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean(values: list[float]) -> list[float]:
    """The element-wise mean over processes of a list of numbers (one all-reduce)."""
    if not initialized() or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).tolist()


def gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order, on every process."""
    if not initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
