"""The study's report: the same content as Markdown (``report.md``, figures beside it) and as
one self-contained HTML page (``report.html``, figures embedded as base64 PNGs).

The content is a list of blocks (heading, paragraph, table, image) built once from
``study.json`` and rendered twice, so that the two files cannot disagree.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from selfsup.study import plots
from selfsup.study.claims import study_claims

Block = tuple[
    Any, ...
]  # ("h", level, text) | ("p", text) | ("table", header, rows) | ("img", path, caption)


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _get(run: dict[str, Any], *keys: str) -> Any:
    node: Any = run
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def results_table(study: dict[str, Any]) -> Block:
    header = [
        "run",
        "steps x batch",
        "images/s",
        "train GFLOPs/img",
        "params (M)",
        "wall (s)",
        "peak mem (MiB)",
        "kNN top-1",
        "linear top-1",
        "1 % labels",
        "10 % labels",
        "counting top-1",
        "depth MAE",
    ]
    rows = []
    entries = [(n, r, True) for n, r in study["runs"].items()]
    entries += [(n, r, False) for n, r in (study.get("baselines") or {}).items()]
    for name, run, trained in entries:
        t = run.get("train") or {}
        flops = _get(run, "cost", "train_flops_per_image")
        params = _get(run, "cost", "encoder_parameters")
        rows.append(
            [
                f"{run.get('title', name)}"
                + (f" ({run['sweep_value']})" if run.get("sweep_value") else ""),
                f"{t['steps']} x {t['batch_size']}" if trained else "-",
                _f(t.get("images_per_s"), ".0f"),
                _f(None if flops is None else flops / 1e9, ".3f"),
                _f(None if params is None else params / 1e6, ".2f"),
                _f(t.get("wall_s"), ".0f"),
                _f(t.get("peak_memory_mb"), ".0f"),
                _f(_get(run, "knn_linear", "knn_top1"), ".2f"),
                _f(_get(run, "knn_linear", "linear_top1"), ".2f"),
                _f(_get(run, "finetune_1%", "finetune_top1"), ".2f"),
                _f(_get(run, "finetune_10%", "finetune_top1"), ".2f"),
                _f(_get(run, "shapes", "counting_top1"), ".2f"),
                _f(_get(run, "shapes", "depth_mae"), ".3f"),
            ]
        )
    return ("table", header, rows)


def _transforms_blocks(study: dict[str, Any]) -> list[Block]:
    from selfsup.probes.transforms import TASKS

    blocks: list[Block] = []
    for run in study["runs"].values():
        tasks = _get(run, "transforms", "tasks")
        if not tasks:
            continue
        rows = [
            [
                t.title,
                f"{t.random_guess:.1f}",
                f"{tasks[t.name]['h']:.1f}",
                _f(tasks[t.name].get("g(h)"), ".1f"),
                f"{t.paper_h:.1f}",
                f"{t.paper_gh:.1f}",
            ]
            for t in TASKS
        ]
        blocks += [
            ("h", 3, f"{run['title']}"),
            ("table", ["task", "random", "h", "g(h)", "paper h", "paper g(h)"], rows),
        ]
    return blocks


def _figure_blocks(study: dict[str, Any], out: Path) -> list[Block]:
    from selfsup.engine.metrics import read_metrics

    fig_dir, blocks = out / "figures", []
    losses = {}
    for name, run in study["runs"].items():
        if not (out / name / "metrics.jsonl").is_file():  # e.g. a report of a copied study.json
            continue
        rows = [r for r in read_metrics(out / name) if "loss" in r]
        total = max((r["step"] for r in rows), default=1)
        losses[name] = (run["method"], [r["step"] / total for r in rows], [r["loss"] for r in rows])
    if losses:
        path = plots.loss_curves(losses, fig_dir / "loss_curves.png")
        blocks.append(("img", path, "Training loss of every run."))
    curves = {
        n: [(p["elapsed_s"], p["knn_top1"]) for p in _get(r, "curve", "points") or []]
        for n, r in study["runs"].items()
    }
    floors = {
        b["title"]: b["knn_linear"]["knn_top1"]
        for b in (study.get("baselines") or {}).values()
        if "knn_linear" in b
    }
    if any(curves.values()):
        path = plots.accuracy_vs_time(curves, floors, fig_dir / "accuracy_vs_time.png")
        blocks.append(
            (
                "img",
                path,
                "kNN top-1 of snapshots saved during training (a "
                "subset of the data, see settings) against wall time; dashed: random init.",
            )
        )
    maps = {r["title"]: r["embedding"] for r in study["runs"].values() if "embedding" in r}
    if maps:
        path = plots.embedding_maps(maps, fig_dir / "embedding_maps.png")
        blocks.append(
            (
                "img",
                path,
                "Test images on the first two principal components of "
                "each encoder's L2-normalised features, coloured by class.",
            )
        )
    captions = {
        "crops": "SimCLR Fig. 6: pixel-intensity histograms of random crops of the same image, "
        "without (top) and with (bottom) colour distortion.",
        "augmentations": "SimCLR Fig. 4: each augmentation operator on the same images.",
        "masks": "I-JEPA Fig. 4: context (bright) and target blocks (tinted) on images.",
        "predictor": "I-JEPA Fig. 6 with a deterministic decoder in place of the paper's "
        "generative RCDM: a decoder trained to map frozen target-encoder patch representations "
        "to pixels, applied to the predictor's outputs for the target blocks.",
    }
    figures = study.get("figures") or {}
    mse = figures.get("predictor_mse") or {}
    if mse:
        captions["predictor"] += (
            f" MSE on [0, 1] pixels in the target blocks of the shown (held-out) images: "
            f"decoded target-encoder "
            f"tokens {mse['target_encoder_mse_in_targets']:.4f}, decoded predictor outputs "
            f"{mse['predictor_mse_in_targets']:.4f}, the mean image "
            f"{mse['mean_image_mse_in_targets']:.4f} (the predictor knows what the context "
            "tells it when its MSE falls well below the mean image's)."
        )
    for key, rel in (figures.get("paths") or {}).items():
        blocks.append(("img", out / rel, captions.get(key, key)))
    return blocks


def _sweep_blocks(study: dict[str, Any], out: Path) -> list[Block]:
    from selfsup.study.arms import KEY_ALIASES

    key = study["settings"]["sweep"].split("=", 1)[0]
    key = KEY_ALIASES.get(key, key)
    series: dict[str, list[dict[str, Any]]] = {}
    for run in study["runs"].values():
        t, cost = run["train"], run.get("cost") or {}
        series.setdefault(run["title"], []).append(
            {
                "value": run["sweep_value"],
                "linear_top1": run["knn_linear"]["linear_top1"],
                "params": cost.get("encoder_parameters", 0),
                "compute": cost.get("train_flops_per_image", 0) * t["steps"] * t["batch_size"],
            }
        )
    path = plots.sweep_plot(key, series, out / "figures" / "sweep.png")
    return [
        ("h", 2, f"Sweep over {key}"),
        (
            "img",
            path,
            "Linear top-1 against the swept value, "
            "encoder parameters and pre-training compute (FLOPs per image x images seen).",
        ),
    ]


def build_blocks(study: dict[str, Any], out: Path) -> list[Block]:
    """The report's content."""
    s, hw = study["settings"], study["hardware"]
    title = f"selfsup study: {s['data']}, {s['budget_s'] / 60:g} minutes of pre-training per run"
    blocks: list[Block] = [
        ("h", 1, title + (" (--quick smoke test)" if s["quick"] else "")),
        (
            "p",
            f"Command: `{hw['command']}`. Machine: {hw['cpu']}, {hw['cores_usable']} usable "
            f"cores, {hw['torch_threads']} torch threads, device {hw['device']}"
            f"{', GPU ' + hw['gpu'] if hw.get('gpu') else ''}; torch {hw['torch']}; selfsup "
            f"commit {hw['selfsup_commit']}; {hw['date']}. Data: {s['train_images']} training "
            f"and {s['test_images']} test images; shapes probes on {s['shapes']}.",
        ),
        (
            "p",
            "Every run gets the same wall-clock budget: a short calibration times the "
            "method's real training steps and sets the run length that fills the budget; "
            "the wall column is the measured pre-training time. All runs are measured by "
            "the same code: kNN (k = 200, T = 0.1) and linear probe on frozen features, "
            "fine-tuning with class-balanced label subsets, counting and depth probes on "
            "the shapes dataset. Random-init rows are the floor.",
        ),
    ]
    if s["quick"]:
        blocks.append(
            (
                "p",
                "**Quick mode**: seconds of training and small evaluation subsets; "
                "the numbers test the pipeline, not the methods.",
            )
        )
    blocks += [("h", 2, "Results"), results_table(study)]
    budget = s["budget_s"]
    off = [
        f"{n}: {r['train']['wall_s']:.0f} s ({100 * (r['train']['wall_s'] / budget - 1):+.1f} %)"
        for n, r in study["runs"].items()
    ]
    blocks.append(("p", "Pre-training wall time against the budget: " + "; ".join(off) + "."))
    claims = study_claims(study)
    if claims:
        blocks += [
            ("h", 2, "The papers' claims against our measurements"),
            (
                "table",
                ["claim", "paper", "ours", "verdict", "rule"],
                [
                    [c["claim"], c["paper"], c["ours"], f"**{c['verdict']}**", c["rule"]]
                    for c in claims
                ],
            ),
        ]
    if s.get("sweep"):
        blocks += _sweep_blocks(study, out)
    transforms = _transforms_blocks(study)
    if transforms:
        blocks += [("h", 2, "What h and g(h) know (SimCLR Table 3)"), *transforms]
    figures = _figure_blocks(study, out)
    if figures:
        blocks += [("h", 2, "Figures"), *figures]
    return blocks


def to_markdown(blocks: list[Block], out: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        if block[0] == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += [
                "| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows
            ]
            lines.append("")
        else:
            rel = Path(block[1]).relative_to(out)
            lines += [f"![{block[2]}]({rel.as_posix()})", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the blocks use: **bold** and `code`."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def to_html(blocks: list[Block]) -> str:
    body: list[str] = []
    for block in blocks:
        if block[0] == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif block[0] == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>"
                for row in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode(Path(block[1]).read_bytes()).decode()
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                f"<figcaption>{_inline(block[2])}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        "th{background:#f3f3f3}img{max-width:100%}figcaption{font-size:0.9em;color:#444}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>selfsup study</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(out: Path, study: dict[str, Any]) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into ``out``; their paths."""
    blocks = build_blocks(study, out)
    md, page = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks, out))
    page.write_text(to_html(blocks))
    return {"markdown": md, "html": page}
