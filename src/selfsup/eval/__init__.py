"""Evaluation of frozen encoders: feature extraction, kNN, linear probe, kNN monitor, and
BatchNorm statistics re-estimated at the test side."""

from selfsup.eval.batchnorm import batchnorm_layers, recalibrate_batchnorm
from selfsup.eval.features import check_features_labels, extract_features, topk_accuracy
from selfsup.eval.knn import knn_evaluate, knn_predict
from selfsup.eval.linear import (
    DEFAULT_LEARNING_RATES,
    LinearProbeResult,
    linear_probe,
    stratified_split,
    train_linear_heads,
)
from selfsup.eval.monitor import KNNMonitor

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "KNNMonitor",
    "LinearProbeResult",
    "batchnorm_layers",
    "check_features_labels",
    "extract_features",
    "knn_evaluate",
    "knn_predict",
    "linear_probe",
    "recalibrate_batchnorm",
    "stratified_split",
    "topk_accuracy",
    "train_linear_heads",
]
