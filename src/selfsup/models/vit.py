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
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from selfsup.models.registry import register_model

LN_EPS = 1e-6  # timm/I-JEPA ViT LayerNorm epsilon (PyTorch's default is 1e-5)
INIT_STD = 0.02  # I-JEPA ``init_std``
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the official recipe's transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)


def sincos_pos_embed_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """MAE's 1-D sine-cosine embedding: positions (L,) -> (L, dim), ``[sin | cos]`` halves.

    Frequency k of the ``dim/2`` is ``1 / 10000^(k / (dim/2))`` (Vaswani et al. 2017, Sec. 3.5;
    MAE ``util/pos_embed.py:get_1d_sincos_pos_embed_from_grid``).
    """
    if dim % 2:
        raise ValueError(f"sine-cosine embedding width must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = pos.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings of an H×W patch grid: (H·W, dim), float32.

    Row-major patch order (index ``r·W + c``). Half of the channels encode one coordinate and
    half the other, exactly as MAE/I-JEPA ``get_2d_sincos_pos_embed``: that code builds
    ``np.meshgrid(grid_w, grid_h)``, so the *first* half encodes the column c and the second
    half the row r. Kept in that order so that checkpoints of either code line up.
    """
    if dim % 4:
        raise ValueError(
            f"2-D sine-cosine embedding needs a width divisible by 4 (two sin/cos halves per "
            f"axis), got {dim}; choose embed_dim / predictor_dim as a multiple of 4"
        )
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat(
        [sincos_pos_embed_1d(dim // 2, cols), sincos_pos_embed_1d(dim // 2, rows)], dim=1
    )
    return emb.float()


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``.

    ``forward(x, attn_mask)``: x (B, L, D); attn_mask None or bool broadcastable to
    (B, heads, L, L) with True = "may attend" (SDPA's convention) -> (B, L, D).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, head_dim)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block with optional stochastic depth (per-sample, "row" mode)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        hidden = int(dim * mlp_ratio)  # named fc1/fc2 like timm and I-JEPA's state dicts
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(dim, hidden), act=nn.GELU(), fc2=nn.Linear(hidden, dim))
        )
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def make_blocks(
    dim: int, depth: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path_rate: float
) -> nn.ModuleList:
    """``depth`` blocks with drop-path rates rising linearly from 0 to ``drop_path_rate``."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    # Plain floats (not torch.linspace(...).tolist()) so the model builds on the meta device.
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    return nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias, r) for r in rates)


def init_weights(module: nn.Module, blocks: nn.ModuleList) -> None:
    """I-JEPA's initialisation (``_init_weights`` and ``fix_init_weight`` of the official code).

    Linear and Conv2d weights trunc-normal with std 0.02 (the official bounds ±2 are absolute,
    i.e. 100 std: in effect a plain normal), biases 0, LayerNorm 1/0;
    then the residual-branch outputs of block l (1-based), ``attn.proj`` and ``mlp.fc2``, are
    divided by sqrt(2·l) so that deeper blocks start with smaller updates to the stream.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for layer_id, block in enumerate(blocks, start=1):
            for proj in (block.get_submodule("attn.proj"), block.get_submodule("mlp.fc2")):
                assert isinstance(proj, nn.Linear)
                proj.weight.div_(math.sqrt(2.0 * layer_id))


def key_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """Padding flags (B, L) bool -> SDPA mask (B, 1, 1, L): every query ignores padded keys.

    None stays None, so an unpadded batch keeps SDPA's mask-free (fused) kernels.
    """
    return None if valid is None else valid[:, None, None, :]


class VisionTransformer(nn.Module):
    """ViT returning patch tokens (I-JEPA's context and target encoders).

    Args:
        img_size: square input side in pixels; must be a multiple of ``patch_size``.
        patch_size: side p of the non-overlapping patches (4 for 32 px, 14 or 16 for 224 px).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer width and shape.
        drop_path_rate: stochastic depth of the last block (linear from 0 over the blocks).
        in_chans: input channels.

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
    ) -> None:
        super().__init__()
        for name, value in (("img_size", img_size), ("patch_size", patch_size), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
        rgb = in_chans == 3
        mean = torch.tensor(IMAGENET_MEAN if rgb else (0.5,) * in_chans)
        std = torch.tensor(IMAGENET_STD if rgb else (0.25,) * in_chans)
        self.register_buffer("pixel_mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, -1, 1, 1), persistent=False)
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        init_weights(self, self.blocks)

    def embed(
        self, x: torch.Tensor, keep: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Patch embeddings plus position embeddings, (B, N, D), or the ``keep`` ones (B, K, D)."""
        expected = (self.patch_embed.in_channels, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected images of shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )
        if keep is not None:
            if keep.ndim != 2 or keep.shape[0] != x.shape[0]:
                raise ValueError(
                    f"keep must be (B, K) with B={x.shape[0]}, got {tuple(keep.shape)}"
                )
            check_indices(keep, self.num_patches, "keep", "(B, K)", valid)
        elif valid is not None:
            raise ValueError("valid marks padded entries of keep; pass keep with it")
        # The official recipe feeds ImageNet-normalised pixels; selfsup's images are in
        # [0, 1], so the ViT normalises them itself (for a ResNet, BN after the first
        # convolution absorbs the input scale; here the fixed position embeddings do not,
        # and unnormalised pixels leave a random-init token ~90 % position).
        x = (x - self.pixel_mean) / self.pixel_std
        # One convolution over the whole image is cheap next to the blocks; the gather below
        # is what makes the blocks' cost scale with K.
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, D)
        if keep is None:
            return tokens
        return tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))

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


def check_indices(
    idx: torch.Tensor, bound: int, name: str, shape: str, valid: torch.Tensor | None = None
) -> None:
    """Check a LongTensor of patch indices (and its padding flags) against ``[0, bound)``.

    The caller has checked the number of dimensions (``shape`` names them in messages). The
    value checks need the data, hence one device synchronisation, shared by all of them.
    """
    if idx.dtype != torch.long or idx.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty LongTensor {shape}, got {idx.dtype} {tuple(idx.shape)}"
        )
    if valid is not None and (valid.dtype != torch.bool or valid.shape != idx.shape):
        raise ValueError(
            f"the padding flags of {name} must be a bool tensor of shape "
            f"{tuple(idx.shape)}, got {valid.dtype} {tuple(valid.shape)}"
        )
    checks = [(idx < 0).any() | (idx >= bound).any()]
    if valid is not None:  # a row without real keys would give NaN attention
        checks.append(~valid.reshape(-1, idx.shape[-1]).any(-1).all())
    out_of_range, *no_real = torch.stack(checks).tolist()
    if out_of_range:
        raise ValueError(
            f"{name} holds patch indices outside [0, {bound}): "
            f"min {int(idx.min())}, max {int(idx.max())}"
        )
    if no_real and no_real[0]:
        raise ValueError(f"a row of {name} is all padding: every row needs a real entry")


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
        img_size: int = 224, patch_size: int = 16, drop_path_rate: float = 0.0
    ) -> VisionTransformer:
        return VisionTransformer(
            img_size, patch_size, width, depth, heads, drop_path_rate=drop_path_rate
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"ViT of width {width}, depth {depth}, {heads} heads (see VIT_SIZES)."
    return register_model(name)(factory)


vit_tiny = _factory("vit_tiny")
vit_small = _factory("vit_small")
vit_base = _factory("vit_base")
vit_large = _factory("vit_large")
vit_huge = _factory("vit_huge")  # I-JEPA's main encoder is ViT-H/14: pass patch_size=14
