"""I-JEPA (Assran et al., CVPR 2023) composed from selfsup's parts.

One view per image (a random resized crop, SPEC "Idea"); a multi-block mask sampler
splits its patch grid into a context block and M target blocks. The context encoder
f_theta embeds the context patches only (dropped tokens cost nothing); the predictor
g_phi predicts, from those tokens and a mask token at each target position, the target
encoder's layer-normalised representations of the target patches (Eq. 1). The target
encoder f_theta_bar is an exponential moving average of f_theta, never receives gradients,
sees the full image, and is the encoder evaluated after pre-training (SPEC "Evaluation").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.engine.protocol import StepResult
from selfsup.engine.runtime import host_to_device
from selfsup.eval.collapse import CollapseMonitor
from selfsup.losses.ijepa import LOSS_KINDS, ijepa_loss
from selfsup.masks import MaskBatch, MaskCollator
from selfsup.models.pooling import TokenPooling


class ContextPredictor(nn.Module):
    """f_theta then g_phi: the trainable half, one module so that DDP wraps it once.

    ``forward(x, masks)``: x (B, 3, S, S) floats -> predictions (B, M, T, D).
    """

    def __init__(self, encoder: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def forward(self, x: Tensor, masks: MaskBatch) -> Tensor:
        context = self.encoder(x, keep=masks.context_idx, valid=masks.context_valid)
        out: Tensor = self.predictor(
            context,
            masks.context_idx,
            masks.target_idx,
            context_valid=masks.context_valid,
            target_valid=masks.target_valid,
        )
        return out


def gather_targets(tokens: Tensor, target_idx: Tensor) -> Tensor:
    """tokens (B, N, D), target_idx (B, M, T) -> (B, M, T, D): each block's patch tokens."""
    b, m, t = target_idx.shape
    flat = target_idx.reshape(b, m * t, 1).expand(-1, -1, tokens.shape[-1])
    return tokens.gather(1, flat).reshape(b, m, t, tokens.shape[-1])


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """theta_bar <- m * theta_bar + (1 - m) * theta, in place, for every parameter.

    Buffers (the fixed position embeddings) are identical by construction and not touched.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must lie in [0, 1]; got {momentum}.")
    t_params: list[Tensor] = list(target.parameters())
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("target and online encoders have different parameter lists.")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)


class IJEPA(nn.Module):
    """The I-JEPA method: augmentation, masks, context/target encoders, predictor, loss.

    Args:
        encoder: the context encoder f_theta, a token model: ``encoder(x, keep, valid)``
            returns (B, K, D) tokens (``selfsup.models.vit.VisionTransformer``).
        predictor: g_phi, ``predictor(context, context_idx, target_idx, context_valid=,
            target_valid=)`` -> (B, M, T, D) (``selfsup.models.predictor.IJEPAPredictor``).
        collator: draws the batch's context and target indices over the patch grid.
        augment: uint8 (B, 3, H, W) -> float (B, 3, S, S); I-JEPA's official recipe uses a
            random resized crop of scale (0.3, 1.0) only.
        momentum: the EMA momentum as a pure function of the 0-based optimiser step
            (SPEC: linear from 0.996 to 1.0 over training).
        loss: ``"smooth_l1"`` (official code) or ``"l2"`` (the paper).
        eval_layers: the evaluation representation averages the patch tokens of the target
            encoder's last layer (1) or concatenates the last four layers' averages (4).
        monitor: collapse statistics of the target representations (None: default).
        target_layers: the targets are the target encoder's last layer, layer-normalised (1,
            the paper), or the average of its last k blocks' outputs, each layer-normalised,
            normalised again (k > 1; data2vec's top-k targets, Baevski et al. 2022, Sec.
            3.3, with layer norm in place of its instance norm).
        mask_repeats: mask draws per image (data2vec 2.0's multi-mask, Baevski et al. 2023,
            Sec. 3): the target encoder runs once per image, the context encoder and the
            predictor once per draw, so r draws cost less than r images.
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: nn.Module,
        collator: MaskCollator,
        augment: Callable[[Tensor], Tensor],
        momentum: Callable[[int], float],
        *,
        loss: str = "smooth_l1",
        eval_layers: int = 1,
        monitor: CollapseMonitor | None = None,
        target_layers: int = 1,
        mask_repeats: int = 1,
    ) -> None:
        super().__init__()
        if not getattr(encoder, "token_output", False):
            raise ValueError(
                f"I-JEPA needs a token encoder (a ViT: vit_tiny ... vit_huge); got "
                f"{type(encoder).__name__}, which returns pooled features."
            )
        if loss not in LOSS_KINDS:
            raise ValueError(
                f"Unknown I-JEPA loss {loss!r}; choose one of {', '.join(LOSS_KINDS)}."
            )
        if eval_layers < 1:
            raise ValueError(f"eval_layers must be >= 1; got {eval_layers}.")
        depth = getattr(encoder, "depth", 1) if hasattr(encoder, "intermediate_layers") else 1
        if not 1 <= target_layers <= depth:
            raise ValueError(
                f"target_layers must lie in [1, {depth}] (the encoder's depth); "
                f"got {target_layers}."
            )
        if mask_repeats < 1:
            raise ValueError(f"mask_repeats must be >= 1; got {mask_repeats}.")
        self.online = ContextPredictor(encoder, predictor)
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.collator = collator
        self.augment = augment
        self.momentum = momentum
        self.loss_kind = loss
        self.eval_layers = eval_layers
        self.target_layers = target_layers
        self.mask_repeats = mask_repeats
        self.monitor = monitor or CollapseMonitor()
        # The DDP-wrapped module lives outside the registered submodules so that
        # state_dict() keys do not change with wrapping.
        self._train_online: list[nn.Module] = [self.online]

    @property
    def encoder(self) -> nn.Module:
        """The context encoder f_theta (unwrapped)."""
        return self.online.encoder

    def train(self, mode: bool = True) -> IJEPA:
        """As ``nn.Module.train``, but the target encoder always runs in eval mode (no
        stochastic depth: it produces targets, not a training forward)."""
        super().train(mode)
        self.target_encoder.eval()
        return self

    def trainable_modules(self) -> list[nn.Module]:
        """f_theta and g_phi, trained together; the target encoder is not trained."""
        return [self.online]

    def wrap_trainable(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Route training forwards through ``wrap(online)`` (DDP in several processes)."""
        self._train_online = [wrap(self.online)]

    @torch.no_grad()
    def targets(self, x: Tensor) -> Tensor:
        """x (B, 3, S, S) -> the target tokens (B, N, D) in fp32, every token layer-normalised
        without affine (SPEC); with ``target_layers`` k > 1, the mean of the last k blocks'
        normalised outputs, normalised again (data2vec)."""
        if self.target_layers == 1:
            tokens = self.target_encoder(x)  # (B, N, D), the full image
            return F.layer_norm(tokens.float(), tokens.shape[-1:])
        # getattr: nn.Module.__getattr__ would type the attribute as Tensor | Module.
        layers = getattr(self.target_encoder, "intermediate_layers")(x, self.target_layers)  # noqa: B009
        mean = torch.stack([F.layer_norm(t.float(), t.shape[-1:]) for t in layers]).mean(0)
        return F.layer_norm(mean, mean.shape[-1:])

    def training_step(self, images: Tensor, step: int) -> StepResult:
        """One view, ``mask_repeats`` mask draws, targets from the EMA encoder, Eq. 1.

        ``images``: (B, 3, H, W) uint8 on the training device. The online pass sees
        B * mask_repeats (image, masks) pairs; each image's targets are computed once.
        """
        x = self.augment(images)
        tokens = self.targets(x)
        if self.mask_repeats > 1:
            x = x.repeat_interleave(self.mask_repeats, dim=0)
        # Drawn on the CPU; on CUDA the copy is queued and the host goes on.
        masks = self.collator(x.shape[0]).map(partial(host_to_device, device=x.device))
        with torch.no_grad():
            r = self.mask_repeats
            repeated = tokens if r == 1 else tokens.repeat_interleave(r, dim=0)
            targets = gather_targets(repeated, masks.target_idx)
        prediction = self._train_online[0](x, masks)
        loss = ijepa_loss(prediction, targets, self.loss_kind, masks.target_valid)
        logs: dict[str, Tensor | float] = dict(self.monitor.update(step, tokens))
        logs["context_patches"] = float(masks.context_idx.shape[1])
        logs["target_patches"] = float(masks.target_idx.shape[2])
        return StepResult(loss=loss, logs=logs)

    def after_optimizer_step(self, step: int) -> None:
        """The EMA update of the target encoder with this step's momentum."""
        ema_update_(self.target_encoder, self.online.encoder, self.momentum(step))

    def eval_encoder(self) -> nn.Module:
        """The target encoder's average-pooled patch tokens (last layer or last four)."""
        return TokenPooling(self.target_encoder, layers=self.eval_layers)
