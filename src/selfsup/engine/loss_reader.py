"""Reading each step's loss back to the host: at once, or one step late.

The trainer must see every loss (to stop a run whose loss is NaN or infinite before a bad
checkpoint is written) and log some of them. Reading a loss that lives on a GPU makes the
host wait until the device has computed it; with a wait in every step, the device then
idles while the host launches the next step's many small augmentation kernels. On an
H200 the SimCLR CIFAR recipe's engine ran at 18,100 pairs/s against 28,000 for the
network alone (benchmarks/RESULTS.md, "SimCLR on one GPU").

So on CUDA the reading is *deferred*: each loss (with its all-processes finiteness flag)
is copied into pinned host memory without blocking, an event marks the copy, and the
host reads it one step later, once the next step's work is queued: by then the copy is
long done. The price is that a non-finite loss is seen one step late, after its optimiser
step ran; the trainer therefore drains the reader before every checkpoint, so the last
checkpoint on disk is still a good one. Elsewhere (CPU: the loss is already computed) the
reading is immediate and the run stops before the bad optimiser step. Either way the
run stops with :class:`NonFiniteLossError`, naming the step and the last good checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup import dist


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before the next checkpoint.

    With immediate loss readings (CPU) it stopped before that step's optimiser step; with
    deferred ones (CUDA, see the module docstring) one step later.

    ``step`` is the 0-based index of the failed step; ``checkpoint_step`` the step count
    of the last good checkpoint (``None`` if none was written).
    """

    def __init__(self, message: str, step: int, checkpoint_step: int | None) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint_step = checkpoint_step


@dataclass(frozen=True)
class LossReading:
    """One step's loss on the host: ``index`` (0-based step), ``value``, and whether it was
    finite on every process."""

    index: int
    value: float
    finite: bool


@dataclass
class _InFlight:
    index: int
    host: torch.Tensor  # (2,): loss, fraction of processes where it is finite
    copied: torch.cuda.Event | None


class LossReader:
    """Turns step losses into :class:`LossReading` s, immediately or one step late.

    Args:
        deferred: read each loss one step late (see the module docstring). Deferred
            readings work on any device (tests use the CPU); only on CUDA do they avoid
            a wait.
    """

    def __init__(self, deferred: bool) -> None:
        self.deferred = deferred
        self._pending: _InFlight | None = None

    def push(self, index: int, loss: torch.Tensor, finite: torch.Tensor) -> list[LossReading]:
        """Hand over step ``index``'s scalar ``loss`` and its finiteness flag (the mean over
        processes of ``isfinite(loss)``, 1 when finite everywhere); returns the readings
        now due, in step order: this step's when immediate, the previous one's when
        deferred."""
        both = torch.stack((loss.detach().float().reshape(()), finite.float().reshape(())))
        if not self.deferred:
            return [_reading(index, both.cpu())]
        due = self.drain()
        if both.is_cuda:
            host = torch.empty(2, dtype=torch.float32, pin_memory=True)
            host.copy_(both, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        else:
            host, copied = both.to("cpu", copy=True), None
        self._pending = _InFlight(index, host, copied)
        return due

    def drain(self) -> list[LossReading]:
        """The reading still in flight, if any (waits for it)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return []
        if pending.copied is not None:
            pending.copied.synchronize()  # the copy only, not the work queued after it
        return [_reading(pending.index, pending.host)]


def _reading(index: int, host: torch.Tensor) -> LossReading:
    value, finite = host.tolist()
    return LossReading(index=index, value=float(value), finite=finite >= 1.0)


def loss_and_finiteness(loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The detached scalar loss and the fraction of processes where it is finite.

    Raises if ``loss`` is not a scalar attached to the autograd graph.
    """
    if loss.numel() != 1 or not loss.requires_grad:
        raise ValueError(
            "training_step must return a scalar loss attached to the autograd graph; got "
            f"shape {tuple(loss.shape)}, requires_grad={loss.requires_grad}."
        )
    value = loss.detach().float().reshape(())
    return value, dist.all_reduce_mean(torch.isfinite(value).float())


def non_finite_loss_error(
    reading: LossReading,
    *,
    deferred: bool,
    total_steps: int,
    checkpoint_path: Path,
    checkpoint_step: int | None,
) -> NonFiniteLossError:
    """The error for a non-finite ``reading``: which step, when the run stopped, and
    which checkpoint (if any) is the last good one."""
    kept = (
        f"the last good checkpoint '{checkpoint_path}' (step {checkpoint_step}) is kept"
        if checkpoint_step is not None
        else "no checkpoint had been written yet"
    )
    when = (
        "stopped one step later (on this device losses are read a step late, so that "
        "the host never waits for it; the weights in memory are not saved)"
        if deferred
        else "stopped before the optimiser step"
    )
    return NonFiniteLossError(
        f"Non-finite loss ({reading.value}) at step {reading.index + 1} of {total_steps} "
        f"(index {reading.index}); {when} and {kept}. Try a lower learning rate, gradient "
        "clipping or fp32.",
        step=reading.index,
        checkpoint_step=checkpoint_step,
    )
