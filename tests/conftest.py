"""Shared pytest fixtures: the location of ../shared/data beside the checkout.

Tests live in subdirectories mirroring the packages (tests/model, tests/runtime, ...); the helper
modules beside this file (train_testlib, electra_fixtures, reference/) are imported by name, so
this directory goes on sys.path.
"""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
  sys.path.insert(0, str(TESTS_DIR))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
  """../shared/data (real public corpora, vocab, GLUE); skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared test data not found at {SHARED_DATA} (it sits beside the checkout in CI)")
  return SHARED_DATA
