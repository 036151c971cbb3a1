"""The suite collects where lightly is missing (a lent GPU machine has no registry).

lightly is a test-only reference: a module that imports it at its top fails to collect
without it, and takes its CUDA tests down with it (it happened on an H200). Each test that
compares with lightly imports it in its own body instead; this test holds every module to
that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Runs pytest's collection in a fresh interpreter in which every `lightly` import fails.
_COLLECT_WITHOUT_LIGHTLY = """
import sys

class BlockLightly:
    def find_spec(self, name, path=None, target=None):
        if name == "lightly" or name.startswith("lightly."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, BlockLightly())
import pytest

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", sys.argv[1]]))
"""


def test_every_test_module_collects_without_lightly() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _COLLECT_WITHOUT_LIGHTLY, str(TESTS)],
        capture_output=True, text=True, timeout=300, cwd=TESTS.parent,
    )  # fmt: skip
    assert proc.returncode == 0, f"collection failed without lightly:\n{proc.stdout[-3000:]}"
