"""bench.agents.websocket: the fleet's lean WebSocket subscriber, against the real server and a scripted one.

Against the lab's server (werkzeug and gevent): every event once, in order, with its bytes counted, for
several subscribers at once; resumed without loss or duplicate after the client drops its connection in
the middle of a stream; gap and reset notices counted as clients' subscriber counts them; a refused
channel not retried; and a whole fleet process. Against a scripted server (an asyncio server written
here, which answers the Upgrade and then sends chosen bytes): the handshake request, the receive time
shared by every message of one read, pings answered, and each close code's decision.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bench.agents.frames import FrameParser, Opcode
from bench.agents.http import browser_headers
from bench.agents.meter import WireMeter
from bench.agents.websocket import LeanWebSocketSubscriber, WebSocketClosed, accept_key
from clients import AsyncPublisher, Received, Subscriber, SubscriberError
from tests.support import UNIT, ServerProcess, run_server


@pytest.fixture(scope="module", params=["werkzeug", "gevent"])
def server(request: pytest.FixtureRequest) -> Any:
    with run_server(request.param) as srv:
        yield srv


async def publish(url: str, channel: str, n: int, pause: float = 0.0) -> None:
    async with AsyncPublisher(url) as pub:
        for k in range(n):
            await pub.publish(channel, {"i": k, "text": "é" * (k % 3)})
            if pause:
                await asyncio.sleep(pause)


async def until(predicate: Callable[[], bool], tasks: list[asyncio.Task[None]], timeout: float = 20 * UNIT) -> None:
    """Wait until ``predicate()`` holds; fail if a subscriber's run ends or the time is up."""
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
    """Run ``subs`` while ``body(tasks)`` runs, then stop them (and fail if one raised)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in subs]
    try:
        await body(tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)


def wire_bytes(r: Received) -> int:
    """Bytes of the event object as the server serializes it (docs/protocol.md, "Events")."""
    obj = {"channel": r.channel, "seq": r.seq, "ts": r.ts, "data": r.data}
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def clean(sub: Subscriber, n: int) -> dict[str, int]:
    return sub.tracker.finish(n).as_dict()


CLEAN = {"duplicate": 0, "out_of_order": 0, "missing": 0, "gap_lost": 0, "gaps": 0, "resets": 0}


# --- against the lab's server -------------------------------------------------------------------------------


def test_subscribers_get_every_event_once_in_order(server: ServerProcess) -> None:
    """Five subscribers on two channels: history and live events, once each, in order, bytes counted exactly."""
    channels = ["lean-a", "lean-b", "lean-a", "lean-b", "lean-a"]
    channels = [f"{c}-{server.runtime}" for c in channels]
    got: list[list[Received]] = [[] for _ in channels]
    subs = [LeanWebSocketSubscriber(server.url, c, on_event=g.append) for c, g in zip(channels, got, strict=True)]
    n = 60

    async def body(tasks: list[asyncio.Task[None]]) -> None:
        await publish(server.url, channels[0], n // 2)  # history, sent right after the 101
        await until(lambda: all(s.stats.connections == 1 for s in subs), tasks)
        await asyncio.gather(publish(server.url, channels[0], n - n // 2, 0.002), publish(server.url, channels[1], n))
        await until(lambda: all(s.tracker.cursor >= n for s in subs), tasks)

    asyncio.run(run_all(subs, body))
    for sub, events in zip(subs, got, strict=True):
        assert [r.seq for r in events] == list(range(1, n + 1))
        assert clean(sub, n) == {"delivered": n, **CLEAN}
        assert (sub.stats.connections, sub.stats.reconnects, sub.stats.frames, sub.stats.requests) == (1, 0, n, 0)
        assert sub.stats.payload_bytes == sum(wire_bytes(r) for r in events)
        assert all(r.recv_ns >= r.ts and r.recv_mono_ns > 0 for r in events)
    assert [r.data for r in got[0]] == [{"i": k, "text": "é" * (k % 3)} for k in range(n // 2)] + [
        {"i": k, "text": "é" * (k % 3)} for k in range(n - n // 2)
    ]


def test_a_dropped_connection_resumes_from_the_cursor(server: ServerProcess) -> None:
    """The client aborts its connection three times mid-stream: no loss, no duplicate, a new connection each."""
    channel = f"lean-drop-{server.runtime}"
    got: list[Received] = []
    sub = LeanWebSocketSubscriber(server.url, channel, on_event=got.append, backoff_min=0.01, backoff_max=0.05)
    n, drops = 150, 3
    dropped = 0

    async def body(tasks: list[asyncio.Task[None]]) -> None:
        nonlocal dropped
        publisher = asyncio.create_task(publish(server.url, channel, n, 0.002))
        for k in range(drops):
            await until(
                lambda k=k: sub.tracker.cursor >= (k + 1) * n // (drops + 2) and sub.stats.connections > k, tasks
            )
            dropped += sub.drop()
        await publisher
        await until(lambda: sub.tracker.cursor >= n, tasks)

    asyncio.run(run_all([sub], body))
    assert dropped == drops
    assert [r.seq for r in got] == list(range(1, n + 1))
    assert clean(sub, n) == {"delivered": n, **CLEAN}
    assert sub.stats.connections == sub.stats.reconnects + 1 == drops + 1
    assert isinstance(sub.last_error, ConnectionResetError)


def test_gap_and_reset_are_counted() -> None:
    """History 10, 30 published: from 0 a gap for 1..20 then 21..30; from 100 a reset then 1..30's last 10."""
    with run_server("werkzeug", "--history", "10") as srv:
        gap_got: list[Received] = []
        reset_got: list[Received] = []
        gap = LeanWebSocketSubscriber(srv.url, "lean-gap", on_event=gap_got.append)
        reset = LeanWebSocketSubscriber(srv.url, "lean-gap", after=100, on_event=reset_got.append)

        async def body(tasks: list[asyncio.Task[None]]) -> None:
            # The reset subscriber starts at cursor 100: wait for its reset notice, not just for a cursor of 30.
            await until(
                lambda: gap.tracker.cursor >= 30 and reset.tracker.counters.resets == 1 and reset.tracker.cursor >= 30,
                tasks,
            )

        async def main() -> None:
            await publish(srv.url, "lean-gap", 30)
            await run_all([gap, reset], body)

        asyncio.run(main())
    assert [r.seq for r in gap_got] == [r.seq for r in reset_got] == list(range(21, 31))
    g = gap.tracker.finish(30)
    assert (g.gaps, g.gap_lost, g.delivered, g.missing, g.duplicate, g.resets) == (1, 20, 10, 0, 0, 0)
    r = reset.tracker.finish(30)
    assert (r.resets, r.gaps, r.gap_lost, r.delivered, r.missing, r.duplicate) == (1, 1, 20, 10, 0, 0)
    assert gap.stats.frames == reset.stats.frames - 1 == 11  # the notices are messages too


def test_a_refused_channel_is_not_retried(server: ServerProcess) -> None:
    sub = LeanWebSocketSubscriber(server.url, "no spaces allowed")
    with pytest.raises(SubscriberError, match=r"400.*bad_channel"):
        asyncio.run(asyncio.wait_for(sub.run(), 10 * UNIT))
    assert (sub.stats.reconnects, sub.stats.connections) == (0, 0)


# --- against a scripted server ---------------------------------------------------------------------------


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def event(seq: int) -> bytes:
    return frame(1, b'{"channel":"c","seq":%d,"ts":1,"data":null}' % seq)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Scripted:
    """An asyncio server that answers each Upgrade with a ``101`` (or ``answer``), then runs ``script``."""

    def __init__(self, script: Script, answer: bytes | None = None, accept: str | None = None) -> None:
        self.script = script
        self.answer = answer
        self.accept = accept
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.startswith(b"Sec-"))
            accept = (
                self.accept
                or base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
            )
            writer.write(
                self.answer
                or (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            await self.script(reader, writer, len(self.heads))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def read_client_frames(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` frames the client sent, unmasked (read with wsproto's server side)."""
    from wsproto.frame_protocol import FrameProtocol

    proto = FrameProtocol(client=False, extensions=[])
    out: list[tuple[int, bytes]] = []
    while len(out) < count:
        proto.receive_bytes(await reader.read(4096))
        for f in proto.received_frames():
            payload = f.payload if isinstance(f.payload, bytes) else json.dumps(f.payload).encode()
            out.append((int(f.opcode), payload))
    return out


def run_scripted(
    sub_kwargs: dict[str, Any], script: Script, until_: Callable[[LeanWebSocketSubscriber], bool], **server: Any
) -> tuple[LeanWebSocketSubscriber, list[Received], Scripted, BaseException | None]:
    """Run a subscriber against a scripted server until ``until_(sub)`` or until ``run()`` ends by itself."""
    got: list[Received] = []
    scripted = Scripted(script, **server)

    async def main() -> tuple[LeanWebSocketSubscriber, BaseException | None]:
        async with scripted as url:
            sub = LeanWebSocketSubscriber(url, "c", on_event=got.append, backoff_min=0.01, **sub_kwargs)
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            deadline = asyncio.get_running_loop().time() + 10 * UNIT
            while not until_(sub) and not task.done():
                assert asyncio.get_running_loop().time() < deadline, "condition not reached"
                await asyncio.sleep(0.005)
            stop.set()
            try:
                await asyncio.wait_for(task, 10 * UNIT)
            except SubscriberError as exc:
                return sub, exc
            return sub, None

    sub, error = asyncio.run(main())
    return sub, got, scripted, error


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    await reader.read()  # until the client goes


def test_handshake_request_is_minimal_and_resumes_from_the_cursor() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            writer.write(event(1) + event(2))
            await writer.drain()
            await asyncio.sleep(0.05)  # then drop without a close frame
        else:
            await hold(reader, writer, n)

    _sub, got, scripted, error = run_scripted({"after": 0}, script, lambda s: s.stats.connections == 2)
    assert error is None and [r.seq for r in got] == [1, 2]
    first, second = scripted.heads
    lines = first.split(b"\r\n")
    assert lines[0] == b"GET /channels/c/ws?after=0 HTTP/1.1"
    names = sorted(line.split(b":")[0].lower() for line in lines[1:] if line)
    assert names == [b"connection", b"host", b"sec-websocket-key", b"sec-websocket-version", b"upgrade"]
    assert b"Sec-WebSocket-Version: 13" in lines and b"Upgrade: websocket" in lines
    assert second.startswith(b"GET /channels/c/ws?after=2 HTTP/1.1\r\n")


def test_one_receive_time_per_read_for_every_message_in_it() -> None:
    """Frames written in one piece share one receive time; a later write gets a later one."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(event(1) + frame(9, b"") + event(2) + event(3))  # with the 101: one read
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(event(4))
        await hold(reader, writer, n)

    _sub, got, _, error = run_scripted({}, script, lambda s: s.tracker.cursor >= 4)
    assert error is None and [r.seq for r in got] == [1, 2, 3, 4]
    assert len({(r.recv_ns, r.recv_mono_ns) for r in got[:3]}) == 1
    assert got[3].recv_mono_ns > got[0].recv_mono_ns


def test_pings_are_answered_and_a_fragmented_message_is_read_whole() -> None:
    pongs: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        body = b'{"channel":"c","seq":1,"ts":1,"data":"split"}'
        writer.write(frame(1, body[:10], fin=False) + frame(9, b"ping-1") + frame(0, body[10:]) + frame(9, b""))
        pongs.extend(await read_client_frames(reader, 2))
        await hold(reader, writer, n)

    _sub, got, _, error = run_scripted({}, script, lambda s: s.tracker.cursor >= 1 and len(pongs) == 2)
    assert error is None and [(r.seq, r.data) for r in got] == [(1, "split")]
    assert pongs == [(int(Opcode.PONG), b"ping-1"), (int(Opcode.PONG), b"")]


class Hooked(LeanWebSocketSubscriber):
    """The three hooks a peer's protocol overrides: another target, a message sent on open, every text seen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.texts: list[tuple[str, int]] = []

    def _target(self) -> str:
        return f"/peer?channel={self.channel}&cursor={self.tracker.cursor}"

    def _opened(self, send: Callable[[str], None]) -> None:
        send("hello é")

    def _on_text(self, text: str, recv_ns: int, recv_mono_ns: int) -> None:
        self.texts.append((text, recv_ns))
        if text.startswith("{"):
            super()._on_text(text, recv_ns, recv_mono_ns)


def test_hooks_for_a_peers_protocol() -> None:
    """``_target`` names the Upgrade, ``_opened`` sends on the new connection (counted), ``_on_text`` sees all."""
    sent: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(frame(1, b"not an event") + event(1))  # with the 101: delivered before the session resumes
        await writer.drain()
        sent.extend(await read_client_frames(reader, 1))
        await hold(reader, writer, n)

    got: list[Received] = []
    meter = WireMeter()

    scripted = Scripted(script)

    async def main() -> Hooked:
        async with scripted as url:
            sub = Hooked(url, "c", meter=meter, on_event=got.append)
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            deadline = asyncio.get_running_loop().time() + 10 * UNIT
            while not (sent and got):
                assert asyncio.get_running_loop().time() < deadline and not task.done()
                await asyncio.sleep(0.005)
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)
            return sub

    sub = asyncio.run(main())
    assert scripted.heads[0].startswith(b"GET /peer?channel=c&cursor=0 HTTP/1.1\r\n")
    assert sent == [(int(Opcode.TEXT), json.dumps("hello é").encode())]  # (read_client_frames dumps text)
    assert [t for t, _ in sub.texts] == ["not an event", '{"channel":"c","seq":1,"ts":1,"data":null}']
    assert sub.texts[0][1] == sub.texts[1][1] == got[0].recv_ns  # one read, one receive time
    assert [r.seq for r in got] == [1] and sub.stats.frames == 2
    assert meter.up - meter.head_up == 6 + len("hello é".encode()) + 8  # the masked text frame, then close 1000


@pytest.mark.parametrize(
    ("code", "fatal"),
    [
        (1000, False),
        (1001, False),
        (1011, False),
        (1013, False),
        (1003, True),
        (1008, True),
        (1009, True),
        (4400, True),
        (4403, True),
    ],
)
def test_close_codes_decide_as_clients_subscriber_does(code: int, fatal: bool) -> None:
    """The server's close is answered with its code; a rule we broke is fatal, anything else reconnects."""
    answers: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            writer.write(event(1) + frame(8, code.to_bytes(2, "big") + b"reason"))
            answers.extend(await read_client_frames(reader, 1))
        else:
            await hold(reader, writer, n)

    sub, got, _, error = run_scripted({}, script, lambda s: s.stats.connections == 2)
    assert [r.seq for r in got] == [1]
    assert answers == [(int(Opcode.CLOSE), json.dumps([code, ""]).encode())]
    if fatal:
        assert isinstance(error, SubscriberError) and f"{code} reason" in str(error)
        assert sub.stats.connections == 1
    else:
        assert error is None and sub.stats.connections == 2
        assert isinstance(sub.last_error, WebSocketClosed) and sub.last_error.code == code


def test_a_broken_frame_is_closed_1002_and_reconnected() -> None:
    answers: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            writer.write(event(1) + bytes([0x81, 0x81]) + b"mask" + b"x")  # a masked server frame
            answers.extend(await read_client_frames(reader, 1))
        else:
            writer.write(event(2))
            await hold(reader, writer, n)

    sub, got, _, error = run_scripted({}, script, lambda s: s.tracker.cursor >= 2)
    assert error is None and [r.seq for r in got] == [1, 2]
    assert answers[0][0] == int(Opcode.CLOSE) and json.loads(answers[0][1])[0] == 1002
    assert isinstance(sub.last_error, WebSocketClosed) and (sub.last_error.code, sub.last_error.by_server) == (
        1002,
        False,
    )


def test_an_oversized_message_and_a_binary_frame_are_fatal() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(event(1) + bytes([0x81, 126]) + (2000).to_bytes(2, "big"))
        await hold(reader, writer, n)

    sub, got, _, error = run_scripted({"max_size": 1000}, big, lambda s: False)
    assert [r.seq for r in got] == [1] and isinstance(error, SubscriberError) and "1009" in str(error)

    async def binary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(frame(2, b"\x00"))
        await hold(reader, writer, n)

    sub, got, _, error = run_scripted({}, binary, lambda s: False)
    assert isinstance(error, SubscriberError) and "binary" in str(error)
    assert sub.stats.connections == 1


@pytest.mark.parametrize(
    ("answer", "accept", "fatal"),
    [
        (b'HTTP/1.1 403 FORBIDDEN\r\nContent-Length: 30\r\n\r\n{"error":"forbidden_origin"}  ', None, True),
        (b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\nContent-Length: 2\r\n\r\n{}", None, False),
        (None, "d3Jvbmc=", False),  # a wrong Sec-WebSocket-Accept: not a WebSocket, try again
    ],
)
def test_handshake_refusals(answer: bytes | None, accept: str | None, fatal: bool) -> None:
    sub, got, _, error = run_scripted({}, hold, lambda s: s.stats.reconnects >= 2, answer=answer, accept=accept)
    assert got == [] and sub.stats.connections == 0
    if fatal:
        assert isinstance(error, SubscriberError) and "403" in str(error) and "forbidden_origin" in str(error)
        assert sub.stats.reconnects == 0
    else:
        assert error is None and isinstance(sub.last_error, ConnectionResetError)


def test_accept_key_is_rfc6455s_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError):
        LeanWebSocketSubscriber("https://lab.example", "c")
    assert FrameParser().max_size == LeanWebSocketSubscriber("http://h:1", "c").max_size


def test_browser_headers_follow_the_handshake_lines_on_every_upgrade() -> None:
    headers = browser_headers("websocket", "http://127.0.0.1:8000")

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            writer.write(event(1))
            await writer.drain()
            await asyncio.sleep(0.05)  # then drop: the second Upgrade carries them too
        else:
            await hold(reader, writer, n)

    _sub, got, scripted, error = run_scripted(
        {"after": 0, "headers": headers}, script, lambda s: s.stats.connections == 2
    )
    assert error is None and [r.seq for r in got] == [1]
    for head in scripted.heads:
        lines = head.decode("ascii").split("\r\n")
        assert lines[5] == "Sec-WebSocket-Version: 13"
        assert lines[6 : 6 + len(headers)] == [f"{n}: {v}" for n, v in headers]
        assert "Origin: http://127.0.0.1:8000" in lines
