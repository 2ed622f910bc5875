"""bench.run.demo: the demo page behind the lab's relay; the page's routes through it; stopped, nothing left.

Nothing here asserts a timing target: the one bound checked is the relay's own guarantee (an answer
through a link of ``d`` ms each way never comes back in under ``2 d``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid

import httpx
import pytest

from bench.process import Child
from bench.run.demo import Demo, demo_url, server_command
from bench.run.server import RunError
from tests.support import TAG_VARIABLE, UNIT, tagged_processes, wait_until, ws_connect

DELAY_MS = 20.0


def test_demo_url_carries_the_delay_and_brackets_ipv6() -> None:
    assert demo_url("127.0.0.1", 8000, 100.0) == "http://127.0.0.1:8000/?delay=100"
    assert demo_url("::1", 8001, 12.5) == "http://[::1]:8001/?delay=12.5"
    assert server_command("gevent") == ["-m", "server", "--runtime", "gevent", "--port", "0"]


def test_the_page_and_every_route_it_uses_answer_through_the_relay() -> None:
    """Host and Origin carry the relay's port: the server's loopback checks accept them (docs/security.md)."""
    with Demo(DELAY_MS, port=0) as demo:
        assert demo.server is not None and demo.port != demo.server.port
        base = f"http://127.0.0.1:{demo.port}"
        origin = {"Origin": base}
        channel = "demo-" + uuid.uuid4().hex[:8]
        with httpx.Client(base_url=base, timeout=10 * UNIT, headers=origin) as http:
            page = http.get("/?delay=20")
            assert page.status_code == 200 and "<canvas" in page.text
            assert f"ws://127.0.0.1:{demo.port}" in page.headers["Content-Security-Policy"]
            started = time.monotonic()
            health = http.get("/healthz")
            elapsed = time.monotonic() - started
            assert health.status_code == 200 and health.json()["runtime"] == "gevent"
            assert elapsed >= 2 * DELAY_MS / 1000, "an answer crosses the link twice"
            ws = ws_connect(f"ws://127.0.0.1:{demo.port}/channels/{channel}/ws?after=0", headers=origin)
            try:
                for n in (1, 2):
                    answer = http.post(f"/channels/{channel}/events", json={"n": n})
                    assert answer.status_code == 201 and answer.json()["seq"] == n
                frames = [json.loads(ws.receive(timeout=10 * UNIT)) for _ in range(2)]
                assert [(f["seq"], f["data"]) for f in frames] == [(1, {"n": 1}), (2, {"n": 2})]
            finally:
                ws.close()
            poll = http.get(f"/channels/{channel}/poll", params={"after": 0, "timeout": 0})
            assert [e["seq"] for e in poll.json()["events"]] == [1, 2]
            foreign = http.get("/healthz", headers={"Origin": "http://evil.example"})
            assert foreign.status_code == 403, "the relay changes nothing in the server's checks"
        server_pid, relay_pid = demo.server.pid, demo.relay.pid if demo.relay else 0
    assert demo.bye is not None, "the relay quit cleanly and gave its totals"
    assert demo.bye["connections"]["opened"] >= 2, "the HTTP client's connection and the WebSocket"
    assert demo.bye["up"]["heads"] >= 2 and demo.bye["down"]["bytes"] > demo.bye["down"]["head_bytes"] > 0
    assert wait_until(lambda: not _alive(server_pid) and not _alive(relay_pid), 10 * UNIT)


def test_a_taken_port_is_a_clear_error_and_leaves_no_process() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = Demo(DELAY_MS, port=port)
        with pytest.raises(RunError, match="could not listen"):
            demo.start()
    assert demo.server is None and demo.relay is None


def test_the_command_announces_the_url_and_stops_both_on_sigterm() -> None:
    tag = uuid.uuid4().hex
    child = Child(
        ["-m", "bench.run.demo", "--delay", "30", "--port", "0"],
        env={**os.environ, TAG_VARIABLE: tag},
        name="the demo launcher",
    )
    try:
        ready = child.expect("url", 30 * UNIT)
        assert ready["event"] == "ready" and ready["delay_ms"] == 30.0
        assert ready["url"] == f"http://127.0.0.1:{ready['port']}/?delay=30"
        assert httpx.get(ready["url"], timeout=10 * UNIT).status_code == 200
        assert len(tagged_processes(tag)) >= 3, "the launcher, its relay and its server (gunicorn and a worker)"
        os.kill(child.pid, signal.SIGTERM)
        bye = child.expect("event", 30 * UNIT)
        assert bye["event"] == "bye" and bye["connections"]["opened"] == 1
        assert bye["down"]["heads"] == 1 and bye["up"]["bytes"] == bye["up"]["delivered"] > 0
        child.proc.wait(30 * UNIT)
        assert child.proc.returncode == 0
        assert wait_until(lambda: tagged_processes(tag) == [], 10 * UNIT), tagged_processes(tag)
    finally:
        child.stop(10 * UNIT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent is gone for this purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
