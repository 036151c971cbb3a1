"""The one module that talks to ``torch.distributed``.

Everything else asks this module for the rank, the world size or a gathered tensor, and
works unchanged in a single process: there, :func:`gather_with_grad` returns its input,
:func:`world_size` is 1 and :func:`rank` is 0.

Processes are started by ``torchrun``, which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` reads them.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as tdist


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its machine, from ``LOCAL_RANK`` (0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0: the process that logs, prints and writes checkpoints."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when the environment carries torchrun's variables for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str | None = None) -> None:
    """Initialise the default process group from torchrun's environment variables.

    Does nothing in a single process (``WORLD_SIZE`` unset or 1) or when a group exists.
    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``.
    """
    if not launched_by_torchrun() or (tdist.is_available() and tdist.is_initialized()):
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    tdist.init_process_group(backend=backend)


def shutdown() -> None:
    """Destroy the process group if one exists."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in one process)."""
    if is_distributed():
        tdist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward pass returns each process the gradient of its own slice.

    Forward: (B, ...) on each of P processes -> (P*B, ...) on every process.
    Backward: every process holds dL_p/d(all) for its own loss L_p; the gradient of the
    total loss sum_p L_p with respect to this process's input is the sum over processes
    of their gradients for this slice, hence an all-reduce (sum) followed by a slice.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.batch = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
        tdist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        tdist.all_reduce(grad, op=tdist.ReduceOp.SUM)
        start = tdist.get_rank() * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every process along dim 0 -> (world_size * B, ...).

    Gradients flow back to each process's own slice (summed over processes, which is
    what DDP's gradient averaging expects of a loss averaged per process). Every process
    must pass the same B. In one process this returns ``x`` itself.
    """
    if not is_distributed():
        return x
    out: torch.Tensor = _GatherWithGrad.apply(x)
    return out


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every process along dim 0, without gradient."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    tdist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a new tensor; ``x`` itself in one process)."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    tdist.all_reduce(y, op=tdist.ReduceOp.SUM)
    return y / world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every process; returns it everywhere."""
    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]
