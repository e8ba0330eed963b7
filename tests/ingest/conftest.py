"""Fixtures of the ingest tests."""

import pytest


@pytest.fixture
def small_blocks(monkeypatch):
    """Leaves of at most 2000 rows, so that small files make many partitions."""
    from hpcframe.config import config

    monkeypatch.setattr(config, "block_rows", 2000)
