"""Run a study: train every planned run, measure it, draw the figures, write the report.

``study.json`` in the output folder holds every number the report shows (and the machine
it ran on); :func:`run_study` returns the report's paths.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import torch

from selfsup.build.common import test_resolution
from selfsup.config import to_dict
from selfsup.data.datasets import ImageData
from selfsup.study.measure import (
    cost_stage,
    curve,
    embedding_stage,
    finetune_stage,
    knn_linear,
    run_stages,
    shapes_stage,
    transforms_stage,
)
from selfsup.study.plan import Run, StudySettings, plan_runs, quick_settings, random_encoder_factory
from selfsup.study.train import snapshot_files, train_run

STUDY_FILE = "study.json"


def eval_side(config: Any) -> int:
    """The side a run's encoder is evaluated at: its ``eval.image_size``, else its training
    size (a recipe may train below CIFAR-10's 32 px on purpose)."""
    return test_resolution(config.eval.image_size, config.augment.size)


def shapes_dataset(n: int, size: int, quick: bool) -> Path:
    """The shapes dataset (seed 0) under selfsup's cache folder, rendered on first use."""
    from selfsup.data.cifar import default_cache_dir
    from selfsup.data.shapes import write_shapes_dataset

    folder = default_cache_dir() / "shapes" / f"n{n}_seed0_{size}px"
    if not (folder / "labels.csv").is_file():
        print(f"rendering the shapes dataset ({n} images, {size} px) into {folder} ...")
        tmp = folder.with_name(folder.name + ".partial")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        write_shapes_dataset(tmp, n, seed=0, size=size, progress=not quick)
        tmp.replace(folder)
    return folder


def _stages(
    run: Run,
    settings: StudySettings,
    data: tuple[ImageData, ImageData],
    shapes: Path,
    device: torch.device,
    sweep: bool,
) -> dict[str, Any]:
    """The measurement stages of one trained run (a sweep point: kNN, linear and cost)."""
    from selfsup.evaluation import encoder_from_checkpoint

    run_dir = Path(run.config.train.run_dir)
    ckpt = run_dir / "last.pt"
    sizes, (train, test) = settings.sizes, data

    def trained() -> Any:
        return encoder_from_checkpoint(ckpt)[0]

    size = eval_side(run.config)
    stages: dict[str, Any] = {
        "knn_linear": lambda: knn_linear(trained(), train, test, sizes, size, device),
        "cost": lambda: cost_stage(ckpt, train.images, device),
    }
    if sweep:
        return stages
    stages["curve"] = lambda: curve(ckpt, snapshot_files(run_dir), train, test, sizes, device)
    for labels in sizes.finetune_labels:
        out = run_dir / f"finetune_{labels.replace('%', 'pct')}"
        stages[f"finetune_{labels}"] = partial(
            finetune_stage, trained, train, test, labels, out, sizes, size, device
        )
    stages["transforms"] = lambda: transforms_stage(ckpt, train, test, sizes, device)
    stages["shapes"] = lambda: shapes_stage(trained(), shapes, sizes, size, device)
    stages["embedding"] = lambda: embedding_stage(trained(), test, sizes, size, device)
    return stages


def _baselines(
    runs: list[Run],
    settings: StudySettings,
    data: tuple[ImageData, ImageData],
    shapes: Path,
    device: torch.device,
) -> dict[str, Any]:
    """Randomly initialised encoders of each architecture in the study: the floor every
    pre-trained encoder must clear (kNN, linear, few-label fine-tuning from scratch, shapes)."""
    train, test = data
    sizes, out = settings.sizes, {}
    seen: dict[str, Run] = {}
    for run in runs:
        seen.setdefault(run.config.model.encoder, run)
    for encoder_name, run in seen.items():
        make = random_encoder_factory(run.config)
        size = eval_side(run.config)
        run_dir = settings.out_dir / f"random_{encoder_name}"
        stages: dict[str, Any] = {
            "knn_linear": lambda m=make, s=size: knn_linear(m(), train, test, sizes, s, device),
        }
        for labels in sizes.finetune_labels:
            folder = run_dir / f"finetune_{labels.replace('%', 'pct')}"
            stages[f"finetune_{labels}"] = partial(
                finetune_stage, make, train, test, labels, folder, sizes, size, device
            )
        stages["shapes"] = lambda m=make, s=size: shapes_stage(m(), shapes, sizes, s, device)
        out[run_dir.name] = {
            "title": f"random-init {encoder_name}",
            "encoder": encoder_name,
            **run_stages(run_dir, stages),
        }
    return out


def _figures(
    runs: list[Run], settings: StudySettings, train: ImageData, device: torch.device
) -> dict[str, Any]:
    """The papers' figures (SimCLR Fig. 4 and 6, I-JEPA Fig. 4 and 6) as PNGs: their paths
    relative to the study folder, and the predictor figure's held-out MSEs."""
    from selfsup import figures

    folder = settings.out_dir / "figures"
    images = train.images[:8]
    paths = {
        "crops": figures.crop_histograms(images, folder / "simclr_fig6_crop_histograms.png"),
        "augmentations": figures.augmentation_grid(images[:4], folder / "simclr_fig4_views.png"),
    }
    ijepa = [r for r in runs if r.arm.method == "ijepa"]
    if ijepa:
        cfg: Any = ijepa[0].config
        m = cfg.masks
        paths["masks"] = figures.mask_grid(
            images[:6],
            folder / "ijepa_fig4_masks.png",
            patch_size=cfg.model.patch_size,
            num_targets=m.num_targets,
            target_scale=tuple(m.target_scale),
            target_aspect=tuple(m.target_aspect),
            context_scale=tuple(m.context_scale),
            min_context=m.min_context,
        )
        n_train = 1000 if settings.quick else 10000
        path, metrics = figures.predictor_figure(
            Path(cfg.train.run_dir) / "last.pt",
            train.images[-n_train:],
            train.images[8:12],
            folder / "ijepa_fig6_predictor.png",
            epochs=2 if settings.quick else 10,
            device=device,
        )
        paths["predictor"] = path
    out: dict[str, Any] = {k: str(Path(v).relative_to(settings.out_dir)) for k, v in paths.items()}
    return {"paths": out, "predictor_mse": metrics if ijepa else {}}


def run_study(settings: StudySettings) -> dict[str, Path]:
    """Plan (and check) every run, then train, measure, draw and report; the report's paths."""
    from selfsup.build import load_split
    from selfsup.engine.runtime import select_device
    from selfsup.study.machine import hardware
    from selfsup.study.report import write_report

    if settings.quick:
        settings = quick_settings(settings)
    runs = plan_runs(settings)  # every check, before any work
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(settings.device)
    info = hardware(device)
    d = runs[0].config.data
    data = (load_split(d, d.train_split, labelled=True), load_split(d, d.test_split, labelled=True))
    sweep = settings.sweep is not None
    shapes = shapes_dataset(settings.shapes_n, eval_side(runs[0].config), settings.quick)
    # Train every run first, then measure: the headline numbers (kNN, linear, cost) of every
    # run come before the long stages, so an interrupted study has them on disk first.
    trained: dict[str, dict[str, Any]] = {}
    for run in runs:
        print(f"{run.name}: pre-training for {settings.budget_s():.0f} s ...", flush=True)
        trained[run.name] = train_run(
            run.arm.method,
            to_dict(run.config),
            Path(run.config.train.run_dir),
            budget_s=settings.budget_s(),
            calibrate_warmup=settings.calibrate_warmup,
            calibrate_steps=settings.calibrate_steps,
            snapshots=settings.snapshots,
        )
    stages = {run.name: _stages(run, settings, data, shapes, device, sweep) for run in runs}
    for run in runs:
        first = {k: v for k, v in stages[run.name].items() if k in ("knn_linear", "cost")}
        run_stages(Path(run.config.train.run_dir), first)
    collected: dict[str, Any] = {}
    for run in runs:
        collected[run.name] = {
            "title": run.arm.title,
            "arm": run.arm.name,
            "method": run.arm.method,
            "encoder": run.config.model.encoder,
            "sweep_value": run.sweep_value,
            "train": trained[run.name],
            **run_stages(Path(run.config.train.run_dir), stages[run.name]),
        }
    study: dict[str, Any] = {
        "settings": {
            "data": settings.data,
            "budget_s": settings.budget_s(),
            "arms": settings.arms,
            "overrides": list(settings.overrides),
            "sweep": settings.sweep,
            "quick": settings.quick,
            "sizes": settings.sizes.__dict__,
            "train_images": len(data[0]),
            "test_images": len(data[1]),
            "shapes": str(shapes),
        },
        "hardware": info,
        "runs": collected,
        "baselines": {} if sweep else _baselines(runs, settings, data, shapes, device),
        "figures": {}
        if sweep or not settings.figures
        else _figures(runs, settings, data[0], device),
    }
    (out / STUDY_FILE).write_text(json.dumps(study, indent=2, default=list) + "\n")
    return write_report(out, study)
