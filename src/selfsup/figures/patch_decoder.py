"""A deterministic per-patch pixel decoder for I-JEPA's Figure 6 analogue.

The paper (Assran et al., CVPR 2023, Sec. 7 and Fig. 6) visualises what the predictor
knows by training a generative decoder (RCDM, a diffusion model) to map the frozen target
encoder's representations to images, then feeding it the predictor's outputs. selfsup uses
a small deterministic decoder instead: an MLP applied to each patch token on its own,
trained with MSE against that patch's pixels. Per patch, because then a decoded target
patch depends only on the predictor's output at that patch: a decoder that mixed
neighbouring tokens (a convolution over the token grid) would also read the context
tokens around a target block and show what the context knows, not what the predictor
predicted. Deterministic, because it is cheap to train on a CPU and shows the conditional
mean (blurry where the representation is uncertain), where RCDM samples plausible detail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.figures._render import check_positive

#: Hidden width of the decoder's MLP.
HIDDEN = 512


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(B, 3, H, W) -> (B, N, 3 p²): the row-major patch grid (the ViT's token order),
    each patch flattened channel first."""
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch_size={p}.")
    x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(patches: Tensor, patch_size: int, grid: tuple[int, int]) -> Tensor:
    """The inverse of :func:`patchify`: (B, N, 3 p²) -> (B, 3, H p, W p) for grid (H, W)."""
    b, p = patches.shape[0], patch_size
    x = patches.reshape(b, grid[0], grid[1], 3, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, 3, grid[0] * p, grid[1] * p)


class PatchDecoder(nn.Module):
    """Token -> its patch's pixels: (..., D) -> (..., 3 p²) in [0, 1].

    Linear(D, 512), GELU, Linear(512, 512), GELU, Linear(512, 3 p²), sigmoid (pixels live
    in [0, 1]). Each token is decoded alone (see the module docstring).
    """

    def __init__(self, embed_dim: int, patch_size: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        check_positive("embed_dim", embed_dim)
        self.patch_size = check_positive("patch_size", patch_size)
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 3 * patch_size * patch_size),
        )

    def forward(self, tokens: Tensor) -> Tensor:
        return torch.sigmoid(self.net(tokens))


def train_decoder(
    tokens: Tensor,
    pixels: Tensor,
    patch_size: int,
    *,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[PatchDecoder, float]:
    """Fit a :class:`PatchDecoder` to (token, patch) pairs by MSE with Adam.

    Args:
        tokens: (R, D) frozen representations, one per patch, on the training device.
        pixels: (R, 3 p²) the patches' pixels in [0, 1], same device.
        patch_size: p.
        epochs: passes over the R pairs, each in a fresh random order.
        batch_size: pairs (patches, not images) per step.
        lr: Adam's learning rate (constant).
        seed: seeds the initial weights and the order; same seed, same decoder on a CPU.

    Returns:
        The decoder in eval mode, and its MSE over the last epoch (per pixel, [0, 1] scale).
    """
    check_positive("epochs", epochs)
    check_positive("batch_size", batch_size)
    if tokens.ndim != 2 or pixels.shape != (len(tokens), 3 * patch_size**2):
        raise ValueError(
            f"tokens must be (R, D) and pixels (R, 3 p^2) = (R, {3 * patch_size**2}); got "
            f"{tuple(tokens.shape)} and {tuple(pixels.shape)}."
        )
    device = tokens.device
    with torch.random.fork_rng(devices=[]):  # seed the init without touching global RNG
        torch.manual_seed(seed)
        decoder = PatchDecoder(tokens.shape[1], patch_size).to(device)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    last = float("nan")
    for _ in range(epochs):
        order = torch.randperm(len(tokens), generator=generator).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(tokens), batch_size):
            index = order[start : start + batch_size]
            loss = F.mse_loss(decoder(tokens[index]), pixels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        last = float(total) / len(tokens)  # one device sync per epoch
    return decoder.eval(), last
