"""Encoders (by name, through the registry) and heads.

Importing this package registers every model family: each family module decorates its
factories with :func:`register_model` when it is imported here.
"""

from selfsup.models import resnet as resnet  # registers resnet18 ... resnet152
from selfsup.models import vit as vit  # registers vit_tiny ... vit_huge
from selfsup.models.heads import ProjectionHead, projection_head
from selfsup.models.pooling import TokenPooling
from selfsup.models.predictor import IJEPAPredictor
from selfsup.models.registry import (
    UnknownModelError,
    create_model,
    is_model,
    list_models,
    register_model,
)
from selfsup.models.resnet import ResNetEncoder
from selfsup.models.vit import VisionTransformer

__all__ = [
    "IJEPAPredictor",
    "ProjectionHead",
    "ResNetEncoder",
    "TokenPooling",
    "UnknownModelError",
    "VisionTransformer",
    "create_model",
    "is_model",
    "list_models",
    "projection_head",
    "register_model",
]
