"""Where training metrics go: a JSONL file, TensorBoard scalars and a progress bar.

Named ``metrics`` rather than ``logging`` so it never shadows the standard library.
Only the main process (rank 0) writes; the other processes build disabled instances so
the trainer's code has no rank checks.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"


class MetricsLogger:
    """Append one JSON object per logged step to ``run_dir/metrics.jsonl`` and to TensorBoard.

    Args:
        run_dir: the run's folder (created if missing).
        enabled: False on processes other than rank 0: every call does nothing.
        resume_step: when resuming from a checkpoint taken after ``resume_step`` steps, the
            records of later steps (written before the interruption, then lost with it)
            are dropped from the JSONL file and from TensorBoard (``purge_step``), so each
            step appears once. ``None`` starts a fresh file.
        tensorboard: write TensorBoard scalars to ``run_dir/tb`` if TensorBoard imports.

    Non-finite values are written as JSON ``null`` so the file stays strict JSON.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool = True,
        resume_step: int | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self._writer: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_step)
        if tensorboard:
            self._writer = _summary_writer(
                Path(run_dir) / TENSORBOARD_DIR,
                purge_step=None if resume_step is None else resume_step + 1,
            )

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        os.replace(tmp, self.path)

    def log(self, step: int, values: Mapping[str, float | int]) -> None:
        """Record ``values`` for ``step`` (the number of optimiser steps completed)."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step}
        for key, value in values.items():
            v = float(value)
            record[key] = v if math.isfinite(v) else None
        with self.path.open("a") as f:  # one flushed line per record survives a crash
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, float(value), step)

    def close(self) -> None:
        """Flush and close TensorBoard's writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _summary_writer(log_dir: Path, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # TensorBoard is optional at run time
        warnings.warn(
            f"TensorBoard unavailable ({e}); logging to metrics.jsonl only.", stacklevel=3
        )
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``, in order."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ProgressBar:
    """A tqdm bar over optimiser steps showing loss, lr and images/s (tqdm adds the ETA).

    Disabled unless ``enabled`` and standard error is a terminal (no bar noise in log
    files or CI output).
    """

    def __init__(self, total: int, initial: int, *, enabled: bool) -> None:
        active = enabled and sys.stderr.isatty()
        self._bar = (
            tqdm(total=total, initial=initial, disable=not active, unit="step", dynamic_ncols=True)
            if active
            else None
        )

    def update(self, n: int, values: Mapping[str, float] | None = None) -> None:
        """Advance by ``n`` steps; show ``values`` when given."""
        if self._bar is None:
            return
        if values:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
