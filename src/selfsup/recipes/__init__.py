"""Config schemas of ``selfsup pretrain <method>``: one frozen dataclass tree per method,
sharing the data, run and evaluation sections."""

from selfsup.recipes.common import DataSection, EvalSection, TrainSection
from selfsup.recipes.ijepa import IJEPAConfig
from selfsup.recipes.simclr import SimCLRConfig

__all__ = ["DataSection", "EvalSection", "IJEPAConfig", "SimCLRConfig", "TrainSection"]
