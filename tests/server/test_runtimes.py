"""Tests of server/runtimes.py: each runtime serves, and stops without hanging.

Stopping is what ``ServerProcess.stop`` does (SIGTERM to the process group)
while a long poll is held and a WebSocket is open. The bound on the exit is
generous (15 units): this guards against the 30 s hang on held connections,
it does not measure shutdown speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
from simple_websocket import ConnectionClosed

from server.config import Config
from server.runtimes import RUNTIMES, ServeOptions, serve
from tests.support import UNIT, run_redis, run_server, wait_until, ws_connect


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_releases_held_connections_and_exits(runtime: str) -> None:
    with run_server(runtime, "--graceful-timeout", "30") as server:
        held: dict[str, Any] = {}

        def hold_poll() -> None:
            try:
                resp = httpx.get(f"{server.url}/channels/held/poll", params={"timeout": 30}, timeout=60 * UNIT)
                held["poll"] = (resp.status_code, resp.json().get("error"), resp.headers.get("cache-control"))
            except httpx.HTTPError as exc:
                held["poll"] = repr(exc)

        poller = threading.Thread(target=hold_poll, daemon=True)
        poller.start()
        ws = ws_connect(f"{server.ws_url}/channels/held/ws")
        stats = httpx.get(f"{server.url}/stats", timeout=10 * UNIT)
        assert wait_until(
            lambda: (
                httpx.get(f"{server.url}/stats", timeout=10 * UNIT).json()["connections"]
                == {"longpoll": 1, "websocket": 1, "sse": 0}
            ),
            10 * UNIT,
        ), stats.json()

        started = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            message = ws.receive(timeout=15 * UNIT)
            close = ("message", message)
        except ConnectionClosed:
            close = (int(ws.close_reason), ws.close_message)
        poller.join(15 * UNIT)
        try:
            code = server.proc.wait(15 * UNIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{runtime} still running {time.monotonic() - started:.1f} s after SIGTERM")
        log = server.log.read_text(errors="replace")

    assert held.get("poll") == (503, "shutting_down", "no-store"), log[-2000:]
    assert close == (1001, "server shutting down"), log[-2000:]
    assert code == 0, log[-2000:]
    assert "Traceback" not in log, log[-3000:]
    assert "graceful timeout" not in log.lower(), log[-2000:]


def test_serve_refuses_an_unknown_runtime() -> None:
    with pytest.raises(ValueError, match="runtime must be one of"):
        serve(Config(), ServeOptions(runtime="tornado"))


def test_serve_options_defaults() -> None:
    options = ServeOptions()
    assert (options.runtime, options.host, options.port, options.workers) == ("werkzeug", "127.0.0.1", 8000, 1)
    assert (options.threads, options.connections, options.graceful_timeout) == (100, 2000, 5)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_healthz_names_the_runtime(runtime: str) -> None:
    with run_server(runtime) as server:
        body = httpx.get(f"{server.url}/healthz", timeout=10 * UNIT).json()
        assert (body["status"], body["runtime"], body["bus"]) == ("ok", runtime, "memory")
        if runtime in ("werkzeug", "pywsgi"):  # one process
            assert body["pid"] == server.proc.pid
        else:
            assert body["pid"] != server.proc.pid  # a gunicorn worker, not the arbiter


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_production_runtimes_freeze_their_startup_heap(runtime: str) -> None:
    """The app's and the libraries' objects are out of the collector's way (docs/performance.md)."""
    with run_server(runtime) as server:
        body = httpx.get(f"{server.url}/stats", timeout=10 * UNIT).json()
        if runtime == "werkzeug":  # the development server does not
            assert body["gc"]["frozen"] == 0
        else:
            assert body["gc"]["frozen"] > 10_000  # Flask, Werkzeug, the lab: tens of thousands of objects


@pytest.mark.parametrize("runtime", ["gthread", "gevent"])
def test_a_lost_memory_bus_worker_stops_the_server_instead_of_restarting_empty(runtime: str) -> None:
    with run_server(runtime) as server:
        assert httpx.post(f"{server.url}/channels/c/events", content="1", timeout=10 * UNIT).status_code == 201
        worker = httpx.get(f"{server.url}/healthz", timeout=10 * UNIT).json()["pid"]
        os.kill(worker, signal.SIGKILL)
        try:
            code = server.proc.wait(20 * UNIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{runtime}: a new worker with an empty memory bus took over")
        assert code == 3
        assert "memory bus" in server.log.read_text(errors="replace")


@pytest.mark.redis
def test_a_lost_redis_bus_worker_is_replaced_and_history_kept() -> None:
    with run_redis() as url, run_server("gthread", "--bus", "redis", "--redis-url", url) as server:
        assert httpx.post(f"{server.url}/channels/c/events", content="1", timeout=10 * UNIT).status_code == 201
        worker = httpx.get(f"{server.url}/healthz", timeout=10 * UNIT).json()["pid"]
        os.kill(worker, signal.SIGKILL)

        def replaced() -> bool:
            try:
                return httpx.get(f"{server.url}/healthz", timeout=UNIT).json()["pid"] != worker
            except httpx.HTTPError:
                return False

        assert wait_until(replaced, 20 * UNIT)
        events = httpx.get(f"{server.url}/channels/c/poll", params={"timeout": 0}, timeout=10 * UNIT).json()["events"]
        assert [e["seq"] for e in events] == [1]


class RecordingSocket:
    """What gunicorn's response writes, one entry per ``sendall``."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class FakeRequest:
    """The little of gunicorn's request its response reads."""

    def __init__(self, method: str = "GET", close: bool = False) -> None:
        self.method = method
        self.version = (1, 1)
        self.close = close

    def should_close(self) -> bool:
        return self.close


def respond(cls: type, headers: list[tuple[str, str]], body: list[bytes], **req: Any) -> list[bytes]:
    from gunicorn.config import Config as GunicornConfig

    sock = RecordingSocket()
    resp = cls(FakeRequest(**req), sock, GunicornConfig())
    resp.start_response("200 OK", headers)
    for item in body:
        resp.write(item)
    resp.close()
    return sock.writes


def without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date: "))


@pytest.mark.parametrize(
    ("headers", "body", "req", "writes"),
    [
        ([("Content-Type", "application/json"), ("Content-Length", "5")], [b"hello"], {}, 1),
        ([("Content-Length", "5")], [b"hello"], {"close": True}, 1),
        ([("Content-Length", "0")], [], {}, 1),
        ([("Content-Length", "5")], [b"hel", b"lo"], {}, 3),  # a body in pieces: gunicorn's own path
        ([("Content-Type", "text/event-stream")], [b"a", b"b"], {}, 4),  # chunked: head, 2 chunks, the end
        ([("Content-Length", "5")], [b"hello"], {"method": "HEAD"}, 1),
    ],
)
def test_one_write_response_writes_gunicorns_bytes_in_one_write(
    headers: list[tuple[str, str]], body: list[bytes], req: dict[str, Any], writes: int
) -> None:
    from gunicorn.http.wsgi import Response

    from server.runtimes import _one_write_response

    ours = respond(_one_write_response(), headers, body, **req)
    theirs = respond(Response, headers, body, **req)
    assert without_date(b"".join(ours)) == without_date(b"".join(theirs))
    assert len(ours) == writes
    assert len(theirs) == writes + (1 if writes == 1 and body and req.get("method") != "HEAD" else 0)
    date = [line for line in b"".join(ours).split(b"\r\n") if line.startswith(b"Date: ")]
    assert len(date) == 1 and date[0].endswith(b" GMT")
