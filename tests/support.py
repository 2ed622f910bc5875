"""Shared test support: time units, free ports, a server in a subprocess.

Timeouts are multiples of :data:`UNIT` seconds, scaled by the environment
variable ``LAB_TEST_TIMEOUT_SCALE`` (default 1; CI may raise it), so a slow
machine makes tests slower, not flaky. Nothing here asserts a timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import simple_websocket

ROOT = Path(__file__).resolve().parent.parent
UNIT = 1.0 * float(os.environ.get("LAB_TEST_TIMEOUT_SCALE", "1"))
"""One unit of patience, in seconds."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    proc: subprocess.Popen[bytes]
    port: int
    runtime: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10 * UNIT) -> int:
        """SIGTERM, wait; SIGKILL the whole group if it does not go."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        # gunicorn workers are in the same process group: make sure none survive.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


@contextlib.contextmanager
def run_server(
    runtime: str = "werkzeug",
    *args: str,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[ServerProcess]:
    """Start the server, wait for ``/healthz``, yield it, stop it in ``finally``."""
    port = free_port()
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log = log_dir / f"lab-server-{runtime}-{port}.log"
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--runtime", runtime, "--port", str(port), *args],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(proc, port, runtime, log)
    try:
        ready = wait_until(lambda: proc.poll() is not None or _healthy(server.url), 20 * UNIT, 0.05)
        if not ready or proc.poll() is not None:
            raise RuntimeError(f"server {runtime} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        yield server
    finally:
        server.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=UNIT).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def run_redis() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        ok = wait_until(lambda: _pings(client), 10 * UNIT, 0.05)
        if not ok:
            raise RuntimeError("redis-server did not start")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5 * UNIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
