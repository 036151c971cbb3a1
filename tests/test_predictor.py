"""I-JEPA predictor: the batched pass (all blocks of all images at once) against a naive
per-image, per-block loop and against lightly 1.6's ``IJEPAPredictor`` with the same
weights; padding invariance; no leakage between target blocks; gradients; bad input."""

from __future__ import annotations

import pytest
import torch

from selfsup.models import IJEPAPredictor
from selfsup.models.transformer import sincos_pos_embed_2d

D, P = 24, 16  # encoder width, predictor width


def make_predictor(**kwargs: object) -> IJEPAPredictor:
    torch.manual_seed(0)
    args: dict = dict(grid=(4, 5), embed_dim=D, predictor_dim=P, depth=2, num_heads=2)
    return IJEPAPredictor(**{**args, **kwargs}).eval()


def make_inputs(b: int = 3, k: int = 6, m: int = 4, t: int = 3, n: int = 20) -> tuple:
    g = torch.Generator().manual_seed(1)
    context = torch.randn(b, k, D, generator=g)
    context_idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(b)])
    target_idx = torch.randint(0, n, (b, m, t), generator=g)
    return context, context_idx, target_idx


def naive_prediction(
    pred: IJEPAPredictor, context: torch.Tensor, context_idx: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Official recipe for ONE image and ONE target block: context (K, D), indices (K,),
    target indices (T,) -> (T, D)."""
    pos = sincos_pos_embed_2d(P, pred.grid)
    ctx = pred.predictor_embed(context) + pos[context_idx]
    queries = pred.mask_token.reshape(P) + pos[targets]  # shared vector + target positions
    z = torch.cat([ctx, queries])[None]
    for block in pred.blocks:
        z = block(z)
    return pred.predictor_proj(pred.norm(z))[0, len(context_idx) :]


def test_batched_equals_per_image_per_block_loop() -> None:
    pred = make_predictor()
    context, context_idx, target_idx = make_inputs()
    with torch.no_grad():
        out = pred(context, context_idx, target_idx)
        assert out.shape == (3, 4, 3, D)
        for i in range(3):
            for j in range(4):
                expected = naive_prediction(pred, context[i], context_idx[i], target_idx[i, j])
                torch.testing.assert_close(out[i, j], expected, rtol=1e-5, atol=1e-5)


def test_blocks_do_not_see_each_other() -> None:
    pred = make_predictor()
    context, context_idx, target_idx = make_inputs()
    other = target_idx.clone()
    other[:, 1:] = (other[:, 1:] + 7) % 20  # change every block but the first
    with torch.no_grad():
        a, b = pred(context, context_idx, target_idx), pred(context, context_idx, other)
    torch.testing.assert_close(a[:, 0], b[:, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 1:], b[:, 1:])


def test_matches_lightly_predictor_with_same_weights() -> None:
    from lightly.models.modules.ijepa import IJEPAPredictor as LightlyPredictor

    # lightly uses ``mlp_dim`` both as the encoder width and as the MLP hidden width, so the
    # comparison needs D = 4 * P; its blocks are torchvision EncoderBlocks (nn.MultiheadAttention).
    d, p, grid = 4 * P, P, (4, 4)
    ours = make_predictor(grid=grid, embed_dim=d)
    theirs = LightlyPredictor(
        seq_length=1, num_layers=2, num_heads=2, hidden_dim=p, predictor_embed_dim=p,
        num_patches=16, mlp_dim=d, dropout=0.0, attention_dropout=0.0,
    ).eval()  # fmt: skip
    state = {
        "predictor_embed.weight": ours.predictor_embed.weight,
        "predictor_embed.bias": ours.predictor_embed.bias,
        "predictor_proj.weight": ours.predictor_proj.weight,
        "predictor_proj.bias": ours.predictor_proj.bias,
        "mask_token": ours.mask_token.reshape(1, 1, p),
        "ln.weight": ours.norm.weight,
        "ln.bias": ours.norm.bias,
    }
    for i, blk in enumerate(ours.blocks):
        prefix = f"layers.encoder_layer_{i}."
        state |= {
            prefix + "ln_1.weight": blk.norm1.weight,
            prefix + "ln_1.bias": blk.norm1.bias,
            prefix + "self_attention.in_proj_weight": blk.attn.qkv.weight,
            prefix + "self_attention.in_proj_bias": blk.attn.qkv.bias,
            prefix + "self_attention.out_proj.weight": blk.attn.proj.weight,
            prefix + "self_attention.out_proj.bias": blk.attn.proj.bias,
            prefix + "ln_2.weight": blk.norm2.weight,
            prefix + "ln_2.bias": blk.norm2.bias,
            prefix + "mlp.0.weight": blk.mlp.fc1.weight,
            prefix + "mlp.0.bias": blk.mlp.fc1.bias,
            prefix + "mlp.3.weight": blk.mlp.fc2.weight,
            prefix + "mlp.3.bias": blk.mlp.fc2.bias,
        }
    missing, _ = theirs.load_state_dict(state, strict=False)
    assert set(missing) <= {"pos_embedding", "predictor_pos_embed"}  # unused / fixed sin-cos
    g = torch.Generator().manual_seed(2)
    context = torch.randn(2, 5, d, generator=g)
    context_idx = torch.stack([torch.randperm(16, generator=g)[:5] for _ in range(2)])
    target_idx = torch.randint(0, 16, (2, 3, 4), generator=g)
    with torch.no_grad():
        out = ours(context, context_idx, target_idx)
        # lightly: a list of M (B, T) masks; output (M·B, T, D), block-major.
        ref = theirs(context.clone(), [context_idx], list(target_idx.unbind(1)))
    torch.testing.assert_close(out, ref.reshape(3, 2, 4, d).transpose(0, 1), rtol=1e-4, atol=1e-5)


def test_padding_does_not_change_real_predictions() -> None:
    pred = make_predictor()
    g = torch.Generator().manual_seed(3)
    context = torch.randn(2, 6, D, generator=g)
    context_idx = torch.tensor([[0, 1, 2, 5, 6, 7], [10, 11, 12, 13, 0, 0]])
    context_valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    target_idx = torch.tensor([[[15, 16, 17], [3, 4, 9]], [[1, 2, 2], [18, 19, 14]]])
    target_valid = torch.tensor([[[True] * 3, [True, True, False]], [[True, True, False]] * 2])
    with torch.no_grad():
        padded = pred(context, context_idx, target_idx, context_valid, target_valid)
        for i in range(2):
            k = int(context_valid[i].sum())
            for j in range(2):
                t = int(target_valid[i, j].sum())
                one = (
                    context[i, None, :k],
                    context_idx[i, None, :k],
                    target_idx[i, None, j, None, :t],
                )
                alone = pred(*one)[0, 0]
                torch.testing.assert_close(padded[i, j, :t], alone, rtol=1e-5, atol=1e-5)
        # Without the flags the padding leaks in (so the comparison above can fail).
        unflagged = pred(context, context_idx, target_idx)
        assert not torch.allclose(unflagged[1, 0, :2], padded[1, 0, :2], atol=1e-4)
        # Only the context flags given: target padding treated as real, context padding not.
        only_ctx = pred(context, context_idx, target_idx, context_valid=context_valid)
        torch.testing.assert_close(only_ctx[0, 0], padded[0, 0], rtol=1e-5, atol=1e-5)


def test_every_parameter_gets_a_gradient() -> None:
    pred = make_predictor().train()
    context, context_idx, target_idx = make_inputs()
    context.requires_grad_(True)
    pred(context, context_idx, target_idx).square().sum().backward()
    assert pred.mask_token.grad is not None and pred.mask_token.grad.abs().sum() > 0
    for name, p in pred.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert context.grad is not None and context.grad.abs().sum() > 0


def test_initialisation_and_buffers() -> None:
    pred = IJEPAPredictor((14, 14), embed_dim=32, predictor_dim=384, depth=4, num_heads=16)
    assert abs(pred.mask_token.std().item() - 0.02) < 0.004  # trunc-normal, std 0.02
    assert "pos_embed" not in pred.state_dict()
    torch.testing.assert_close(pred.pos_embed, sincos_pos_embed_2d(384, (14, 14)))
    last = pred.blocks[3].mlp.fc2.weight.std().item()
    assert abs(last / (0.02 / 8**0.5) - 1) < 0.05  # I-JEPA fix_init_weight, block 4: /sqrt(2*4)


def test_bad_input_raises() -> None:
    pred = make_predictor()
    context, context_idx, target_idx = make_inputs()
    with pytest.raises(ValueError, match=r"target_idx holds patch indices outside \[0, 20\)"):
        pred(context, context_idx, target_idx + 20)
    with pytest.raises(ValueError, match=r"context must be \(B, K, 24\)"):
        pred(context[..., :5], context_idx, target_idx)
    with pytest.raises(ValueError, match="context_idx must be"):
        pred(context, context_idx[:, :2], target_idx)
    with pytest.raises(ValueError, match=r"target_idx must be \(B, M, T\)"):
        pred(context, context_idx, target_idx[0])
    with pytest.raises(ValueError, match="padding flags of target_idx"):
        pred(context, context_idx, target_idx, target_valid=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible by 4"):
        make_predictor(predictor_dim=18, num_heads=2)
    with pytest.raises(ValueError, match="grid"):
        make_predictor(grid=(4, 0))
