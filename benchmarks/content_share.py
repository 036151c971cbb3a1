"""How much of a random ViT's I-JEPA target is image content rather than position, against
the patch-embedding initialisation.

I-JEPA's targets are the target encoder's output patch tokens, layer-normalised without
affine (SPEC). Each token is the sum of a content part (the embedded patch) and its fixed
sine-cosine position embedding; the predictor is given the target positions, so whatever part
of the target is a function of position alone it can predict without looking at the image.
This script measures that part at initialisation, on real images: for each patch-embedding
std it builds the recipe's encoder (seed 0), runs it on ``--images`` seeded test images and
reports

    content share = mean over (position, channel) of Var_images(token)
                    / mean over channel of Var_(images, positions)(token),

the fraction of the target variance that changes with the image at a fixed position (the
rest is the spread of the per-position means, i.e. position). The official std 0.02 was set
for 16 px patches (768 inputs per patch embedding); with 4 px patches (48 inputs) the content
part is 4x smaller against the same position embedding. ``docs/ijepa_small_scale.md`` and
``benchmarks/RESULTS.md`` give the figures and what they led to. Usage (repository root)::

    python benchmarks/content_share.py                    # ViT-tiny, patch 4, CIFAR-10
    python benchmarks/content_share.py --stds 0.02,0.08 model.patch_size=8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script
from accuracy_budget_ijepa import IJEPA_RECIPE  # noqa: E402

from selfsup.build import load_split  # noqa: E402
from selfsup.build.ijepa import encoder_spec  # noqa: E402
from selfsup.config import load_config  # noqa: E402
from selfsup.models import create_model  # noqa: E402
from selfsup.recipes import IJEPAConfig  # noqa: E402
from selfsup.study.measure import subset  # noqa: E402


def content_share(tokens: torch.Tensor) -> float:
    """Share of the variance of ``tokens`` (B images, N positions, D) that varies across
    images at a fixed position, after the targets' layer norm (no affine)."""
    t = F.layer_norm(tokens.float(), tokens.shape[-1:])
    within = t.var(dim=0, unbiased=False).mean()  # across images, per (position, channel)
    total = t.flatten(0, 1).var(dim=0, unbiased=False).mean()  # across images and positions
    return float(within / total)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of the I-JEPA recipe")
    p.add_argument("--config", default=IJEPA_RECIPE, help=f"({IJEPA_RECIPE})")
    p.add_argument("--stds", default="0.02,0.05,0.08,0.1,0.2", help="comma-separated stds")
    p.add_argument("--images", type=int, default=256, help="test images (seeded subset)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random encoder")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    try:
        args.std_values = [float(v) for v in args.stds.split(",")]
    except ValueError:
        p.error(f"--stds must be comma-separated numbers; got {args.stds!r}")
    if args.images < 2:
        p.error(f"--images must be >= 2 (a variance across images); got {args.images}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(IJEPAConfig, args.config, args.overrides)
    spec = encoder_spec(cfg)
    info = common.hardware(torch.device("cpu"))
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    common.print_header(f"content share of {spec['name']} {spec['kwargs']}", info, settings)
    d = cfg.data
    images = subset(load_split(d, d.test_split, labelled=True), args.images, 1).images
    x = images.float().div(255)  # the encoders' input: floats in [0, 1], not normalised
    rows = []
    print(f"\n{'patch-embedding std':>20s} {'content share':>14s}")
    for std in args.std_values:
        torch.manual_seed(args.seed)
        encoder = create_model(spec["name"], **spec["kwargs"], patch_embed_std=std).eval()
        with torch.inference_mode():
            share = content_share(encoder(x))
        rows.append({"patch_embed_std": std, "content_share": share})
        print(f"{std:20g} {share:14.3f}", flush=True)
    payload = {"benchmark": "content_share", "hardware": info, "settings": settings}
    common.write_json(args.json, {**payload, "results": rows})
    return 0


if __name__ == "__main__":
    common.run_main(main)
