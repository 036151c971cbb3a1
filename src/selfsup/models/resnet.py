"""ResNet encoders f of SimCLR (Chen et al. 2020, Sec. 2.1 and Sec. 4 "wider and deeper").

Built on torchvision's own definitions: its ``BasicBlock``/``Bottleneck`` blocks, its
``ResNet._make_layer`` and its ``ResNet.forward``. Only three things differ:

* **Width multiplier w** as in the SimCLR code (``resnet.py``, ``width_multiplier``):
  *every* channel count is scaled, the stem (64·w) and each stage's planes
  (64, 128, 256, 512)·w, so a Bottleneck ResNet-50 (2×) ends with 2048·2 = 4096 features.
  This is not torchvision's ``wide_resnet50_2``, which widens only the inner 3×3
  convolutions (69M parameters against 94M for the paper's ResNet-50 (2×), Fig. 1).
  Fractional widths (0.25, 0.5) give tiny encoders for CPU tests and presets; channel
  counts are ``round(c·w)``, at least 1.
* **CIFAR stem** (paper, Appendix B.9): a 3×3 stride-1 first convolution and no
  max-pool, so a 32×32 image keeps its resolution until ``layer2``.
* **No classifier**: ``fc`` is ``nn.Identity``, so ``encoder(x)`` returns the globally
  average-pooled representation h of shape (B, num_features) -- the h used by every
  downstream evaluation (SPEC "Encoder f").

With ``width=1`` and the standard stem the parameters and their names are exactly
torchvision's (minus ``fc``), so torchvision checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from selfsup.models.registry import register_model

Block = type[BasicBlock] | type[Bottleneck]

_STEM_CHANNELS = 64
_STAGE_PLANES = (64, 128, 256, 512)


def _scaled(channels: int, width: float) -> int:
    """``channels · width`` rounded, never below 1 (so fractional widths stay valid)."""
    return max(1, int(round(channels * width)))


class ResNetEncoder(ResNet):
    """torchvision ResNet with SimCLR's width multiplier, an optional CIFAR stem, no fc.

    Args:
        block: torchvision ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (50/101/152).
        layers: number of blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50.
        width: channel multiplier w > 0 (1, 2, 4 in the paper; 0.25 or 0.5 for tiny models).
        cifar_stem: 3×3 stride-1 first convolution and no max-pool (32-px images).
        zero_init_residual: start the last BN γ of every residual branch at 0, so each block
            begins as the identity (Goyal et al. 2017); off by default as in torchvision.

    Shapes: ``forward(x)`` with x (B, 3, H, W) float -> h (B, num_features), where
    ``num_features = round(512·w) · block.expansion`` (512·w for 18/34, 2048·w for 50+).
    """

    num_features: int

    def __init__(
        self,
        block: Block,
        layers: list[int],
        width: float = 1.0,
        cifar_stem: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        if isinstance(width, bool) or not isinstance(width, (int, float)):
            raise ValueError(f"width must be a positive number, got {width!r}")
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a positive finite number, got {width}")
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {layers}")
        # torchvision's ResNet.__init__ hard-codes the 64-channel stem and the planes
        # (64, 128, 256, 512), so it cannot express SimCLR widths. Calling it would build a
        # throw-away ×1 network; instead set the attributes that ResNet._make_layer and
        # ResNet.forward read, and reuse both unchanged.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # Bottleneck inner width = planes · base_width / 64 = planes
        self.inplanes = _scaled(_STEM_CHANNELS, width)
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        # nn.Identity keeps ResNet.forward usable; it also has no parameters, so the
        # state dict of the standard stem and the CIFAR stem have the same keys.
        self.maxpool = (
            nn.Identity() if cifar_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        planes = [_scaled(p, width) for p in _STAGE_PLANES]
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()  # h is the representation: no classifier
        self.num_features = planes[3] * block.expansion
        self.width = width
        self.cifar_stem = cifar_stem
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's initialisation: He-normal (fan-out) convolutions, BN γ=1, β=0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, num_features) pooled representation h."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        out: torch.Tensor = super().forward(x)
        return out


def _resnet(
    block: Block, layers: list[int], width: float, cifar_stem: bool, zero_init_residual: bool
) -> ResNetEncoder:
    return ResNetEncoder(block, layers, width, cifar_stem, zero_init_residual)


@register_model("resnet18")
def resnet18(
    width: float = 1.0, cifar_stem: bool = False, zero_init_residual: bool = False
) -> ResNetEncoder:
    """ResNet-18 encoder (BasicBlock, [2, 2, 2, 2]); num_features = 512·w."""
    return _resnet(BasicBlock, [2, 2, 2, 2], width, cifar_stem, zero_init_residual)


@register_model("resnet34")
def resnet34(
    width: float = 1.0, cifar_stem: bool = False, zero_init_residual: bool = False
) -> ResNetEncoder:
    """ResNet-34 encoder (BasicBlock, [3, 4, 6, 3]); num_features = 512·w."""
    return _resnet(BasicBlock, [3, 4, 6, 3], width, cifar_stem, zero_init_residual)


@register_model("resnet50")
def resnet50(
    width: float = 1.0, cifar_stem: bool = False, zero_init_residual: bool = False
) -> ResNetEncoder:
    """ResNet-50 encoder (Bottleneck, [3, 4, 6, 3]); num_features = 2048·w.

    Parameters: 23.5M (×1), 94M (×2), 375M (×4), as in the SimCLR paper (Fig. 1).
    """
    return _resnet(Bottleneck, [3, 4, 6, 3], width, cifar_stem, zero_init_residual)


@register_model("resnet101")
def resnet101(
    width: float = 1.0, cifar_stem: bool = False, zero_init_residual: bool = False
) -> ResNetEncoder:
    """ResNet-101 encoder (Bottleneck, [3, 4, 23, 3]); num_features = 2048·w."""
    return _resnet(Bottleneck, [3, 4, 23, 3], width, cifar_stem, zero_init_residual)


@register_model("resnet152")
def resnet152(
    width: float = 1.0, cifar_stem: bool = False, zero_init_residual: bool = False
) -> ResNetEncoder:
    """ResNet-152 encoder (Bottleneck, [3, 8, 36, 3]); num_features = 2048·w."""
    return _resnet(Bottleneck, [3, 8, 36, 3], width, cifar_stem, zero_init_residual)
