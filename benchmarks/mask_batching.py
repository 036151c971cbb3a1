"""What batching I-JEPA's multi-block masks costs: time per batch, tokens processed, and
information dropped, for ``MaskCollator(batching="truncate" | "pad")``.

Images of a batch have contexts and target blocks of different sizes; the encoder and
predictor want rectangular index tensors. ``truncate`` cuts every mask to the batch minimum
(random subsets; tokens lost), ``pad`` pads to the batch maximum (tokens wasted on padding,
which attention must mask). For each grid (8x8: 32 px / patch 4; 14x14: 224 px / patch 16)
and batch size (256, 2048) it prints, per mode:

* time to draw and collate one batch (median over repeats, CPU, one torch thread: the
  collator runs beside the training step, e.g. in a loader worker);
* context tokens per image: real (the mean of the per-image masks), processed (the batch
  tensor's width), and lost to truncation or added as padding (% of real);
* the same for target tokens per block.

Also: the per-image reference ``sampler.sample`` in a Python loop (what vectorising saves);
lightly 1.6's ``IJEPAMaskCollator`` (the official algorithm: one block size per batch,
positional cut) on 14x14 (on 8x8 it hangs: SPEC); and the bias of the official
positional cut against ours (kept fraction of a block's first and last rows).

Usage (from the repository root)::

    python benchmarks/mask_batching.py                # about 30 s on a 2-core CPU
    python benchmarks/mask_batching.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script

from selfsup.masks import MaskCollator, MultiBlockMaskSampler  # noqa: E402
from selfsup.masks.collator import Batching  # noqa: E402


class MaskSettings(TypedDict):
    """The sampler's keyword arguments (typed, so that ``**PAPER`` type-checks)."""

    num_targets: int
    target_scale: tuple[float, float]
    target_aspect: tuple[float, float]
    context_scale: tuple[float, float]
    min_context: int


PAPER: MaskSettings = {
    "num_targets": 4,
    "target_scale": (0.15, 0.2),
    "target_aspect": (0.75, 1.5),
    "context_scale": (0.85, 1.0),
    "min_context": 10,
}
GRIDS = ((8, 8), (14, 14))
BATCHES = (256, 2048)


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def token_stats(sampler: MultiBlockMaskSampler, batch: int, rounds: int, seed: int) -> dict:
    """Mean per-image (real), truncated and padded sizes of contexts and target blocks."""
    g = torch.Generator().manual_seed(seed)
    acc: dict[str, list[float]] = {
        k: [] for k in ("ctx", "ctx_min", "ctx_max", "t", "t_min", "t_max")
    }
    for _ in range(rounds):
        draw = sampler.sample_batch(batch, g)
        counts, sizes = draw.context.sum(1).double(), draw.target_sizes().double()
        for key, values in (("ctx", counts), ("t", sizes)):
            acc[key].append(float(values.mean()))
            acc[key + "_min"].append(float(values.min()))
            acc[key + "_max"].append(float(values.max()))
    return {k: statistics.mean(v) for k, v in acc.items()}


def row_bias(sampler: MultiBlockMaskSampler, batch: int, rounds: int, seed: int) -> dict:
    """Kept fraction of target blocks' first and last rows: our random cut vs the official
    positional cut (each block's sorted indices [:batch minimum])."""
    g = torch.Generator().manual_seed(seed)
    width = sampler.grid[1]
    out = {"ours": [0.0, 0.0], "official": [0.0, 0.0]}
    for _ in range(rounds):
        draw = sampler.sample_batch(batch, g)
        truncated = MaskCollator(sampler, "truncate").collate(draw, g).target_idx
        cut = MaskCollator(sampler, "pad").collate(draw).target_idx[..., : truncated.shape[-1]]
        top, _, h, w = draw.boxes.unbind(-1)
        for name, kept in (("ours", truncated), ("official", cut)):
            rel = kept // width - top[..., None]
            for j, row in enumerate((torch.zeros_like(h), h - 1)):
                out[name][j] += float((rel == row[..., None]).sum() / w.sum()) / rounds
    return out


def reference_loop(sampler: MultiBlockMaskSampler, batch: int = 256) -> None:
    """``batch`` images through the per-image reference ``sample``, one after the other."""
    g = torch.Generator().manual_seed(0)
    for _ in range(batch):
        sampler.sample(g)


def lightly_official(batch: int, repeats: int) -> dict:
    """lightly 1.6's IJEPAMaskCollator, paper settings, 14x14 grid: time and sizes."""
    from lightly.data.ijepa_collate import IJEPAMaskCollator

    collator = IJEPAMaskCollator(
        input_size=224,
        patch_size=16,
        enc_mask_scale=PAPER["context_scale"],
        pred_mask_scale=PAPER["target_scale"],
        aspect_ratio=PAPER["target_aspect"],
        nenc=1,
        npred=4,
        min_keep=10,
    )
    items = [torch.zeros(1)] * batch
    torch.manual_seed(0)  # its positions come from the global RNG
    sizes: list[tuple[int, int]] = []

    def call() -> None:
        _, enc, pred = collator(items)
        sizes.append((enc[0].shape[1], pred[0].shape[1]))

    times = timed(call, repeats)
    return {
        "ms": 1e3 * common.median(times),
        "ctx": statistics.mean(s[0] for s in sizes),
        "t": statistics.mean(s[1] for s in sizes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed batches per row")
    parser.add_argument("--rounds", type=int, default=10, help="batches for token statistics")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 repeats, 2 rounds")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.rounds = 2, 2
    info = common.hardware(torch.device("cpu"))
    settings = {"mask": PAPER, "repeats": args.repeats, "rounds": args.rounds}
    with common.torch_threads(args.threads):
        info["torch_threads"] = torch.get_num_threads()
        common.print_header("I-JEPA mask batching (CPU)", info, settings)
        rows = run(args.repeats, args.rounds)
    common.write_json(args.json, {"hardware": info, "settings": settings, "rows": rows})
    return 0


def run(repeats: int, rounds: int) -> list[dict]:
    rows: list[dict] = []
    print(
        f"\n{'grid':>6} {'B':>5} {'mode':>9} {'ms/batch':>9} | {'ctx real':>8} {'kept':>6} "
        f"{'lost/pad':>9} | {'tgt real':>8} {'kept':>6} {'lost/pad':>9}"
    )
    for grid in GRIDS:
        sampler = MultiBlockMaskSampler(grid, **PAPER)
        for batch in BATCHES:
            stats = token_stats(sampler, batch, rounds, seed=1)
            modes: tuple[Batching, ...] = ("truncate", "pad")
            for mode in modes:
                collator = MaskCollator(sampler, mode)
                g = torch.Generator().manual_seed(0)
                ms = 1e3 * common.median(timed(partial(collator, batch, g), repeats))
                kept_c = stats["ctx_min" if mode == "truncate" else "ctx_max"]
                kept_t = stats["t_min" if mode == "truncate" else "t_max"]
                # Truncation: % of the real tokens lost; padding: % of the real added.
                d_c = 100 * (kept_c - stats["ctx"]) / stats["ctx"]
                d_t = 100 * (kept_t - stats["t"]) / stats["t"]
                row = {"grid": grid, "batch": batch, "mode": mode, "ms": ms, **stats}
                row |= {"ctx_kept": kept_c, "ctx_delta_pct": d_c}
                row |= {"t_kept": kept_t, "t_delta_pct": d_t}
                rows.append(row)
                print(
                    f"{grid[0]:>3}x{grid[1]:<2} {batch:>5} {mode:>9} {ms:>9.2f} | "
                    f"{stats['ctx']:>8.1f} {kept_c:>6.1f} {d_c:>+8.0f}% | "
                    f"{stats['t']:>8.1f} {kept_t:>6.1f} {d_t:>+8.0f}%"
                )
        # The per-image reference in a Python loop, for the vectorisation gain.
        g = torch.Generator().manual_seed(0)
        ref_ms = 1e3 * common.median(timed(partial(reference_loop, sampler), max(1, repeats // 5)))
        print(f"{grid[0]:>3}x{grid[1]:<2}   256 per-image sample() loop: {ref_ms:9.2f}")
        rows.append({"grid": grid, "batch": 256, "mode": "reference-loop", "ms": ref_ms})

    print("\nlightly 1.6 IJEPAMaskCollator (official algorithm), 14x14, paper settings:")
    print("  (8x8: skipped, it hangs: about half of its per-batch block sizes have <= 10")
    print("   patches, which its min_keep > 10 test rejects forever)")
    for batch in BATCHES:
        off = lightly_official(batch, max(1, repeats // 5))
        rows.append({"grid": (14, 14), "batch": batch, "mode": "lightly-official", **off})
        print(
            f"  B={batch:>5}: {off['ms']:8.1f} ms/batch, context kept {off['ctx']:.1f}, "
            f"target block {off['t']:.1f} (one size per batch: no target lost or padded)"
        )

    print("\nTruncation bias, 14x14, B=256: kept fraction of a target block's first / last row")
    bias = row_bias(MultiBlockMaskSampler((14, 14), **PAPER), 256, rounds, seed=2)
    for name, (first, last) in bias.items():
        print(f"  {name:>9} cut: first row {first:.3f}, last row {last:.3f}")
    rows.append({"mode": "truncation-bias", **bias})
    return rows


if __name__ == "__main__":
    common.run_main(main)
