"""The method-agnostic training loop.

The trainer knows a method only through :class:`~selfsup.engine.protocol.Method`: it
hands ``training_step`` a batch of uint8 images on the device and steps the optimiser on
the returned loss. It owns the rest: device and precision, DDP over the trainable modules
only, the sampler, schedules, checkpoints, exact resume, logging and callbacks.

Step numbering: ``index`` = 0, 1, ... is the optimiser step being taken; it is what
``training_step``, ``after_optimizer_step`` and the schedules receive. Logs, callbacks
and checkpoints count *completed* steps, ``index + 1``.

Batches come from :func:`~selfsup.engine.runtime.epoch_batches` over the in-memory
tensor, not from a ``DataLoader`` (the runtime module says why).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from selfsup import dist
from selfsup.engine.checkpoint import (
    check_plain_data,
    gather_rng_states,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from selfsup.engine.loss_reader import (
    LossReader,
    LossReading,
    NonFiniteLossError,
    loss_and_finiteness,
    non_finite_loss_error,
)
from selfsup.engine.metrics import MetricsLogger, ProgressBar
from selfsup.engine.protocol import Method, PeriodicCallback
from selfsup.engine.runtime import (
    epoch_batches,
    host_to_device,
    resolve_precision,
    seed_everything,
    select_device,
)
from selfsup.engine.settings import TrainerSettings, TrainSummary

__all__ = ["NonFiniteLossError", "PeriodicCallback", "TrainSummary", "Trainer", "TrainerSettings"]

CHECKPOINT_NAME = "last.pt"


class Trainer:
    """Trains any :class:`Method` on an in-memory uint8 image tensor.

    Args:
        method: an ``nn.Module`` implementing the method protocol.
        optimizer_factory: ``trainable_modules -> Optimizer``, called once the modules are
            on the device (preferred); or a ready optimiser over the method's parameters.
        images: (N, 3, H, W) uint8 on the CPU.
        settings: see :class:`TrainerSettings`.
        schedules: name -> function of the step index, applied before each step:
            ``"lr"`` sets every group's ``lr`` (times the group's ``lr_scale``, default 1);
            ``"weight_decay"`` sets it on groups whose initial weight decay is > 0; any
            other name sets that key on every group that has it (e.g. ``"momentum"``).
        callbacks: :class:`PeriodicCallback` objects (a kNN monitor, ...).
        meta: plain data saved in every checkpoint (method name, encoder spec, config).
    """

    def __init__(
        self,
        method: Method,
        optimizer_factory: Callable[[list[nn.Module]], Optimizer] | Optimizer,
        images: torch.Tensor,
        settings: TrainerSettings,
        *,
        schedules: dict[str, Callable[[int], float]] | None = None,
        callbacks: Sequence[PeriodicCallback] = (),
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(method, nn.Module):
            raise TypeError(f"method must be an nn.Module; got {type(method).__name__}.")
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be a uint8 (N, 3, H, W) tensor; got {images.dtype} "
                f"{tuple(images.shape)}."
            )
        check_plain_data(meta or {}, "meta")
        self.method = method
        self.module: nn.Module = method
        self.images = images.cpu()
        self.settings = settings
        self.schedules = dict(schedules or {})
        self.callbacks = list(callbacks)
        self.meta = dict(meta or {})
        for cb in self.callbacks:
            if cb.every_steps < 1:
                raise ValueError(f"Callback {cb!r} has every_steps={cb.every_steps}; need >= 1.")

        dist.init_from_env()
        self.rank, self.world_size = dist.rank(), dist.world_size()
        self.global_batch = settings.batch_size * self.world_size
        self.steps_per_epoch = len(images) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"The dataset has {len(images)} images, fewer than one global batch of "
                f"{self.global_batch} ({settings.batch_size} x {self.world_size} processes); "
                "lower the batch size."
            )
        self.device = select_device(settings.device)
        self.precision = resolve_precision(settings.precision, self.device)
        self.module.to(self.device)
        trainable = method.trainable_modules()
        if not trainable or not all(isinstance(m, nn.Module) for m in trainable):
            raise ValueError("method.trainable_modules() must return a non-empty list of modules.")
        if settings.channels_last:
            # Convolutions pick channels-last kernels when their weight is channels-last,
            # so converting the modules suffices; inputs keep their layout.
            for m in trainable:
                m.to(memory_format=torch.channels_last)
        if self.world_size > 1:
            if settings.sync_batchnorm and self.device.type != "cuda":
                raise ValueError(
                    f"sync_batchnorm needs CUDA (torch's SyncBatchNorm); this run is on "
                    f"{self.device.type}. Set sync_batchnorm=False."
                )
            method.wrap_trainable(self._wrap)
        self.optimizer = (
            optimizer_factory
            if isinstance(optimizer_factory, Optimizer)
            else optimizer_factory(trainable)
        )
        self._params = list({id(p): p for m in trainable for p in m.parameters()}.values())
        self._initial_wd = [g.get("weight_decay", 0.0) for g in self.optimizer.param_groups]
        for key in self.schedules:
            if key not in ("lr", "weight_decay") and not any(
                key in g for g in self.optimizer.param_groups
            ):
                raise ValueError(f"Schedule '{key}' names no optimiser parameter-group key.")
        self._fitted = False

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.settings.sync_batchnorm:
            # Replaces BN children in place, sharing parameters and running statistics.
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    @property
    def checkpoint_path(self) -> Path:
        """``run_dir/last.pt``: the latest checkpoint."""
        return self.settings.run_dir / CHECKPOINT_NAME

    def fit(self, resume: bool = False) -> TrainSummary:
        """Train until ``total_steps``; with ``resume``, continue from ``run_dir/last.pt``.

        A resumed run repeats the interrupted one exactly (same batches, random numbers
        and, on the CPU, bit-identical losses). A fresh run refuses a ``run_dir`` that
        already holds a checkpoint. ``run_dir`` must be visible to every process.
        """
        if self._fitted:
            raise RuntimeError("Trainer.fit can be called once; build a new Trainer.")
        self._fitted = True
        s = self.settings
        if s.num_threads is not None:
            torch.set_num_threads(s.num_threads)
        s.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            start = self._restore(load_checkpoint(self.checkpoint_path))
        else:
            if self.checkpoint_path.exists():
                raise FileExistsError(
                    f"'{self.checkpoint_path}' exists: resume that run (resume=True) or use "
                    "another run_dir."
                )
            start = 0
            seed_everything(s.seed + self.rank)  # a distinct random stream per process
        self._checkpoint_step: int | None = start if resume else None
        main = dist.is_main_process()
        logger = MetricsLogger(s.run_dir, enabled=main, resume_step=start if resume else None)
        bar = ProgressBar(s.total_steps, start, enabled=main and s.progress)
        try:
            return self._loop(start, logger, bar)
        finally:
            logger.close()
            bar.close()

    def _loop(self, start: int, logger: MetricsLogger, bar: ProgressBar) -> TrainSummary:
        s, spe = self.settings, self.steps_per_epoch
        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )
        self.module.train()
        began = window_time = time.perf_counter()
        window_start, order_epoch = start, -1
        order = torch.empty(0, dtype=torch.long)
        loss_value: float | None = None
        deferred = s.defer_loss_check
        reader = LossReader(self.device.type == "cuda" if deferred is None else deferred)
        for index in range(start, s.total_steps):
            epoch, offset = divmod(index, spe)
            if epoch != order_epoch:  # the batch order is a pure function of the epoch
                order_epoch = epoch
                order = epoch_batches(
                    len(self.images), s.batch_size, epoch=epoch, seed=s.seed,
                    rank=self.rank, world_size=self.world_size,
                )  # fmt: skip
            batch = host_to_device(self.images[order[offset]], self.device)
            scheduled = self._apply_schedules(index)
            with autocast:
                result = self.method.training_step(batch, index)
            for reading in reader.push(index, *loss_and_finiteness(result.loss)):
                loss_value = self._check_finite(reading, reader.deferred)
            self.optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            if s.grad_clip is not None:
                nn.utils.clip_grad_norm_(self._params, s.grad_clip)
            self.optimizer.step()
            self.method.after_optimizer_step(index)
            done = index + 1

            record: dict[str, float] = {}
            for cb in self.callbacks if dist.is_main_process() else ():
                if done % cb.every_steps == 0:
                    record.update(cb(done, self.method))
                    self.module.train()
            shown = None
            logging_now = done % s.log_every == 0 or done == s.total_steps or record
            saving_now = done % s.checkpoint_every == 0 or done == s.total_steps
            if logging_now or saving_now:  # log this step's loss; never save after a bad one
                for reading in reader.drain():
                    loss_value = self._check_finite(reading, reader.deferred)
            if logging_now:
                now = time.perf_counter()
                speed = (done - window_start) * self.global_batch / max(now - window_time, 1e-9)
                window_time, window_start = now, done
                lr = scheduled.get("lr", self.optimizer.param_groups[0]["lr"])
                shown = {"loss": loss_value, "lr": lr, "images_per_s": speed}
                logs = {k: float(v) for k, v in result.logs.items()}  # synchronises: rarely
                logger.log(done, {**logs, **record, **scheduled, "epoch": done / spe, **shown})
            bar.update(1, shown)
            if saving_now:
                self._save(done)
        dist.barrier()
        wall = time.perf_counter() - began
        ran, steps = max(0, s.total_steps - start), max(start, s.total_steps)
        return TrainSummary(
            steps=steps,
            steps_this_run=ran,
            epochs=steps / spe,
            final_loss=loss_value,
            images_per_second=ran * self.global_batch / wall if ran else 0.0,
            wall_time_s=wall,
            checkpoint=self.checkpoint_path if self._checkpoint_step is not None else None,
        )

    def _apply_schedules(self, index: int) -> dict[str, float]:
        values = {name: float(f(index)) for name, f in self.schedules.items()}
        for i, group in enumerate(self.optimizer.param_groups):
            for name, value in values.items():
                if name == "lr":
                    group["lr"] = value * group.get("lr_scale", 1.0)
                elif name == "weight_decay":
                    if self._initial_wd[i] > 0:
                        group["weight_decay"] = value
                elif name in group:
                    group[name] = value
        return values

    def _check_finite(self, reading: LossReading, deferred: bool) -> float:
        """The reading's loss; raises :class:`NonFiniteLossError` if it was not finite."""
        if reading.finite:
            return reading.value
        raise non_finite_loss_error(
            reading,
            deferred=deferred,
            total_steps=self.settings.total_steps,
            checkpoint_path=self.checkpoint_path,
            checkpoint_step=self._checkpoint_step,
        )

    def _save(self, done: int) -> None:
        rng = gather_rng_states()  # collective: every process takes part, rank 0 writes
        if dist.is_main_process():
            save_checkpoint(
                self.checkpoint_path,
                {
                    "step": done,
                    "epoch": done / self.steps_per_epoch,
                    "num_images": len(self.images),
                    "global_batch_size": self.global_batch,
                    "world_size": self.world_size,
                    "method_state": self.module.state_dict(),
                    "optimizer_state": self.optimizer.state_dict(),
                    "rng": rng,
                    "settings": {
                        k: str(v) if isinstance(v, Path) else v
                        for k, v in asdict(self.settings).items()
                    },
                    "meta": self.meta,
                },
            )
        self._checkpoint_step = done

    def _restore(self, ckpt: dict[str, Any]) -> int:
        for key, mine in (
            ("num_images", len(self.images)),
            ("global_batch_size", self.global_batch),
        ):
            if ckpt.get(key) != mine:
                raise ValueError(
                    f"Cannot resume '{self.checkpoint_path}': it was written with {key}="
                    f"{ckpt.get(key)}, this run has {mine}; the batches would differ."
                )
        self.module.load_state_dict(ckpt["method_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        step = int(ckpt["step"])
        rng = ckpt["rng"]
        if len(rng) == self.world_size:
            restore_rng_state(rng[self.rank])
        else:
            warnings.warn(
                f"Checkpoint written by {len(rng)} processes, resuming with "
                f"{self.world_size}: random streams are reseeded, so augmentations differ "
                "from the original run (batches do not).",
                stacklevel=3,
            )
            seed_everything(self.settings.seed + self.rank + step)
        return step
