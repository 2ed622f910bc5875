"""One writer per WebSocket (server/websocket.py), on every runtime, against a real server.

A raw-socket client with a small receive window pings while the server
writes a catch-up of several megabytes and, at the same time, pushes new
events (the fast path, whose writes are then partial). Every byte received
must parse as valid frames (wsproto's client), every event must arrive once
in order, every ping must get its pong, and once the client has closed the
session must no longer be counted in ``/stats``. Before the fix, on gthread
and Werkzeug a pong landed inside an event's bytes (the client's parser
stalled on a garbage length), and on gevent the reader greenlet died
(``ConcurrentObjectUseError``): no pong, and the session stayed counted.

Also here: the frame header builder against wsproto's own framing.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Ping, Pong, Request, TextMessage
from wsproto.frame_protocol import FrameProtocol

from server.config import RUNTIMES
from server.websocket import frame_header
from tests.support import UNIT, ServerProcess, run_server, wait_until

PAYLOAD = 100_000
"""Bytes of each event's data: 40 of them make a catch-up larger than the kernel's socket buffers."""
CATCH_UP = 40
LIVE = 20
PINGS = 30
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module", params=RUNTIMES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with run_server(request.param, "--threads", "20") as proc:
        yield proc


class RawClient:
    """A WebSocket client on a bare socket with a small receive window; wsproto parses what arrives."""

    def __init__(self, port: int, target: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.conn.send(Request(host=f"127.0.0.1:{port}", target=target)))
        head = b""
        while b"\r\n\r\n" not in head:  # the 101 answer only: frames after it are read slowly, below
            byte = self.sock.recv(1)
            assert byte, f"no 101 answer: {head!r}"
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        self.conn.receive_data(head)
        list(self.conn.events())
        self.sock.setblocking(False)
        self.texts: list[str] = []
        self._part: list[str] = []
        self.pongs: list[bytes] = []
        self.closes: list[CloseConnection] = []
        self.pings = 0

    def ping(self, payload: bytes) -> None:
        data = self.conn.send(Ping(payload))
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_WRITE)
        while data:
            assert selector.select(10 * UNIT), "the server stopped reading"
            data = data[self.sock.send(data) :]
        selector.close()

    def read_some(self, size: int = 2048) -> bool:
        """Read at most ``size`` bytes if any are there; false at EOF."""
        try:
            chunk = self.sock.recv(size)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.conn.receive_data(chunk)
        for event in self.conn.events():
            if isinstance(event, TextMessage):  # wsproto hands over a frame's bytes as they arrive
                self._part.append(event.data)
                if event.message_finished:
                    self.texts.append("".join(self._part))
                    self._part = []
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, Ping):
                self.pings += 1
            elif isinstance(event, CloseConnection):
                self.closes.append(event)
        return True


def test_pings_during_a_large_catch_up_and_partial_live_writes_keep_the_stream_valid(server: ServerProcess) -> None:
    channel = f"writer-{server.runtime}"
    body = json.dumps({"x": "y" * PAYLOAD})
    with httpx.Client(base_url=server.url, timeout=10 * UNIT, headers=JSON) as http:
        for _ in range(CATCH_UP):
            assert http.post(f"/channels/{channel}/events", content=body).status_code == 201
    client = RawClient(server.port, f"/channels/{channel}/ws?after=0")

    def publish_live() -> None:
        with httpx.Client(base_url=server.url, timeout=30 * UNIT, headers=JSON) as http:
            for _ in range(LIVE):
                assert http.post(f"/channels/{channel}/events", content=body).status_code == 201

    publisher = threading.Thread(target=publish_live)
    publisher.start()
    try:
        # The server is now blocked writing the catch-up into a full window: ping it there.
        sent: list[bytes] = []
        deadline = time.monotonic() + 60 * UNIT
        while len(client.texts) < CATCH_UP + LIVE or len(client.pongs) < PINGS:
            assert time.monotonic() < deadline, (len(client.texts), len(client.pongs), client.closes)
            if len(sent) < PINGS:
                sent.append(b"p%d" % len(sent))
                client.ping(sent[-1])
            assert client.read_some(), "the server closed the connection"
            assert not client.closes, [(c.code, c.reason) for c in client.closes]
            time.sleep(0.002)
    finally:
        publisher.join(30 * UNIT)
    assert client.pongs == sent
    seqs = [json.loads(text)["seq"] for text in client.texts]
    assert seqs == list(range(1, CATCH_UP + LIVE + 1))
    assert all(len(json.loads(text)["data"]["x"]) == PAYLOAD for text in client.texts)

    # The client leaves: the session must end and stop being counted.
    client.sock.setblocking(True)
    client.sock.sendall(client.conn.send(CloseConnection(code=1000)))
    client.sock.settimeout(10 * UNIT)
    while client.read_some(65536) and not client.closes:
        pass
    client.sock.close()
    assert [c.code for c in client.closes] == [1000]

    def websockets_counted() -> int:
        count: int = httpx.get(server.url + "/stats", timeout=10 * UNIT).json()["connections"]["websocket"]
        return count

    assert wait_until(lambda: websockets_counted() == 0, 10 * UNIT), websockets_counted()


def test_a_frame_header_announcing_2_62_bytes_is_closed_1009_at_once(server: ServerProcess) -> None:
    client = RawClient(server.port, "/channels/writer-huge/ws")
    client.sock.setblocking(True)
    header = bytes([0x81, 0x80 | 127]) + (2**62).to_bytes(8, "big") + b"mask"
    client.sock.sendall(header + b"abc")
    client.sock.settimeout(5 * UNIT)
    while not client.closes and client.read_some(65536):
        pass
    client.sock.close()
    assert [(c.code, c.reason) for c in client.closes] == [(1009, "Message is too big")]


PING_INTERVAL = 0.5 * UNIT


@pytest.fixture(scope="module", params=RUNTIMES)
def pinging_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with run_server(request.param, "--ws-ping-interval", str(PING_INTERVAL)) as proc:
        yield proc


def test_server_pings_go_through_the_writer_and_time_out_with_1008(pinging_server: ServerProcess) -> None:
    """The reader's own pings and its close on a missing pong take the same writer, during pushes too."""
    channel = f"pings-{pinging_server.runtime}"
    client = RawClient(pinging_server.port, f"/channels/{channel}/ws")
    client.sock.setblocking(True)
    client.sock.settimeout(10 * UNIT)
    with httpx.Client(base_url=pinging_server.url, timeout=10 * UNIT, headers=JSON) as http:
        for i in range(5):
            assert http.post(f"/channels/{channel}/events", content=json.dumps({"i": i})).status_code == 201
    while not client.closes and client.read_some(65536):
        pass  # never answering the server's pings
    client.sock.close()
    assert client.pings >= 1
    assert [(c.code, c.reason) for c in client.closes] == [(1008, "Ping/Pong timeout")]
    assert [json.loads(t)["seq"] for t in client.texts] == [1, 2, 3, 4, 5]


def frames_of(data: bytes) -> list[Any]:
    reader = FrameProtocol(client=True, extensions=[])
    reader.receive_bytes(data)
    return list(reader.received_frames())


@given(
    st.one_of(
        st.integers(0, 130),
        st.integers(65530, 65540),
        st.sampled_from([125, 126, 127, 65535, 65536, 65537, 200_000]),
    )
)
def test_frame_header_is_what_wsproto_writes_and_reads(length: int) -> None:
    payload = b"x" * length
    expected = bytes(FrameProtocol(client=False, extensions=[]).send_data(payload.decode()))
    assert frame_header(length) + payload == expected
    frames = frames_of(frame_header(length) + payload)
    assert len(frames) == 1
    assert (frames[0].payload, frames[0].message_finished) == (payload.decode(), True)


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 2**32])
def test_frame_header_length_encodings(length: int) -> None:
    header = frame_header(length)
    assert header[0] == 0x81  # FIN, text
    if length < 126:
        assert header[1:] == bytes([length])
    elif length < 65536:
        assert header[1:] == bytes([126]) + length.to_bytes(2, "big")
    else:
        assert header[1:] == bytes([127]) + length.to_bytes(8, "big")


@pytest.fixture(scope="module", params=RUNTIMES)
def impatient_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Pings off, and a write that makes no progress for 2 s gives the reader up."""
    with run_server(request.param, "--ws-ping-interval", "0", env={"LAB_WS_WRITE_TIMEOUT": "2"}) as server:
        yield server


def test_a_reader_that_stops_reading_is_dropped_even_with_pings_off(impatient_server: ServerProcess) -> None:
    """A slow consumer cannot hold its session forever: the write gives up, the connection goes, memory is freed."""
    from bench.agents.memory import open_stalled_reader

    server = impatient_server
    channel = f"stalled-{server.runtime}"
    sock = open_stalled_reader("127.0.0.1", server.port, channel)
    try:
        with httpx.Client(base_url=server.url, timeout=10 * UNIT) as http:
            assert wait_until(lambda: http.get("/stats").json()["connections"]["websocket"] == 1, 10 * UNIT)
            for _ in range(40):  # 8 MB: far more than the kernel buffers of both ends hold
                assert http.post(f"/channels/{channel}/events", json="x" * 200_000).status_code == 201
            assert wait_until(lambda: http.get("/stats").json()["connections"]["websocket"] == 0, 30 * UNIT)
            # The server is not hurt: a new subscriber gets the whole history (what history keeps).
            assert http.post(f"/channels/{channel}/events", json="after").status_code == 201
    finally:
        sock.close()
