"""selfsup: self-supervised visual representation learning (SimCLR, I-JEPA)."""

__version__ = "0.1.0"
