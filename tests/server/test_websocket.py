"""Tests of server/websocket.py against a real server (the transport needs one).

The clients here are simple-websocket's and wsproto's own, not the lab's
``clients/`` package, so they also check docs/protocol.md independently.
The synchronous WebSocket test client (:class:`tests.support.WsClient`) is
shared with the other server tests.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from simple_websocket import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

from server.bus import Event, MemoryBus
from server.stats import Stats
from server.websocket import WebSocketSession, _Writer, frame_header
from tests.support import UNIT, ServerProcess, WsClient, receive_json, run_server, ws_connect

MAX_MESSAGE = 1000
"""--ws-max-message of the module's server."""


def close_of(ws: WsClient, timeout: float = 10 * UNIT) -> tuple[int, str, list[Any]]:
    """Read until the server closes: (close code, reason, messages before it)."""
    messages: list[Any] = []
    try:
        while True:
            message = ws.receive(timeout=timeout)
            assert message is not None, f"the server did not close the connection; got {messages[-3:]}"
            messages.append(message)
    except ConnectionClosed:
        return int(ws.close_reason), ws.close_message or "", messages


def raw_handshake(port: int, target: str, extensions: str | None = None) -> bytes:
    """Send an Upgrade request by hand; return the answer's head (and what followed it)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    with socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def upgrade_headers() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with run_server("werkzeug", "--history", "10", "--max-batch", "3", "--ws-max-message", str(MAX_MESSAGE)) as proc:
        yield proc


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10 * UNIT) as client:
        yield client


def publish(http: httpx.Client, channel: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert http.post(f"/channels/{channel}/events", content=json.dumps({"i": i})).status_code == 201


def test_frame_header_makes_an_unmasked_server_text_frame() -> None:
    payload = b'{"channel":"c","seq":1,"ts":2,"data":"\xc3\xa9"}'
    reader = FrameProtocol(client=True, extensions=[])
    reader.receive_bytes(frame_header(len(payload)) + payload)
    frames = list(reader.received_frames())
    assert len(frames) == 1
    assert frames[0].payload == payload.decode()
    assert frames[0].message_finished


def test_catch_up_then_push_in_order(server: ServerProcess, http: httpx.Client) -> None:
    publish(http, "ws-push", 5)
    ws = ws_connect(f"{server.ws_url}/channels/ws-push/ws?after=2")
    try:
        assert [m["seq"] for m in receive_json(ws, 3)] == [3, 4, 5]
        publish(http, "ws-push", 4, start=5)
        got = receive_json(ws, 4)
        assert [m["seq"] for m in got] == [6, 7, 8, 9]
        assert [m["data"] for m in got] == [{"i": i} for i in range(5, 9)]
        assert all(list(m) == ["channel", "seq", "ts", "data"] for m in got)
    finally:
        ws.close()


def test_frames_carry_the_same_bytes_as_long_poll_answers(server: ServerProcess, http: httpx.Client) -> None:
    publish(http, "ws-bytes", 3)
    ws = ws_connect(f"{server.ws_url}/channels/ws-bytes/ws?after=0")
    try:
        frames = [ws.receive(timeout=10 * UNIT) for _ in range(3)]
    finally:
        ws.close()
    body = http.get("/channels/ws-bytes/poll", params={"after": 0, "timeout": 0}).content
    assert b"[" + b",".join(f.encode() for f in frames) + b"]" in body


def test_gap_notice_then_the_retained_events(server: ServerProcess, http: httpx.Client) -> None:
    publish(http, "ws-gap", 15)  # history 10: 1..5 are gone
    ws = ws_connect(f"{server.ws_url}/channels/ws-gap/ws?after=2")
    try:
        got = receive_json(ws, 11)
    finally:
        ws.close()
    assert got[0] == {"type": "gap", "first": 3, "last": 5}
    assert [m["seq"] for m in got[1:]] == list(range(6, 16))


def test_reset_notice_then_the_channel_from_its_start(server: ServerProcess, http: httpx.Client) -> None:
    publish(http, "ws-reset", 2)
    ws = ws_connect(f"{server.ws_url}/channels/ws-reset/ws?after=99")
    try:
        got = receive_json(ws, 3)
        publish(http, "ws-reset", 1, start=2)
        got += receive_json(ws, 1)
    finally:
        ws.close()
    assert got[0] == {"type": "reset", "after": 99, "last_seq": 2}
    assert [m["seq"] for m in got[1:]] == [1, 2, 3]


def test_publish_is_acked_and_delivered(server: ServerProcess, http: httpx.Client) -> None:
    ws = ws_connect(f"{server.ws_url}/channels/ws-pub/ws")
    try:
        ws.send(json.dumps({"type": "publish", "id": "a1", "data": {"n": 1}}))
        ws.send(json.dumps({"type": "publish", "data": [1, 2], "channel": "ws-pub-other"}))
        got = receive_json(ws, 3)
    finally:
        ws.close()
    acks = [m for m in got if m.get("type") == "ack"]
    events = [m for m in got if "type" not in m]
    assert [(a["id"], a["seq"]) for a in acks] == [("a1", 1), (None, 1)]
    assert all(isinstance(a["ts"], int) for a in acks)
    assert [(e["channel"], e["seq"], e["data"]) for e in events] == [("ws-pub", 1, {"n": 1})]
    assert events[0]["ts"] == acks[0]["ts"]
    other = http.get("/channels/ws-pub-other/poll", params={"after": 0, "timeout": 0}).json()
    assert [(e["seq"], e["data"]) for e in other["events"]] == [(1, [1, 2])]


def test_application_ping_gets_pong(server: ServerProcess) -> None:
    ws = ws_connect(f"{server.ws_url}/channels/ws-ping/ws")
    try:
        ws.send(json.dumps({"type": "ping", "id": 7}))
        ws.send(json.dumps({"type": "ping"}))
        first, second = receive_json(ws, 2)
    finally:
        ws.close()
    assert (first["type"], first["id"], second["type"], second["id"]) == ("pong", 7, "pong", None)
    assert isinstance(first["ts"], int) and first["ts"] > 0


def test_compression_is_not_negotiated_by_default(server: ServerProcess) -> None:
    head = raw_handshake(server.port, "/channels/ws-z/ws", "permessage-deflate; client_max_window_bits")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"sec-websocket-extensions" not in head.lower()


def test_compression_is_negotiated_when_switched_on() -> None:
    with run_server("werkzeug", "--ws-compression", "on") as srv:
        head = raw_handshake(srv.port, "/channels/z/ws", "permessage-deflate; client_max_window_bits")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"sec-websocket-extensions: permessage-deflate" in head.lower()
        # And events still arrive, compressed: a wsproto client decodes them.
        conn = WSConnection(ConnectionType.CLIENT)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10 * UNIT) as sock:
            sock.sendall(
                conn.send(Request(host="127.0.0.1", target="/channels/z/ws", extensions=[PerMessageDeflate()]))
            )
            accepted: list[Any] = []
            texts: list[str] = []
            published = False
            while len(texts) < 2:
                conn.receive_data(sock.recv(65536))
                for event in conn.events():
                    if isinstance(event, AcceptConnection):
                        accepted = event.extensions
                    elif isinstance(event, TextMessage):
                        texts.append(event.data)
                if accepted and not published:
                    published = True
                    for i in range(2):
                        httpx.post(f"{srv.url}/channels/z/events", content=json.dumps({"i": i}), timeout=10 * UNIT)
        assert [type(e).__name__ for e in accepted] == ["PerMessageDeflate"]
        assert [json.loads(t)["seq"] for t in texts] == [1, 2]


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/channels/a%20b/ws", "bad_channel"),
        ("/channels/" + "c" * 65 + "/ws", "bad_channel"),
        ("/channels/%C3%A9/ws", "bad_channel"),
        ("/channels//ws", "bad_channel"),
        ("/channels/ws-hs/ws?after=-1", "bad_cursor"),
        ("/channels/ws-hs/ws?after=x", "bad_cursor"),
        ("/channels/ws-hs/ws?after=1.5", "bad_cursor"),
        ("/channels/ws-hs/ws?after=", "bad_cursor"),
        ("/channels/ws-hs/ws?after=" + "9" * 30, "bad_cursor"),
    ],
)
def test_a_bad_handshake_is_refused_before_the_upgrade(server: ServerProcess, target: str, error: str) -> None:
    resp = httpx.get(server.url + target, headers=upgrade_headers(), timeout=10 * UNIT)
    assert (resp.status_code, resp.json()["error"]) == (400, error)
    assert "upgrade" not in resp.headers.get("connection", "").lower()


BAD_MESSAGES: list[tuple[str, str | bytes, int, str]] = [
    ("array", "[1]", 4400, "bad_message"),
    ("string", '"hello"', 4400, "bad_message"),
    ("number", "1", 4400, "bad_message"),
    ("not-json", "{", 4400, "bad_json"),
    ("empty", "", 4400, "bad_json"),
    ("nan", "NaN", 4400, "bad_json"),
    ("nan-data", '{"type": "publish", "data": NaN}', 4400, "bad_json"),
    ("no-type", '{"data": 1}', 4400, "bad_message"),
    ("unknown-type", '{"type": "subscribe"}', 4400, "bad_message"),
    ("no-data", '{"type": "publish", "id": 1}', 4400, "bad_message"),
    ("bad-channel", '{"type": "publish", "data": 1, "channel": "a b"}', 4400, "bad_channel"),
    ("long-channel", json.dumps({"type": "publish", "data": 1, "channel": "c" * 65}), 4400, "bad_channel"),
    ("empty-channel", '{"type": "publish", "data": 1, "channel": ""}', 4400, "bad_channel"),
    ("number-channel", '{"type": "publish", "data": 1, "channel": 5}', 4400, "bad_channel"),
    ("too-deep", '{"type": "publish", "data": ' + "[" * 129 + "]" * 129 + "}", 1008, "too_deep"),
    ("too-deep-ping", '{"type": "ping", "id": ' + "[" * 129 + "]" * 129 + "}", 1008, "too_deep"),
    ("inf-data", '{"type": "publish", "data": 1e999}', 4400, "bad_json"),
    ("binary", b"\x00\x01", 1003, "binary frames are not supported"),
    ("oversized", json.dumps({"type": "publish", "data": "x" * MAX_MESSAGE}), 1009, "Message is too big"),
    ("oversized-binary", b"x" * (MAX_MESSAGE + 1), 1009, "Message is too big"),
]


@pytest.mark.parametrize(("message", "code", "reason"), [c[1:] for c in BAD_MESSAGES], ids=[c[0] for c in BAD_MESSAGES])
def test_a_bad_message_closes_only_its_connection(
    server: ServerProcess,
    http: httpx.Client,
    request: pytest.FixtureRequest,
    message: str | bytes,
    code: int,
    reason: str,
) -> None:
    channel = "ws-bad-" + request.node.callspec.id
    healthy = ws_connect(f"{server.ws_url}/channels/{channel}/ws")
    rude = ws_connect(f"{server.ws_url}/channels/{channel}/ws")
    try:
        rude.send(message)
        got_code, got_reason, before = close_of(rude)
        assert (got_code, before) == (code, [])
        assert got_reason.startswith(reason)
        # Nothing was published; the healthy subscriber still receives.
        publish(http, channel, 1)
        assert [(m["seq"], m["data"]) for m in receive_json(healthy, 1)] == [(1, {"i": 0})]
        assert healthy.connected
    finally:
        healthy.close()
    answer = http.get(f"/channels/{channel}/poll", params={"after": 0, "timeout": 0}).json()
    assert [e["seq"] for e in answer["events"]] == [1]


def test_the_deepest_and_longest_payloads_allowed_are_published() -> None:
    with run_server("werkzeug") as srv:
        ws = ws_connect(f"{srv.ws_url}/channels/ws-limits/ws")
        try:
            deep = json.loads("[" * 128 + "]" * 128)
            ws.send(json.dumps({"type": "publish", "id": 1, "data": deep}))
            ws.send(json.dumps({"type": "publish", "id": 2, "data": int("9" * 4300)}))
            got = receive_json(ws, 4)
        finally:
            ws.close()
    acks = sorted(m["id"] for m in got if m.get("type") == "ack")
    events = [m["data"] for m in got if "type" not in m]
    assert acks == [1, 2]
    assert events == [deep, int("9" * 4300)]


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        ('{"type": "publish", "data": ' + "1" * 5000 + "}", 1008, "number_too_long"),
        ('{"type": "publish", "data": ' + "[" * 100_000 + "]" * 100_000 + "}", 1008, "too_deep"),
        ('{"type": "publish", "data": ' + "-" + "1" * 4300 + ".5e10}", 1008, "number_too_long"),
    ],
    ids=["5000-digits", "100000-deep", "long-float"],
)
def test_payloads_beyond_the_json_limits_close_1008_not_an_http_500(message: str, code: int, reason: str) -> None:
    """Before: the 100,000-deep array wrote ``HTTP/1.1 500 INTERNAL SERVER ERROR`` into the open WebSocket."""
    with run_server("werkzeug") as srv:
        rude = ws_connect(f"{srv.ws_url}/channels/ws-limits/ws")
        rude.send(message)
        got_code, got_reason, before = close_of(rude)
        assert (got_code, before) == (code, [])
        assert got_reason.startswith(reason + ": ")
        answer = httpx.get(f"{srv.url}/channels/ws-limits/poll", params={"timeout": 0}, timeout=10 * UNIT).json()
        assert answer["events"] == []


@pytest.mark.parametrize(
    ("drop", "replace", "status", "error"),
    [
        (None, ("Sec-WebSocket-Version", "8"), 426, "unsupported_version"),
        ("Sec-WebSocket-Version", None, 426, "unsupported_version"),
        ("Sec-WebSocket-Key", None, 400, "bad_handshake"),
        (None, ("Sec-WebSocket-Key", "c2hvcnQ="), 400, "bad_handshake"),
        (None, ("Sec-WebSocket-Key", "not base64!"), 400, "bad_handshake"),
    ],
    ids=["version-8", "no-version", "no-key", "short-key", "bad-key"],
)
def test_an_upgrade_wsproto_would_refuse_gets_a_json_4xx_not_a_500(
    server: ServerProcess, drop: str | None, replace: tuple[str, str] | None, status: int, error: str
) -> None:
    headers = upgrade_headers()
    if drop:
        del headers[drop]
    if replace:
        headers[replace[0]] = replace[1]
    resp = httpx.get(f"{server.url}/channels/ws-hs/ws", headers=headers, timeout=10 * UNIT)
    assert (resp.status_code, resp.json()["error"]) == (status, error)
    assert "upgrade" not in resp.headers.get("connection", "").lower()
    if status == 426:
        assert resp.headers["sec-websocket-version"] == "13"


# The fast path (WebSocketSession.broadcast), without a server: sessions over real socket pairs.


class FakeWs:
    """What a session reads of its LabWebSocket: ``connected``, ``event``, ``writer``."""

    def __init__(self, sock: socket.socket) -> None:
        self.connected = True
        self.event = threading.Event()
        self.writer = _Writer(sock)


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Three (server end, client end) socket pairs, closed afterwards."""
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def sessions_on(pairs: list[tuple[socket.socket, socket.socket]], after: int = 0) -> list[WebSocketSession]:
    return [WebSocketSession(FakeWs(a), MemoryBus(), Stats(), "c", after, 10, False) for a, _ in pairs]  # type: ignore[arg-type]


def received(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_broadcast_writes_one_frame_per_session_and_counts_it(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    sessions = sessions_on(pairs)
    event = Event.create("c", 1, 5, b'{"i":1}')
    assert WebSocketSession.broadcast(sessions, event) == []
    for (_, client), session in zip(pairs, sessions, strict=True):
        assert received(client) == frame_header(len(event.wire)) + event.wire
        assert (session.cursor, session.delivered, session.bytes_sent) == (1, 1, len(event.wire))


def test_broadcast_leaves_a_session_not_one_event_behind_to_its_loop(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    behind, ahead, ready = sessions_on(pairs)
    behind.cursor, ahead.cursor, ready.cursor = 1, 3, 2
    event = Event.create("c", 3, 5, b"3")
    assert WebSocketSession.broadcast([behind, ahead, ready], event) == [behind, ahead]
    assert [received(client) != b"" for _, client in pairs] == [False, False, True]
    assert (behind.cursor, ahead.cursor, ready.cursor) == (1, 3, 3)
    assert behind.delivered == ahead.delivered == 0


@pytest.mark.parametrize("cooperative", [False, True], ids=["threads", "gevent"])
def test_broadcast_skips_a_writer_someone_holds(
    pairs: list[tuple[socket.socket, socket.socket]], cooperative: bool
) -> None:
    busy, free, _ = sessions_on(pairs)
    for session in (busy, free):
        session._writer.cooperative = cooperative
    event = Event.create("c", 1, 5, b"1")
    with busy._writer.lock:
        assert WebSocketSession.broadcast([busy, free], event) == [busy]
    assert not busy._writer.lock.locked() and not free._writer.lock.locked()  # nothing taken is left held
    assert received(pairs[0][1]) == b""
    assert received(pairs[1][1]) == frame_header(len(event.wire)) + event.wire
    assert (busy.cursor, free.cursor) == (0, 1)


def test_broadcast_leaves_pending_compressed_and_closed_sessions_to_their_loop(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    pending, compressed, closed = sessions_on(pairs)
    pending._writer.pending = b"tail"
    compressed.compressed = True
    closed.ws.connected = False
    event = Event.create("c", 1, 5, b"1")
    assert WebSocketSession.broadcast([pending, compressed, closed], event) == [pending, compressed, closed]
    assert [received(client) for _, client in pairs] == [b"", b"", b""]
    assert pending._writer.pending == b"tail"  # its tail still goes first


def test_broadcast_a_partial_write_leaves_the_rest_pending_and_wakes_the_loop() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        (session,) = sessions_on([(a, b)])
        event = Event.create("c", 1, 5, b'"' + b"x" * 1_000_000 + b'"')
        frame = frame_header(len(event.wire)) + event.wire
        assert WebSocketSession.broadcast([session], event) == [session]
        sent = len(frame) - len(session._writer.pending)
        assert 0 <= sent < len(frame)
        assert session._writer.pending == frame[sent:]
        assert (session.cursor, session.delivered) == (1, 1)  # the event is the writer's now: sent once, not again


def test_broadcast_a_peer_gone_is_left_to_the_loop_with_the_cursor_unmoved() -> None:
    a, b = socket.socketpair()
    b.close()
    with a:
        (session,) = sessions_on([(a, b)])
        assert WebSocketSession.broadcast([session], Event.create("c", 1, 5, b"1")) == [session]
        assert (session.cursor, session.delivered, session._writer.pending) == (0, 0, b"")


def test_the_writer_checks_instead_of_locking_only_under_gevent() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert _Writer(a).cooperative is False
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import socket\n"
        "from server.websocket import _Writer\n"
        "a, b = socket.socketpair()\n"
        "print(_Writer(a).cooperative)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30 * UNIT, check=True)
    assert out.stdout.strip() == "True"
