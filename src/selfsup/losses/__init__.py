"""Self-supervised objectives: one file per loss, each a plain function plus a module."""

from selfsup.losses.nt_xent import NTXentLoss, nt_xent

__all__ = ["NTXentLoss", "nt_xent"]
