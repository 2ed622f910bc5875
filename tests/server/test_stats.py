"""Tests of server/stats.py: exact counters, live sessions summed at snapshot.

One test checks /stats against a real server's WebSocket traffic: bytes_sent
counts event payload bytes (not frame headers), delivered counts events.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

import httpx

from server.stats import TRANSPORTS, Stats
from tests.support import UNIT, receive_json, run_server, wait_until, ws_connect


@dataclass
class FakeSession:
    delivered: int = 0
    bytes_sent: int = 0


def test_a_new_snapshot_is_all_zero() -> None:
    snap = Stats().snapshot()
    assert snap["pid"] == os.getpid()
    for key in ("connections", "delivered", "bytes_sent"):
        assert snap[key] == dict.fromkeys(TRANSPORTS, 0)
    assert snap["requests"] == {"longpoll": 0, "publish": 0}
    assert snap["events_published"] == 0
    assert snap["cpu_seconds"] >= 0 and snap["rss_bytes"] > 0


def test_counters_add_up() -> None:
    stats = Stats()
    for _ in range(4):
        stats.connect("longpoll")
    for _ in range(3):
        stats.connect("longpoll", -1)
    stats.answered("longpoll", 3, 300)
    stats.answered("longpoll", 0, 80)  # a timed-out hold
    stats.published(via_http=True)
    stats.published()  # over a WebSocket: no HTTP request
    snap = stats.snapshot()
    assert snap["connections"] == {"longpoll": 1, "websocket": 0, "sse": 0}
    assert snap["delivered"] == {"longpoll": 3, "websocket": 0, "sse": 0}
    assert snap["bytes_sent"] == {"longpoll": 380, "websocket": 0, "sse": 0}
    assert snap["requests"] == {"longpoll": 2, "publish": 1}
    assert snap["events_published"] == 2


def test_live_sessions_are_summed_in_and_kept_after_they_end() -> None:
    stats = Stats()
    one, two = FakeSession(), FakeSession()
    stats.track(one)
    stats.track(two)
    one.delivered, one.bytes_sent = 5, 500
    two.delivered, two.bytes_sent = 1, 10
    snap = stats.snapshot()
    assert (snap["connections"]["websocket"], snap["delivered"]["websocket"], snap["bytes_sent"]["websocket"]) == (
        2,
        6,
        510,
    )
    stats.untrack(one)
    one.delivered = 99  # after untrack, no longer read
    snap = stats.snapshot()
    assert (snap["connections"]["websocket"], snap["delivered"]["websocket"], snap["bytes_sent"]["websocket"]) == (
        1,
        6,
        510,
    )


def test_counters_are_exact_under_threads() -> None:
    stats = Stats()

    def work() -> None:
        for _ in range(2000):
            stats.connect("longpoll")
            stats.connect("longpoll", -1)
            stats.answered("longpoll", 1, 2)
            stats.published(via_http=True)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert (snap["delivered"]["longpoll"], snap["bytes_sent"]["longpoll"], snap["events_published"]) == (
        8000,
        16000,
        8000,
    )
    assert snap["connections"]["longpoll"] == 0
    assert snap["requests"] == {"longpoll": 8000, "publish": 8000}


def test_stats_route_counts_websocket_traffic() -> None:
    with run_server("werkzeug") as server, httpx.Client(base_url=server.url, timeout=10 * UNIT) as http:
        ws = ws_connect(f"{server.ws_url}/channels/st/ws")
        try:
            assert wait_until(lambda: http.get("/stats").json()["connections"]["websocket"] == 1, 10 * UNIT)
            for i in range(3):
                http.post("/channels/st/events", content=json.dumps({"i": i}, separators=(",", ":")))
            ws.send(json.dumps({"type": "publish", "data": 3}))
            got = receive_json(ws, 5)
            events = [m for m in got if "type" not in m]
            assert [e["seq"] for e in events] == [1, 2, 3, 4]
            wire = http.get("/channels/st/poll", params={"after": 0, "timeout": 0}).json()["events"]
        finally:
            ws.close()
        assert wait_until(lambda: http.get("/stats").json()["connections"]["websocket"] == 0, 10 * UNIT)
        snap = http.get("/stats").json()
    payload = sum(len(json.dumps(e, separators=(",", ":")).encode()) for e in wire)
    assert snap["delivered"] == {"longpoll": 4, "websocket": 4, "sse": 0}
    assert snap["bytes_sent"]["websocket"] == payload
    assert snap["events_published"] == 4
    assert snap["requests"] == {"longpoll": 1, "publish": 3}
