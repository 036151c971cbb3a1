"""Evaluation of saved encoders: rebuild one from a checkpoint, then kNN, linear probe and
few-label fine-tuning.

Used by ``selfsup eval`` and ``selfsup pretrain --eval``; works for any method whose
checkpoint meta names its encoder (``encoder``) and where its weights sit
(``eval_encoder_prefix``); a token encoder (ViT) is evaluated on its average-pooled patch
tokens (``eval_layers``: the last layer, or the last four concatenated).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.config import ConfigError
from selfsup.data.datasets import ImageData
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.eval import extract_features, knn_evaluate, linear_probe, recalibrate_batchnorm
from selfsup.eval.finetune import (
    LabelBudget,
    balanced_subset,
    default_finetune_epochs,
    finetune,
)
from selfsup.models import create_model, projection_head
from selfsup.models.pooling import TokenPooling


def _state_under(ckpt: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The method-state entries whose keys start with ``prefix``, the prefix removed."""
    state = ckpt["method_state"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def encoder_from_checkpoint(
    path: str | Path, *, prefix: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the evaluation encoder saved in a selfsup checkpoint; returns (encoder, meta).

    ``prefix`` picks another copy of the encoder from the method's state, by the prefix of
    its keys: I-JEPA's context encoder is ``"online.encoder."`` (the default is the
    checkpoint's evaluation encoder, I-JEPA's target encoder).
    """
    ckpt = load_checkpoint(path)
    meta = ckpt.get("meta") or {}
    if "encoder" not in meta or "eval_encoder_prefix" not in meta:
        raise ConfigError(
            f"Checkpoint '{path}' carries no encoder description; was it written by "
            "`selfsup pretrain`?"
        )
    spec = meta["encoder"]
    encoder = create_model(spec["name"], **spec["kwargs"])
    prefix = meta["eval_encoder_prefix"] if prefix is None else prefix
    state = _state_under(ckpt, prefix)
    if not state:
        raise ConfigError(f"Checkpoint '{path}' has no weights under the prefix {prefix!r}.")
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
    bn_recalibration_images: int = 0,
) -> dict[str, float]:
    """kNN and/or linear top-1/top-5 (percent) of a frozen encoder on train -> test.

    The encoder is moved to ``device`` (in place, as ``nn.Module.to`` does): an encoder
    rebuilt from a checkpoint arrives on the CPU. ``bn_recalibration_images`` > 0 first
    re-estimates its BatchNorm statistics, in place, on that many unlabelled images of
    ``train`` at ``image_size`` (:func:`~selfsup.eval.batchnorm.recalibrate_batchnorm`).
    """
    if train.labels is None or test.labels is None:
        raise ConfigError("Evaluation needs labelled train and test splits.")
    encoder = encoder.to(device)
    start = time.perf_counter()
    kw = {"batch_size": batch_size, "device": device, "image_size": image_size}
    if bn_recalibration_images:
        recalibrate_batchnorm(encoder, train.images, num_images=bn_recalibration_images, **kw)  # type: ignore[arg-type]
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


def few_label_finetune(
    encoder: nn.Module,
    train: ImageData,
    test: ImageData,
    *,
    labels: str | LabelBudget,
    out_dir: str | Path,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int = 256,
    lr: float | None = None,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Fine-tune on a class-balanced subset of ``train`` (:mod:`selfsup.eval.finetune`),
    report top-1/top-5 on ``test``, and write beside each other in ``out_dir``:
    ``finetune.json`` (the result and settings) and ``subset.csv`` (index in the split,
    file, class of every labelled image used, so the subset can be checked or reused).
    ``epochs`` None: the paper's 60 for at most 1 % of the labels, else 30."""
    if train.labels is None or test.labels is None:
        raise ConfigError("Fine-tuning needs labelled train and test splits.")
    budget = labels if isinstance(labels, LabelBudget) else LabelBudget.parse(labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = balanced_subset(train.labels, budget, train.num_classes, seed=seed)
    n_epochs = epochs or default_finetune_epochs(len(index), len(train))
    start = time.perf_counter()
    r = finetune(
        encoder.to(device),
        train.images[index].contiguous(),
        train.labels[index],
        test.images,
        test.labels,
        num_classes=train.num_classes,
        epochs=n_epochs,
        batch_size=batch_size,
        lr=lr,
        image_size=image_size,
        device=device,
        seed=seed,
    )
    result: dict[str, Any] = {
        "finetune_top1": r.top1,
        "finetune_top5": r.top5,
        "labels": str(budget),
        "num_labels": r.num_labels,
        "seed": seed,
        "epochs": r.epochs,
        "steps": r.steps,
        "batch_size": r.batch_size,
        "lr": r.lr,
        "final_loss": r.final_loss,
        "seconds": time.perf_counter() - start,
        "train_source": train.source,
        "test_source": test.source,
    }
    (out / "finetune.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out / "subset.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "file", "class"])
        for i in index.tolist():
            name = train.files[i] if train.files else ""
            writer.writerow([i, name, train.classes[int(train.labels[i])]])
    return result


def head_from_checkpoint(path: str | Path, in_dim: int) -> nn.Module | None:
    """SimCLR's projection head g, rebuilt from a checkpoint with its trained weights, in
    eval mode: (B, in_dim) -> (B, out_dim). None for a method without one (I-JEPA); a
    SimCLR checkpoint without the head's weights is an error."""
    ckpt = load_checkpoint(path)
    meta = ckpt.get("meta") or {}
    state = _state_under(ckpt, "net.head.")
    if meta.get("method") != "simclr":
        return None
    if not state:  # g(h) is half of the transforms probe: do not quietly report h only
        raise ConfigError(
            f"Checkpoint '{path}' is a SimCLR checkpoint without projection-head weights "
            "(no net.head.* entries): the probe needs g to measure g(h). Pass the full "
            "checkpoint written by `selfsup pretrain simclr`."
        )
    model = (meta.get("config") or {}).get("model") or {}
    head = projection_head(
        model.get("head", "v1"),
        in_dim=in_dim,
        hidden_dim=model.get("head_hidden_dim") or in_dim,
        out_dim=model.get("out_dim", 128),
    )
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"Checkpoint '{path}': the projection head does not match: {e}") from e
    return head.eval()
