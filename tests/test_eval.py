"""Tests of selfsup.eval: features, kNN (vs lightly), linear probe (vs torch SGD), monitor."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from selfsup.data import ImageData
from selfsup.eval import (
    KNNMonitor,
    check_features_labels,
    extract_features,
    knn_evaluate,
    knn_predict,
    linear_probe,
    stratified_split,
    topk_accuracy,
    train_linear_heads,
)
from selfsup.eval.linear import _standardize
from selfsup.evaluation import evaluate


def _tiny_encoder() -> nn.Sequential:
    """Conv + BN + dropout + pooling: eval mode changes its output, so it is visible."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():  # non-trivial running statistics
        bn.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
        bn.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
    conv = nn.Conv2d(3, 4, 3, padding=1)
    return nn.Sequential(
        conv, bn, nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def _images(n: int, size: int = 8, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------------- features


def test_extract_features_equals_eval_forward_and_restores_modes() -> None:
    enc = _tiny_encoder()
    enc.train()
    enc[1].eval()  # a frozen-BN submodule inside a training model: must stay as it was
    before = [m.training for m in enc.modules()]
    images = _images(7)
    feats = extract_features(enc, images, batch_size=3)  # uneven last batch

    assert [m.training for m in enc.modules()] == before
    ref_enc = _tiny_encoder().eval()
    with torch.no_grad():
        expected = ref_enc(images.float() / 255.0)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-6)
    assert not feats.requires_grad and not feats.is_inference()
    assert all(p.grad is None for p in enc.parameters())
    feats.mul_(2.0)  # an ordinary tensor: in-place use is allowed afterwards


def test_extract_features_resize_matches_torchvision() -> None:
    enc = _tiny_encoder()
    images = _images(5, size=24)
    feats = extract_features(enc, images, batch_size=2, image_size=16)
    x = TF.resize(
        images.float() / 255.0, [16, 16], interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    with torch.no_grad():
        expected = enc.eval()(x)
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)
    # Same size: no resampling at all, identical to the plain path.
    same = extract_features(enc, images, image_size=24)
    torch.testing.assert_close(same, extract_features(enc, images), rtol=0, atol=0)


class _Tokens(nn.Module):
    """Returns (B, N_tokens, D) patch tokens: 2x2 patches of 4x4 pixels, flattened."""

    def forward(self, x: Tensor) -> Tensor:
        return F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (B, 4, 48)


def test_extract_features_average_pools_tokens() -> None:
    images = _images(3)
    feats = extract_features(_Tokens(), images)
    tokens = _Tokens()(images.float() / 255.0)
    torch.testing.assert_close(feats, tokens.sum(dim=1) / tokens.shape[1])


@pytest.mark.filterwarnings("ignore:precision=bf16 on a CPU")  # emulated bf16: slow, not wrong
def test_extract_features_bf16_close_to_fp32() -> None:
    enc = _tiny_encoder()
    images = _images(4)
    f32 = extract_features(enc, images)
    f16 = extract_features(enc, images, precision="bf16")
    assert f16.dtype == torch.float32
    torch.testing.assert_close(f16, f32, rtol=0.05, atol=0.02)


class _MoveRecorder(nn.Sequential):
    """The tiny encoder's layers, recording where ``.to()`` sends them."""

    def __init__(self) -> None:
        super().__init__(*_tiny_encoder())
        self.moved_to: list[torch.device] = []

    def to(self, *args: Any, **kwargs: Any) -> _MoveRecorder:  # type: ignore[override]
        self.moved_to.append(torch.device(args[0]))
        return super().to(*args, **kwargs)


def _labelled(n: int, seed: int) -> ImageData:
    return ImageData(_images(n, seed=seed), torch.arange(n) % 2, ("a", "b"), "test")


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device"))],
)  # fmt: skip
def test_evaluate_moves_an_encoder_on_the_cpu_to_the_evaluation_device(device: str) -> None:
    # An encoder rebuilt from a checkpoint is on the CPU; --eval on a GPU crashed on it.
    encoder = _MoveRecorder()
    out = evaluate(
        encoder, _labelled(20, 1), _labelled(10, 2), image_size=None, k=5, linear_epochs=2,
        device=device,
    )  # fmt: skip
    assert encoder.moved_to == [torch.device(device)]
    assert 0 <= out["knn_top1"] <= 100 and 0 <= out["linear_top1"] <= 100


def test_extract_features_rejects_bad_input() -> None:
    enc = _tiny_encoder()
    with pytest.raises(ValueError, match="uint8"):
        extract_features(enc, _images(2).float())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        extract_features(enc, _images(2)[:, :1])
    with pytest.raises(ValueError, match="empty"):
        extract_features(enc, _images(2)[:0])
    with pytest.raises(ValueError, match="precision"):
        extract_features(enc, _images(2), precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="N_tokens"):
        extract_features(nn.Conv2d(3, 2, 1), _images(2))  # 4-D output


# ----------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("k", [1, 20, 200])
def test_knn_ranking_matches_lightly(k: int) -> None:
    from lightly.utils.benchmarking import knn_predict as lightly_knn_predict

    g = torch.Generator().manual_seed(k)
    bank, query = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    labels = torch.randint(0, 10, (300,), generator=g)
    ours = knn_predict(bank, labels, query, num_classes=10, k=k, temperature=0.1, chunk_size=7)
    theirs = lightly_knn_predict(
        F.normalize(query, dim=1), F.normalize(bank, dim=1).T, labels, 10, knn_k=k, knn_t=0.1
    )
    # lightly's order sorts our scores (ties, e.g. empty classes, may be ordered either way).
    torch.testing.assert_close(ours.gather(1, theirs), ours.sort(dim=1, descending=True).values)
    assert torch.equal(ours.argmax(dim=1), theirs[:, 0])
    if k >= 20:  # every class has weight: no ties, so the whole ranking is identical
        assert torch.equal(ours.argsort(dim=1, descending=True), theirs)


def test_knn_hand_case() -> None:
    bank = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])  # cos to (1,0): 1, 0, 1/sqrt2
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    scores = knn_predict(bank, labels, query, num_classes=3, k=2, temperature=0.5)
    e2, es = math.exp(2.0), math.exp(math.sqrt(2.0))  # exp(1/0.5), exp((1/sqrt2)/0.5)
    expected = torch.tensor([[e2, es, 0.0], [0.0, e2 + es, 0.0]])
    torch.testing.assert_close(scores, expected)
    top1 = knn_predict(bank, labels, query, num_classes=3, k=1, temperature=0.5)
    torch.testing.assert_close(top1, torch.tensor([[e2, 0.0, 0.0], [0.0, e2, 0.0]]))
    res = knn_evaluate(bank, labels, query, torch.tensor([1, 1]), num_classes=3, k=2)
    assert res == {"top1": 50.0, "top5": 100.0}


def test_knn_clamps_k_with_warning() -> None:
    g = torch.Generator().manual_seed(1)
    bank, query = torch.randn(12, 4, generator=g), torch.randn(5, 4, generator=g)
    labels = torch.randint(0, 3, (12,), generator=g)
    with pytest.warns(UserWarning, match="k=200 exceeds"):
        big = knn_predict(bank, labels, query, num_classes=3, k=200)
    torch.testing.assert_close(big, knn_predict(bank, labels, query, num_classes=3, k=12))


def test_knn_evaluate_accuracies_by_hand() -> None:
    g = torch.Generator().manual_seed(2)
    bank, query = torch.randn(200, 8, generator=g), torch.randn(80, 8, generator=g)
    labels, q_labels = torch.randint(0, 10, (200,), generator=g), torch.randint(0, 10, (80,))
    scores = knn_predict(bank, labels, query, num_classes=10, k=50)
    res = knn_evaluate(bank, labels, query, q_labels, num_classes=10, k=50)
    assert res["top1"] == pytest.approx(100.0 * (scores.argmax(1) == q_labels).float().mean())
    top5 = scores.topk(5, dim=1).indices
    assert res["top5"] == pytest.approx(100.0 * (top5 == q_labels[:, None]).any(1).float().mean())
    assert res["top5"] >= res["top1"]


def test_topk_accuracy_hand_case() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    acc = topk_accuracy(scores, torch.tensor([1, 2, 0]), (1, 2, 5))
    assert acc == pytest.approx({1: 100 / 3, 2: 200 / 3, 5: 100.0})


def test_knn_rejects_bad_input() -> None:
    bank, labels = torch.randn(10, 4), torch.randint(0, 3, (10,))
    with pytest.raises(ValueError, match="same length"):
        knn_predict(bank, labels[:9], bank, num_classes=3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        knn_predict(bank, labels + 1, bank, num_classes=3)
    with pytest.raises(ValueError, match="empty"):
        knn_predict(bank[:0], labels[:0], bank, num_classes=3)
    with pytest.raises(ValueError, match="d=3"):
        knn_predict(bank, labels, bank[:, :3], num_classes=3)
    with pytest.raises(ValueError, match="integer"):
        knn_predict(bank, labels.float(), bank, num_classes=3)
    with pytest.raises(ValueError, match="temperature"):
        knn_predict(bank, labels, bank, num_classes=3, temperature=0.0)


# ----------------------------------------------------------------------------- linear


def _reference_heads(
    x: Tensor, y: Tensor, lr: float, epochs: int, batch_size: int, wd: float, seed: int
) -> nn.Linear:
    """nn.Linear + torch.optim.SGD + LambdaLR cosine, same batches as train_linear_heads."""
    n, d = x.shape
    head = nn.Linear(d, 3)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    groups: list[dict[str, Any]] = [
        {"params": [head.weight], "weight_decay": wd},
        {"params": [head.bias]},
    ]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=0.0)
    total = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / total))
    )
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad()
            F.cross_entropy(head(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    return head


@pytest.mark.parametrize("batch_size", [16, 64])  # mini-batches with a short last one; full
def test_train_linear_heads_matches_torch_sgd(batch_size: int) -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    lrs = (0.05, 0.5)
    weight, bias = train_linear_heads(
        x, y, num_classes=3, learning_rates=lrs, epochs=4, batch_size=batch_size,
        weight_decay=0.01, seed=7,
    )  # fmt: skip
    assert weight.shape == (2, 3, 5) and bias.shape == (2, 3)
    for h, lr in enumerate(lrs):
        ref = _reference_heads(x, y, lr, epochs=4, batch_size=batch_size, wd=0.01, seed=7)
        torch.testing.assert_close(weight[h], ref.weight.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bias[h], ref.bias.detach(), rtol=1e-4, atol=1e-5)


def test_standardize_equals_batchnorm_without_affine() -> None:
    g = torch.Generator().manual_seed(4)
    train, other = torch.randn(64, 6, generator=g) * 3 + 1, torch.randn(10, 6, generator=g)
    bn = nn.BatchNorm1d(6, affine=False, eps=1e-6, momentum=1.0).train()
    expected_train = bn(train)  # normalises with the batch's biased statistics
    mean, var = train.mean(0), train.var(0, unbiased=False)
    got_train, got_other = _standardize(train, other)
    torch.testing.assert_close(got_train, expected_train, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_other, (other - mean) / torch.sqrt(var + 1e-6))


def test_stratified_split() -> None:
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 1 + [3] * 5)[torch.randperm(36)]
    train, val = stratified_split(labels, 0.2, seed=5)
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(36))
    assert torch.bincount(labels[val], minlength=4).tolist() == [4, 2, 0, 1]
    again_train, again_val = stratified_split(labels, 0.2, seed=5)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(val, stratified_split(labels, 0.2, seed=6)[1])
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, 1.0)


def _clusters(n: int, d: int, c: int, spread: float, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=torch.Generator().manual_seed(99)) * 4.0
    y = torch.randint(0, c, (n,), generator=g)
    return centers[y] + spread * torch.randn(n, d, generator=g), y


def test_linear_probe_separable_clusters() -> None:
    x, y = _clusters(600, 16, 5, spread=1.0, seed=0)
    xt, yt = _clusters(300, 16, 5, spread=1.0, seed=1)
    res = linear_probe(x, y, xt, yt, num_classes=5, epochs=20, batch_size=64)
    assert res.top1 >= 99.0 and res.top5 == 100.0
    assert res.num_train + res.num_val == 600 and 50 <= res.num_val <= 70
    assert set(res.val_top1) == {0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0}
    assert res.val_top1[res.best_lr] == max(res.val_top1.values())


def test_linear_probe_random_labels_is_chance() -> None:
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(800, 32, generator=g), torch.randint(0, 10, (800,), generator=g)
    xt, yt = torch.randn(1000, 32, generator=g), torch.randint(0, 10, (1000,), generator=g)
    res = linear_probe(x, y, xt, yt, num_classes=10, epochs=10, batch_size=128)
    assert 5.0 <= res.top1 <= 15.0  # chance 10 %, binomial std ~1 %
    assert 40.0 <= res.top5 <= 60.0 and res.top5 >= res.top1  # chance 50 %


def test_linear_probe_rejects_bad_input() -> None:
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    with pytest.raises(ValueError, match="same length"):
        linear_probe(x, y[:-1], x, y, num_classes=3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        linear_probe(x, y, x, y, num_classes=2)
    with pytest.raises(ValueError, match="empty"):
        linear_probe(x[:0], y[:0], x, y, num_classes=3)
    with pytest.raises(ValueError, match="d=2"):
        linear_probe(x, y, x[:, :2], y, num_classes=3)
    with pytest.raises(ValueError, match="validation split"):
        linear_probe(x, y, x, y, num_classes=3, val_fraction=0.0)
    with pytest.raises(ValueError, match="learning_rates"):
        linear_probe(x, y, x, y, num_classes=3, learning_rates=())
    with pytest.raises(ValueError, match="num_classes"):
        check_features_labels(x, y, 0)


def test_linear_probe_without_validation_single_rate() -> None:
    x, y = _clusters(100, 8, 3, spread=0.5, seed=2)
    res = linear_probe(x, y, x, y, num_classes=3, epochs=5, learning_rates=(0.1,), val_fraction=0.0)
    assert res.best_lr == 0.1 and res.num_val == 0 and res.val_top1 == {}
    assert res.top1 == 100.0


# ----------------------------------------------------------------------------- monitor


class _Method(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = _tiny_encoder()

    def eval_encoder(self) -> nn.Module:
        return self.encoder


def test_knn_monitor_matches_manual_pipeline() -> None:
    train_images, test_images = _images(40, seed=1), _images(15, seed=2)
    train_labels, test_labels = torch.randint(0, 3, (40,)), torch.randint(0, 3, (15,))
    monitor = KNNMonitor(
        train_images, train_labels, test_images, test_labels,
        num_classes=3, every_steps=50, k=10, image_size=6, batch_size=16,
    )  # fmt: skip
    assert monitor.every_steps == 50
    method = _Method().train()
    out = monitor(100, method)
    assert method.encoder.training  # the method is left in training mode
    enc = method.eval_encoder()
    expected = knn_evaluate(
        extract_features(enc, train_images, image_size=6),
        train_labels,
        extract_features(enc, test_images, image_size=6),
        test_labels,
        num_classes=3,
        k=10,
    )
    assert out == {"knn_top1": expected["top1"], "knn_top5": expected["top5"]}


def test_knn_monitor_subsamples_deterministically() -> None:
    train_images, test_images = _images(40, seed=1), _images(15, seed=2)
    train_labels, test_labels = torch.arange(40) % 4, torch.arange(15) % 4
    kw = {"num_classes": 4, "every_steps": 1, "max_train": 25, "max_test": 10}
    a = KNNMonitor(train_images, train_labels, test_images, test_labels, **kw)  # type: ignore[arg-type]
    b = KNNMonitor(train_images, train_labels, test_images, test_labels, **kw)  # type: ignore[arg-type]
    assert a.train_images.shape[0] == 25 and a.test_images.shape[0] == 10
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    # Images and labels stay paired: find each kept image in the originals.
    for img, lab in zip(a.train_images, a.train_labels, strict=True):
        i = int((train_images == img).flatten(1).all(1).nonzero()[0])
        assert train_labels[i] == lab


def test_knn_monitor_rejects_bad_input() -> None:
    images, labels = _images(10), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match="every_steps"):
        KNNMonitor(images, labels, images, labels, num_classes=2, every_steps=0)
    with pytest.raises(ValueError, match="same length"):
        KNNMonitor(images, labels[:5], images, labels, num_classes=2, every_steps=1)
    with pytest.raises(ValueError, match="uint8"):
        KNNMonitor(images.float(), labels, images, labels, num_classes=2, every_steps=1)
