"""Data: datasets decoded once into uint8 tensors, augmentations, masks."""

from selfsup.data.cifar import default_cache_dir, resolve_cifar10
from selfsup.data.datasets import KNOWN_DATASETS, ImageData, load_dataset
from selfsup.data.decode import (
    IMAGE_EXTENSIONS,
    UndecodableImageError,
    UndecodableImageWarning,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "KNOWN_DATASETS",
    "ImageData",
    "UndecodableImageError",
    "UndecodableImageWarning",
    "default_cache_dir",
    "load_dataset",
    "resolve_cifar10",
]
