"""The ``websockets`` peer: the lab's WebSocket protocol on an asyncio server, as lean as the library allows.

A peer of the lab (``peers/``), independent of it: it imports nothing of ``server``, ``clients`` or ``bench``.
It is the Python ceiling for WebSocket push: one process, one event loop, the ``websockets`` library's new
asyncio implementation (:func:`websockets.asyncio.server.serve`) and its :func:`~websockets.asyncio.server.
broadcast`, nothing else in the data path.

It speaks the lab's protocol for subscribers (docs/protocol.md, "WebSocket", "Events", "Cursors"), so the
fleet reuses its lean WebSocket subscriber unchanged:

- ``GET /channels/<channel>/ws?after=<seq>``: a bad channel (``400 bad_channel``), a bad cursor (``400
  bad_cursor``) or another path (``404``) is refused before the Upgrade, with the lab's JSON error body;
- then every retained event after the cursor (a ``reset`` notice first if the cursor is past the channel's
  last ``seq``, a ``gap`` notice if it is older than the history), then each new event: **one event, one
  text frame**, the event object ``{"channel","seq","ts","data"}`` serialized as the lab serializes it
  (keys in that order, no white space, ``data`` the publish body's own JSON text, stripped), so a frame is
  byte for byte the lab's for the same body, ``seq`` and ``ts``;
- ``seq`` counts from 1 per channel; the history keeps the newest ``history`` events (default 10,000,
  the lab's ``LAB_HISTORY``; no byte bound);
- what a client sends is read and ignored (publishing is over HTTP only; the fleet sends nothing).

Publishing: ``websockets`` reads only ``GET`` requests without a body (its handshake parser refuses any
``Content-Length`` but 0), so ``POST /channels/<channel>/events`` is served by a minimal asyncio HTTP/1.1
server (:class:`PublishServer`) in the same process and event loop, on a second port announced as
``publish_port``: keep-alive, ``Content-Length`` bodies, ``201 {"channel","seq","ts"}`` as the lab answers.
Both ports answer ``GET /healthz``. A single port would need to hand a connection from one protocol to the
other inside ``websockets``' internals; two ports keep both servers stock.

Fan-out: each publish appends to the history and calls ``broadcast(subscribers, frame, text=True)``, which
writes the frame to every open connection's transport at once, without a task or a ``drain()`` per
subscriber (``websockets``' recommended way to send one message to many). It has **no backpressure**: a
subscriber that stops reading grows its write buffer until its connection ends (with pings off, never).
A subscriber's catch-up is written the same way, synchronously, in the same step that adds it to the
channel's subscribers, so nothing published meanwhile can come between or before it.
Options: ``compression=None`` (no permessage-deflate, as the lab's default), ``ping_interval=None``
(no pings) unless ``--ping-interval`` is given, ``max_size`` 1 MiB for what clients send, ``max_queue`` 16
frames (the library's default; subscribers send nothing), ``write_limit`` the library's 32 KiB (it bounds
``send()``'s ``drain()``, which ``broadcast`` does not use), no ``Server`` header. asyncio sets
``TCP_NODELAY`` on every TCP connection it makes or accepts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any
from urllib.parse import parse_qs

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

__all__ = ["CHANNEL_RE", "Channel", "Hub", "Options", "PublishServer", "encode_event", "main", "parse_cursor"]

CHANNEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Valid channel names, the lab's (docs/protocol.md, "Channels")."""
MAX_CURSOR = 2**63 - 1
MAX_BODY = 1 << 20
"""Largest publish body, bytes (the lab's ``LAB_MAX_BODY`` default)."""
MAX_HEAD = 64 << 10
"""Largest publish request head, bytes."""
_WS_PATH = re.compile(r"/channels/([^/]*)/ws")
_PUBLISH_PATH = re.compile(r"/channels/([^/]*)/events")
_JSON_WHITESPACE = " \t\n\r"


@dataclass(frozen=True, slots=True)
class Options:
    """How the peer is started (``python -m peers.websockets``)."""

    host: str = "127.0.0.1"
    port: int = 0
    publish_port: int = 0
    history: int = 10_000
    """Events kept per channel for resume."""
    ping_interval: float | None = None
    """Seconds between the server's pings; ``None``: no pings."""


def encode_event(channel: str, seq: int, ts: int, data: bytes) -> bytes:
    """One event as the lab serializes it (docs/protocol.md, "Events"): its wire bytes, once per publish."""
    return b'{"channel":"%s","seq":%d,"ts":%d,"data":%s}' % (channel.encode("ascii"), seq, ts, data)


def _notice(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def parse_cursor(raw: str | None) -> int:
    """``after`` as the lab reads it: absent is 0, else decimal digits up to ``2**63 - 1``; ``ValueError`` if not."""
    if raw is None:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_CURSOR)) or int(raw) > MAX_CURSOR:
        raise ValueError(f"after must be an integer from 0 to 2**63-1, got {raw[:40]!r}")
    return int(raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class Channel:
    """One channel: its last ``seq``, its history (wire bytes), its subscribers."""

    __slots__ = ("history", "last", "name", "subscribers")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        self.last = 0
        """The newest ``seq`` (0: nothing published yet)."""
        self.history: deque[bytes] = deque(maxlen=history)
        """The newest events' wire bytes, oldest first; the last one has ``seq`` :attr:`last`."""
        self.subscribers: set[ServerConnection] = set()

    def publish(self, data: bytes) -> tuple[int, int]:
        """Number, stamp, retain and push one event (``data``: JSON text); its ``(seq, ts)``."""
        self.last += 1
        ts = time.time_ns()
        wire = encode_event(self.name, self.last, ts, data)
        self.history.append(wire)
        broadcast(self.subscribers, wire, text=True)
        return self.last, ts

    def catch_up(self, after: int) -> list[bytes]:
        """The frames a subscriber with cursor ``after`` gets first: reset, gap notices, retained events."""
        frames: list[bytes] = []
        first = self.last - len(self.history) + 1  # the oldest retained seq (last + 1 with no history)
        if after > self.last:
            frames.append(_notice({"type": "reset", "after": after, "last_seq": self.last}))
            after = 0
        if after < first - 1:
            frames.append(_notice({"type": "gap", "first": after + 1, "last": first - 1}))
            after = first - 1
        frames.extend(itertools.islice(self.history, after - first + 1, None))
        return frames


class Hub:
    """The channels, created when first named, and the WebSocket side: routing, handshake checks, subscribers."""

    def __init__(self, history: int) -> None:
        self.history = history
        self.channels: dict[str, Channel] = {}

    def channel(self, name: str) -> Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = Channel(name, self.history)
        return ch

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Before the Upgrade: ``/healthz``, and the lab's refusals of a bad path, channel or cursor."""
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            return ws.respond(200, "ok\n")
        match = _WS_PATH.fullmatch(path)
        if match is None:
            return _error(ws, 404, "not_found", f"no route {path[:80]!r}")
        if CHANNEL_RE.fullmatch(match[1]) is None:
            return _error(ws, 400, "bad_channel", "channel must match [A-Za-z0-9_.-]{1,64}")
        try:
            parse_cursor(parse_qs(query, keep_blank_values=True).get("after", [None])[0])
        except ValueError as exc:
            return _error(ws, 400, "bad_cursor", str(exc))
        return None

    async def handler(self, ws: ServerConnection) -> None:
        """One subscriber: its catch-up and its place among the channel's subscribers, in one step; then read."""
        path, _, query = ws.request.path.partition("?") if ws.request is not None else ("", "", "")
        match = _WS_PATH.fullmatch(path)
        assert match is not None  # process_request refused anything else
        ch = self.channel(match[1])
        for frame in ch.catch_up(parse_cursor(parse_qs(query).get("after", [None])[0])):
            broadcast((ws,), frame, text=True)
        ch.subscribers.add(ws)
        try:
            async for _message in ws:  # read (and ignore) until the client goes
                pass
        finally:
            ch.subscribers.discard(ws)


def _error(ws: ServerConnection, status: int, error: str, detail: str) -> Response:
    """The lab's JSON error answer, refusing the Upgrade."""
    response = ws.respond(status, json.dumps({"error": error, "detail": detail}, separators=(",", ":")))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


class PublishServer:
    """The publish side: a minimal asyncio HTTP/1.1 server (keep-alive, ``Content-Length`` bodies).

    ``POST /channels/<channel>/events`` with a JSON body: ``201 {"channel","seq","ts"}``; ``GET /healthz``:
    ``200``. A bad channel or body is refused as the lab refuses it (``400 bad_channel``, ``400 bad_json``,
    ``413 too_large``); chunked bodies are not read (``411``), and nothing else is served (``404``, ``405``).
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed between requests
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, proto = [*lines[0].split(" ", 2), "", ""][:3]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                keep = proto == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                if "transfer-encoding" in headers:
                    status, body, keep = 411, _err("length_required", "send the body with a Content-Length"), False
                elif not headers.get("content-length", "0").isdigit():
                    status, body, keep = 400, _err("bad_request", "Content-Length is not a number"), False
                elif int(headers.get("content-length", "0")) > MAX_BODY:
                    status, body, keep = 413, _err("too_large", f"at most {MAX_BODY} bytes"), False
                else:
                    data = await reader.readexactly(int(headers.get("content-length", "0")))
                    status, body = self.answer(method, target.partition("?")[0], data)
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (
                        status,
                        _REASONS.get(status, b"Error"),
                        b"text/plain" if status == 200 else b"application/json",
                        len(body),
                        b"" if keep else b"Connection: close\r\n",
                        body,
                    )
                )
                if not keep:
                    await writer.drain()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()

    def answer(self, method: str, path: str, data: bytes) -> tuple[int, bytes]:
        """The status and body answering one request."""
        if path == "/healthz":
            return (200, b"ok\n") if method == "GET" else (405, _err("method_not_allowed", "GET /healthz"))
        match = _PUBLISH_PATH.fullmatch(path)
        if match is None:
            return 404, _err("not_found", f"no route {path[:80]!r}")
        if method != "POST":
            return 405, _err("method_not_allowed", "POST to publish")
        name = match[1]
        if CHANNEL_RE.fullmatch(name) is None:
            return 400, _err("bad_channel", "channel must match [A-Za-z0-9_.-]{1,64}")
        try:
            text = data.decode("utf-8").strip(_JSON_WHITESPACE)
            json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, NaN, nested too deep
            return 400, _err("bad_json", str(exc)[:200])
        seq, ts = self.hub.channel(name).publish(text.encode("utf-8"))
        return 201, b'{"channel":"%s","seq":%d,"ts":%d}\n' % (name.encode("ascii"), seq, ts)


_REASONS = {
    200: b"OK",
    201: b"Created",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Content Too Large",
}


def _err(error: str, detail: str) -> bytes:
    return json.dumps({"error": error, "detail": detail}, separators=(",", ":")).encode()


def versions() -> dict[str, str]:
    """What this peer runs on, for the ready line."""
    return {"websockets": version("websockets"), "python": sys.version.split()[0]}


async def main(options: Options) -> None:
    """Serve until SIGTERM or SIGINT: the WebSocket server and the publish server, one event loop."""
    hub = Hub(options.history)
    publisher = PublishServer(hub)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(
        hub.handler,
        options.host,
        options.port,
        process_request=hub.process_request,
        compression=None,
        ping_interval=options.ping_interval,
        max_size=MAX_BODY,
        server_header=None,
    ) as ws_server:
        http = await asyncio.start_server(publisher.handle, options.host, options.publish_port, limit=MAX_HEAD)
        port = _port(ws_server.sockets)
        publish_port = _port(http.sockets)
        line = {
            "listening": f"http://{options.host}:{port}",
            "port": port,
            "publish_port": publish_port,
            "peer": "websockets",
            "pid": os.getpid(),
            "versions": versions(),
            "options": asdict(options),
        }
        print(json.dumps(line), flush=True)
        try:
            await stop.wait()
        finally:
            http.close()  # stops accepting; open keep-alive connections end with the loop
            ws_server.close()  # closes every WebSocket with 1001 going away


def _port(sockets: Any) -> int:
    sock: socket.socket = next(iter(sockets))
    return int(sock.getsockname()[1])
