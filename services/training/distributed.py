"""Data-parallel set-up for training: one process per device, started by ``torchrun``.

The contrastive loss needs every rank's embeddings: `gather_with_grad` concatenates them, and its
backward sums the gradients every rank computed for each slice and hands each rank its own (as
``torch.distributed.nn.functional.all_gather`` does; that function is deprecated in torch 2.14
and its successor is private, so the few lines are here, on an all-reduce every backend has).
Each rank computes the same loss over the global batch, so its local embeddings receive
``world_size`` times their gradient; DDP's all-reduce then averages, and every rank ends with
exactly the single-process gradient of the global batch (open_clip's "gather_with_grad").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: str | None = None) -> World:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPU), else run alone.

    ``device`` picks the device for a single process (default: CUDA if present); under torchrun
    each rank takes ``cuda:LOCAL_RANK``, or the CPU when ``device`` is ``'cpu'`` or no GPU exists.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if size <= 1:
        if device is None:
            device = "cuda" if use_cuda else "cpu"
        return World(device=torch.device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
    else:
        target = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=target if use_cuda else None)
    return World(rank=rank, size=size, local_rank=local_rank, device=target)


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def gather_with_grad(x: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's ``x`` concatenated in rank order; gradients flow back to each rank's slice.

    All ranks must pass tensors of the same shape.
    """
    if not world.distributed:
        return x
    return _GatherWithGrad.apply(x)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size, ctx.rows = dist.get_rank(), dist.get_world_size(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(ctx.size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_ids(x: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's integer tensor concatenated in rank order (no gradient)."""
    if not world.distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
