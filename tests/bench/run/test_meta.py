"""bench.run.meta: what every run records about its machine and code."""

from __future__ import annotations

import platform
from pathlib import Path

from bench.run.meta import PACKAGES, collect_meta, git_state


def test_meta_has_git_versions_python_and_machine() -> None:
    meta = collect_meta()
    assert meta["python"] == platform.python_version()
    assert set(meta["versions"]) == set(PACKAGES)
    assert meta["versions"]["flask"] is not None
    processors = sum(line.startswith("processor") for line in Path("/proc/cpuinfo").read_text().splitlines())
    assert meta["machine"]["cores"] == processors  # read independently of how the code counts them
    assert meta["machine"]["memory_bytes"] > 0
    assert meta["machine"]["cpu_model"]
    commit = meta["git"]["commit"]
    assert commit is None or len(commit) == 40


def test_git_state_outside_a_checkout_is_unknown(tmp_path) -> None:
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
