"""Vision Transformer encoders of I-JEPA (Assran et al., CVPR 2023, Sec. 3 and Appendix A.1).

A standard pre-norm ViT (Dosovitskiy et al. 2021) as in the official I-JEPA code
(``src/models/vision_transformer.py``): a strided-convolution patch embedding, *fixed* 2-D
sine-cosine position embeddings (MAE, He et al. 2022), no class token, blocks
``x + attn(LN(x))``, ``x + mlp(LN(x))`` and a final LayerNorm. Its output is the sequence of
patch tokens, not a pooled vector: ``token_output = True`` tells callers (the contract test,
:class:`~selfsup.models.pooling.TokenPooling`) so.

Token dropping (I-JEPA Sec. 3, "Context"): ``forward(x, keep)`` embeds every patch with one
convolution, then gathers the ``keep`` patches (with their position embeddings) *before* the
first block, so the transformer's cost scales with K, not N. Masks of different sizes can be
padded to a common K; ``valid`` marks the real entries and the padding is excluded from
attention as keys, so real tokens never see it.

Other resolutions: images of any side that is a multiple of the patch size are accepted; a
grid other than the training one gets sine-cosine embeddings at its patch centres in
training-grid units (:meth:`VisionTransformer.pos_embed_for`), which is how ``selfsup eval
--image-size`` and ``eval.image_size`` test a ViT at another resolution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from selfsup.models.registry import register_model
from selfsup.models.transformer import (
    INIT_STD,
    LN_EPS,
    check_indices,
    init_weights,
    key_mask,
    make_blocks,
    sincos_pos_embed_2d,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the official recipe's transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)


class VisionTransformer(nn.Module):
    """ViT returning patch tokens (I-JEPA's context and target encoders).

    Args:
        img_size: square input side in pixels; must be a multiple of ``patch_size``.
        patch_size: side p of the non-overlapping patches (4 for 32 px, 14 or 16 for 224 px).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer width and shape.
        drop_path_rate: stochastic depth of the last block (linear from 0 over the blocks).
        in_chans: input channels.
        patch_embed_std: std of the patch-embedding weights (official: 0.02, chosen for
            16 x 16 patches; small patches want more, e.g. 0.08 for 4 x 4: same fan-in
            scaled token statistics as the paper's setting).

    Inputs are images in [0, 1] (selfsup's convention); the model applies the official
    recipe's ImageNet mean/std normalisation itself (mean 0.5, std 0.25 if not RGB).

    Shapes: ``forward(x, keep=None, valid=None)``, x (B, in_chans, img_size, img_size) ->
    (B, N, D) with N = (img_size/p)², or (B, K, D) with ``keep`` (B, K) flat row-major patch
    indices; ``valid`` (B, K) bool, False where ``keep`` is padding (those outputs are
    meaningless, but no real token attends to them).
    """

    token_output = True
    pos_embed: torch.Tensor  # (N, D) buffer
    pixel_mean: torch.Tensor  # (1, 3, 1, 1) buffers: images in [0, 1] are normalised inside
    pixel_std: torch.Tensor

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        in_chans: int = 3,
        patch_embed_std: float = INIT_STD,
    ) -> None:
        super().__init__()
        for name, value in (("img_size", img_size), ("patch_size", patch_size), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not patch_embed_std > 0:
            raise ValueError(f"patch_embed_std must be > 0, got {patch_embed_std!r}")
        if img_size % patch_size:
            raise ValueError(
                f"img_size={img_size} is not divisible by patch_size={patch_size}; choose an "
                f"image size that is a multiple of the patch size (e.g. "
                f"{max(1, img_size // patch_size) * patch_size})"
            )
        self.patch_size = patch_size
        self.img_size = img_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.num_features = embed_dim
        self.depth = depth
        self.num_heads = num_heads  # the paper's predictor uses the encoder's head count
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        # A buffer, not a parameter (fixed, as in I-JEPA), and not persistent: it is a pure
        # function of the configuration, so checkpoints do not carry it.
        self.register_buffer(
            "pos_embed", sincos_pos_embed_2d(embed_dim, self.grid), persistent=False
        )
        self._other_grids: dict[tuple[int, int], torch.Tensor] = {}  # see pos_embed_for
        rgb = in_chans == 3
        mean = torch.tensor(IMAGENET_MEAN if rgb else (0.5,) * in_chans)
        std = torch.tensor(IMAGENET_STD if rgb else (0.25,) * in_chans)
        self.register_buffer("pixel_mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, -1, 1, 1), persistent=False)
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        init_weights(self, self.blocks)
        # The official 0.02 was set for 16 x 16 patches (fan-in 768). With 4 x 4 patches
        # (fan-in 48) it leaves a random token's content 4x smaller than at the paper's
        # scale: 76 % of a random ViT-tiny's output-token variance on CIFAR-10 is then
        # position, which the predictor knows for free (docs/ijepa_small_scale.md).
        if patch_embed_std != INIT_STD:  # (the default keeps the official draw)
            nn.init.trunc_normal_(self.patch_embed.weight, std=patch_embed_std)

    def embed(
        self, x: torch.Tensor, keep: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Patch embeddings plus position embeddings, (B, N, D), or the ``keep`` ones (B, K, D).

        ``x`` (B, C, H, W): any H and W that are multiples of the patch size. At another size
        than ``img_size`` the grid is (H/p, W/p), N = its cells, ``keep`` indexes that grid,
        and the position embeddings are those of :meth:`pos_embed_for`.
        """
        p, c = self.patch_size, self.patch_embed.in_channels
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] % p or x.shape[3] % p:
            raise ValueError(
                f"expected images of shape (B, {c}, H, W) with H and W multiples of the patch "
                f"size {p} (trained at {self.img_size} x {self.img_size}), got {tuple(x.shape)}"
            )
        grid = (x.shape[2] // p, x.shape[3] // p)
        if keep is not None:
            if keep.ndim != 2 or keep.shape[0] != x.shape[0]:
                raise ValueError(
                    f"keep must be (B, K) with B={x.shape[0]}, got {tuple(keep.shape)}"
                )
            check_indices(keep, grid[0] * grid[1], "keep", "(B, K)", valid)
        elif valid is not None:
            raise ValueError("valid marks padded entries of keep; pass keep with it")
        # The official recipe feeds ImageNet-normalised pixels; selfsup's images are in
        # [0, 1], so the ViT normalises them itself (for a ResNet, BN after the first
        # convolution absorbs the input scale; here the fixed position embeddings do not,
        # and unnormalised pixels leave a random-init token ~90 % position).
        x = (x - self.pixel_mean) / self.pixel_std
        # One convolution over the whole image is cheap next to the blocks; the gather below
        # is what makes the blocks' cost scale with K.
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed_for(grid)
        if keep is None:
            return tokens
        return tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings (H·W, D) of an H×W patch grid over the whole image.

        The training grid's are the ``pos_embed`` buffer. Any other grid (a test image
        resized to another side, FixRes) gets the sine-cosine embeddings of its patch centres
        in training-grid units (:func:`sincos_pos_embed_2d` with ``extent``), so the same part
        of the image keeps the same position; computed once per grid and device.
        """
        if grid == self.grid:
            return self.pos_embed
        cached = self._other_grids.get(grid)
        if cached is None or cached.device != self.pos_embed.device:
            dim = self.pos_embed.shape[1]
            cached = sincos_pos_embed_2d(dim, grid, extent=self.grid).to(self.pos_embed.device)
            self._other_grids[grid] = cached
        return cached

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens = self.embed(x, keep, valid)
        mask = key_mask(valid)
        for block in self.blocks:
            tokens = block(tokens, mask)
        return self.norm(tokens)

    def intermediate_layers(self, x: torch.Tensor, n: int) -> list[torch.Tensor]:
        """Outputs of the last ``n`` blocks, oldest first, each through the final norm.

        DINO's ``get_intermediate_layers`` convention; ``[-1]`` equals ``forward(x)``.
        Returns n tensors of shape (B, N, D).
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.depth:
            raise ValueError(f"n must be an integer in [1, depth={self.depth}], got {n!r}")
        tokens = self.embed(x)
        outputs = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i >= self.depth - n:
                outputs.append(self.norm(tokens))
        return outputs


# name: (width, depth, heads); Dosovitskiy et al. 2021 Table 1, Touvron et al. 2021 (tiny/small).
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
    "vit_huge": (1280, 32, 16),
}


def _factory(name: str) -> Callable[..., VisionTransformer]:
    width, depth, heads = VIT_SIZES[name]

    def factory(
        img_size: int = 224,
        patch_size: int = 16,
        drop_path_rate: float = 0.0,
        patch_embed_std: float = INIT_STD,
    ) -> VisionTransformer:
        return VisionTransformer(
            img_size,
            patch_size,
            width,
            depth,
            heads,
            drop_path_rate=drop_path_rate,
            patch_embed_std=patch_embed_std,
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"ViT of width {width}, depth {depth}, {heads} heads (see VIT_SIZES)."
    return register_model(name)(factory)


vit_tiny = _factory("vit_tiny")
vit_small = _factory("vit_small")
vit_base = _factory("vit_base")
vit_large = _factory("vit_large")
vit_huge = _factory("vit_huge")  # I-JEPA's main encoder is ViT-H/14: pass patch_size=14


def vit_patch_size(module: nn.Module) -> int | None:
    """The patch size of the :class:`VisionTransformer` inside ``module`` (a ViT, or a
    wrapper such as ``TokenPooling``); ``None`` for an encoder without one (a ResNet)."""
    for m in module.modules():
        if isinstance(m, VisionTransformer):
            return m.patch_size
    return None
