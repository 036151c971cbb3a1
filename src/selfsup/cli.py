"""``selfsup`` command line: pretrain, eval, models, data, probe, figure, study.

selfsup pretrain simclr|ijepa --config configs/<recipe>.yaml key=value ... [--resume] [--eval]
selfsup eval knn|linear --checkpoint PATH [--data cifar10]
selfsup eval finetune --checkpoint PATH --labels 1%|10%|N-per-class [--seed 0] [--out DIR]
selfsup models
selfsup data shapes --out DIR [--n 60000 --seed 0 --size 32]       (selfsup.cli_tools)
selfsup probe counting|depth --checkpoint PATH --data DIR          (selfsup.cli_tools)
selfsup figure crops|augmentations|masks|predictor --out FILE.png   (selfsup.cli_figures)
selfsup study [--data cifar10 --budget 60m --sweep KEY=V1,V2 --quick]  (selfsup.cli_study)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfsup import cli_figures, cli_study, cli_tools
from selfsup.config import ConfigError, describe, load_config, unknown_name_error
from selfsup.recipes import DataSection, IJEPAConfig, SimCLRConfig

METHODS: dict[str, type] = {"simclr": SimCLRConfig, "ijepa": IJEPAConfig}
PROTOCOLS = ("knn", "linear", "finetune")


def _keys_epilog() -> str:
    parts = []
    for method, schema in METHODS.items():
        rows = describe(schema)
        width = max(len(f"{k} = {d}") for k, _, d, _ in rows)
        lines = [f"  {f'{k} = {d}'.ljust(width)}  ({t}) {h}" for k, t, d, h in rows]
        parts.append(
            f"{method} config keys (set in the YAML recipe or as key=value; default shown):\n"
            + "\n".join(lines)
        )
    return "\n\n".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfsup", description="Self-supervised pre-training and evaluation (SimCLR, I-JEPA)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    pre = sub.add_parser(
        "pretrain",
        help="pre-train an encoder",
        description="Pre-train an encoder with a self-supervised method.",
        epilog=_keys_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pre.add_argument("method", help=f"method: {', '.join(METHODS)}")
    pre.add_argument("--config", help="YAML recipe (see configs/); defaults are the paper's")
    pre.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    pre.add_argument(
        "--eval", action="store_true", help="after pre-training, print kNN and linear top-1"
    )
    pre.add_argument("--strict", action="store_true", help="undecodable images are an error")
    pre.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

    ev = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (kNN, linear probe, few-label fine-tuning)",
        description="Evaluate a pre-trained encoder: kNN and linear probe on frozen "
        "features, or fine-tuning with a few labels.",
    )
    ev.add_argument(
        "protocol",
        help="knn (weighted cosine kNN), linear (linear probe) or finetune (encoder and "
        "linear head trained on a class-balanced labelled subset)",
    )
    ev.add_argument("--checkpoint", required=True, help="a checkpoint written by pretrain")
    ev.add_argument("--data", default=None, help="dataset name or folder (default: training's)")
    ev.add_argument("--train-split", default="train", help="split of the labelled bank")
    ev.add_argument("--test-split", default="test", help="split to report on")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    ev.add_argument("--batch-size", type=int, default=512, help="feature extraction batch")
    ev.add_argument(
        "--image-size",
        type=int,
        help="test resolution: every image is resized (bilinear, antialiased) to this side "
        "before the encoder; default: the checkpoint's training size. Larger than the "
        "training crops can help (FixRes; README); a ViT takes multiples of its patch size",
    )
    ev.add_argument(
        "--bn-recalibration-images",
        type=int,
        metavar="N",
        help="re-estimate the encoder's BatchNorm statistics on N unlabelled train-split "
        "images at the test size first (FixRes; README); 0: the training statistics; "
        "default: the recipe's eval.bn_recalibration_images",
    )
    ev.add_argument("--k", type=int, default=200, help="kNN neighbours")
    ev.add_argument("--temperature", type=float, default=0.1, help="kNN temperature")
    ev.add_argument(
        "--epochs",
        type=int,
        help="linear probe epochs (100); finetune: 60 for <= 1 %% labels, else 30",
    )
    ev.add_argument("--labels", help="finetune: 1%%, 10%% or N-per-class (class-balanced)")
    ev.add_argument("--seed", type=int, default=0, help="finetune: seed of the subset and run")
    ev.add_argument("--lr", type=float, help="finetune: peak lr (default 0.05 x batch / 256)")
    ev.add_argument("--train-batch-size", type=int, default=256, help="finetune: batch size")
    ev.add_argument(
        "--out",
        help="finetune: folder for finetune.json and subset.csv (default: beside "
        "the checkpoint, finetune_<labels>_seed<seed>)",
    )
    ev.add_argument("--strict", action="store_true", help="undecodable images are an error")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")

    sub.add_parser("models", help="list the registered encoders")
    cli_tools.add_parsers(sub)
    cli_figures.add_parsers(sub)
    cli_study.add_parsers(sub)
    return parser


def _print_eval(result: dict[str, float], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for name in ("knn", "linear"):
        if f"{name}_top1" in result:
            print(
                f"{name} top-1: {result[f'{name}_top1']:.2f} %  "
                f"top-5: {result[f'{name}_top5']:.2f} %"
            )


def _pretrain(args: argparse.Namespace) -> int:
    from selfsup import build, dist, evaluation
    from selfsup.engine.runtime import select_device
    from selfsup.engine.trainer import NonFiniteLossError

    if args.method not in METHODS:
        raise unknown_name_error("method", args.method, METHODS)
    overrides = list(args.overrides) + (["data.strict=true"] if args.strict else [])
    cfg: Any = load_config(METHODS[args.method], args.config, overrides)
    pretrain = build.pretrain_ijepa if args.method == "ijepa" else build.pretrain_simclr
    try:
        outcome = pretrain(cfg, resume=args.resume)
    except NonFiniteLossError as e:  # the run diverged: a failure, not a usage error
        print(f"selfsup: error: {e}", file=sys.stderr)
        return 1
    if dist.is_main_process():
        print(f"checkpoint: {outcome.checkpoint}")
    if args.eval and dist.is_main_process():
        encoder, meta = evaluation.encoder_from_checkpoint(outcome.checkpoint)
        train = build.load_split(cfg.data, cfg.data.train_split, labelled=True)
        test = build.load_split(cfg.data, cfg.data.test_split, labelled=True)
        result = evaluation.evaluate(
            encoder,
            train,
            test,
            image_size=meta.get("image_size"),
            k=cfg.eval.knn_k,
            temperature=cfg.eval.knn_temperature,
            linear_epochs=cfg.eval.linear_epochs,
            batch_size=cfg.eval.batch_size,
            device=select_device(cfg.train.device),
            bn_recalibration_images=meta.get("bn_recalibration_images", 0),
        )
        _print_eval(result, as_json=False)
    dist.shutdown()
    return 0


def checkpoint_data(
    meta: dict[str, Any], checkpoint: str, dataset: str | None, *, strict: bool = False
) -> DataSection:
    """The data section a checkpoint was trained with, ``dataset`` (a name or folder) in
    place of its dataset when given."""
    from selfsup.config import apply_overrides, from_dict

    # Only the data section is read: the checkpoint may come from any method (another
    # config schema); its encoder is described by meta["encoder"].
    data = (meta.get("config") or {}).get("data")
    if not isinstance(data, dict) and dataset is None:
        raise ConfigError(
            f"Checkpoint '{checkpoint}' records no dataset; pass --data NAME_OR_FOLDER."
        )
    known = {f.name for f in dataclasses.fields(DataSection)}
    section = {k: v for k, v in data.items() if k in known} if isinstance(data, dict) else {}
    overrides = [] if dataset is None else [f"data.dataset={dataset}"]
    overrides += ["data.strict=true"] if strict else []
    return apply_overrides(from_dict(SimCLRConfig, {"data": section}), overrides).data


def _eval(args: argparse.Namespace) -> int:
    from selfsup import build, evaluation
    from selfsup.build.common import bn_recalibration_images, check_test_size
    from selfsup.engine.runtime import select_device
    from selfsup.eval.finetune import LabelBudget
    from selfsup.models.vit import vit_patch_size

    if args.protocol not in PROTOCOLS:
        raise unknown_name_error("evaluation protocol", args.protocol, PROTOCOLS)
    if args.protocol == "finetune" and args.labels is None:
        raise ConfigError("finetune needs --labels: 1%, 10% or N-per-class (class-balanced).")
    if args.protocol != "finetune" and args.labels is not None:
        raise ConfigError(f"--labels applies to finetune only, not to {args.protocol}.")
    budget = LabelBudget.parse(args.labels) if args.labels is not None else None
    encoder, meta = evaluation.encoder_from_checkpoint(args.checkpoint)
    image_size = meta.get("image_size")  # the recipe's test side (eval.image_size)
    if args.image_size is not None:
        image_size = check_test_size(args.image_size, vit_patch_size(encoder), "--image-size")
    bn_images = meta.get("bn_recalibration_images", 0)  # the recipe's choice
    if args.bn_recalibration_images is not None:
        bn_images = bn_recalibration_images(
            args.bn_recalibration_images, encoder, "--bn-recalibration-images"
        )
    data = checkpoint_data(meta, args.checkpoint, args.data, strict=args.strict)
    train = build.load_split(data, args.train_split, labelled=True)
    test = build.load_split(data, args.test_split, labelled=True)
    if budget is not None:
        slug = str(budget).replace("%", "pct")
        out = args.out or Path(args.checkpoint).parent / f"finetune_{slug}_seed{args.seed}"
        result = evaluation.few_label_finetune(
            encoder,
            train,
            test,
            labels=budget,
            out_dir=out,
            seed=args.seed,
            epochs=args.epochs,
            batch_size=args.train_batch_size,
            lr=args.lr,
            image_size=image_size,
            device=select_device(args.device),
        )
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"finetune ({result['labels']} labels: {result['num_labels']} images, "
                f"{result['epochs']} epochs) top-1: {result['finetune_top1']:.2f} %  "
                f"top-5: {result['finetune_top5']:.2f} %\nwritten: {out}"
            )
        return 0
    result = evaluation.evaluate(
        encoder,
        train,
        test,
        image_size=image_size,
        protocols=(args.protocol,),
        k=args.k,
        temperature=args.temperature,
        linear_epochs=args.epochs or 100,
        batch_size=args.batch_size,
        device=select_device(args.device),
        bn_recalibration_images=bn_images,
    )
    _print_eval(result, args.json)
    return 0


def _models() -> int:
    from selfsup.models import list_models

    for name in list_models():
        print(name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``selfsup`` command; returns the exit status."""
    parser = _parser()
    # Overrides may come before or after the flags (``--eval key=value``): argparse leaves
    # trailing key=value items unparsed after an option, so collect them here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        takes_overrides = args.command in ("pretrain", "study")
        if not takes_overrides or any("=" not in x or x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        if args.command == "pretrain":
            return _pretrain(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "data":
            return cli_tools.run_data(args)
        if args.command == "probe":
            return cli_tools.run_probe(args)
        if args.command == "figure":
            return cli_figures.run_figure(args)
        if args.command == "study":
            return cli_study.run_study(args)
        return _models()
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as e:
        # The library raises these for bad input (ConfigError, UnknownModelError,
        # UndecodableImageError, dataset and checkpoint errors are ValueErrors), with
        # messages written for the user: print the message, not a traceback.
        # SELFSUP_DEBUG=1 re-raises, for when the ValueError is a bug rather than bad input.
        if os.environ.get("SELFSUP_DEBUG"):
            raise
        print(f"selfsup: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
