"""What every run records about where and with what it ran.

``collect_meta()`` gives the git commit and dirty flag, the versions of the
packages that shape the numbers, Python, and the machine (CPU model, cores,
kernel, memory). The runner stores it in each run's ``meta.json``.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.contract.names import SCHEMA_VERSION

__all__ = ["PACKAGES", "collect_meta", "cpu_model", "git_state"]

ROOT = Path(__file__).resolve().parent.parent.parent

PACKAGES = (
    "flask",
    "werkzeug",
    "simple-websocket",
    "wsproto",
    "gunicorn",
    "gevent",
    "greenlet",
    "redis",
    "httpx",
    "httpcore",
    "h11",
    "hdrhistogram",
    "psutil",
    "matplotlib",
    "numpy",
)
"""Distributions whose versions go into every run's meta.json."""


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``root``."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit.strip() if commit else None,
        "dirty": None if status is None else bool(status.strip()),
    }


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_meta() -> dict[str, Any]:
    """Git, versions, Python and machine facts, as stored in meta.json."""
    return {
        "git": git_state(),
        "python": platform.python_version(),
        "versions": _versions(),
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "kernel": platform.release(),
            "platform": platform.platform(),
            "memory_bytes": psutil.virtual_memory().total,
            "hostname": socket.gethostname(),
        },
    }


def run_meta(profile: str, command: str, started_utc: str, relay_cost: dict[str, Any]) -> dict[str, Any]:
    """meta.json without ``finished_utc``, ``files`` and ``planned`` (docs/results.md), from :func:`collect_meta`.

    Nothing is invented: a run made outside a git checkout has ``commit: null``, and the relay's measured
    cost is stored as measured (a difference of two timings can be slightly negative on a quiet machine).
    """
    facts = collect_meta()
    machine_keys = ("cpu_model", "cores", "kernel", "platform", "memory_bytes", "hostname")
    return {
        "schema": SCHEMA_VERSION,
        "profile": profile,
        "started_utc": started_utc,
        "command": command,
        "git": {"commit": facts["git"]["commit"], "dirty": facts["git"]["dirty"]},
        "python": facts["python"],
        "versions": {k: v for k, v in facts["versions"].items() if v is not None},
        "machine": {k: facts["machine"][k] for k in machine_keys},
        "relay": {
            "added_latency_us": dict(relay_cost["added_latency_us"]),
            "cpu_us_per_kib": float(relay_cost["cpu_us_per_kib"]),
        },
    }
