"""Shared pytest fixtures: the location of ../shared/data beside the checkout."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
  """../shared/data (real public corpora, vocab, GLUE); skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared test data not found at {SHARED_DATA} (it sits beside the checkout in CI)")
  return SHARED_DATA
