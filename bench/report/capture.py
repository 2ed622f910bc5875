"""Reading a run's ``capture.json``: one real exchange of each transport, typed and split into its lines.

Report layer. :mod:`bench.run.capture` writes the file once per run (docs/results.md): the bytes of one
long poll and of one WebSocket session, read verbatim at the relay. This module reads it back, checks
its shape and offers each HTTP message as its lines with their sizes on the wire, so the notebook can
dissect real headers without parsing JSON or counting bytes itself. A run without the file (the capture
is best effort) reads as ``None``.

``socketio-capture.json`` (a run with a Flask-SocketIO scenario) is one Socket.IO session in the order the wire
carried it: :func:`load_socketio_capture` reads it as :class:`SocketIOCapture`, whose steps each say what they
are (Engine.IO's open packet, Socket.IO's connect, the upgrade probe, a heartbeat...), from their bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contract.schema import SchemaError, validate_capture, validate_socketio_capture

__all__ = [
    "Capture",
    "Frame",
    "HttpMessage",
    "SocketIOCapture",
    "WireStep",
    "describe_packet",
    "load_capture",
    "load_socketio_capture",
]

_CRLF = "\r\n"


@dataclass(frozen=True)
class HttpMessage:
    """One HTTP/1.1 message as it crossed the socket: its head (start line and header fields) and body."""

    raw: str

    @property
    def head(self) -> str:
        """The start line and header fields, without the blank line that ends them."""
        return self.raw.partition(_CRLF * 2)[0]

    @property
    def body(self) -> str:
        return self.raw.partition(_CRLF * 2)[2]

    @property
    def size(self) -> int:
        """Bytes on the wire (UTF-8), head, blank line and body."""
        return len(self.raw.encode())

    @property
    def head_size(self) -> int:
        """Bytes of the head, the final blank line (CRLF CRLF) included: the cost of being HTTP."""
        return len(self.head.encode()) + 2 * len(_CRLF)

    @property
    def body_size(self) -> int:
        return len(self.body.encode())

    def lines(self) -> list[tuple[int, str]]:
        """Each line of the head with its size on the wire, its CRLF included."""
        return [(len(line.encode()) + len(_CRLF), line) for line in self.head.split(_CRLF)]


@dataclass(frozen=True)
class Frame:
    """The first WebSocket frame the server sent: its bytes and where its header ends (RFC 6455 §5.2)."""

    hex: str
    header_bytes: int
    payload: str

    @property
    def size(self) -> int:
        return len(self.hex) // 2

    @property
    def header_hex(self) -> str:
        return self.hex[: 2 * self.header_bytes]


@dataclass(frozen=True)
class Capture:
    """capture.json, typed: the published event, the long poll's two messages, the WebSocket's three parts."""

    payload: Mapping[str, Any]
    """The event's data as published (the same for both transports)."""
    longpoll_request: HttpMessage
    longpoll_response: HttpMessage
    websocket_request: HttpMessage
    """The Upgrade request."""
    websocket_response: HttpMessage
    """The ``101 Switching Protocols`` answer."""
    websocket_frame: Frame
    runtime: str | None
    """The server runtime that answered (``None`` in files written before it was recorded)."""

    def messages(self) -> dict[str, HttpMessage]:
        """The four HTTP messages by name, in the order they crossed the wire."""
        return {
            "longpoll_request": self.longpoll_request,
            "longpoll_response": self.longpoll_response,
            "websocket_request": self.websocket_request,
            "websocket_response": self.websocket_response,
        }


def _read(path: Path, validate: Callable[[object], None]) -> Any:
    """The JSON object of ``path``, validated; :class:`SchemaError` naming the file when it is not."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("", f"cannot read JSON: {exc}", file=path.name) from None
    try:
        validate(obj)
    except SchemaError as exc:
        raise SchemaError(exc.path, exc.message, file=path.name) from None
    return obj


def load_capture(run_dir: Path | str) -> Capture | None:
    """Read ``<run>/capture.json``; ``None`` when the run has none; :class:`SchemaError` when it is malformed."""
    path = Path(run_dir) / "capture.json"
    if not path.exists():
        return None
    obj = _read(path, validate_capture)
    frame = obj["websocket_frame"]
    return Capture(
        payload=obj["payload"],
        longpoll_request=HttpMessage(obj["longpoll_request"]),
        longpoll_response=HttpMessage(obj["longpoll_response"]),
        websocket_request=HttpMessage(obj["websocket_request"]),
        websocket_response=HttpMessage(obj["websocket_response"]),
        websocket_frame=Frame(frame["hex"], frame["header_bytes"], frame["payload"]),
        runtime=obj.get("server", {}).get("runtime"),
    )


# --- socketio-capture.json ------------------------------------------------------------------------------

SOCKETIO_FILE = "socketio-capture.json"
SEPARATOR = "\x1e"
"""Engine.IO v4's separator of packets in one long-polling body."""

_SOCKETIO_PACKETS = {
    "40": "Socket.IO CONNECT to the main namespace",
    "41": "Socket.IO DISCONNECT",
    "2probe": "Engine.IO PING probe: does the WebSocket carry the session?",
    "3probe": "Engine.IO PONG probe: it does",
    "2": "Engine.IO PING: the server's heartbeat",
    "3": "Engine.IO PONG: the client's answer to the heartbeat",
    "5": "Engine.IO UPGRADE: from now on the session is on the WebSocket",
    "6": "Engine.IO NOOP: an empty packet (python-engineio's way to end a pending poll)",
    "1": "Engine.IO CLOSE",
}


def describe_packet(packet: str) -> str:
    """What one Engine.IO packet (with the Socket.IO packet it may carry) is, in words."""
    if packet in _SOCKETIO_PACKETS:
        return _SOCKETIO_PACKETS[packet]
    if packet.startswith("0{"):
        return "Engine.IO OPEN: the session's sid, the transports it may upgrade to, pingInterval and pingTimeout"
    if packet.startswith("40{"):
        return "Socket.IO CONNECT ack, with the Socket.IO session's own sid"
    if packet.startswith("42"):
        return "Socket.IO EVENT: the event's name and its data, as a JSON array"
    if packet.startswith("44"):
        return "Socket.IO CONNECT_ERROR: the server refused the connection"
    return "an Engine.IO packet of type " + packet[:1]


def _body_packets(text: str) -> list[str]:
    """The Engine.IO packets of an HTTP message's body on ``/socket.io/`` (none for heads and plain answers)."""
    message = HttpMessage(text)
    start = message.head.split("\r\n", 1)[0]
    if "/socket.io/" not in start and not start.startswith("HTTP/"):
        return []
    if not message.body or message.body == "OK":  # python-engineio answers a POST with a plain OK
        return []
    return message.body.split(SEPARATOR)


@dataclass(frozen=True)
class WireStep:
    """One HTTP message or WebSocket frame of the captured session, as the wire carried it."""

    connection: int
    """The TCP connection (0 the first the client opened)."""
    direction: str
    """``up`` (client to server) or ``down`` (server to client)."""
    layer: str
    """``http`` or ``websocket``."""
    text: str
    """An HTTP message as sent; a frame's payload as text (unmasked), a close frame's code and reason."""
    length: int
    """Bytes on the wire (a frame's header, and mask for a client's, included)."""
    what: str
    """What it is, said from its bytes (:func:`load_socketio_capture`)."""
    opcode: str | None = None
    header_bytes: int | None = None
    hex: str | None = None
    """A frame's bytes as they crossed the wire (masked when the client sent it)."""

    @property
    def http(self) -> HttpMessage | None:
        return HttpMessage(self.text) if self.layer == "http" else None

    @property
    def packets(self) -> list[str]:
        """The Engine.IO packets it carries: a text frame's text, a polling body's packets (``\\x1e`` between)."""
        if self.layer == "websocket":
            return [self.text] if self.opcode == "text" else []
        return _body_packets(self.text)

    @property
    def start_line(self) -> str:
        """An HTTP message's first line (empty for a frame)."""
        return self.text.split("\r\n", 1)[0] if self.layer == "http" else ""


@dataclass(frozen=True)
class SocketIOCapture:
    """socketio-capture.json, typed: one Socket.IO session of the default handshake, step by step."""

    payload: Mapping[str, Any]
    """The event's data as published (capture.json's, the lab's own exchange, publishes the same)."""
    channel: str
    steps: tuple[WireStep, ...]
    note: str
    """Why the heartbeat is not Socket.IO's default (the file's own words)."""
    written_after_run: bool
    """The file was added to the run after it ended (``python -m bench.run.capture socketio``)."""
    captured_utc: str
    versions: Mapping[str, str]
    """The peer's packages (Flask-SocketIO, python-engineio...)."""
    options: Mapping[str, Any]
    """How the peer ran (``ping_interval``, ``async_mode``...)."""
    command: str

    @property
    def open(self) -> dict[str, Any]:
        """The Engine.IO open packet's JSON (``sid``, ``upgrades``, ``pingInterval``, ``pingTimeout`` in ms)."""
        packet = next(p for step in self.steps for p in step.packets if p.startswith("0{"))
        opened: dict[str, Any] = json.loads(packet[1:])
        return opened

    @property
    def event(self) -> WireStep:
        """The step that carried the event (``42["e",...]``)."""
        return next(step for step in self.steps if any(p.startswith("42") for p in step.packets))

    def first(self, packet: str) -> WireStep:
        """The first step that carried ``packet`` exactly (``"2probe"``, ``"5"``...)."""
        return next(step for step in self.steps if packet in step.packets)


def _what(step: Mapping[str, Any], upgraded: bool, closed: bool) -> str:
    """What a step is, from its bytes, whether its connection was upgraded and a close frame came before it."""
    if step["layer"] == "websocket":
        if step["opcode"] == "close":
            return f"WebSocket close frame (status {step['text']})"
        if step["opcode"] != "text":
            return f"WebSocket {step['opcode']} frame"
        return describe_packet(step["text"])
    message = HttpMessage(step["text"])
    start = message.head.split("\r\n", 1)[0]
    if start.startswith("HTTP/1.1 101"):
        return "101 Switching Protocols: from here on the connection carries WebSocket frames"
    if closed:
        return "an HTTP answer after the close frames: the WSGI server ending the request the WebSocket ran in"
    if upgraded and step["direction"] == "up":
        return "the WebSocket Upgrade request, on a new connection, naming the polling session's sid"
    said = "; ".join(describe_packet(p) for p in _body_packets(step["text"]))
    if step["direction"] == "down":
        if message.body == "OK":
            return "the answer to the POST: its packets were taken"
        return f"a long-polling answer: {said}" if said else "a long-polling answer with no packet"
    if start.startswith("POST"):
        return f"a long-polling POST, the client's packets: {said}"
    if "sid=" not in start:
        return "the Engine.IO handshake: a long-polling GET without a session"
    return "a long-polling GET of the session, held until the server has packets"


def load_socketio_capture(run_dir: Path | str) -> SocketIOCapture | None:
    """Read ``<run>/socketio-capture.json``; ``None`` when the run has none; :class:`SchemaError` when malformed."""
    path = Path(run_dir) / SOCKETIO_FILE
    if not path.exists():
        return None
    obj = _read(path, validate_socketio_capture)
    upgraded = {
        step["connection"]
        for step in obj["exchanges"]
        if step["layer"] == "http" and step["text"].startswith("HTTP/1.1 101")
    }
    steps, closed = [], set()
    for step in obj["exchanges"]:
        what = _what(step, step["connection"] in upgraded, (step["connection"], step["direction"]) in closed)
        steps.append(
            WireStep(
                step["connection"],
                step["direction"],
                step["layer"],
                step["text"],
                step["length"],
                what,
                step.get("opcode"),
                step.get("header_bytes"),
                step.get("hex"),
            )
        )
        if step.get("opcode") == "close":
            closed.add((step["connection"], step["direction"]))
    peer = obj["peer"]
    return SocketIOCapture(
        payload=obj["payload"],
        channel=obj["channel"],
        steps=tuple(steps),
        note=obj["note"],
        written_after_run=obj["written_after_run"],
        captured_utc=obj["captured_utc"],
        versions=peer["versions"],
        options=peer["options"],
        command=peer["command"],
    )
