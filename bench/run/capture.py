"""One real exchange of each transport, captured byte for byte at the socket.

Every run stores ``capture.json`` beside its raw results: the bytes of one
long poll (request and response) and of one WebSocket session (the Upgrade
request, the ``101`` answer and the first event frame), as the lab's own
clients (:mod:`clients`) and server produced them, read verbatim by the relay
(:class:`bench.link.relay.Relay` with ``sample_bytes``). The notebook dissects
them header by header. Like every raw file it is written once, never edited.

A run whose profile has a Flask-SocketIO scenario also stores
``socketio-capture.json`` (:func:`write_socketio_capture`): one Socket.IO session
of the official client's default handshake, Engine.IO long polling upgraded to a
WebSocket, as the fleet's :class:`bench.agents.socketio.SocketIOSubscriber` and the
Flask-SocketIO peer put it on the wire: every HTTP request and response of the
polling phase, the Upgrade and its ``101``, every WebSocket frame (the probe, the
upgrade, the event, a heartbeat), in the order the relay read them. The peer runs
with ``pingInterval`` 1 s instead of Socket.IO's 25 s, so that a heartbeat comes
within a second of the event; the file says so. ``python -m bench.run.capture
socketio RUN_DIR`` writes one into a run that has none, after the fact, and the
file says that too (``written_after_run``).

The published event is a payment confirmation, the course's running example.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.agents.socketio import SocketIOSubscriber, event_args
from bench.contract.schema import validate_capture, validate_socketio_capture
from bench.link.relay import Relay
from bench.process import Child, wait_http_ok
from clients import AsyncPublisher, LongPollSubscriber, SubscriberError, WebSocketSubscriber

__all__ = [
    "PAYLOAD",
    "SOCKETIO_PING_INTERVAL_S",
    "capture_exchange",
    "capture_socketio",
    "main",
    "split_frame",
    "split_http",
    "wire_pieces",
    "write_capture",
    "write_socketio_capture",
]

PAYLOAD = {"payment": "pay_42", "status": "confirmed", "amount": 1999, "currency": "EUR"}
"""The event published once per transport."""
SAMPLE_BYTES = 16384


def split_http(data: bytes) -> tuple[bytes, bytes]:
    """The first HTTP message in ``data`` (head and ``Content-Length`` body), and the rest."""
    end = data.index(b"\r\n\r\n") + 4
    length = 0
    for line in data[:end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return data[: end + length], data[end + length :]


def split_frame(data: bytes) -> tuple[bytes, int]:
    """The first WebSocket frame in ``data`` (RFC 6455 section 5.2) and its header length."""
    size = data[1] & 0x7F
    header = 2 + {126: 2, 127: 8}.get(size, 0) + (4 if data[1] & 0x80 else 0)
    if size == 126:
        size = int.from_bytes(data[2:4], "big")
    elif size == 127:
        size = int.from_bytes(data[2:10], "big")
    return data[: header + size], header


async def _one_event(subscriber: LongPollSubscriber | WebSocketSubscriber, publish: Any) -> None:
    """Run ``subscriber`` until it has received the one event ``publish()`` sends."""
    stop = asyncio.Event()
    subscriber.on_event = lambda _: stop.set()
    task = asyncio.create_task(subscriber.run(stop))
    await asyncio.sleep(0.5)  # the poll is held / the socket is open
    await publish()
    await asyncio.wait_for(stop.wait(), 10)
    await task


async def capture_exchange(port: int) -> dict[str, Any]:
    """Capture one long poll and one WebSocket session against the server on ``port``."""
    relay = await Relay(("127.0.0.1", port), sample_bytes=SAMPLE_BYTES).start()
    try:
        url = f"http://127.0.0.1:{relay.port}"
        publisher = AsyncPublisher(f"http://127.0.0.1:{port}")  # straight to the server: not captured
        try:
            await _one_event(
                LongPollSubscriber(url, "pay_42-longpoll", timeout=5),
                lambda: publisher.publish("pay_42-longpoll", PAYLOAD),
            )
            await _one_event(WebSocketSubscriber(url, "pay_42-ws"), lambda: publisher.publish("pay_42-ws", PAYLOAD))
        finally:
            await publisher.aclose()
        await relay.wait_idle(5)
        (lp_up, lp_down), (ws_up, ws_down) = relay.samples()[:2]
    finally:
        await relay.close()
    lp_request, _ = split_http(lp_up)
    lp_response, _ = split_http(lp_down)
    ws_head_end = ws_down.index(b"\r\n\r\n") + 4
    frame, header = split_frame(ws_down[ws_head_end:])
    return {
        "schema": 1,
        "captured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "payload": PAYLOAD,
        "longpoll_request": lp_request.decode(),
        "longpoll_response": lp_response.decode(),
        "websocket_request": ws_up[: ws_up.index(b"\r\n\r\n") + 4].decode(),
        "websocket_response": ws_down[:ws_head_end].decode(),
        "websocket_frame": {"hex": frame.hex(), "header_bytes": header, "payload": frame[header:].decode()},
    }


def write_capture(run_dir: Path, runtime: str = "gevent", timeout: float = 30.0) -> Path:
    """Start a server, capture both exchanges into ``run_dir/capture.json``, stop the server."""
    with Child(["-m", "server", "--runtime", runtime, "--port", "0"], name="the server") as server:
        port = int(server.expect("port", timeout)["port"])
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout, alive=lambda: not server.exited())
        capture = asyncio.run(capture_exchange(port))
        capture["server"] = {"runtime": runtime}
    validate_capture(capture)
    target = run_dir / "capture.json"
    target.write_text(json.dumps(capture, indent=1) + "\n")
    return target


# --- one Socket.IO session of the official client's default handshake -------------------------------------

SOCKETIO_FILE = "socketio-capture.json"
SOCKETIO_CHANNEL = "pay_42-socketio"
SOCKETIO_PING_INTERVAL_S = 1.0
"""The peer's ``pingInterval`` for the capture: Socket.IO's default is 25 s; 1 s brings a heartbeat quickly."""
SOCKETIO_NOTE = (
    "The peer ran with --ping-interval 1 (Engine.IO pingInterval 1000 ms) so that a heartbeat is captured within "
    "a second of the event; Socket.IO's default is 25 s (pingInterval 25000). Everything else is the peer's "
    "default handshake: long polling first, then the upgrade to a WebSocket."
)
_OPCODES = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping", 0xA: "pong"}


@dataclass(frozen=True)
class WirePiece:
    """One HTTP message or WebSocket frame of one connection, where it starts in its direction's byte stream."""

    connection: int
    direction: str
    """``up`` (client to server) or ``down``."""
    offset: int
    """Where its first byte is in its direction's stream (the relay's count)."""
    data: bytes
    header_bytes: int | None = None
    """A frame's header length (RFC 6455 section 5.2); ``None`` for an HTTP message."""

    def as_dict(self) -> dict[str, Any]:
        """The piece as ``socketio-capture.json`` stores it (docs/results.md)."""
        out: dict[str, Any] = {"connection": self.connection, "direction": self.direction}
        if self.header_bytes is None:
            return {**out, "layer": "http", "text": self.data.decode(), "length": len(self.data)}
        opcode = self.data[0] & 0x0F
        payload = self.data[self.header_bytes :]
        if self.data[1] & 0x80:  # masked (client to server): RFC 6455 section 5.3
            key = self.data[self.header_bytes - 4 : self.header_bytes]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        if opcode == 0x1:
            text = payload.decode()
        elif opcode == 0x8 and len(payload) >= 2:
            text = f"{int.from_bytes(payload[:2], 'big')} {payload[2:].decode(errors='replace')}".rstrip()
        else:
            text = payload.hex()
        return {
            **out,
            "layer": "websocket",
            "text": text,
            "length": len(self.data),
            "opcode": _OPCODES.get(opcode, str(opcode)),
            "header_bytes": self.header_bytes,
            "hex": self.data.hex(),
        }


def _http_messages(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(offset, message)`` of every complete HTTP message in ``data`` from ``offset``; an unfinished one is left."""
    while (end := data.find(b"\r\n\r\n", offset)) >= 0:
        message, _ = split_http(data[offset:])
        head = end + 4 - offset
        fields = (line.partition(b":") for line in message[:head].split(b"\r\n"))
        declared = next((int(v) for name, _, v in fields if name.strip().lower() == b"content-length"), 0)
        if len(message) < head + declared:
            return
        yield offset, message
        offset += len(message)


def _websocket(conn: int, direction: str, data: bytes) -> list[WirePiece]:
    """The head, then every complete frame; after a close frame, whatever HTTP the socket still carried."""
    offset = data.index(b"\r\n\r\n") + 4
    pieces = [WirePiece(conn, direction, 0, data[:offset])]
    while len(data) - offset >= 2:
        frame, header = split_frame(data[offset:])
        if len(frame) < header or len(data) - offset < len(frame):
            break  # unfinished
        pieces.append(WirePiece(conn, direction, offset, frame, header))
        offset += len(frame)
        if frame[0] & 0x0F == 0x8:  # close: no frame may follow (RFC 6455 section 5.5.1)
            # gevent's pywsgi ends the WSGI request python-engineio served the WebSocket in with an HTTP answer
            pieces += [WirePiece(conn, direction, at, m) for at, m in _http_messages(data, offset)]
            break
    return pieces


def wire_pieces(samples: list[tuple[bytes, bytes]]) -> list[WirePiece]:
    """Every HTTP message and WebSocket frame of the relay's samples, connection by connection.

    A connection answered ``101`` carries frames after the two heads (and, after a close frame, what HTTP the
    server still wrote on it); any other carries HTTP/1.1 messages delimited by ``Content-Length`` (what the
    fleet's client and the peer use). An unfinished message at the end of a stream is left out.
    """
    pieces = []
    for conn, (up, down) in enumerate(samples):
        for direction, data in (("up", up), ("down", down)):
            if down.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in data:
                pieces += _websocket(conn, direction, data)
            else:
                pieces += [WirePiece(conn, direction, at, m) for at, m in _http_messages(data)]
    return pieces


class _Timeline:
    """When the relay first held each byte: the loop iteration at which each direction's sample grew.

    The relay keeps each connection's bytes (``sample_bytes``) but not when they came; this task looks at the
    samples once per event-loop iteration, in the loop the relay and the client run in. A client's answer to
    what it read, and the server's (another process), take at least one more iteration, so what one caused
    is seen at a later tick than its cause: sorting by tick orders the exchange as the wire carried it.
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.growth: dict[tuple[int, str], list[tuple[int, int]]] = {}
        """``(connection, direction)`` -> ``(tick, length)`` each time the sample grew."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.look(-1)

    async def _watch(self) -> None:
        tick = 0
        while True:
            self.look(tick)
            tick += 1
            await asyncio.sleep(0)

    def look(self, tick: int) -> None:
        """Note the samples that grew since the last look (``tick`` -1: after the end, for a last look)."""
        for conn, (up, down) in enumerate(self.relay.samples()):
            for direction, data in (("up", up), ("down", down)):
                seen = self.growth.setdefault((conn, direction), [])
                if len(data) > (seen[-1][1] if seen else 0):
                    seen.append((tick if tick >= 0 else (seen[-1][0] + 1 if seen else 1 << 62), len(data)))

    def tick_of(self, piece: WirePiece) -> int:
        """The tick at which the first byte of ``piece`` had been read."""
        return next(t for t, length in self.growth[(piece.connection, piece.direction)] if length > piece.offset)

    def order(self, pieces: list[WirePiece]) -> list[WirePiece]:
        return sorted(pieces, key=lambda p: (self.tick_of(p), p.connection, p.direction != "down", p.offset))


def _packets_sent(samples: list[tuple[bytes, bytes]], direction: str) -> list[str]:
    """The text of every WebSocket frame sent in ``direction`` so far."""
    return [
        d["text"]
        for p in wire_pieces(samples)
        if p.direction == direction and (d := p.as_dict())["layer"] == "websocket"
    ]


class _PaymentSubscriber(SocketIOSubscriber):
    """The fleet's Socket.IO subscriber, taking the payment event as it comes instead of accounting it.

    The fleet's accounting reads benchmark payloads (:mod:`bench.contract.payload`) only; the capture's event
    is the course's payment confirmation, so an EVENT packet that arrives over the WebSocket sets ``got``
    here. Everything else (the handshake, the probe, the upgrade, the pongs) is the subscriber's own.
    """

    def __init__(self, base_url: str, channel: str, got: asyncio.Event) -> None:
        super().__init__(base_url, channel, mode="upgrade")
        self.got = got

    def _on_text(self, text: str, recv_ns: int, recv_mono_ns: int) -> None:
        if text.startswith("42") and event_args(text)[0] == self.event:
            self.got.set()
            return
        super()._on_text(text, recv_ns, recv_mono_ns)


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:g} s")
        await asyncio.sleep(0.01)


def _heartbeat_after_event(samples: list[tuple[bytes, bytes]]) -> bool:
    """A ping ``2`` came down after the event frame and its pong ``3`` went up."""
    down, up = _packets_sent(samples, "down"), _packets_sent(samples, "up")
    events = [i for i, text in enumerate(down) if text.startswith("42")]
    return bool(events) and "2" in down[events[0] :] and up.count("3") >= down.count("2")


async def capture_socketio(port: int, timeout: float = 10.0) -> dict[str, Any]:
    """One Socket.IO session in ``upgrade`` mode against the Flask-SocketIO peer on ``port``: its exchanges.

    The subscriber goes through a relay that keeps every byte; the event is posted to the peer directly (not
    captured). The session is stopped once a heartbeat (ping ``2``, pong ``3``) has followed the event.
    """
    relay = await Relay(("127.0.0.1", port), sample_bytes=SAMPLE_BYTES).start()
    timeline = _Timeline(relay)
    try:
        timeline.start()
        got = asyncio.Event()
        subscriber = _PaymentSubscriber(f"http://127.0.0.1:{relay.port}", SOCKETIO_CHANNEL, got)
        stop = asyncio.Event()
        task = asyncio.create_task(subscriber.run(stop))
        try:
            await _until(lambda: "5" in _packets_sent(relay.samples(), "up") or task.done(), timeout, "upgrade")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                body = json.dumps(PAYLOAD, separators=(",", ":")).encode()
                answer = await http.post(f"/channels/{SOCKETIO_CHANNEL}/events", content=body)
                answer.raise_for_status()
            await asyncio.wait_for(got.wait(), timeout)
            interval = SOCKETIO_PING_INTERVAL_S
            await _until(lambda: _heartbeat_after_event(relay.samples()), 3 * interval + timeout, "heartbeat")
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout)
        await relay.wait_idle(timeout)
        await timeline.stop()
        samples = relay.samples()
    finally:
        await timeline.stop()
        await relay.close()
    if any(len(up) >= SAMPLE_BYTES or len(down) >= SAMPLE_BYTES for up, down in samples):
        raise ValueError(f"a connection carried more than the {SAMPLE_BYTES} bytes the relay keeps")
    return {
        "schema": 1,
        "captured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "written_after_run": False,
        "note": SOCKETIO_NOTE,
        "payload": PAYLOAD,
        "channel": SOCKETIO_CHANNEL,
        "client": {"adapter": "bench.agents.socketio.SocketIOSubscriber", "mode": "upgrade"},
        "exchanges": [p.as_dict() for p in timeline.order(wire_pieces(samples))],
    }


def write_socketio_capture(run_dir: Path, timeout: float = 30.0, after_run: bool = False) -> Path:
    """Start the Flask-SocketIO peer, capture one session into ``run_dir/socketio-capture.json``, stop the peer.

    ``after_run``: the run is over and this file is added to it later (the file says so).
    """
    args = ["-m", "peers.flask_socketio", "--port", "0", "--async-mode", "gevent", "--nodelay", "on"]
    args += ["--ping-interval", f"{SOCKETIO_PING_INTERVAL_S:g}"]
    with Child(args, name="the peer flask_socketio") as peer:
        ready = peer.expect("port", timeout)
        port = int(ready["port"])
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout, alive=lambda: not peer.exited())
        try:
            capture = asyncio.run(capture_socketio(port))
        except (httpx.HTTPError, SubscriberError) as exc:  # one kind for the runner's warning
            raise RuntimeError(f"the Socket.IO capture failed: {exc!r}") from exc
    capture["written_after_run"] = after_run
    capture["peer"] = {
        "name": str(ready.get("peer", "flask_socketio")),
        "versions": {str(k): str(v) for k, v in (ready.get("versions") or {}).items()},
        "options": ready.get("options") or {},
        "command": "python " + " ".join(args),
    }
    validate_socketio_capture(capture)
    target = run_dir / SOCKETIO_FILE
    target.write_text(json.dumps(capture, indent=1) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.run.capture socketio RUN_DIR``: add socketio-capture.json to a finished run."""
    parser = argparse.ArgumentParser(prog="python -m bench.run.capture", description=main.__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    socketio = sub.add_parser("socketio", help="capture one Socket.IO session into RUN_DIR/" + SOCKETIO_FILE)
    socketio.add_argument("run_dir", type=Path)
    socketio.add_argument("--force", action="store_true", help="replace a file the run already has")
    args = parser.parse_args(argv)
    target = args.run_dir / SOCKETIO_FILE
    if not (args.run_dir / "meta.json").exists():
        parser.error(f"{args.run_dir} is not a run directory (no meta.json)")
    if target.exists() and not args.force:
        parser.error(f"{target} exists (a raw file is written once; --force replaces it)")
    print(f"wrote {write_socketio_capture(args.run_dir, after_run=True)} (after the run)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
