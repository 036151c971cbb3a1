"""Transformer parts shared by the ViT encoder and the I-JEPA predictor.

Fixed 2-D sine-cosine position embeddings (MAE, He et al. 2022), pre-norm blocks whose
attention runs through ``scaled_dot_product_attention``, I-JEPA's initialisation, the key
mask for padded tokens and the index checks of token dropping.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torchvision.ops import StochasticDepth

LN_EPS = 1e-6  # timm/I-JEPA ViT LayerNorm epsilon (PyTorch's default is 1e-5)
INIT_STD = 0.02  # I-JEPA ``init_std``
# SDPA's kernels, cuDNN's left out: on Hopper GPUs torch picks cuDNN attention first, and
# cuDNN builds an execution plan on the host for every new sequence length, some 0.2 to
# 0.4 s each (profiled on an H200, I-JEPA batch 256: steps with a new context length took
# 250 to 480 ms, the others 60 to 120 ms). I-JEPA's context length changes from batch to
# batch; flash and memory-efficient attention need no plan. The CPU kernels are unaffected.
ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


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


def sincos_pos_embed_2d(
    dim: int, grid: tuple[int, int], extent: tuple[int, int] | None = None
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings of an H×W patch grid: (H·W, dim), float32.

    Row-major patch order (index ``r·W + c``). Half of the channels encode one coordinate and
    half the other, exactly as MAE/I-JEPA ``get_2d_sincos_pos_embed``: that code builds
    ``np.meshgrid(grid_w, grid_h)``, so the *first* half encodes the column c and the second
    half the row r. Kept in that order so that checkpoints of either code line up.

    ``extent`` (H0, W0): the grid whose integer positions the model was trained on. An H×W
    grid over the same image then gets the embeddings of its patch centres in those units,
    ``(i + 1/2)·H0/H - 1/2`` (and likewise for columns): the exact sine-cosine form of what
    DeiT and the official I-JEPA code do to run a ViT at another resolution (bicubic
    interpolation of the embedding table, ``align_corners=False``). ``None`` or ``extent ==
    grid``: the integer positions 0..H-1, 0..W-1.
    """
    if dim % 4:
        raise ValueError(
            f"2-D sine-cosine embedding needs a width divisible by 4 (two sin/cos halves per "
            f"axis), got {dim}; choose embed_dim / predictor_dim as a multiple of 4"
        )
    h, w = grid
    eh, ew = extent or grid

    def centres(n: int, trained: int) -> torch.Tensor:  # exact integers when n == trained
        return (torch.arange(n, dtype=torch.float64) + 0.5) * (trained / n) - 0.5

    rows, cols = torch.meshgrid(centres(h, eh), centres(w, ew), indexing="ij")
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
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # On CPUs, torch's bf16 attention kernel is far slower than its fp32 one, in
            # the backward pass above all (measured forward + backward, 1 thread: 62.7 ms
            # against 6.8 ms at (256, 3, 20, 32), the predictor's shape; 170 against
            # 159 ms at ViT-tiny's full 196 tokens). So attention runs in fp32 there;
            # the linear layers around it stay in bf16.
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=attn_mask
                ).to(q.dtype)
        else:
            with sdpa_kernel(ATTENTION_BACKENDS):
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


def check_indices(
    idx: torch.Tensor, bound: int, name: str, shape: str, valid: torch.Tensor | None = None
) -> None:
    """Check a LongTensor of patch indices (and its padding flags) against ``[0, bound)``.

    The caller has checked the number of dimensions (``shape`` names them in messages).
    The values are checked only for CPU tensors: reading them from an accelerator makes
    the host wait for the device in every step (CUDA's sync debug mode caught it on an
    H200). There the masks come from the host-side collator, which builds them within
    range, and an index out of range still fails, in the gather kernel's own device-side
    bounds check.
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
    if idx.device.type != "cpu":
        return
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
