"""Composition roots: a method's config -> explicit library objects -> a training run.

Only the CLI and the benchmarks call these; the library's classes take explicit arguments.
"""

from selfsup.build.common import PretrainOutcome, check_run_dir, load_split
from selfsup.build.simclr import build_simclr, encoder_spec, pretrain_simclr, simclr_trainer

__all__ = [
    "PretrainOutcome",
    "build_simclr",
    "check_run_dir",
    "encoder_spec",
    "load_split",
    "pretrain_simclr",
    "simclr_trainer",
]
