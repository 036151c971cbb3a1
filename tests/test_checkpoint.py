"""Checkpoints: round trip, atomic replacement on failure, clear errors, RNG states."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from selfsup.engine.checkpoint import (
    FORMAT,
    VERSION,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def test_round_trip(tmp_path: Path) -> None:
    payload: dict[str, Any] = {
        "step": 7,
        "method_state": {"w": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2])},
        "meta": {"method": "simclr", "sizes": [1, 2], "lr": 0.3, "note": None},
    }
    path = save_checkpoint(tmp_path / "last.pt", payload)
    loaded = load_checkpoint(path)
    assert loaded["format"] == FORMAT and loaded["version"] == VERSION
    assert loaded["step"] == 7 and loaded["meta"] == payload["meta"]
    assert torch.equal(loaded["method_state"]["w"], payload["method_state"]["w"])
    assert torch.equal(loaded["method_state"]["b"], payload["method_state"]["b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


def test_failed_save_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    before = path.read_bytes()
    real_save = torch.save

    def crash_mid_write(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save({"partial": torch.zeros(1000)}, f)  # some bytes hit the disk...
        raise OSError("disk full")  # ...then the write dies

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "missing_dir" / "last.pt", {})
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="is not a selfsup checkpoint"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, plain)  # a torch file without marker
    with pytest.raises(ValueError, match="no 'selfsup-checkpoint' format marker"):
        load_checkpoint(plain)
    newer = tmp_path / "newer.pt"
    torch.save({"format": FORMAT, "version": VERSION + 1}, newer)
    with pytest.raises(ValueError, match="format version"):
        load_checkpoint(newer)


def _draw() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(4)


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draw()
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = _draw()
    _draw()  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = _draw()
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])
