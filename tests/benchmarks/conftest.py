"""The benchmarks' tests import `benchmarks.<part>` from the checkout, as the runner does."""

import importlib
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def import_benchmark():
    """`name -> the module benchmarks/<name>.py` (they import tf_simclr and each other)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return lambda name: importlib.import_module(f"benchmarks.{name}")
