"""Probes of what a frozen representation keeps: low-level counting and depth on the shapes
dataset (I-JEPA, Table 4) and transformation prediction from h and g(h) (SimCLR, Table 3)."""

from selfsup.probes.shapes import PROBE_TASKS, shapes_probes
from selfsup.probes.transforms import TASKS, format_table, transforms_probe

__all__ = ["PROBE_TASKS", "TASKS", "format_table", "shapes_probes", "transforms_probe"]
