"""I-JEPA predictor g_phi (Assran et al., CVPR 2023, Sec. 3 "Prediction" and Appendix A.1).

A narrow ViT over the context tokens plus, for one target block at a time, mask tokens: one
shared learned vector added to the (fixed, sine-cosine) position embedding of each target
patch. Its outputs at the mask tokens, projected back to the encoder width, are the
predictions s_hat_y of the target-block representations s_y (Eq. 1 and 2).

Structure as the official ``VisionTransformerPredictor`` (``src/models/vision_transformer.py``):
``predictor_embed`` Linear(D -> P), the predictor's own 2-D sine-cosine position embedding of
width P, the same pre-norm blocks as the encoder, a final LayerNorm and ``predictor_proj``
Linear(P -> D). The official code feeds the M blocks as M copies of the batch; here the
context of every image is repeated once per block, (B, K, P) -> (B·M, K, P), so all blocks
of all images run in one batched pass (no Python loop over images or blocks).
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.transformer import (
    INIT_STD,
    LN_EPS,
    check_indices,
    init_weights,
    key_mask,
    make_blocks,
    sincos_pos_embed_2d,
)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class IJEPAPredictor(nn.Module):
    """Predict target-block representations from context tokens, all blocks at once.

    Args:
        grid: patch grid (H, W) of the encoder; indices are flat row-major ``r·W + c``.
        embed_dim: encoder width D (input and output width).
        predictor_dim: predictor width P (384 for ViT-H/14 in the paper; divisible by 4).
        depth: number of predictor blocks (12 for ViT-H/14).
        num_heads: attention heads (the paper uses the encoder's head count).
        mlp_ratio, qkv_bias, drop_path_rate: as in the encoder's blocks.

    Shapes: ``forward(context, context_idx, target_idx, context_valid, target_valid)`` with
    context (B, K, D) encoder outputs of the context patches, context_idx (B, K) their patch
    indices, target_idx (B, M, T) the patch indices of M target blocks of T patches ->
    predictions (B, M, T, D). The optional bool flags (B, K) and (B, M, T) mark padding
    (False); padded positions are excluded from attention as keys, so predictions at real
    positions do not depend on them (predictions *at* padded targets are meaningless).
    """

    pos_embed: torch.Tensor  # (N, P) buffer

    def __init__(
        self,
        grid: tuple[int, int],
        embed_dim: int,
        predictor_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(grid) != 2 or not all(_positive_int(g) for g in grid):
            raise ValueError(f"grid must be two positive integers (H, W), got {grid!r}")
        for name, value in (("embed_dim", embed_dim), ("predictor_dim", predictor_dim)):
            if not _positive_int(value):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not _positive_int(depth):
            raise ValueError(f"predictor depth must be a positive integer, got {depth!r}")
        self.grid = (grid[0], grid[1])
        self.num_patches = self.grid[0] * self.grid[1]
        self.embed_dim = embed_dim
        self.predictor_dim = predictor_dim
        self.predictor_embed = nn.Linear(embed_dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, predictor_dim))
        # Fixed like the encoder's (the official predictor's is a frozen sin-cos parameter).
        self.register_buffer(
            "pos_embed", sincos_pos_embed_2d(predictor_dim, self.grid), persistent=False
        )
        self.blocks = make_blocks(
            predictor_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate
        )
        self.norm = nn.LayerNorm(predictor_dim, eps=LN_EPS)
        self.predictor_proj = nn.Linear(predictor_dim, embed_dim)
        init_weights(self, self.blocks)  # official: trunc-normal Linear, 1/sqrt(2l) rescale
        nn.init.trunc_normal_(self.mask_token, std=INIT_STD)

    def _check(
        self,
        context: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        context_valid: torch.Tensor | None,
        target_valid: torch.Tensor | None,
    ) -> None:
        if context.ndim != 3 or context.shape[-1] != self.embed_dim:
            raise ValueError(
                f"context must be (B, K, {self.embed_dim}) encoder tokens, "
                f"got {tuple(context.shape)}"
            )
        if context_idx.shape != context.shape[:2]:
            raise ValueError(
                f"context_idx must be (B, K) = {tuple(context.shape[:2])} like context, "
                f"got {tuple(context_idx.shape)}"
            )
        if target_idx.ndim != 3 or target_idx.shape[0] != context.shape[0]:
            raise ValueError(
                f"target_idx must be (B, M, T) with B={context.shape[0]}, "
                f"got {tuple(target_idx.shape)}"
            )
        check_indices(context_idx, self.num_patches, "context_idx", "(B, K)", context_valid)
        check_indices(target_idx, self.num_patches, "target_idx", "(B, M, T)", target_valid)

    def forward(
        self,
        context: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        context_valid: torch.Tensor | None = None,
        target_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check(context, context_idx, target_idx, context_valid, target_valid)
        b, k, _ = context.shape
        _, m, t = target_idx.shape
        p = self.predictor_dim
        # Context tokens in predictor width with the position of each context patch.
        ctx = self.predictor_embed(context) + self.pos_embed[context_idx]  # (B, K, P)
        ctx = ctx.unsqueeze(1).expand(b, m, k, p).reshape(b * m, k, p)
        # Mask tokens: the shared vector plus the position of each target patch.
        queries = (self.mask_token + self.pos_embed[target_idx]).reshape(b * m, t, p)
        tokens = torch.cat([ctx, queries], dim=1)  # (B·M, K + T, P)
        mask = None
        if context_valid is not None or target_valid is not None:
            cv = (
                context.new_ones(b, k, dtype=torch.bool) if context_valid is None else context_valid
            )
            tv = (
                target_idx.new_ones(b, m, t, dtype=torch.bool)
                if target_valid is None
                else target_valid
            )
            keys = torch.cat([cv.unsqueeze(1).expand(b, m, k).reshape(b * m, k),
                              tv.reshape(b * m, t)], dim=1)  # fmt: skip
            mask = key_mask(keys)
        for block in self.blocks:
            tokens = block(tokens, mask)
        out = self.predictor_proj(self.norm(tokens[:, k:]))  # only the mask tokens
        return out.reshape(b, m, t, self.embed_dim)
