"""Tests of server/capacity.py and server/workers.py: refusal at capacity, departed clients, slowloris, fds.

Real servers on every runtime with small limits (a handful of connections,
never thousands). Held long polls are raw sockets that sent their request
and wait, so the test controls exactly when each client leaves.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import simple_websocket

from server.app import create_app
from server.capacity import AtCapacity, FastRefusal, Gate, client_gone, derive_limit, raise_fd_limit
from server.config import RUNTIMES
from tests.support import ROOT, UNIT, ServerProcess, free_port, run_server, wait_until, ws_connect

JSON = {"Content-Type": "application/json"}


def hold_poll(port: int, channel: str, timeout: int = 30) -> socket.socket:
    """A long poll sent on a raw socket and left waiting for its answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT)
    sock.sendall(
        f"GET /channels/{channel}/poll?after=0&timeout={timeout} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    )
    return sock


def upgrade_and_close_code(port: int, channel: str) -> tuple[int, int | None]:
    """A WebSocket handshake on a raw socket: the answer's status and, if a close frame follows, its code."""
    with socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT) as sock:
        sock.sendall(
            (
                f"GET /channels/{channel}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 4:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, frames = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if len(frames) >= 4 and frames[0] & 0x0F == 0x8:
        return status, int.from_bytes(frames[2:4], "big")
    return status, None


def held(srv: ServerProcess) -> dict[str, int]:
    connections: dict[str, int] = httpx.get(f"{srv.url}/stats", timeout=10 * UNIT).json()["connections"]
    return connections


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes or goes quiet for 10 units."""
    out = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("fast", ["off", "on"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_at_capacity_refuses_at_once_and_keeps_health_and_publishing(runtime: str, fast: str) -> None:
    with run_server(runtime, "--max-longpoll", "3", "--max-websocket", "2", "--fast-path", fast) as srv:
        polls = [hold_poll(srv.port, "full") for _ in range(3)]
        sockets: list[simple_websocket.Client] = []
        try:
            assert wait_until(lambda: held(srv)["longpoll"] == 3, 10 * UNIT), held(srv)
            refused = httpx.get(f"{srv.url}/channels/full/poll", params={"timeout": 30}, timeout=10 * UNIT)
            assert refused.status_code == 503
            assert refused.json()["error"] == "at_capacity"
            assert refused.headers["Retry-After"] == "1"
            assert "close" in refused.headers["Connection"]

            sockets = [ws_connect(f"{srv.ws_url}/channels/other/ws") for _ in range(2)]
            assert wait_until(lambda: held(srv)["websocket"] == 2, 10 * UNIT), held(srv)
            status, close_code = upgrade_and_close_code(srv.port, "other")
            assert (status, close_code) == (101, 1013)

            assert httpx.get(f"{srv.url}/healthz", timeout=10 * UNIT).status_code == 200
            published = httpx.post(f"{srv.url}/channels/other/events", content="1", headers=JSON, timeout=10 * UNIT)
            assert published.status_code == 201
            assert held(srv) == {"longpoll": 3, "websocket": 2, "sse": 0}  # nothing held was dropped
        finally:
            for s in polls:
                s.close()
            for ws in sockets:
                ws.close()


@pytest.mark.parametrize("fast", ["off", "on"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_held_poll_ends_when_its_client_leaves(runtime: str, fast: str) -> None:
    with run_server(runtime, "--max-longpoll", "2", "--fast-path", fast) as srv:
        polls = [hold_poll(srv.port, "gone") for _ in range(2)]
        assert wait_until(lambda: held(srv)["longpoll"] == 2, 10 * UNIT), held(srv)
        for s in polls:
            s.close()
        # The 30 s holds end within a few checks of the client leaving.
        assert wait_until(lambda: held(srv)["longpoll"] == 0, 10 * UNIT), held(srv)
        fresh = httpx.get(f"{srv.url}/channels/gone/poll", params={"timeout": 0}, timeout=10 * UNIT)
        assert fresh.status_code == 200


@pytest.mark.parametrize("runtime", ["gthread", "gevent", "pywsgi"])
def test_refused_clients_that_linger_do_not_stall_the_server(runtime: str) -> None:
    """Refused clients that read their 503 and keep the socket open (gunicorn's gthread drained each for 2 s)."""
    with run_server(runtime, "--max-longpoll", "1") as srv:
        first = hold_poll(srv.port, "linger")
        lingering: list[socket.socket] = []
        try:
            assert wait_until(lambda: held(srv)["longpoll"] == 1, 10 * UNIT), held(srv)
            for _ in range(20):
                s = hold_poll(srv.port, "linger")
                lingering.append(s)
                assert s.recv(65536).startswith(b"HTTP/1.1 503 ")
            # Twenty lingering clients used to hold gthread's main loop 40 s.
            assert httpx.get(f"{srv.url}/healthz", timeout=10 * UNIT).status_code == 200
            published = httpx.post(f"{srv.url}/channels/other/events", content="1", headers=JSON, timeout=10 * UNIT)
            assert published.status_code == 201
        finally:
            first.close()
            for s in lingering:
                s.close()


def drip(sock: socket.socket, stop: threading.Event) -> None:
    """Slowloris: a request head that never ends, one byte at a time."""
    with contextlib.suppress(OSError):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while not stop.wait(0.2 * UNIT):
            sock.sendall(b"X")


@pytest.mark.parametrize(
    ("runtime", "pool"),
    [("gthread", ["--threads", "4"]), ("gevent", ["--connections", "8"]), ("pywsgi", ["--connections", "8"])],
)
def test_slowloris_gets_408_and_health_still_answers(runtime: str, pool: list[str]) -> None:
    with run_server(runtime, *pool, "--header-timeout", "1") as srv:
        stop = threading.Event()
        slow = [socket.create_connection(("127.0.0.1", srv.port), timeout=20 * UNIT) for _ in range(12)]
        drippers = [threading.Thread(target=drip, args=(s, stop), daemon=True) for s in slow]
        for t in drippers:
            t.start()
        try:
            assert httpx.get(f"{srv.url}/healthz", timeout=20 * UNIT).status_code == 200
            answers = [read_answer(s) for s in slow]
            assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
            assert json.loads(answers[0].split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"
        finally:
            stop.set()
            for s in slow:
                s.close()


@dataclass
class LimitedServer:
    """A server started with low file-descriptor limits (``run_server`` cannot set them)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def server_with_fd_limit(runtime: str, nofile: int, log_dir: Path) -> Iterator[LimitedServer]:
    """``python -m server`` with soft and hard file-descriptor limits of ``nofile``; stopped in ``finally``."""
    port = free_port()
    log = log_dir / f"lab-server-{runtime}-{port}.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--runtime", runtime, "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit,
        )
    srv = LimitedServer(proc, port, log)

    def healthy() -> bool:
        try:
            return httpx.get(srv.url + "/healthz", timeout=UNIT).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(lambda: proc.poll() is not None or healthy(), 20 * UNIT, 0.05) and proc.poll() is None
        yield srv
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10 * UNIT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10 * UNIT)


@pytest.mark.parametrize("runtime", ["gthread", "gevent", "pywsgi"])
def test_running_out_of_file_descriptors_keeps_the_worker_and_its_history(runtime: str, tmp_path: Path) -> None:
    with server_with_fd_limit(runtime, 128, tmp_path) as srv:
        pid = httpx.get(f"{srv.url}/healthz", timeout=10 * UNIT).json()["pid"]
        assert httpx.post(f"{srv.url}/channels/kept/events", content="1", headers=JSON).status_code == 201
        idle = []
        try:
            for _ in range(200):  # more connections than the worker has descriptors
                with contextlib.suppress(OSError):
                    idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=UNIT))
        finally:
            for s in idle:
                s.close()

        def answer() -> dict[str, object] | None:
            try:
                return httpx.get(f"{srv.url}/channels/kept/poll", params={"timeout": 0}, timeout=UNIT).json()  # type: ignore[no-any-return]
            except httpx.HTTPError:
                return None

        assert wait_until(lambda: answer() is not None, 30 * UNIT)
        body = answer()
        assert body is not None and [e["seq"] for e in body["events"]] == [1]  # type: ignore[attr-defined]
        assert httpx.get(f"{srv.url}/healthz", timeout=10 * UNIT).json()["pid"] == pid
        assert "Traceback" not in srv.log.read_text(errors="replace")


# -- the parts alone ----------------------------------------------------------


def test_gate_counts_per_transport_and_in_all() -> None:
    gate = Gate(3, {"longpoll": 2, "websocket": None})
    assert [gate.try_acquire("longpoll") for _ in range(3)] == [True, True, False]
    assert [gate.try_acquire("websocket") for _ in range(2)] == [True, False]  # the total
    gate.release("longpoll")
    assert gate.try_acquire("websocket")
    with pytest.raises(AtCapacity) as refused, gate.hold("longpoll"):
        pass
    with create_app().test_request_context():
        resp = refused.value.response()
    assert (resp.status_code, resp.get_json()["error"]) == (503, "at_capacity")
    assert (resp.headers["Retry-After"], resp.headers["Connection"]) == ("1", "close")
    assert gate.held == {"longpoll": 1, "websocket": 2}


def test_derive_limit_keeps_room_for_short_requests() -> None:
    assert derive_limit("gthread", 100, 2000, 20000) == 90
    assert derive_limit("gthread", 250, 2000, 20000) == 225
    assert derive_limit("gevent", 100, 2000, 20000) == 1800
    assert derive_limit("gevent", 100, 2000, 1024) == 1024 - 64
    assert derive_limit("werkzeug", 100, 2000, 1024) == 1024 - 64
    assert derive_limit("gthread", 2, 2000, 20000) == 1  # never zero


def test_raise_fd_limit_reaches_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
            assert raise_fd_limit() == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_client_gone_sees_a_closed_peer() -> None:
    a, b = socket.socketpair()
    try:
        gone = client_gone({"werkzeug.socket": a})
        assert gone is not None and gone() is False
        b.sendall(b"more")
        assert gone() is False  # bytes waiting: still there
        assert a.recv(4) == b"more"
        b.close()
        assert gone() is True
    finally:
        a.close()
    assert client_gone({}) is None


def test_fast_refusal_answers_from_bytes_only_when_full() -> None:
    gate = Gate(None, {"longpoll": 1, "websocket": None})
    calls: list[str] = []

    def app(environ: dict[str, object], start_response: Any) -> list[bytes]:
        calls.append(str(environ["PATH_INFO"]))
        start_response("200 OK", [])
        return [b"ok"]

    fast = FastRefusal(app, gate)
    got: list[tuple[str, list[tuple[str, str]]]] = []

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        got.append((status, headers))

    poll = {"REQUEST_METHOD": "GET", "PATH_INFO": "/channels/c/poll"}
    assert fast(poll, start) == [b"ok"] and not gate.full("longpoll")
    assert gate.try_acquire("longpoll") and gate.full("longpoll")
    body = b"".join(fast(poll, start))
    status, headers = got[-1]
    assert status.startswith("503") and json.loads(body)["error"] == "at_capacity"
    assert ("Retry-After", "1") in headers and ("Connection", "close") in headers
    assert fast({"REQUEST_METHOD": "POST", "PATH_INFO": "/channels/c/events"}, start) == [b"ok"]
    assert calls == ["/channels/c/poll", "/channels/c/events"]
