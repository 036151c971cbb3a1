"""``selfsup study``: SimCLR and I-JEPA side by side on the same data and wall-clock budget."""
