"""Fixtures shared by the test modules that run the command line."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny labelled image tree (``test_cli.make_dataset``), built once per test module."""
    from test_cli import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data"))
