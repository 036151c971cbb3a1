"""The I-JEPA method on a tiny ViT: EMA formula, target gathering, what gets gradients,
state-dict stability under wrapping, the evaluation encoder, and a non-token encoder."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from selfsup.data.augment import build_augmentation
from selfsup.losses.ijepa import ijepa_loss
from selfsup.masks import MaskBatch, MaskCollator, MultiBlockMaskSampler
from selfsup.methods.ijepa import IJEPA, ContextPredictor, ema_update_, gather_targets
from selfsup.models import create_model
from selfsup.models.predictor import IJEPAPredictor
from selfsup.models.vit import VisionTransformer


def tiny_ijepa(momentum: float = 0.9, **kwargs: int) -> IJEPA:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=2)
    predictor = IJEPAPredictor(grid=vit.grid, embed_dim=24, predictor_dim=16, depth=1, num_heads=2)
    sampler = MultiBlockMaskSampler(grid=vit.grid, min_context=2)
    augment = build_augmentation(["crop"], 16, crop_scale=(0.3, 1.0), probabilities={"flip": 0})
    return IJEPA(vit, predictor, MaskCollator(sampler), augment, lambda step: momentum, **kwargs)


def test_ema_update_matches_the_formula() -> None:
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = copy.deepcopy(target)
    ema_update_(target, online, 0.99)
    for t, b, o in zip(target.parameters(), before.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.99 * b + 0.01 * o)
    ema_update_(target, online, 1.0)  # momentum 1: frozen
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(target, online, 1.5)


def test_gather_targets_matches_a_loop() -> None:
    tokens = torch.randn(2, 9, 4)
    idx = torch.tensor([[[0, 1], [8, 3]], [[5, 5], [2, 7]]])
    got = gather_targets(tokens, idx)
    for b in range(2):
        for m in range(2):
            for t in range(2):
                assert torch.equal(got[b, m, t], tokens[b, idx[b, m, t]])


def test_step_trains_online_only_and_ema_follows() -> None:
    method = tiny_ijepa(momentum=0.9)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    result = method.training_step(images, 0)
    assert result.loss.ndim == 0 and torch.isfinite(result.loss)
    assert {"target_std", "target_rankme", "context_patches", "target_patches"} <= set(result.logs)
    result.loss.backward()
    assert all(p.grad is None for p in method.target_encoder.parameters())
    assert all(not p.requires_grad for p in method.target_encoder.parameters())
    named = dict(method.online.named_parameters())
    assert named["predictor.mask_token"].grad is not None
    assert named["encoder.patch_embed.weight"].grad is not None
    old_target = [p.clone() for p in method.target_encoder.parameters()]
    opt = torch.optim.SGD(method.online.parameters(), lr=0.1)
    opt.step()
    method.after_optimizer_step(0)
    for t, old, o in zip(
        method.target_encoder.parameters(), old_target, method.online.encoder.parameters(),
        strict=True,
    ):  # fmt: skip
        torch.testing.assert_close(t, 0.9 * old + 0.1 * o)


def test_targets_of_the_last_k_layers_follow_the_data2vec_formula() -> None:
    x = torch.rand(3, 3, 16, 16)
    last = tiny_ijepa()
    out = last.target_encoder(x)
    mean, var = out.mean(-1, keepdim=True), out.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(last.targets(x), (out - mean) / (var + 1e-5).sqrt())
    two = tiny_ijepa(target_layers=2)
    # Naive transcription: run the blocks by hand, normalise each of the last two outputs
    # (final norm, then no-affine layer norm), average, normalise the average.
    enc, tokens, normed = two.target_encoder, two.target_encoder.embed(x), []
    for block in enc.blocks:
        tokens = block(tokens)
        t = enc.norm(tokens)
        normed.append((t - t.mean(-1, keepdim=True)) / (t.var(-1, False, True) + 1e-5).sqrt())
    avg = (normed[0] + normed[1]) / 2
    expected = (avg - avg.mean(-1, keepdim=True)) / (avg.var(-1, False, True) + 1e-5).sqrt()
    torch.testing.assert_close(two.targets(x), expected)
    with pytest.raises(ValueError, match=r"target_layers must lie in \[1, 2\]"):
        tiny_ijepa(target_layers=3)
    with pytest.raises(ValueError, match="mask_repeats"):
        tiny_ijepa(mask_repeats=0)


def test_mask_repeats_reuse_one_target_pass_per_image() -> None:
    method = tiny_ijepa(mask_repeats=3)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    seen: dict[str, MaskBatch] = {}
    target_calls: list[int] = []
    method.target_encoder.register_forward_hook(lambda m, a, o: target_calls.append(len(a[0])))

    def online(x: torch.Tensor, masks: MaskBatch) -> torch.Tensor:
        seen["x"], seen["masks"] = x, masks  # type: ignore[assignment]
        return method.online(x, masks)

    method.wrap_trainable(lambda m: online)  # type: ignore[arg-type,return-value]
    result = method.training_step(images, 0)
    x, masks = seen["x"], seen["masks"]
    assert target_calls == [2]  # one target pass over the 2 images, not 6
    assert isinstance(x, torch.Tensor) and x.shape[0] == 6
    assert torch.equal(x[0], x[2]) and torch.equal(x[3], x[5])  # image 0 three times, then 1
    assert not torch.equal(masks.target_idx[0], masks.target_idx[1])  # a fresh draw per copy
    # Eq. 1 over all six (image, masks) pairs, each against its own image's targets.
    targets = gather_targets(method.targets(x[::3]).repeat_interleave(3, dim=0), masks.target_idx)
    expected = ijepa_loss(method.online(x, masks), targets, "smooth_l1", masks.target_valid)
    torch.testing.assert_close(result.loss, expected)


def test_target_encoder_starts_as_a_copy_and_stays_in_eval_mode() -> None:
    method = tiny_ijepa()
    for a, b in zip(
        method.target_encoder.state_dict().values(),
        method.online.encoder.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)
    method.train()
    assert method.online.training and not method.target_encoder.training


def test_state_dict_does_not_change_with_wrapping() -> None:
    method = tiny_ijepa()
    keys = list(method.state_dict())
    method.wrap_trainable(lambda m: nn.Sequential(m))
    assert list(method.state_dict()) == keys
    assert isinstance(method._train_online[0], nn.Sequential)
    assert method.trainable_modules() == [method.online]
    assert isinstance(method.online, ContextPredictor)


def test_eval_encoder_averages_target_tokens() -> None:
    method = tiny_ijepa()
    x = torch.rand(3, 3, 16, 16)
    h = method.eval_encoder()(x)
    torch.testing.assert_close(h, method.target_encoder(x).mean(dim=1))


def test_pooled_encoders_are_refused() -> None:
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=2)
    predictor = IJEPAPredictor(grid=vit.grid, embed_dim=24, predictor_dim=16, depth=1, num_heads=2)
    collator = MaskCollator(MultiBlockMaskSampler(grid=vit.grid, min_context=2))
    resnet = create_model("resnet18", width=0.125)
    with pytest.raises(ValueError, match="token encoder"):
        IJEPA(resnet, predictor, collator, lambda x: x.float(), lambda s: 0.99)
    with pytest.raises(ValueError, match="choose one of"):
        IJEPA(vit, predictor, collator, lambda x: x.float(), lambda s: 0.99, loss="l1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_never_makes_the_host_wait() -> None:
    method = tiny_ijepa().cuda()
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, device="cuda")
    method.training_step(images, 0).loss.backward()  # step 0 computes the collapse statistics
    torch.cuda.set_sync_debug_mode("error")
    try:
        result = method.training_step(images, 1)  # masks drawn, copied, predicted, loss
        result.loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert result.loss.is_cuda
