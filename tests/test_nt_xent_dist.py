"""NT-Xent in 2 processes (gloo, CPU) equals NT-Xent in 1 process on the concatenated batch.

Why the gradients compare as they do. Let L be the 1-process loss on the global batch of
M = P·N images and L_p the loss of process p (mean over its own 2N anchors, scored against
all 2M views). Every process has the same number of anchors, so L = (1/P) Σ_p L_p.
``gather_with_grad``'s backward all-reduces (sums) the gradient of each slice, so the
gradient that reaches process p's own z is Σ_q ∂L_q/∂z_p = P · ∂L/∂z_p. DDP then averages
parameter gradients over processes: (1/P) Σ_p (∂z_p/∂θ)ᵀ P ∂L/∂z_p = ∂L/∂θ. Hence:

* the all-reduced mean of the per-process losses equals L;
* process p's gradient w.r.t. its z, divided by P, equals the slice p of ∂L/∂z;
* DDP-averaged parameter gradients equal the 1-process parameter gradients.
"""

from __future__ import annotations

import gc
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from selfsup import dist
from selfsup.losses import nt_xent

WORLD = 2
CASES = [(3, 5, 0.5), (1, 4, 0.1), (4, 8, 0.05)]  # (N per process, D, temperature)
IN_DIM = 6


def _global_batch(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(WORLD * n, d, generator=g), torch.randn(WORLD * n, d, generator=g)


def _encoder(d: int) -> nn.Linear:
    torch.manual_seed(123)  # same initial weights in every process
    return nn.Linear(IN_DIM, d)


def _worker(rank: int, out_dir: str) -> None:
    # A file rendezvous: no TCP port to pick, so no race with other processes for it.
    tdist.init_process_group(
        "gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD
    )
    try:
        results = []
        for i, (n, d, tau) in enumerate(CASES):
            local = slice(rank * n, (rank + 1) * n)
            # 1) gradient with respect to the projections themselves
            z_a, z_b = _global_batch(n, d, seed=i)
            z_a = z_a[local].clone().requires_grad_()
            z_b = z_b[local].clone().requires_grad_()
            loss = nt_xent(z_a, z_b, temperature=tau)
            loss.backward()
            # 2) parameter gradient through DDP (which averages over processes)
            x_a, x_b = _global_batch(n, IN_DIM, seed=100 + i)
            model = DistributedDataParallel(_encoder(d))
            # One forward on the concatenated views: DDP expects one forward per backward.
            z = model(torch.cat([x_a[local], x_b[local]]))
            nt_xent(z[:n], z[n:], temperature=tau).backward()
            results.append(
                {
                    "mean_loss": dist.all_reduce_mean(loss.detach()),
                    "grad_a": z_a.grad,
                    "grad_b": z_b.grad,
                    "weight_grad": model.module.weight.grad,
                    "bias_grad": model.module.bias.grad,
                }
            )
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        # Free every tensor and DDP reducer that gloo's work objects may still reference
        # while the interpreter is alive: freeing them during interpreter shutdown aborts
        # the process ("terminate called without an active exception").
        del results, model, z, loss, z_a, z_b
        gc.collect()
        tdist.barrier()
    finally:
        tdist.destroy_process_group()


def test_two_processes_equal_one_process_on_concatenated_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    for i, (n, d, tau) in enumerate(CASES):
        z_a, z_b = _global_batch(n, d, seed=i)
        z_a.requires_grad_()
        z_b.requires_grad_()
        loss = nt_xent(z_a, z_b, temperature=tau)
        loss.backward()
        assert z_a.grad is not None and z_b.grad is not None

        for r in range(WORLD):
            got = per_rank[r][i]
            local = slice(r * n, (r + 1) * n)
            torch.testing.assert_close(got["mean_loss"], loss.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got["grad_a"] / WORLD, z_a.grad[local], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got["grad_b"] / WORLD, z_b.grad[local], rtol=1e-4, atol=1e-6)

        x_a, x_b = _global_batch(n, IN_DIM, seed=100 + i)
        model = _encoder(d)
        nt_xent(model(x_a), model(x_b), temperature=tau).backward()
        assert model.weight.grad is not None and model.bias.grad is not None
        for r in range(WORLD):
            got = per_rank[r][i]
            torch.testing.assert_close(got["weight_grad"], model.weight.grad, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got["bias_grad"], model.bias.grad, rtol=1e-4, atol=1e-6)
