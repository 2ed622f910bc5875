"""Fixtures shared by every test module (see tests/support.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT, TAG_VARIABLE, UNIT, run_redis, tagged_processes


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server started for this test session, stopped after it."""
    with run_redis() as url:
        yield url


@dataclass(frozen=True)
class SmokeRun:
    """The session's smoke run: its directory, and the processes it left behind (there must be none)."""

    path: Path
    leftovers: list[str]


@pytest.fixture(scope="session")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """One ``python -m bench run --profile smoke`` for the session (about a minute).

    Every process it starts inherits a tag in its environment; once the command has exited, any process still
    carrying the tag leaked, wherever it was re-parented.
    """
    out = tmp_path_factory.mktemp("results")
    tag = f"smoke-{uuid.uuid4().hex}"
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--out", str(out)]
    env = {**os.environ, TAG_VARIABLE: tag}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600 * UNIT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return SmokeRun((out / "latest").resolve(), tagged_processes(tag))


@pytest.fixture(scope="session")
def smoke_run(smoke: SmokeRun) -> Path:
    """The smoke run's directory: the smoke test checks it; the notebook test executes the notebook against it."""
    return smoke.path
