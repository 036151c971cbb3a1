"""One process of the 2-process trainer test (run by torchrun from tests/test_trainer.py).

Usage: ``torchrun --standalone --nproc-per-node=2 tests/ddp_trainer_worker.py OUT_DIR``.
Writes OUT_DIR/rank{r}.pt with the final weights, the step count and the wrapper types.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

# Running as a script puts this folder first on sys.path, so the test module imports.
from test_trainer import TinyMethod, lars_factory, lr_schedule, settings, tiny_images

from selfsup import dist
from selfsup.engine.trainer import Trainer


def main(out: Path) -> None:
    torch.set_num_threads(1)
    method = TinyMethod(noise=False)
    s = settings(out / "run", total_steps=5, batch_size=4)  # global batch 8 over 24 images
    summary = Trainer(
        method, lars_factory, tiny_images(24), s, schedules={"lr": lr_schedule(5)}
    ).fit()

    # torch's SyncBatchNorm runs on CUDA only: a CPU run must say so, not fail inside DDP.
    try:
        Trainer(TinyMethod(bn=True), lars_factory, tiny_images(24), replace(s, sync_batchnorm=True))
        sync_bn_error = ""
    except ValueError as e:
        sync_bn_error = str(e)
    torch.save(
        {
            "state": method.state_dict(),
            "steps": summary.steps,
            "after_steps": method.after_steps,
            "wrapped": type(method._train_net[0]).__name__,
            "sync_bn_error": sync_bn_error,
        },
        out / f"rank{dist.rank()}.pt",
    )
    dist.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
