"""Where a run executes and in which order it reads its images: device, seeds, batches.

Why no ``DataLoader``: the dataset is one decoded uint8 tensor in memory and the method
augments on the device, so a batch is one ``index_select`` on the CPU (microseconds for
CIFAR-sized images) and one copy. Worker processes would only add inter-process copies,
and a batch order that is a pure function of (seed, epoch, rank) is what makes resuming
mid-epoch exact.
"""

from __future__ import annotations

import random
import warnings
from typing import Literal, cast

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from selfsup import dist

# "auto": bf16 where the device computes it natively, else fp32 (resolve_precision).
Precision = Literal["fp32", "bf16", "auto"]


def select_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA (``cuda:LOCAL_RANK``) if available, else MPS, else CPU.

    A bare ``"cuda"`` also becomes ``cuda:LOCAL_RANK`` (one GPU per torchrun process),
    and that device is made current, with cuDNN autotuning on (fixed shapes).
    """
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but CUDA is not available; use 'auto' or 'cpu'.")
        if device.index is None:
            device = torch.device("cuda", dist.local_rank())
        torch.cuda.set_device(device)
        # Training feeds convolutions one fixed input shape: let cuDNN time its algorithms
        # once per shape and keep the fastest (the first steps pay for the search).
        torch.backends.cudnn.benchmark = True
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available; use 'auto' or 'cpu'.")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (autocast to it then pays).

    CUDA: compute capability 8.0 or newer (``torch.cuda.is_bf16_supported`` without
    emulation). CPU: oneDNN's bf16 check, true on x86 CPUs with AVX-512 (the BF16 and AMX
    extensions make it fast); on an AVX2-only CPU autocast emulates bf16, and a ResNet-18
    x0.25 SimCLR step took 11x longer than in fp32 (6.54 against 0.60 s, 2 threads;
    benchmarks/RESULTS.md). MPS: treated as not native (fp32).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN: no fast bf16
            return False
    return False


def resolve_precision(precision: str, device: torch.device) -> Literal["fp32", "bf16"]:
    """``"auto"`` -> ``"bf16"`` where :func:`native_bf16`, else ``"fp32"``; ``"fp32"`` and
    ``"bf16"`` stay. An explicit ``"bf16"`` on a CPU that would emulate it warns once, with
    the fix: the run is correct but many times slower than fp32."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto'; got {precision!r}.")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        warnings.warn(
            "precision=bf16 on a CPU without native bf16 (no AVX-512): autocast emulates it, "
            "which made a ResNet step 11x slower than fp32 on an AVX2 CPU. Use "
            "precision=auto (bf16 only where it is native) or fp32.",
            stacklevel=2,
        )
    return cast("Literal['fp32', 'bf16']", precision)


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` (on the CPU) copied to ``device`` without making the host wait.

    To CUDA the copy goes through pinned memory (a cached block), from which it is queued
    asynchronously; a copy from ordinary pageable memory makes the host wait for it.
    Elsewhere it is a plain ``to``.
    """
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_batches(
    num_images: int, batch_size: int, *, epoch: int, seed: int, rank: int, world_size: int
) -> torch.Tensor:
    """This process's batches for one epoch: (steps_per_epoch, batch_size) image indices.

    ``DistributedSampler`` semantics (shuffle with ``seed + epoch``, process ``r`` takes
    every ``world_size``-th index from ``r``, ``drop_last``) then the last incomplete batch
    is dropped, so every process takes ``num_images // (batch_size * world_size)`` steps.
    Global batch ``k`` is the same set of images for any ``world_size`` at that global size.
    """
    indices = cast("Dataset[int]", range(num_images))  # the sampler needs only len()
    sampler: DistributedSampler[int] = DistributedSampler(
        indices, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    steps = num_images // (batch_size * world_size)
    order = torch.tensor(list(sampler), dtype=torch.long)
    return order[: steps * batch_size].view(steps, batch_size)
