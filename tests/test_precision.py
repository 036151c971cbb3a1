"""``precision="auto"``: bf16 only where the device computes it natively; an explicit bf16
that the CPU would emulate warns with the fix."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from test_trainer import TinyMethod, lars_factory, settings, tiny_images

from selfsup.engine import runtime
from selfsup.engine.trainer import Trainer


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_it_is_native(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert runtime.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert runtime.resolve_precision("fp32", cpu) == "fp32"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert runtime.resolve_precision("bf16", cpu) == "bf16"  # asked for: kept
    emulated = [str(w.message) for w in caught if "emulates" in str(w.message)]
    assert len(emulated) == (0 if native else 1)
    assert all("precision=auto" in m for m in emulated)  # the message names the fix
    with pytest.raises(ValueError, match="'fp32', 'bf16' or 'auto'"):
        runtime.resolve_precision("fp16", cpu)


def test_native_bf16_reads_the_hardware() -> None:
    # The test machine's answer is whatever oneDNN says; it must be a plain bool.
    assert runtime.native_bf16(torch.device("cpu")) in (True, False)
    assert runtime.native_bf16(torch.device("meta")) is False


@pytest.mark.parametrize("native", [True, False])
def test_the_trainer_runs_auto_in_the_resolved_precision(
    native: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    method = TinyMethod()
    method.probe = lambda m=method: m.net(torch.zeros(1, 3, 4, 4)).dtype
    s = settings(tmp_path, total_steps=2, precision="auto")
    trainer = Trainer(method, lars_factory, tiny_images(), s)
    assert trainer.precision == ("bf16" if native else "fp32")
    trainer.fit()
    assert method.seen == [torch.bfloat16 if native else torch.float32] * 2
