"""The trainer with a tiny test-only method: exact resume, NaN stop, logs, schedules,
precision, memory format, sampler semantics and a 2-process DDP run against 1 process."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from torch import nn
from torch.optim import Optimizer

from selfsup.engine.checkpoint import load_checkpoint
from selfsup.engine.loss_reader import LossReader, LossReading
from selfsup.engine.metrics import MetricsLogger, read_metrics
from selfsup.engine.optim import build_optimizer, parameter_groups
from selfsup.engine.protocol import StepResult
from selfsup.engine.runtime import host_to_device
from selfsup.engine.schedules import cosine_schedule, warmup_cosine
from selfsup.engine.trainer import (
    NonFiniteLossError,
    Trainer,
    TrainerSettings,
    epoch_batches,
)

HERE = Path(__file__).resolve().parent


class TinyMethod(nn.Module):
    """conv -> [BN] -> ReLU -> pool -> linear, regressing each image's mean and std.

    The loss is a per-sample mean (so DDP's gradient average equals one process on the
    global batch); with ``noise`` the inputs get ``torch.rand`` noise, so the global RNG
    state matters for exact resume. ``nan_at`` poisons the loss at that step index.
    """

    def __init__(self, *, noise: bool = True, bn: bool = False, nan_at: int | None = None):
        super().__init__()
        torch.manual_seed(1234)  # the same initial weights in every test and process
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4) if bn else nn.Identity(),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 2),
        )
        self.noise, self.nan_at = noise, nan_at
        self._train_net: list[nn.Module] = [self.net]
        self.probe: Callable[[], Any] | None = None  # called at each step (tests read it)
        self.seen: list[Any] = []
        self.after_steps: list[int] = []

    def trainable_modules(self) -> list[nn.Module]:
        return [self.net]

    def wrap_trainable(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self._train_net = [wrap(self.net)]

    def training_step(self, images: torch.Tensor, step: int) -> StepResult:
        assert images.dtype == torch.uint8
        x = images.float() / 255
        if self.noise:
            x = x + 0.05 * torch.rand_like(x)
        out = self._train_net[0](x)
        target = torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1)
        loss = ((out.float() - target) ** 2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
        if self.probe is not None:
            self.seen.append(self.probe())
        return StepResult(loss=loss, logs={"out_mean": out.detach().float().mean()})

    def after_optimizer_step(self, step: int) -> None:
        self.after_steps.append(step)

    def eval_encoder(self) -> nn.Module:
        return self.net


def tiny_images(n: int = 18, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def lars_factory(modules: list[nn.Module]) -> Optimizer:
    return build_optimizer("lars", parameter_groups(modules, 1e-4), lr=0.5, weight_decay=1e-4)


def lr_schedule(total: int) -> Callable[[int], float]:
    return partial(warmup_cosine, total_steps=total, warmup_steps=3, base_value=0.5)


def settings(run_dir: Path, **kw: Any) -> TrainerSettings:
    base: dict[str, Any] = {
        "total_steps": 12,
        "batch_size": 4,
        "run_dir": run_dir,
        "device": "cpu",
        "checkpoint_every": 5,
        "log_every": 1,
        "progress": False,
    }
    return TrainerSettings(**{**base, **kw})


class Crash:
    """A callback that kills the run at one step (after the checkpoint before it)."""

    every_steps = 1

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, step: int, method: nn.Module) -> dict[str, float]:
        if step == self.at:
            raise KeyboardInterrupt(f"simulated crash at step {step}")
        return {}


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir)}


def test_resume_is_exact(tmp_path: Path) -> None:
    """18 images, batch 4: 4 steps per epoch. Crash at 7, resume from the step-5
    checkpoint (mid epoch 1) and run to 12, through the epoch boundary at 8."""
    images = tiny_images()
    full = TinyMethod()
    Trainer(
        full, lars_factory, images, settings(tmp_path / "a"), schedules={"lr": lr_schedule(12)}
    ).fit()
    reference = _losses(tmp_path / "a")
    assert sorted(reference) == list(range(1, 13))

    crashed = TinyMethod()
    with pytest.raises(KeyboardInterrupt):
        Trainer(
            crashed,
            lars_factory,
            images,
            settings(tmp_path / "b"),
            schedules={"lr": lr_schedule(12)},
            callbacks=[Crash(at=7)],
        ).fit()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 5
    assert sorted(_losses(tmp_path / "b")) == list(range(1, 7))  # steps 6 logged, then lost

    resumed = TinyMethod()
    summary = Trainer(
        resumed, lars_factory, images, settings(tmp_path / "b"), schedules={"lr": lr_schedule(12)}
    ).fit(resume=True)
    assert summary.steps == 12 and summary.steps_this_run == 7
    assert resumed.after_steps == list(range(5, 12))
    records = read_metrics(tmp_path / "b")
    assert [r["step"] for r in records] == list(range(1, 13))  # each step once
    assert _losses(tmp_path / "b") == reference  # bit-identical floats
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # The noise made the RNG matter: a differently seeded run gives other losses.
    other = TinyMethod()
    Trainer(
        other,
        lars_factory,
        images,
        settings(tmp_path / "c", seed=1, total_steps=2),
        schedules={"lr": lr_schedule(12)},
    ).fit()
    assert _losses(tmp_path / "c")[2] != reference[2]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    method = TinyMethod(nan_at=7)  # index 7 = the 8th step; checkpoints at 3 and 6
    trainer = Trainer(method, lars_factory, tiny_images(), settings(tmp_path, checkpoint_every=3))
    with pytest.raises(NonFiniteLossError, match=r"at step 8 of 12 \(index 7\)") as info:
        trainer.fit()
    assert "last good checkpoint" in str(info.value) and "(step 6)" in str(info.value)
    assert info.value.step == 7 and info.value.checkpoint_step == 6
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 6
    assert max(_losses(tmp_path)) == 7
    # Stopped before the optimiser step: the weights are still finite.
    assert all(torch.isfinite(p).all() for p in method.parameters())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.jsonl", "tb"]


@pytest.mark.parametrize(
    ("nan_at", "kept", "last_logged"),
    [(7, 6, 4), (8, 6, 8), (9, 9, 8)],  # found at a log step, a checkpoint, the next step
)
def test_deferred_loss_check_stops_a_step_late_and_never_saves_after_a_bad_step(
    tmp_path: Path, nan_at: int, kept: int, last_logged: int
) -> None:
    # CUDA's mode (the host reads each loss one step late), forced on the CPU; logs every
    # 4 steps, checkpoints every 3.
    method = TinyMethod(nan_at=nan_at)
    run = settings(tmp_path, checkpoint_every=3, log_every=4, defer_loss_check=True)
    with pytest.raises(NonFiniteLossError, match=rf"at step {nan_at + 1} of 12") as info:
        Trainer(method, lars_factory, tiny_images(), run).fit()
    assert "stopped one step later" in str(info.value) and f"(step {kept})" in str(info.value)
    assert info.value.step == nan_at and info.value.checkpoint_step == kept
    assert load_checkpoint(tmp_path / "last.pt")["step"] == kept  # a good one
    assert max(_losses(tmp_path)) == last_logged


def test_deferred_loss_check_trains_and_logs_exactly_as_the_immediate_one(
    tmp_path: Path,
) -> None:
    runs = {}
    for deferred in (False, True):
        run_dir = tmp_path / str(deferred)
        method = TinyMethod()
        run = settings(run_dir, log_every=3, defer_loss_check=deferred)
        summary = Trainer(method, lars_factory, tiny_images(), run).fit()
        runs[deferred] = (_losses(run_dir), summary.final_loss, method.state_dict())
    (losses, final, state), (d_losses, d_final, d_state) = runs[False], runs[True]
    assert d_losses == losses and sorted(losses) == [3, 6, 9, 12] and d_final == final
    for a, b in zip(state.values(), d_state.values(), strict=True):
        assert torch.equal(a, b)


def test_loss_reader_reads_immediately_or_one_step_late() -> None:
    one = torch.tensor(1.0)
    now = LossReader(deferred=False)
    assert now.push(0, torch.tensor(2.5), one) == [LossReading(0, 2.5, True)]
    assert now.drain() == []
    late = LossReader(deferred=True)
    assert late.push(0, torch.tensor(2.5), one) == []
    assert late.push(1, torch.tensor(float("nan")), torch.tensor(0.5)) == [
        LossReading(0, 2.5, True)
    ]
    (reading,) = late.drain()
    assert reading.index == 1 and math.isnan(reading.value) and not reading.finite
    assert late.drain() == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loss_reader_on_cuda_hands_over_losses_without_waiting() -> None:
    reader = LossReader(deferred=True)
    losses = torch.rand(3, device="cuda")
    one = torch.ones((), device="cuda")
    reader.push(0, losses[0], one)  # warm-up: the first pinned block is allocated here
    torch.cuda.set_sync_debug_mode("error")
    try:
        due = [reader.push(i, losses[i], one) for i in (1, 2)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = losses.tolist()
    assert [[r.index for r in d] for d in due] == [[0], [1]]
    assert [d[0].value for d in due] == pytest.approx(expected[:2])
    assert reader.drain()[0].value == pytest.approx(expected[2])


def test_schedules_logs_and_callbacks(tmp_path: Path) -> None:
    holder: dict[str, Optimizer] = {}

    def factory(modules: list[nn.Module]) -> Optimizer:
        groups = parameter_groups(modules, 0.04)
        groups[1]["lr_scale"] = 0.5  # the no-decay group learns at half the rate
        holder["opt"] = torch.optim.SGD(groups, lr=1.0, momentum=0.9)
        return holder["opt"]

    lr = partial(warmup_cosine, total_steps=8, warmup_steps=2, base_value=0.2)
    wd = partial(cosine_schedule, total_steps=8, start=0.04, end=0.4)
    tiny = TinyMethod()
    tiny.probe = lambda: [(g["lr"], g["weight_decay"]) for g in holder["opt"].param_groups]

    class Monitor:
        every_steps = 3

        def __call__(self, step: int, method: nn.Module) -> dict[str, float]:
            assert method is tiny
            return {"knn_top1": float(step)}

    summary = Trainer(
        tiny,
        factory,
        tiny_images(),
        settings(tmp_path, total_steps=8, log_every=2),
        schedules={"lr": lr, "weight_decay": wd},
        callbacks=[Monitor()],
    ).fit()
    assert len(tiny.seen) == 8
    for i, groups in enumerate(tiny.seen):
        assert groups == [(lr(i), wd(i)), (0.5 * lr(i), 0.0)], i
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [2, 3, 4, 6, 8]  # every 2, plus the monitor's
    for r in records:
        assert r["lr"] == lr(r["step"] - 1) and r["weight_decay"] == wd(r["step"] - 1)
        assert r["epoch"] == r["step"] / 4
        assert {"loss", "images_per_s", "out_mean"} <= set(r)
    assert [r["knn_top1"] for r in records if "knn_top1" in r] == [3.0, 6.0]
    assert summary.final_loss == records[-1]["loss"] and summary.steps == 8
    assert any((tmp_path / "tb").iterdir())  # TensorBoard events written


@pytest.mark.filterwarnings("ignore:precision=bf16 on a CPU")  # emulated bf16: slow, not wrong
def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        method = TinyMethod()
        method.probe = lambda m=method: m.net(torch.zeros(1, 3, 4, 4)).dtype
        s = settings(tmp_path / precision, total_steps=3, precision=precision)
        summary = Trainer(method, lars_factory, tiny_images(), s).fit()
        assert method.seen == [dtype] * 3
        assert summary.final_loss is not None and summary.final_loss < 1.0
        assert all(p.dtype == torch.float32 for p in method.parameters())  # master weights


def test_channels_last(tmp_path: Path) -> None:
    results = []
    for channels_last in (False, True):
        method = TinyMethod()
        s = settings(tmp_path / str(channels_last), total_steps=4, channels_last=channels_last)
        Trainer(method, lars_factory, tiny_images(), s).fit()
        w = cast(nn.Conv2d, method.net[0]).weight
        assert w.is_contiguous(memory_format=torch.channels_last) == channels_last
        results.append(w.detach().contiguous())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_bad_setups(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than one global batch of 32"):
        Trainer(TinyMethod(), lars_factory, tiny_images(), settings(tmp_path, batch_size=32))
    with pytest.raises(ValueError, match="uint8"):
        Trainer(TinyMethod(), lars_factory, tiny_images().float(), settings(tmp_path))
    with pytest.raises(TypeError, match="must be plain"):
        Trainer(
            TinyMethod(),
            lars_factory,
            tiny_images(),
            settings(tmp_path),
            meta={"run_dir": tmp_path},
        )
    with pytest.raises(ValueError, match="names no optimiser"):
        Trainer(
            TinyMethod(),
            lars_factory,
            tiny_images(),
            settings(tmp_path),
            schedules={"betas": lambda s: 0.9},
        )
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        settings(tmp_path, total_steps=0)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        Trainer(TinyMethod(), lars_factory, tiny_images(), settings(tmp_path)).fit(resume=True)
    Trainer(TinyMethod(), lars_factory, tiny_images(), settings(tmp_path, total_steps=2)).fit()
    with pytest.raises(FileExistsError, match="resume=True"):
        Trainer(TinyMethod(), lars_factory, tiny_images(), settings(tmp_path)).fit()
    with pytest.raises(ValueError, match="global_batch_size=4, this run has 2"):
        Trainer(TinyMethod(), lars_factory, tiny_images(), settings(tmp_path, batch_size=2)).fit(
            resume=True
        )


def test_epoch_batches_follow_distributed_sampler() -> None:
    n, b = 26, 3
    single = epoch_batches(n, 2 * b, epoch=1, seed=0, rank=0, world_size=1)
    ranks = [epoch_batches(n, b, epoch=1, seed=0, rank=r, world_size=2) for r in (0, 1)]
    assert single.shape == (4, 6) and ranks[0].shape == ranks[1].shape == (4, 3)
    for k in range(4):  # global batch k is the same images whatever the process count
        assert set(torch.cat([ranks[0][k], ranks[1][k]]).tolist()) == set(single[k].tolist())
    assert len(set(single.flatten().tolist())) == 24  # no repeats within an epoch
    other = epoch_batches(n, 2 * b, epoch=2, seed=0, rank=0, world_size=1)
    assert not torch.equal(other, single)


def test_host_to_device_pins_only_for_cuda_and_never_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """To CUDA the copy must start from pinned memory (else the host waits for it); to the
    CPU nothing is pinned. The device copy itself is recorded, not made (no GPU here)."""
    calls: list[tuple[str, Any]] = []
    real_to = torch.Tensor.to

    def pin(self: torch.Tensor) -> torch.Tensor:
        calls.append(("pin", None))
        return self.clone()

    def to(self: torch.Tensor, device: Any, non_blocking: bool = False) -> torch.Tensor:
        calls.append(("to", (torch.device(device).type, non_blocking)))
        return real_to(self, "cpu")

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "to", to)
    x = torch.arange(6)
    assert torch.equal(host_to_device(x, torch.device("cuda", 0)), x)
    assert calls == [("pin", None), ("to", ("cuda", True))]
    calls.clear()
    assert torch.equal(host_to_device(x, torch.device("cpu")), x)
    assert calls == [("to", ("cpu", True))]


def test_two_processes_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    """torchrun, gloo on the CPU, 2 x 4 images vs 1 x 8; loss = per-sample mean."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent / "src")}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(HERE / "ddp_trainer_worker.py"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["wrapped"] == r1["wrapped"] == "DistributedDataParallel"
    assert "sync_batchnorm needs CUDA" in r0["sync_bn_error"] == r1["sync_bn_error"]
    assert r0["steps"] == r1["steps"] == 5 and r0["after_steps"] == list(range(5))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == 5

    torch.manual_seed(0)
    single = TinyMethod(noise=False)
    Trainer(
        single,
        lars_factory,
        tiny_images(24),
        settings(tmp_path / "single", total_steps=5, batch_size=8),
        schedules={"lr": lr_schedule(5)},
    ).fit()
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-5, atol=1e-6)


def test_grad_clip_and_ready_optimizer(tmp_path: Path) -> None:
    """Plain SGD (no momentum, no decay) from a ready optimiser: a clipped step has norm
    lr * max_norm (torch divides by norm + 1e-6, hence rel=1e-3); unclipped it is larger."""
    steps = []
    for clip in (None, 1e-3):
        method = TinyMethod()
        before = torch.cat([p.detach().flatten().clone() for p in method.parameters()])
        opt = torch.optim.SGD(method.parameters(), lr=0.1)
        s = settings(tmp_path / str(clip), total_steps=1, grad_clip=clip)
        Trainer(method, opt, tiny_images(), s).fit()
        after = torch.cat([p.detach().flatten() for p in method.parameters()])
        steps.append((after - before).norm().item())
    assert steps[1] == pytest.approx(0.1 * 1e-3, rel=1e-3)
    assert steps[0] > 10 * steps[1]


def test_metrics_without_tensorboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.warns(UserWarning, match="TensorBoard unavailable"):
        logger = MetricsLogger(tmp_path, resume_step=None)
    logger.log(1, {"loss": 0.5, "bad": float("nan")})
    logger.close()
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 0.5, "bad": None}]  # strict JSON
    assert not (tmp_path / "tb").exists()
