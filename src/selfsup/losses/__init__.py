"""Self-supervised objectives: one file per loss, each a plain function plus a module."""

from selfsup.losses.ijepa import LOSS_KINDS, ijepa_loss
from selfsup.losses.nt_xent import NTXentLoss, nt_xent

__all__ = ["LOSS_KINDS", "NTXentLoss", "ijepa_loss", "nt_xent"]
