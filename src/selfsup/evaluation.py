"""Evaluation of saved encoders: rebuild one from a checkpoint, then kNN and linear probe.

Used by ``selfsup eval`` and ``selfsup pretrain --eval``; works for any method whose
checkpoint meta names its encoder (``encoder``) and where its weights sit
(``eval_encoder_prefix``); a token encoder (ViT) is evaluated on its average-pooled patch
tokens (``eval_layers``: the last layer, or the last four concatenated).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.config import ConfigError
from selfsup.data.datasets import ImageData
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.eval import extract_features, knn_evaluate, linear_probe
from selfsup.models import create_model
from selfsup.models.pooling import TokenPooling


def encoder_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the evaluation encoder saved in a selfsup checkpoint; returns (encoder, meta)."""
    ckpt = load_checkpoint(path)
    meta = ckpt.get("meta") or {}
    if "encoder" not in meta or "eval_encoder_prefix" not in meta:
        raise ConfigError(
            f"Checkpoint '{path}' carries no encoder description; was it written by "
            "`selfsup pretrain`?"
        )
    spec = meta["encoder"]
    encoder = create_model(spec["name"], **spec["kwargs"])
    prefix = meta["eval_encoder_prefix"]
    state = {k[len(prefix) :]: v for k, v in ckpt["method_state"].items() if k.startswith(prefix)}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(
            f"Checkpoint '{path}' does not match encoder {spec['name']} {spec['kwargs']}: {e}"
        ) from e
    if getattr(encoder, "token_output", False):  # a ViT: average-pooled patch tokens
        encoder = TokenPooling(encoder, layers=int(meta.get("eval_layers", 1)))
    return encoder, meta


def evaluate(
    encoder: nn.Module,
    train: ImageData,
    test: ImageData,
    *,
    image_size: int | None,
    protocols: tuple[str, ...] = ("knn", "linear"),
    k: int = 200,
    temperature: float = 0.1,
    linear_epochs: int = 100,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """kNN and/or linear top-1/top-5 (percent) of a frozen encoder on train -> test."""
    if train.labels is None or test.labels is None:
        raise ConfigError("Evaluation needs labelled train and test splits.")
    start = time.perf_counter()
    kw = {"batch_size": batch_size, "device": device, "image_size": image_size}
    f_train = extract_features(encoder, train.images, **kw)  # type: ignore[arg-type]
    f_test = extract_features(encoder, test.images, **kw)  # type: ignore[arg-type]
    out: dict[str, float] = {"feature_seconds": time.perf_counter() - start}
    if "knn" in protocols:
        r = knn_evaluate(
            f_train,
            train.labels,
            f_test,
            test.labels,
            num_classes=train.num_classes,
            k=k,
            temperature=temperature,
        )
        out["knn_top1"], out["knn_top5"] = float(r["top1"]), float(r["top5"])
    if "linear" in protocols:
        lin = linear_probe(
            f_train,
            train.labels,
            f_test,
            test.labels,
            num_classes=train.num_classes,
            epochs=linear_epochs,
        )
        out["linear_top1"], out["linear_top5"] = float(lin.top1), float(lin.top5)
    return out
