"""Fixtures shared by every test module (see tests/support.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, UNIT, run_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server started for this test session, stopped after it."""
    with run_redis() as url:
        yield url


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``python -m bench run --profile smoke`` for the session (about a minute); its run directory.

    The smoke test checks it; the notebook test executes the notebook against it.
    """
    out = tmp_path_factory.mktemp("results")
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600 * UNIT)
    assert done.returncode == 0, done.stderr[-3000:]
    return (out / "latest").resolve()
