"""Shared test support: time units, a server and a redis-server in a subprocess, a WebSocket test client.

Processes are started and stopped through :class:`bench.process.Child`, the project's one way to run a
child (its own process group, every read with a timeout, the group stopped in ``finally``).

Timeouts are multiples of :data:`UNIT` seconds, scaled by the environment
variable ``LAB_TEST_TIMEOUT_SCALE`` (default 1; CI may raise it), so a slow
machine makes tests slower, not flaky. Nothing here asserts a timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import simple_websocket

from bench.process import Child, ChildError, free_port, wait_http_ok

ROOT = Path(__file__).resolve().parent.parent
__all__ = [
    "ROOT",
    "TAG_VARIABLE",
    "UNIT",
    "ServerProcess",
    "WsClient",
    "free_port",
    "pinned_clients",
    "receive_json",
    "run_redis",
    "run_server",
    "tagged_processes",
    "wait_until",
    "ws_connect",
]
UNIT = 1.0 * float(os.environ.get("LAB_TEST_TIMEOUT_SCALE", "1"))
"""One unit of patience, in seconds."""


TAG_VARIABLE = "LAB_TEST_TAG"
"""An environment variable a test sets on a command it runs, so the processes it leaves can be found."""


def tagged_processes(tag: str) -> list[str]:
    """Every live process whose environment carries ``LAB_TEST_TAG=tag`` (pid and command line).

    A process that outlived its parent is re-parented and no longer a child of anyone the test knows, but its
    environment still names the command that started it.
    """
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get(TAG_VARIABLE) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.info['pid']}: {' '.join(proc.info['cmdline'] or [])}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_until(predicate: object, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return bool(predicate())  # type: ignore[operator]


@dataclass
class ServerProcess:
    """A ``python -m server`` subprocess on a free port."""

    child: Child
    port: int
    runtime: str
    log: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10 * UNIT) -> int | None:
        """SIGTERM the group, wait; SIGKILL the whole group (gunicorn's workers too) if it does not go."""
        return self.child.stop(timeout)


@contextlib.contextmanager
def run_server(
    runtime: str = "werkzeug",
    *args: str,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    port: int = 0,
) -> Iterator[ServerProcess]:
    """Start the server, wait for ``/healthz``, yield it, stop it in ``finally``.

    ``port`` 0 (the default) lets the server pick a free one and announce it; a test that must restart a
    server on the same address passes the first one's port.
    """
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log = log_dir / f"lab-server-{runtime}-{os.getpid()}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        child = Child(
            ["-m", "server", "--runtime", runtime, "--port", str(port), *args],
            log=out,
            env={**os.environ, **(env or {})},
            name=f"the {runtime} server",
        )
    try:
        port = int(child.expect("port", 20 * UNIT)["port"])  # the ready line: it listens on a port it chose
    except ChildError as exc:
        child.stop()
        raise RuntimeError(
            f"server {runtime} did not start ({exc}):\n{log.read_text(errors='replace')[-3000:]}"
        ) from None
    server = ServerProcess(child, port, runtime, log)
    try:
        try:
            wait_http_ok(f"{server.url}/healthz", 20 * UNIT, alive=lambda: not child.exited())
        except ChildError as exc:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server {runtime} did not start ({exc}):\n{tail}") from None
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def run_redis() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    child = Child(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        python=False,
        lines=False,
        name="redis-server",
    )
    try:
        import redis

        client = redis.Redis(port=port)
        ok = wait_until(lambda: _pings(client), 10 * UNIT, 0.05)
        client.close()
        if not ok:
            raise RuntimeError(f"redis-server did not start: {child.log_tail()}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.stop(5 * UNIT)


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


class WsClient(simple_websocket.Client):  # type: ignore[misc]
    """simple-websocket's client, minus one race.

    Its handshake reads the 101 answer and hands the rest of that read to
    wsproto, but the frames in it (a catch-up sent right after the 101) are
    only parsed on the next read, which may never come. Parse them now.
    """

    def handshake(self) -> None:
        super().handshake()
        self._handle_events()


def ws_connect(url: str, **kwargs: Any) -> WsClient:
    client: WsClient = WsClient.connect(url, **kwargs)
    return client


def receive_json(ws: WsClient, n: int, timeout: float = 10 * UNIT) -> list[dict[str, Any]]:
    """The next ``n`` messages, parsed; fails if one does not come in time."""
    out = []
    for _ in range(n):
        text = ws.receive(timeout=timeout)
        assert text is not None, f"timed out after {len(out)} of {n} messages: {out[-3:]}"
        out.append(json.loads(text))
    return out


def pinned_clients(url: str, per_worker: int) -> dict[int, list[httpx.Client]]:
    """Keep-alive clients, ``per_worker`` for each of two workers.

    A connection stays with the worker that accepted it, so each client,
    used by one thread at a time (one connection), talks to one known worker.
    """
    found: dict[int, list[httpx.Client]] = {}
    spare: list[httpx.Client] = []
    for _ in range(80):
        client = httpx.Client(base_url=url, timeout=30 * UNIT)
        pid = client.get("/healthz").json()["pid"]
        mine = found.setdefault(pid, [])
        (mine if len(mine) < per_worker else spare).append(client)
        if len(found) == 2 and all(len(c) == per_worker for c in found.values()):
            break
    for client in spare:
        client.close()
    return found
