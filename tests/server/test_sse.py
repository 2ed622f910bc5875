"""Tests of server/sse.py: the cursor, the framing, the stream's iterator, the route, and shutdown on every runtime.

The encoder and the cursor parser are pure; :class:`EventStream` is driven
by hand (``next()`` as a runtime would call it, in this thread) over a memory
bus; the route goes through Flask's test client for its headers and
refusals; shutdown runs real servers in subprocesses.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from server.app import create_app, lab_of
from server.bus import Batch, Event, Gap, MemoryBus, Reset
from server.capacity import Gate
from server.config import Config
from server.errors import ApiError
from server.runtimes import RUNTIMES
from server.sse import HEARTBEAT, RETRY_MS, EventStream, encode_sse_batch, sse_cursor
from server.stats import Stats
from tests.support import UNIT, pinned_clients, run_server, wait_until

CONFIG = Config(history=10, max_batch=3)
JSON = {"Content-Type": "application/json"}


def event(seq: int, data: bytes = b"1", channel: str = "c") -> Event:
    return Event.create(channel, seq, 1000 + seq, data)


def parse(stream: bytes) -> list[dict[str, str]]:
    """An event stream with LF line ends as field dicts, one per message (comments and retry-only blocks dropped)."""
    out = []
    for block in stream.decode().split("\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value
        if "data" in fields:
            out.append(fields)
    return out


# -- the cursor -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_event_id", "after", "expected"),
    [(None, None, 0), (None, "7", 7), ("9", None, 9), ("9", "7", 9), ("0", "7", 0), (" 9 ", None, 9), ("9", "x", 9)],
)
def test_last_event_id_wins_over_after(last_event_id: str | None, after: str | None, expected: int) -> None:
    assert sse_cursor(last_event_id, after) == expected


@pytest.mark.parametrize(("last_event_id", "after"), [(None, ""), (None, "-1"), ("", None), ("x", "1"), ("1.5", None)])
def test_a_bad_cursor_is_refused(last_event_id: str | None, after: str | None) -> None:
    with pytest.raises(ApiError) as info:
        sse_cursor(last_event_id, after)
    assert (info.value.status, info.value.error) == (400, "bad_cursor")
    assert ("Last-Event-ID" in info.value.detail) == (last_event_id is not None)


# -- the framing ----------------------------------------------------------------------------------------


def test_every_event_is_its_id_and_its_stored_bytes() -> None:
    events = (event(4, b'{"a":"\xc3\xa9"}'), event(5))
    assert encode_sse_batch(Batch(events, 5)) == b"".join(b"id: %d\ndata: %s\n\n" % (e.seq, e.wire) for e in events)


def test_notices_are_named_events_with_the_websockets_json_and_the_cursor_after_them() -> None:
    batch = Batch((event(21),), 21, gap=Gap(1, 20), reset=Reset(99, 30))
    assert parse(encode_sse_batch(batch)) == [
        {"event": "reset", "id": "0", "data": '{"type":"reset","after":99,"last_seq":30}'},
        {"event": "gap", "id": "20", "data": '{"type":"gap","first":1,"last":20}'},
        {"id": "21", "data": event(21).wire.decode()},
    ]


def test_a_payload_with_line_breaks_is_split_into_data_lines() -> None:
    e = event(1, b'{"a":\n  1,\r\n"b":\r2}')
    assert encode_sse_batch(Batch((e,), 1)) == (
        b'id: 1\ndata: {"channel":"c","seq":1,"ts":1001,"data":{"a":\ndata:   1,\ndata: "b":\ndata: 2}}\n\n'
    )
    # What a reader joins again: LF survives, a CR (alone or in CRLF) comes back as LF.
    assert parse(encode_sse_batch(Batch((e,), 1)))[0]["data"] == e.wire.decode().replace("\r\n", "\n").replace(
        "\r", "\n"
    )


# -- the stream -----------------------------------------------------------------------------------------


def stream(bus: MemoryBus, stats: Stats, after: int = 0, **kwargs: Any) -> EventStream:
    options: dict[str, Any] = {"max_batch": 3, "heartbeat": 30.0, **kwargs}
    return EventStream(bus, stats, "c", after, options.pop("max_batch"), options.pop("heartbeat"), **options)


def test_the_first_chunk_is_the_retry_hint_and_the_whole_catch_up() -> None:
    bus, stats = MemoryBus(history=100), Stats()
    for i in range(8):
        bus.publish("c", b"%d" % i)
    s = stream(bus, stats, after=1)
    first = next(s)
    assert first.startswith(b"retry: %d\n\n" % RETRY_MS)
    assert [m["id"] for m in parse(first)] == [str(i) for i in range(2, 9)]  # past max_batch (3): one write
    for i in range(3):
        bus.publish("c", b"%d" % i)
    second = next(s)
    assert [m["id"] for m in parse(second)] == ["9", "10", "11"]  # several ready: one chunk
    assert stats.snapshot()["connections"]["sse"] == 1
    s.close()
    snap = stats.snapshot()
    assert (snap["connections"]["sse"], snap["delivered"]["sse"]) == (0, 10)
    assert snap["bytes_sent"]["sse"] == len(first) + len(second)


def test_a_publish_wakes_a_waiting_stream() -> None:
    bus, stats = MemoryBus(), Stats()
    s = stream(bus, stats)
    assert next(s) == b"retry: %d\n\n" % RETRY_MS
    assert stats.snapshot()["connections"]["sse"] == 1
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(next(s)))
    reader.start()
    time.sleep(0.05)
    bus.publish("c", b'"hi"')
    reader.join(5 * UNIT)
    assert parse(chunks[0]) == [{"id": "1", "data": bus.read("c", 0, 1).events[0].wire.decode()}]
    s.close()


def test_silence_gets_a_heartbeat_and_a_departed_client_ends_the_stream() -> None:
    bus, stats = MemoryBus(), Stats()
    gone = threading.Event()
    s = stream(bus, stats, heartbeat=0.05, gone=gone.is_set)
    next(s)
    assert next(s) == HEARTBEAT
    assert next(s) == HEARTBEAT
    s.heartbeat = 60.0
    gone.set()
    with pytest.raises(StopIteration):
        next(s)  # within GONE_CHECK (1 s), not the heartbeat's 60
    s.close()


def test_a_closing_bus_ends_the_stream_and_close_releases_everything_once() -> None:
    bus, stats, gate = MemoryBus(), Stats(), Gate(None, {"sse": 1})
    assert gate.try_acquire("sse")
    s = stream(bus, stats, release=lambda: gate.release("sse"))
    next(s)
    closer = threading.Timer(0.05, bus.close)
    closer.start()
    with pytest.raises(StopIteration):
        next(s)
    closer.join()
    s.close()
    s.close()
    assert gate.held["sse"] == 0
    assert stats.snapshot()["connections"]["sse"] == 0
    with pytest.raises(StopIteration):
        next(s)


# -- the route ------------------------------------------------------------------------------------------


@pytest.fixture
def app() -> Any:
    app = create_app(CONFIG)
    yield app
    lab_of(app).bus.close()


def test_the_route_answers_an_event_stream_with_its_headers(app: Any) -> None:
    client = app.test_client()
    client.post("/channels/c/events", json={"x": 1})
    resp = client.get("/channels/c/sse", buffered=False)
    try:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert "Content-Length" not in resp.headers
        first = next(iter(resp.response))
        poll = client.get("/channels/c/poll?timeout=0").get_data()
        assert parse(first)[0]["data"].encode() in poll  # the same bytes as the long poll's
        assert lab_of(app).gate.held["sse"] == 1
    finally:
        resp.close()
    assert lab_of(app).gate.held["sse"] == 0


@pytest.mark.parametrize(
    ("path", "headers", "error"),
    [
        ("/channels/c/sse?after=-1", {}, "bad_cursor"),
        ("/channels/c/sse?after=", {}, "bad_cursor"),
        ("/channels/c/sse", {"Last-Event-ID": "abc"}, "bad_cursor"),
        ("/channels/c/sse?after=1", {"Last-Event-ID": "1e3"}, "bad_cursor"),
        ("/channels/bad%20name/sse", {}, "bad_channel"),
        ("/channels//sse", {}, "bad_channel"),
        ("/channels/" + "a" * 65 + "/sse", {}, "bad_channel"),
    ],
)
def test_bad_input_is_refused_before_the_stream(app: Any, path: str, headers: dict[str, str], error: str) -> None:
    resp = app.test_client().get(path, headers=headers)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.get_json()["error"] == error
    assert lab_of(app).gate.held["sse"] == 0


def test_post_is_not_allowed(app: Any) -> None:
    assert app.test_client().post("/channels/c/sse").status_code == 405


def test_at_capacity_is_refused_with_retry_after() -> None:
    app = create_app(Config(max_connections=1))
    client = app.test_client()
    held = client.get("/channels/c/sse", buffered=False)
    try:
        refused = client.get("/channels/c/sse")
        assert refused.status_code == 503
        assert refused.get_json()["error"] == "at_capacity"
        assert refused.headers["Retry-After"] == "1"
        assert client.get("/channels/c/poll?timeout=0").status_code == 503  # the total counts streams too
    finally:
        held.close()
    assert client.get("/channels/c/sse", buffered=False).status_code == 200
    lab_of(app).bus.close()


def test_a_stopping_server_refuses_new_streams(app: Any) -> None:
    lab_of(app).bus.close()
    resp = app.test_client().get("/channels/c/sse")
    assert (resp.status_code, resp.get_json()["error"]) == (503, "shutting_down")


def test_the_subscribe_token_is_required() -> None:
    app = create_app(Config(subscribe_token="s3cret"))
    client = app.test_client()
    assert client.get("/channels/c/sse").status_code == 401
    resp = client.get("/channels/c/sse?token=s3cret", buffered=False)
    assert resp.status_code == 200
    resp.close()
    lab_of(app).bus.close()


# -- shutdown on every runtime --------------------------------------------------------------------------


def read_until(sock: socket.socket, marker: bytes, timeout: float, data: bytes = b"") -> bytes:
    """What ``sock`` sends until ``marker`` (searched in ``data`` too) or its end; fails on a timeout or a reset."""
    sock.settimeout(timeout)
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_shutdown_ends_open_streams_cleanly(runtime: str) -> None:
    """SIGTERM: every open stream ends with its last chunk (a clean end, not a reset); the server exits 0."""
    with run_server(runtime, env={"LAB_SSE_HEARTBEAT": "30"}) as server:
        httpx.post(f"{server.url}/channels/c/events", json=1, timeout=5 * UNIT)
        socks = []
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5 * UNIT)
            sock.sendall(b"GET /channels/c/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
            head = read_until(sock, b"id: 1\n", 10 * UNIT)
            assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head, head
            socks.append((sock, head))
        assert wait_until(lambda: httpx.get(f"{server.url}/stats").json()["connections"]["sse"] == 3, 5 * UNIT)
        server.proc.send_signal(signal.SIGTERM)
        try:
            for sock, head in socks:
                whole = read_until(sock, b"\r\n0\r\n\r\n", 10 * UNIT, head)
                assert whole.endswith(b"\r\n0\r\n\r\n"), whole  # the last chunk: the stream ended cleanly
        finally:
            for sock, _ in socks:
                sock.close()
        assert server.proc.wait(10 * UNIT) == 0


# -- the Redis bus, two workers -------------------------------------------------------------------------


def sse_reader(url: str, channel: str, count: int, out: list[str], opened: threading.Event) -> None:
    """Read ``count`` events' ``data`` from one stream (an LF-only stream, as the lab writes it)."""
    with httpx.Client(timeout=30 * UNIT) as http, http.stream("GET", f"{url}/channels/{channel}/sse") as resp:
        assert resp.status_code == 200
        opened.set()
        buffer = ""
        for text in resp.iter_text():
            *blocks, buffer = (buffer + text).split("\n\n")
            out.extend(m["data"] for m in parse("".join(b + "\n\n" for b in blocks).encode()))
            if len(out) >= count:
                return


@pytest.mark.redis
@pytest.mark.parametrize("runtime", ["gthread", "gevent"])
def test_two_workers_on_the_redis_bus_stream_every_event_to_every_stream(redis_url: str, runtime: str) -> None:
    """Streams held by either worker get every event published through either, as the long poll's bytes."""
    channel, count = f"sse-{runtime}-{time.monotonic_ns()}", 20
    with run_server(runtime, "--workers", "2", "--bus", "redis", env={"LAB_REDIS_URL": redis_url}) as server:
        outs: list[list[str]] = [[] for _ in range(8)]
        opened = [threading.Event() for _ in outs]
        readers = [
            threading.Thread(target=sse_reader, args=(server.url, channel, count, out, o), daemon=True)
            for out, o in zip(outs, opened, strict=True)
        ]
        for t in readers:
            t.start()
        assert all(o.wait(20 * UNIT) for o in opened)
        publishers = pinned_clients(server.url, per_worker=1)  # one connection held by each worker
        try:
            assert len(publishers) == 2, "could not reach both workers"
            by_worker = [publishers[pid][0] for pid in sorted(publishers)]
            for i in range(count):  # publishes alternate between the workers
                resp = by_worker[i % 2].post(f"/channels/{channel}/events", content=b'{"i":%d}' % i, headers=JSON)
                assert resp.status_code == 201
            assert [c.get("/stats").json()["events_published"] for c in by_worker] == [count // 2] * 2
        finally:
            for pinned in publishers.values():
                for client in pinned:
                    client.close()
        for t in readers:
            t.join(30 * UNIT)
            assert not t.is_alive()
        poll = httpx.get(f"{server.url}/channels/{channel}/poll", params={"timeout": 0}, timeout=10 * UNIT).text
    events = json.loads(poll)["events"]
    assert [e["seq"] for e in events] == list(range(1, count + 1))
    for out in outs:
        assert [json.loads(d)["seq"] for d in out] == list(range(1, count + 1))
        assert all(d in poll for d in out)  # each data is the stored bytes the long poll embeds
        assert out == outs[0]
