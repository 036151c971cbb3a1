"""What the study measures on each pre-trained encoder, one cached stage at a time.

Stages (each a function of the run's checkpoint returning plain numbers): ``knn_linear``
(kNN and linear top-1/top-5 on frozen features), ``curve`` (kNN top-1 of the encoder
snapshots saved during training, against their wall time), ``finetune_<labels>`` (few-label
fine-tuning, SimCLR App. B.5), ``transforms`` (SimCLR Table 3), ``shapes`` (counting and
depth, I-JEPA Table 4), ``embedding`` (2-D PCA map of test features) and ``cost`` (training
FLOPs per image, encoder parameters). Results accumulate in ``<run>/results.json``; a stage
already there is not run again, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.data.datasets import ImageData
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.eval import extract_features
from selfsup.evaluation import encoder_from_checkpoint, evaluate, few_label_finetune

RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class EvalSizes:
    """How much each evaluation uses. ``None``: the whole split."""

    knn_train: int | None = None
    knn_test: int | None = None
    linear_epochs: int = 100
    curve_train: int | None = 5000
    curve_test: int | None = 1000
    finetune_labels: tuple[str, ...] = ("1%", "10%")
    finetune_train: int | None = None
    finetune_epochs: int | None = None
    transforms_train: int = 10000
    transforms_test: int = 2000
    transforms_epochs: int = 30
    shapes_epochs: int = 100
    embedding_points: int = 2000
    batch_size: int = 512


def subset(data: ImageData, n: int | None, seed: int) -> ImageData:
    """A seeded random subset of ``n`` labelled images (all of them when ``n`` is None or
    not smaller than the split)."""
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise ValueError(f"subset size must be >= 1; got {n}.")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    assert data.labels is not None
    files = tuple(data.files[i] for i in idx.tolist()) if data.files else ()
    return ImageData(
        data.images[idx].contiguous(),
        data.labels[idx],
        data.classes,
        f"{n} of {data.source}",
        files,
    )


def run_stages(run_dir: Path, stages: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    """Run each stage not yet in ``run_dir/results.json``, saving after each; all results."""
    path = run_dir / RESULTS_FILE
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for name, stage in stages.items():
        if name in results:
            continue
        print(f"  {run_dir.name}: {name} ...", flush=True)
        start = time.perf_counter()
        results[name] = {**stage(), "stage_seconds": time.perf_counter() - start}
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(path)
    return results


def knn_linear(
    encoder: nn.Module,
    train: ImageData,
    test: ImageData,
    sizes: EvalSizes,
    image_size: int | None,
    device: torch.device,
) -> dict[str, Any]:
    """kNN (k = 200, T = 0.1) and linear-probe top-1/top-5 on frozen features."""
    return evaluate(
        encoder.to(device),
        subset(train, sizes.knn_train, 0),
        subset(test, sizes.knn_test, 1),
        image_size=image_size,
        linear_epochs=sizes.linear_epochs,
        batch_size=sizes.batch_size,
        device=device,
    )


def curve(
    checkpoint: Path,
    snapshots: list[Path],
    train: ImageData,
    test: ImageData,
    sizes: EvalSizes,
    device: torch.device,
) -> dict[str, Any]:
    """kNN top-1 of each training snapshot (same bank and queries), with its wall time."""
    encoder, meta = encoder_from_checkpoint(checkpoint)
    bank, queries = subset(train, sizes.curve_train, 0), subset(test, sizes.curve_test, 1)
    points = []
    for path in snapshots:
        snap = torch.load(path, map_location="cpu", weights_only=True)
        encoder.load_state_dict(snap["state"])
        r = evaluate(
            encoder.to(device),
            bank,
            queries,
            image_size=meta.get("image_size"),
            protocols=("knn",),
            batch_size=sizes.batch_size,
            device=device,
        )
        points.append(
            {
                "step": int(snap["step"]),
                "elapsed_s": float(snap["elapsed_s"]),
                "knn_top1": r["knn_top1"],
            }
        )
    return {"points": points, "bank": len(bank), "queries": len(queries)}


def finetune_stage(
    make_encoder: Callable[[], nn.Module],
    train: ImageData,
    test: ImageData,
    labels: str,
    out_dir: Path,
    sizes: EvalSizes,
    image_size: int | None,
    device: torch.device,
) -> dict[str, Any]:
    """Few-label fine-tuning of a fresh copy of the encoder (it is trained in place)."""
    return few_label_finetune(
        make_encoder(),
        subset(train, sizes.finetune_train, 0),
        subset(test, sizes.knn_test, 1),
        labels=labels,
        out_dir=out_dir,
        epochs=sizes.finetune_epochs,
        image_size=image_size,
        device=device,
    )


def transforms_stage(
    checkpoint: Path, train: ImageData, test: ImageData, sizes: EvalSizes, device: torch.device
) -> dict[str, Any]:
    """SimCLR Table 3 on h (and g(h) when the checkpoint has a projection head)."""
    from selfsup.evaluation import head_from_checkpoint
    from selfsup.probes.transforms import transforms_probe

    encoder, meta = encoder_from_checkpoint(checkpoint)
    head = head_from_checkpoint(checkpoint, int(getattr(encoder, "num_features")))  # noqa: B009
    result = transforms_probe(
        encoder.to(device),
        head,
        subset(train, sizes.transforms_train, 2).images,
        subset(test, sizes.transforms_test, 3).images,
        image_size=meta.get("image_size"),
        epochs=sizes.transforms_epochs,
        batch_size=sizes.batch_size,
        device=device,
    )
    return {"tasks": result}


def shapes_stage(
    encoder: nn.Module,
    shapes_dir: Path,
    sizes: EvalSizes,
    image_size: int | None,
    device: torch.device,
) -> dict[str, Any]:
    """Counting (linear probe, top-1) and nearest-object depth (ridge, MAE) on frozen features."""
    from selfsup.probes import shapes_probes

    return shapes_probes(
        encoder.to(device),
        shapes_dir,
        image_size=image_size,
        linear_epochs=sizes.shapes_epochs,
        batch_size=sizes.batch_size,
        device=device,
    )


def embedding_stage(
    encoder: nn.Module,
    test: ImageData,
    sizes: EvalSizes,
    image_size: int | None,
    device: torch.device,
) -> dict[str, Any]:
    """The first two principal components of L2-normalised test features (a linear map:
    deterministic and dependency-free, unlike t-SNE), with each point's class."""
    data = subset(test, sizes.embedding_points, 4)
    assert data.labels is not None
    f = extract_features(
        encoder.to(device),
        data.images,
        batch_size=sizes.batch_size,
        device=device,
        image_size=image_size,
    ).float()
    f = torch.nn.functional.normalize(f, dim=1)
    f = f - f.mean(0)
    _, s, v = torch.linalg.svd(f, full_matrices=False)
    xy = f @ v[:2].T
    explained = (s[:2] ** 2).sum() / (s**2).sum().clamp_min(1e-12)
    return {
        "x": xy[:, 0].tolist(),
        "y": xy[:, 1].tolist(),
        "label": data.labels.tolist(),
        "classes": list(data.classes),
        "explained_variance": float(explained),
    }


def cost_stage(checkpoint: Path, images: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """Training FLOPs per image (forward + backward, matrix products, convolutions and
    attention, counted by ``FlopCounterMode`` over one fp32 step of a freshly built method
    on real images) and the encoder's parameter count."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from selfsup.build import build_simclr
    from selfsup.build.ijepa import build_ijepa
    from selfsup.config import from_dict
    from selfsup.study.arms import SCHEMAS

    meta = load_checkpoint(checkpoint).get("meta") or {}
    cfg: Any = from_dict(SCHEMAS[meta["method"]], meta["config"])
    torch.manual_seed(0)
    method: Any = build_ijepa(cfg, 10) if meta["method"] == "ijepa" else build_simclr(cfg)
    method.to(device).train()
    batch = images[: min(len(images), cfg.train.batch_size, 64)].to(device)
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        method.training_step(batch, 0).loss.backward()
    return {
        "train_flops_per_image": counter.get_total_flops() / len(batch),
        # The evaluation encoder's weights: the same parameters the checkpoint's encoder has.
        "encoder_parameters": sum(p.numel() for p in method.eval_encoder().parameters()),
        # I-JEPA's (context, targets) draws per image: each is one more context-encoder and
        # predictor pass in the FLOPs above (masks.repeats; the paper draws one).
        "mask_draws_per_image": cfg.masks.repeats if meta["method"] == "ijepa" else None,
    }
