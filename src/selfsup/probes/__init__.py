"""Probes of what a frozen representation keeps: low-level counting and depth on the shapes
dataset (I-JEPA, Table 4)."""

from selfsup.probes.shapes import PROBE_TASKS, shapes_probes

__all__ = ["PROBE_TASKS", "shapes_probes"]
