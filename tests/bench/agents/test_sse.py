"""bench.agents.sse: the fleet's lean SSE subscriber, against the real server and a scripted one.

Against the lab's server (werkzeug, gthread and gevent, all of which chunk the stream): the same events,
in the same order, with the same data as clients' httpx subscriber; every byte counted; resumed without
loss or duplicate after the client drops its connection; gap and reset notices counted; a refused
channel not retried. Against a scripted server (an asyncio server written here that answers with chosen
bytes): the request, the receive time shared by every event of one read, a body with a
``Content-Length`` or none, a ``5xx`` retried, and the ``path``/``decode`` hooks a peer's EventSource
needs. The chunked decoder is checked on its own, and composed with the event-stream parser over
arbitrary splits of the wire bytes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.agents.http import browser_headers
from bench.agents.meter import WireMeter
from bench.agents.sse import ChunkedDecoder, LeanSSESubscriber, StreamEnded, lab_sse_message
from clients import AsyncPublisher, EventStreamParser, Received, SSESubscriber, Subscriber, SubscriberError
from tests.support import UNIT, ServerProcess, run_server


@pytest.fixture(scope="module", params=["werkzeug", "gthread", "gevent"])
def server(request: pytest.FixtureRequest) -> Any:
    with run_server(request.param) as srv:
        yield srv


async def publish(url: str, channel: str, n: int, pause: float = 0.0, start: int = 0) -> None:
    async with AsyncPublisher(url) as pub:
        for k in range(start, start + n):
            await pub.publish(channel, {"i": k, "text": "é\u2028" * (k % 3)})
            if pause:
                await asyncio.sleep(pause)


async def until(predicate: Callable[[], bool], tasks: list[asyncio.Task[None]], timeout: float = 20 * UNIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        for task in tasks:
            if task.done():
                task.result()
                raise AssertionError("a subscriber stopped")
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def run_all(subs: list[Subscriber], body: Callable[[list[asyncio.Task[None]]], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in subs]
    try:
        await body(tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)


def clean(sub: Subscriber, n: int) -> dict[str, int]:
    return sub.tracker.finish(n).as_dict()


CLEAN = {"delivered": 0, "duplicate": 0, "out_of_order": 0, "missing": 0, "gap_lost": 0, "gaps": 0, "resets": 0}


# -- against the lab's server ---------------------------------------------------------------------------


def test_the_same_events_as_clients_subscriber_with_every_byte_counted(server: ServerProcess) -> None:
    n, channel = 60, f"same-{server.runtime}"
    lean_got: list[list[Received]] = [[], []]
    httpx_got: list[Received] = []
    meter = WireMeter()
    lean = [LeanSSESubscriber(server.url, channel, meter=meter, on_event=lean_got[i].append) for i in range(2)]
    reference = SSESubscriber(server.url, channel, on_event=httpx_got.append)

    async def body(tasks: list[asyncio.Task[None]]) -> None:
        await publish(server.url, channel, n // 2)  # history: the catch-up
        await until(lambda: all(s.stats.connections for s in [*lean, reference]), tasks)
        await publish(server.url, channel, n - n // 2, pause=0.002, start=n // 2)  # live
        await until(lambda: all(s.tracker.cursor >= n for s in [*lean, reference]), tasks)

    asyncio.run(run_all([*lean, reference], body))
    expected = [(r.channel, r.seq, r.ts, r.data) for r in httpx_got]
    assert [r.seq for r in httpx_got] == list(range(1, n + 1))
    for sub, got in zip(lean, lean_got, strict=True):
        assert [(r.channel, r.seq, r.ts, r.data) for r in got] == expected
        assert clean(sub, n) == {**CLEAN, "delivered": n}
        assert (sub.stats.connections, sub.stats.requests, sub.stats.frames, sub.stats.reconnects) == (1, 1, n, 0)
        assert sub.stats.payload_bytes == reference.stats.payload_bytes  # the same body, however chunked
        assert sub.retry_ms == 1000
        assert sub.last_event_id == str(n)
    assert got[10].data == {"i": 10, "text": "é\u2028"}
    # Every byte read is the heads plus the bodies plus, when chunked, the chunk framing; all were counted.
    assert meter.heads == 2
    assert meter.up == meter.head_up > 0
    assert meter.down > meter.head_down + sum(s.stats.payload_bytes for s in lean)


def test_a_dropped_connection_resumes_from_the_last_event_id(server: ServerProcess) -> None:
    n, channel = 90, f"drop-{server.runtime}"
    got: list[Received] = []
    sub = LeanSSESubscriber(server.url, channel, on_event=got.append, backoff_min=0.01, backoff_max=0.05)

    async def body(tasks: list[asyncio.Task[None]]) -> None:
        for round_ in range(3):
            burst = asyncio.create_task(publish(server.url, channel, n // 3, pause=0.002, start=round_ * 30))
            await until(lambda r=round_: sub.tracker.cursor > r * 30 + 5, tasks)
            assert sub.drop()
            await burst
        await until(lambda: sub.tracker.cursor >= n, tasks)

    asyncio.run(run_all([sub], body))
    assert [r.seq for r in got] == list(range(1, n + 1))
    assert clean(sub, n) == {**CLEAN, "delivered": n}
    assert sub.stats.reconnects >= 3
    assert sub.stats.connections == sub.stats.reconnects + 1


def test_gap_and_reset_notices_are_counted_as_clients_counts_them() -> None:
    with run_server("gevent", "--history", "10") as server:
        got: list[Received] = []
        gap = LeanSSESubscriber(server.url, "notices", on_event=got.append)
        reset = LeanSSESubscriber(server.url, "notices", after=100)

        async def body(tasks: list[asyncio.Task[None]]) -> None:
            await until(lambda: gap.tracker.cursor >= 30 and reset.tracker.cursor >= 30, tasks)

        async def main() -> None:
            await publish(server.url, "notices", 30)
            await run_all([gap, reset], body)

        asyncio.run(main())
    assert [r.seq for r in got] == list(range(21, 31))
    c = gap.tracker.finish(30)
    assert (c.gaps, c.gap_lost, c.delivered, c.missing, c.duplicate) == (1, 20, 10, 0, 0)
    r = reset.tracker.finish(30)
    # A reset from 100 to 0, then a gap for 1..20 (the channel keeps 10): the server's two notices.
    assert (r.resets, r.gaps, r.gap_lost, r.delivered, r.missing) == (1, 1, 20, 10, 0)
    assert reset.stats.frames == 12


def test_a_bad_channel_is_refused_for_good(server: ServerProcess) -> None:
    sub = LeanSSESubscriber(server.url, "no spaces")
    with pytest.raises(SubscriberError, match="400"):
        asyncio.run(asyncio.wait_for(sub.run(), 10 * UNIT))
    assert (sub.stats.reconnects, sub.stats.requests, sub.stats.connections) == (0, 1, 0)


# -- against a scripted server --------------------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def scripted(script: Script) -> tuple[asyncio.Server, str, list[bytes]]:
    """A server that records each request's head and hands the connection (and its number) to ``script``."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        try:
            await script(reader, writer, len(heads))
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    return srv, f"http://127.0.0.1:{port}", heads


HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def lab_event(seq: int, channel: str = "c") -> bytes:
    return b'id: %d\ndata: {"channel":"%s","seq":%d,"ts":%d,"data":%d}\n\n' % (seq, channel.encode(), seq, seq, seq)


def test_the_request_and_one_receive_time_per_read() -> None:
    got: list[Received] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            writer.write(HEAD_CHUNKED + chunk(b"retry: 50\n\n" + lab_event(1) + lab_event(2)))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(chunk(lab_event(3)) + b"0\r\n\r\n")  # the server ends the stream: reconnect
        else:
            body = lab_event(4)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            writer.write(body)
            await writer.drain()
            await asyncio.sleep(10)

    async def main() -> tuple[list[bytes], LeanSSESubscriber]:
        srv, url, heads = await scripted(script)
        sub = LeanSSESubscriber(url, "c", after=0, on_event=got.append, backoff_min=0.001)
        try:
            await run_all([sub], lambda tasks: until(lambda: sub.tracker.cursor >= 4, tasks))
        finally:
            srv.close()
        return heads, sub

    heads, sub = asyncio.run(main())
    assert heads[0] == b"GET /channels/c/sse HTTP/1.1\r\nHost: " + heads[0].split(b"Host: ")[1].split(b"\r\n")[0] + (
        b"\r\nAccept: text/event-stream\r\n\r\n"
    )
    assert b"\r\nLast-Event-ID: 3\r\n" in heads[1]
    assert [r.seq for r in got] == [1, 2, 3, 4]
    assert got[0].recv_ns == got[1].recv_ns and got[0].recv_mono_ns == got[1].recv_mono_ns  # one read
    assert got[2].recv_mono_ns > got[1].recv_mono_ns
    assert isinstance(sub.last_error, StreamEnded)
    assert sub.retry_ms is None  # the second stream set none


def test_a_5xx_is_retried_and_a_4xx_is_not() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        status = b"503 Service Unavailable" if n == 1 else b"403 Forbidden"
        body = b'{"error":"x","detail":"y"}'
        writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        await asyncio.sleep(10)

    async def main() -> LeanSSESubscriber:
        srv, url, _ = await scripted(script)
        sub = LeanSSESubscriber(url, "c", backoff_min=0.001)
        try:
            with pytest.raises(SubscriberError, match="403"):
                await asyncio.wait_for(sub.run(), 10 * UNIT)
        finally:
            srv.close()
        return sub

    sub = asyncio.run(main())
    assert (sub.stats.requests, sub.stats.reconnects, sub.stats.connections) == (2, 1, 0)


def test_a_wrong_content_type_is_refused() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>")
        await writer.drain()
        await asyncio.sleep(10)

    async def main() -> None:
        srv, url, _ = await scripted(script)
        try:
            with pytest.raises(SubscriberError, match="text/html"):
                await asyncio.wait_for(LeanSSESubscriber(url, "c").run(), 10 * UNIT)
        finally:
            srv.close()

    asyncio.run(main())


def test_path_and_decode_read_a_peers_eventsource() -> None:
    """As for nginx-Nchan: its own path, its own ids, and data that is the raw payload, not the lab's event."""
    got: list[Received] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            body = b': hi\n\nid: 1700000000:0\ndata: {"n": 1}\n\nid: 1700000000:1\nevent: other\ndata: x\n\n'
            body += b'id: 1700000000:2\ndata: {"n":\ndata:  2}\n\n'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n" + body)
            await writer.drain()  # no length, no chunks: the body runs to the connection's end
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 1700000001:0\ndata: 3\n\n")
            await writer.drain()
            await asyncio.sleep(10)

    def decode(channel: str, event: str, data: str) -> dict[str, Any] | None:
        if event != "message":
            return None
        payload = json.loads(data)
        n = payload["n"] if isinstance(payload, dict) else payload
        return {"channel": channel, "seq": n, "ts": None, "data": payload}

    async def main() -> tuple[list[bytes], LeanSSESubscriber]:
        srv, url, heads = await scripted(script)
        sub = LeanSSESubscriber(
            url, "room", path="/sub/{channel}", decode=decode, on_event=got.append, backoff_min=0.001
        )
        try:
            await run_all([sub], lambda tasks: until(lambda: sub.tracker.cursor >= 3, tasks))
        finally:
            srv.close()
        return heads, sub

    heads, sub = asyncio.run(main())
    assert heads[0].startswith(b"GET /sub/room HTTP/1.1\r\n") and b"Last-Event-ID" not in heads[0]
    assert b"\r\nLast-Event-ID: 1700000000:2\r\n" in heads[1]  # the server's own id, sent back as is
    assert [(r.seq, r.ts, r.data) for r in got] == [(1, None, {"n": 1}), (2, None, {"n": 2}), (3, None, 3)]
    assert sub.stats.frames == 3


def test_lab_sse_message() -> None:
    assert lab_sse_message("c", "message", '{"channel":"c","seq":1,"ts":2,"data":null}')["seq"] == 1  # type: ignore[index]
    assert lab_sse_message("c", "gap", '{"first":1,"last":2}') == {"type": "gap", "first": 1, "last": 2}
    assert lab_sse_message("c", "reset", '{"type":"reset","after":5,"last_seq":0}') == {
        "type": "reset",
        "after": 5,
        "last_seq": 0,
    }
    assert lab_sse_message("c", "ping", "{}") is None


# -- the chunked decoder ----------------------------------------------------------------------------------


def test_chunked_decoder() -> None:
    d = ChunkedDecoder()
    assert d.feed(b"5\r\nhel") == b"hel"
    assert d.feed(b"lo\r\n0") == b"lo"
    assert d.feed(b"A;ext=1\r\n0123456789\r\n") == b"0123456789"
    assert not d.done
    assert d.feed(b"0\r\n\r\n") == b""
    assert d.done
    for bad in (b"zz\r\n", b"5\r\nhelloXX", b"-1\r\n", b"1" * 2000):
        with pytest.raises(ConnectionError):
            ChunkedDecoder().feed(bad)


@st.composite
def chunked_streams(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """An SSE body of lab events and heartbeats, and its chunked encoding with arbitrary chunk sizes."""
    body = b"retry: 1000\n\n"
    for seq in range(1, draw(st.integers(0, 12)) + 1):
        body += lab_event(seq) if draw(st.booleans()) else b": heartbeat\n\n" + lab_event(seq)
    wire = b""
    pos = 0
    while pos < len(body):
        size = draw(st.integers(1, 64))
        wire += chunk(body[pos : pos + size])
        pos += size
    return body, wire + b"0\r\n\r\n"


@given(chunked_streams(), st.data())
def test_chunked_then_parsed_split_anywhere_gives_the_body_and_its_events(
    stream: tuple[bytes, bytes], data: st.DataObject
) -> None:
    body, wire = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    decoder, parser = ChunkedDecoder(), EventStreamParser()
    out = b""
    events = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        piece = decoder.feed(wire[a:b])
        out += piece
        events += parser.feed(piece)
    assert out == body
    assert decoder.done
    assert events == EventStreamParser().feed(body)
    assert [json.loads(e.data)["seq"] for e in events] == list(range(1, len(events) + 1))


def test_stopping_an_open_stream_leaves_no_unretrieved_exception(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    sub = LeanSSESubscriber(server.url, f"stop-{server.runtime}")

    async def main() -> None:
        await run_all([sub], lambda tasks: until(lambda: sub._conn is not None, tasks))
        await asyncio.sleep(0.05)  # the closed transport's connection_lost has run

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        gc.collect()  # a future whose exception nobody retrieved is logged when it is collected
    assert [r.getMessage() for r in caplog.records] == []
    assert sub.stats.connections == 1


def test_browser_headers_replace_the_bare_accept_and_keep_last_event_id() -> None:
    headers = browser_headers("eventsource", "http://127.0.0.1:8000")
    sub = LeanSSESubscriber("http://127.0.0.1:8000", "c", after=3, headers=headers)
    head = sub._request().decode("ascii")
    lines = head.split("\r\n")
    assert lines[:2] == ["GET /channels/c/sse HTTP/1.1", "Host: 127.0.0.1:8000"]
    assert lines[2 : 2 + len(headers)] == [f"{n}: {v}" for n, v in headers]
    assert head.count("Accept: ") == 1 and "Accept: text/event-stream\r\n" in head
    assert lines[2 + len(headers)] == "Last-Event-ID: 3" and head.endswith("\r\n\r\n")
    bare = LeanSSESubscriber("http://127.0.0.1:8000", "c", after=3)._request()
    assert bare == (
        b"GET /channels/c/sse HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: text/event-stream\r\nLast-Event-ID: 3\r\n\r\n"
    )


def test_a_gzip_stream_is_decompressed_and_an_unknown_encoding_refused() -> None:
    """A proxy that compresses the stream (the buffering trap, to a browser's ``Accept-Encoding``): the events come
    out of the gzip body split anywhere across chunks and reads; an encoding it cannot undo is refused for good."""
    got: list[Received] = []
    compressor = zlib.compressobj(wbits=31)
    body = compressor.compress(b"".join(lab_event(i) for i in range(1, 6))) + compressor.flush()
    cut = len(body) // 3

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = HEAD_CHUNKED.replace(b"\r\n\r\n", b"\r\nContent-Encoding: %s\r\n\r\n" % (b"gzip" if n == 1 else b"br"))
        writer.write(head + chunk(body[:cut]))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(chunk(body[cut:]))
        await writer.drain()
        await asyncio.sleep(10)

    async def main() -> None:
        srv, url, _ = await scripted(script)
        try:
            sub = LeanSSESubscriber(url, "c", on_event=got.append)
            await run_all([sub], lambda tasks: until(lambda: sub.tracker.cursor >= 5, tasks))
            refused = LeanSSESubscriber(url, "c")
            with pytest.raises(SubscriberError, match="Content-Encoding 'br'"):
                await asyncio.wait_for(refused.run(), 10 * UNIT)
        finally:
            srv.close()

    asyncio.run(main())
    assert [r.seq for r in got] == [1, 2, 3, 4, 5]
