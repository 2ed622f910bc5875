"""Fixtures shared by every test module (see tests/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import run_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server started for this test session, stopped after it."""
    with run_redis() as url:
        yield url
