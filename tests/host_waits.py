"""CUDA's sync debug mode, stood in for on a CPU: fail on every call that would make the
host wait for an accelerator.

Two nets, because neither sees everything: Python-level patches catch ``tolist``, ``item``,
``bool``, ``nonzero``, ``repeat_interleave`` and ``torch.tensor`` where they are called;
a dispatch mode catches the operators beneath, also when torch calls them internally: a
value read back (``_local_scalar_dense``), a data-sized output (``nonzero``) and Python data
turned into a tensor (``lift_fresh``, e.g. a scalar written through indices), which on a GPU
is a blocking copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

_PATCHED = [
    (torch.Tensor, "nonzero"),  # sizes its output from the data
    (torch.Tensor, "repeat_interleave"),  # likewise
    (torch.Tensor, "item"),  # reads a value back
    (torch.Tensor, "tolist"),
    (torch.Tensor, "__bool__"),
    (torch, "tensor"),  # Python numbers -> device: a blocking copy
]


class _ForbiddenOperators(TorchDispatchMode):
    FORBIDDEN = {
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.nonzero.default,
        torch.ops.aten.lift_fresh.default,
    }

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in self.FORBIDDEN:
            raise AssertionError(f"{func} makes the host wait for an accelerator")
        return func(*args, **(kwargs or {}))


@contextmanager
def forbid_host_waits() -> Iterator[None]:
    """Inside the block, any call that waits for an accelerator raises AssertionError."""
    with pytest.MonkeyPatch.context() as mp:
        for owner, name in _PATCHED:

            def forbidden(*args: Any, _name: str = name, **kwargs: Any) -> None:
                raise AssertionError(f"{_name}() makes the host wait for an accelerator")

            mp.setattr(owner, name, forbidden)
        with _ForbiddenOperators():
            yield
