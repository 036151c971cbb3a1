"""Composition roots: a method's config -> explicit library objects -> a training run.

Only the CLI and the benchmarks call these; the library's classes take explicit arguments.
"""

from selfsup.build.common import PretrainOutcome, check_run_dir, load_split
from selfsup.build.ijepa import build_ijepa, ijepa_trainer, pretrain_ijepa
from selfsup.build.simclr import (
    build_simclr,
    encoder_spec,
    pretrain_simclr,
    side_schedule,
    simclr_trainer,
)

__all__ = [
    "PretrainOutcome",
    "build_ijepa",
    "build_simclr",
    "check_run_dir",
    "encoder_spec",
    "ijepa_trainer",
    "load_split",
    "pretrain_ijepa",
    "pretrain_simclr",
    "side_schedule",
    "simclr_trainer",
]
