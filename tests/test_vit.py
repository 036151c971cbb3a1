"""ViT encoders of I-JEPA and token pooling: sine-cosine embeddings against MAE's formula and
lightly and at other grids (patch centres in training-grid units), token dropping (gather
before the blocks, dropped patches cost nothing), padding masks, attention against a naive
transcription, I-JEPA's initialisation, parameter counts against closed forms and timm's
ViT-B/16, and the pooled evaluation representation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.models import TokenPooling, VisionTransformer, create_model, list_models
from selfsup.models import transformer as transformer_module
from selfsup.models.transformer import Attention, sincos_pos_embed_2d
from selfsup.models.vit import IMAGENET_MEAN, IMAGENET_STD, vit_patch_size


def small_vit(**kwargs: object) -> VisionTransformer:
    """16-px images, patch 4: a 4x4 grid of 16 tokens, width 32, 2 blocks."""
    torch.manual_seed(0)
    args: dict = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    return VisionTransformer(**{**args, **kwargs}).eval()


# ---------------------------------------------------------------- position embeddings


def mae_sincos_naive(dim: int, h: int, w: int) -> np.ndarray:
    """MAE ``get_2d_sincos_pos_embed`` written out entry by entry (meshgrid(w, h): the first
    half of the channels encodes the column, the second half the row)."""
    quarter = dim // 4
    out = np.zeros((h * w, dim))
    for r in range(h):
        for c in range(w):
            for half, coord in ((0, c), (1, r)):
                for k in range(quarter):
                    omega = 1.0 / 10000 ** (k / quarter)
                    out[r * w + c, half * 2 * quarter + k] = math.sin(coord * omega)
                    out[r * w + c, half * 2 * quarter + quarter + k] = math.cos(coord * omega)
    return out


@pytest.mark.parametrize("dim, grid", [(16, (3, 5)), (8, (4, 4)), (32, (1, 2))])
def test_sincos_matches_mae_formula(dim: int, grid: tuple[int, int]) -> None:
    ours = sincos_pos_embed_2d(dim, grid)
    assert ours.dtype == torch.float32 and ours.shape == (grid[0] * grid[1], dim)
    expected = torch.from_numpy(mae_sincos_naive(dim, *grid)).float()
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_sincos_matches_lightly() -> None:
    from lightly.models import utils as lightly_utils

    theirs = lightly_utils.get_2d_sincos_pos_embed(64, 7, cls_token=False)
    torch.testing.assert_close(sincos_pos_embed_2d(64, (7, 7)), torch.from_numpy(theirs).float())


@pytest.mark.parametrize("grid, extent", [((10, 10), (8, 8)), ((3, 6), (4, 4)), ((4, 4), (4, 4))])
def test_sincos_at_another_grid_is_the_formula_at_patch_centres(
    grid: tuple[int, int], extent: tuple[int, int]
) -> None:
    """Patch centre i of an H-row grid over the image of an H0-row one sits at
    (i + 1/2)·H0/H - 1/2 in the H0 grid's units; the embedding is the formula there."""
    dim = 16
    ours = sincos_pos_embed_2d(dim, grid, extent=extent)
    quarter = dim // 4
    expected = torch.zeros(grid[0] * grid[1], dim, dtype=torch.float64)
    for r in range(grid[0]):
        for c in range(grid[1]):
            y = (r + 0.5) * extent[0] / grid[0] - 0.5
            x = (c + 0.5) * extent[1] / grid[1] - 0.5
            for half, coord in ((0, x), (1, y)):  # the column first, as MAE
                for k in range(quarter):
                    omega = 1.0 / 10000 ** (k / quarter)
                    expected[r * grid[1] + c, half * 2 * quarter + k] = math.sin(coord * omega)
                    expected[r * grid[1] + c, half * 2 * quarter + quarter + k] = math.cos(
                        coord * omega
                    )
    torch.testing.assert_close(ours, expected.float(), rtol=0, atol=1e-6)
    if grid == extent:  # the training grid itself: exactly the integer positions
        assert torch.equal(ours, sincos_pos_embed_2d(dim, grid))


def test_other_image_sizes_use_the_embeddings_at_their_patch_centres() -> None:
    """A 16-px-trained ViT (4x4 grid) on 24 px images (6x6): the same network as one built
    for 24 px, but with the 4x4 grid's positions resampled at the 6x6 patch centres."""
    model = small_vit()
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 36, 32)
    twin = small_vit(img_size=24)
    twin.load_state_dict(model.state_dict())
    twin.pos_embed.copy_(sincos_pos_embed_2d(32, (6, 6), extent=(4, 4)))
    with torch.no_grad():
        torch.testing.assert_close(out, twin(x))
        torch.testing.assert_close(model.intermediate_layers(x, 1)[-1], out)
        kept = model(x, torch.tensor([[35, 0], [7, 7]]))  # keep indexes the 6x6 grid
    torch.testing.assert_close(kept, twin(x, torch.tensor([[35, 0], [7, 7]])))
    assert model.pos_embed_for((6, 6)) is model.pos_embed_for((6, 6))  # computed once
    assert model.pos_embed_for((4, 4)) is model.pos_embed
    with torch.no_grad():  # the training size still uses the buffer
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 16, 32)
    assert vit_patch_size(model) == 4 and vit_patch_size(TokenPooling(model)) == 4
    assert vit_patch_size(create_model("resnet18", width=0.25)) is None


def test_pos_embed_is_fixed_buffer() -> None:
    model = small_vit()
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" not in model.state_dict()  # derived from the config, not stored
    torch.testing.assert_close(model.pos_embed, sincos_pos_embed_2d(32, (4, 4)))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(6, (2, 2))


# ---------------------------------------------------------------- token dropping


def capture_block_input(model: VisionTransformer) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    return seen


def test_embedding_and_gather_by_hand() -> None:
    model = small_vit()
    x = torch.randn(2, 3, 16, 16)
    keep = torch.tensor([[5, 0, 15], [3, 3, 10]])  # any order, repeats allowed
    seen = capture_block_input(model)
    with torch.no_grad():
        model(x, keep)
    w, b = model.patch_embed.weight, model.patch_embed.bias
    assert b is not None
    expected = torch.empty(2, 3, 32)
    for i in range(2):
        for j, idx in enumerate(keep[i].tolist()):
            r, c = divmod(idx, 4)  # row-major patch index
            patch = x[i, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
            patch = (patch - mean.view(3, 1, 1)) / std.view(3, 1, 1)  # the ViT normalises
            expected[i, j] = (w * patch).sum((1, 2, 3)) + b + model.pos_embed[idx]
    assert seen[0].shape == (2, 3, 32)  # the blocks see K tokens, not N: cost scales with K
    torch.testing.assert_close(seen[0], expected, rtol=1e-5, atol=1e-5)


def test_keep_everything_equals_no_keep() -> None:
    model = small_vit()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        full = model(x)
        kept = model(x, torch.arange(16).expand(3, 16))
    assert full.shape == (3, 16, 32)
    torch.testing.assert_close(kept, full, rtol=0, atol=0)


def test_dropped_patches_do_not_matter() -> None:
    model = small_vit()
    x = torch.randn(2, 3, 16, 16)
    keep = torch.tensor([[0, 1, 4, 5], [10, 11, 14, 15]])
    y = x.clone()
    y[0, :, 8:, 8:] = 100.0  # patch 10 of image 0 is dropped; patch 0 of image 1 too
    y[1, :, :4, :4] = -100.0
    with torch.no_grad():
        torch.testing.assert_close(model(y, keep), model(x, keep), rtol=0, atol=0)
        assert not torch.allclose(model(y), model(x))  # ... while the full forward sees them


def test_padding_is_invisible_to_real_tokens() -> None:
    model = small_vit()
    x = torch.randn(2, 3, 16, 16)
    real = [torch.tensor([2, 7, 9, 12, 13]), torch.tensor([0, 6, 15])]
    keep = torch.tensor([[2, 7, 9, 12, 13], [0, 6, 15, 1, 1]])  # image 1 padded with patch 1
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        padded = model(x, keep, valid)
        for i, idx in enumerate(real):
            alone = model(x[i : i + 1], idx[None])[0]
            torch.testing.assert_close(padded[i, : len(idx)], alone, rtol=1e-5, atol=1e-5)
        # Without the flags the padding leaks into the real tokens (the test can fail).
        assert not torch.allclose(model(x, keep)[1, :3], padded[1, :3], atol=1e-4)


def test_no_mask_is_built_without_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    masks: list[object] = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args: torch.Tensor, **kwargs: torch.Tensor | None) -> torch.Tensor:
        masks.append(kwargs.get("attn_mask"))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(transformer_module.F, "scaled_dot_product_attention", spy)
    model = small_vit()
    x, keep = torch.randn(2, 3, 16, 16), torch.tensor([[0, 1], [2, 3]])
    model(x)
    model(x, keep)
    assert masks == [None] * 4  # 2 forwards x 2 blocks, all on SDPA's mask-free path
    model(x, keep, torch.tensor([[True, False], [True, True]]))
    assert all(m is not None for m in masks[4:]) and len(masks) == 6


def test_attention_matches_naive_softmax() -> None:
    torch.manual_seed(0)
    attn = Attention(dim=12, num_heads=3)
    x = torch.randn(2, 5, 12)
    valid = torch.tensor([[True] * 5, [True, False, True, True, False]])
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)  # (B, heads, L, L), Vaswani et al. Eq. 1
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    expected = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 12))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, valid[:, None, None, :]), expected)


def test_intermediate_layers() -> None:
    model = small_vit(depth=3)
    x = torch.randn(2, 3, 16, 16)
    block_outputs: list[torch.Tensor] = []
    for block in model.blocks:
        block.register_forward_hook(lambda _m, _i, out: block_outputs.append(out))
    with torch.no_grad():
        layers = model.intermediate_layers(x, 2)
        torch.testing.assert_close(model.intermediate_layers(x, 1)[0], model(x), rtol=0, atol=0)
    assert len(layers) == 2 and all(t.shape == (2, 16, 32) for t in layers)
    torch.testing.assert_close(layers[0], model.norm(block_outputs[1]))  # oldest first
    torch.testing.assert_close(layers[1], model.norm(block_outputs[2]))
    with pytest.raises(ValueError, match="n must be"):
        model.intermediate_layers(x, 4)


# ---------------------------------------------------------------- initialisation, depth


def test_ijepa_initialisation() -> None:
    model = create_model("vit_tiny", img_size=32, patch_size=4)  # width 192, 12 blocks
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == 0), name
    for layer_id, block in enumerate(model.blocks, start=1):
        assert torch.all(block.norm1.weight == 1)
        assert abs(block.attn.qkv.weight.std().item() - 0.02) < 0.001
        for proj in (block.attn.proj, block.mlp.fc2):  # I-JEPA fix_init_weight: /sqrt(2l)
            expected = 0.02 / math.sqrt(2 * layer_id)
            assert abs(proj.weight.std().item() / expected - 1) < 0.05, (layer_id, proj)


def test_patch_embed_std() -> None:
    # Only the patch embedding is redrawn, after everything else: with the same seed every
    # other weight is the default model's (the blocks keep the official draw).
    default, redrawn = small_vit(), small_vit(patch_embed_std=0.08)
    assert abs(default.patch_embed.weight.std().item() - 0.02) < 0.003
    assert abs(redrawn.patch_embed.weight.std().item() - 0.08) < 0.006
    for (name, a), b in zip(default.named_parameters(), redrawn.parameters(), strict=True):
        assert torch.equal(a, b) == (name != "patch_embed.weight"), name
    wide = create_model("vit_tiny", img_size=32, patch_size=4, patch_embed_std=0.08)
    assert abs(wide.patch_embed.weight.std().item() - 0.08) < 0.004
    # Only the patch embedding changes: the blocks keep I-JEPA's initialisation.
    assert abs(wide.blocks[0].attn.qkv.weight.std().item() - 0.02) < 0.001
    with pytest.raises(ValueError, match="patch_embed_std must be > 0"):
        small_vit(patch_embed_std=0.0)


def test_stochastic_depth() -> None:
    model = small_vit(depth=3, drop_path_rate=0.2)
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.1, 0.2])
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))  # eval: deterministic
        model.train()
        assert not torch.allclose(model(x), model(x))  # train: random per-sample drops
    with pytest.raises(ValueError, match="drop_path_rate"):
        small_vit(drop_path_rate=1.0)


# ---------------------------------------------------------------- sizes and parameter counts


def closed_form_count(width: int, depth: int, patch: int, in_chans: int = 3) -> int:
    """Patch conv + depth x (2 LN, qkv, proj, fc1, fc2 with 4x hidden) + final LN."""
    block = 2 * 2 * width + (3 * width * width + 3 * width) + (width * width + width)
    block += (4 * width * width + 4 * width) + (4 * width * width + width)
    return in_chans * patch * patch * width + width + depth * block + 2 * width


def test_registered_sizes_and_closed_form_counts() -> None:
    sizes = {  # name: (width, depth, heads), the standard ViT table
        "vit_tiny": (192, 12, 3),
        "vit_small": (384, 12, 6),
        "vit_base": (768, 12, 12),
        "vit_large": (1024, 24, 16),
        "vit_huge": (1280, 32, 16),
    }
    assert set(sizes) <= set(list_models())
    for name, (width, depth, heads) in sizes.items():
        with torch.device("meta"):  # shapes only
            model = create_model(name, patch_size=14)
        assert (model.num_features, len(model.blocks)) == (width, depth)
        assert model.blocks[0].attn.num_heads == model.num_heads == heads
        n = sum(p.numel() for p in model.parameters())
        assert n == closed_form_count(width, depth, 14), name


def test_vit_base_and_huge_parameter_counts() -> None:
    with torch.device("meta"):
        base = create_model("vit_base", img_size=224, patch_size=16)
        huge = create_model("vit_huge", img_size=224, patch_size=14)
    n_base = sum(p.numel() for p in base.parameters())
    # timm vit_base_patch16_224: 86,567,656 parameters, minus the 1000-class head (769,000),
    # the class token (768) and the learned position embedding (197 x 768 = 151,296).
    assert n_base == 86_567_656 - 769_000 - 768 - 151_296
    assert abs(n_base - 85.8e6) / 85.8e6 < 0.01
    n_huge = sum(p.numel() for p in huge.parameters())
    assert abs(n_huge - 630e6) / 630e6 < 0.01  # ViT-H/14 (I-JEPA Table 1: 632M with head)
    assert base.grid == (14, 14) and huge.grid == (16, 16) and huge.num_patches == 256


# ---------------------------------------------------------------- bad input


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="img_size=30 is not divisible by patch_size=4"):
        create_model("vit_tiny", img_size=30, patch_size=4)
    with pytest.raises(ValueError, match="patch_size must be a positive integer"):
        VisionTransformer(img_size=16, patch_size=0)
    model = small_vit()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"outside \[0, 16\)"):
        model(x, torch.tensor([[0, 16], [1, 2]]))
    with pytest.raises(ValueError, match=r"outside \[0, 16\)"):
        model(x, torch.tensor([[0, -1], [1, 2]]))
    with pytest.raises(ValueError, match="LongTensor"):
        model(x, torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"keep must be \(B, K\) with B=2"):
        model(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pass keep"):
        model(x, valid=torch.ones(2, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="all padding"):
        model(x, torch.tensor([[0, 1], [1, 2]]), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match=r"multiples of the patch size 4 \(trained at 16 x 16\)"):
        model(torch.randn(2, 3, 18, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"outside \[0, 36\)"):  # 24 px: a 6x6 grid
        model(torch.randn(2, 3, 24, 24), torch.tensor([[0, 36], [1, 2]]))


# ---------------------------------------------------------------- token pooling


@pytest.mark.parametrize("layers", [1, 2])
def test_token_pooling_is_mean_of_last_layers(layers: int) -> None:
    model = small_vit(depth=3)
    pool = TokenPooling(model, layers=layers)
    assert pool.num_features == layers * 32
    x = torch.randn(2, 3, 16, 16)
    outputs: list[torch.Tensor] = []
    for block in model.blocks:
        block.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    with torch.no_grad():
        pooled = pool(x)
    last = [model.norm(t) for t in outputs[-layers:]]
    expected = torch.cat([t.sum(1) / t.shape[1] for t in last], dim=1)
    assert pooled.shape == (2, pool.num_features)
    torch.testing.assert_close(pooled, expected)


def test_token_pooling_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="token encoder"):
        TokenPooling(create_model("resnet18", width=0.25))
    with pytest.raises(ValueError, match="exceeds the encoder's depth 2"):
        TokenPooling(small_vit(), layers=3)
    with pytest.raises(ValueError, match="layers must be a positive integer"):
        TokenPooling(small_vit(), layers=0)


def test_attention_under_cpu_bf16_autocast_runs_in_fp32_and_matches() -> None:
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4)
    x = torch.randn(3, 10, 32)
    want = attn(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attn(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)
    got.float().sum().backward()  # the fp32 detour keeps the graph intact
    assert attn.qkv.weight.grad is not None


def test_attention_leaves_cudnn_out_and_restores_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    # cuDNN attention builds a host-side plan per sequence length (slow for I-JEPA's varying
    # context); the choice is global state, so it must hold during the call only.
    seen: list[tuple[bool, bool]] = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args: torch.Tensor, **kwargs: torch.Tensor | None) -> torch.Tensor:
        backends = torch.backends.cuda
        seen.append((backends.cudnn_sdp_enabled(), backends.flash_sdp_enabled()))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    before = torch.backends.cuda.cudnn_sdp_enabled()
    Attention(16, num_heads=2)(torch.randn(2, 5, 16))
    assert seen == [(False, True)]
    assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_index_values_are_read_on_the_cpu_only() -> None:
    # On an accelerator, reading the values would make the host wait every step: a "meta"
    # tensor has no values, so any read fails; out-of-range CPU indices still raise.
    bad = torch.tensor([[0, 99]])
    transformer_module.check_indices(bad.to("meta"), 16, "keep", "(B, K)")
    with pytest.raises(ValueError, match=r"outside \[0, 16\)"):
        transformer_module.check_indices(bad, 16, "keep", "(B, K)")
    with pytest.raises(ValueError, match="LongTensor"):  # the metadata checks stay everywhere
        transformer_module.check_indices(bad.float().to("meta"), 16, "keep", "(B, K)")
