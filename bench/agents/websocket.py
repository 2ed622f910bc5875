"""The fleet's WebSocket subscriber: :class:`clients.Subscriber` over a bare :class:`asyncio.Protocol`.

Agent layer of the benchmark (:mod:`bench.agents`); the asyncio frontend of the sans-I/O
:mod:`bench.agents.frames`. What it does is :class:`clients.WebSocketSubscriber`'s (docs/protocol.md,
"WebSocket"), and everything but the connection is shared with it through the base class: the cursor,
gap, reset and delivery accounting, the latency histogram, the reconnect loop with backoff, and the
resume from the tracker's cursor. It only implements :meth:`LeanWebSocketSubscriber._session`.

Why not clients' subscriber in the fleet (issue 9): simple-websocket's ``AioClient`` and wsproto cost
about 12 µs per message in parsing alone, and its ``receive()`` hands each message over a task hop, so
the receive time was taken after the hop, late by however long the loop took to get there. At 100
subscribers x 100 events/s that made the lab report 2.5 to 4 times the server's latency. Here:

- the handshake is a minimal HTTP/1.1 Upgrade (``GET /channels/<c>/ws?after=<cursor>``, ``Host``,
  ``Upgrade``, ``Connection``, ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version: 13``; no extension
  offered, so no permessage-deflate: the fleet keeps clients' subscriber for compressed scenarios), and
  the answer must be ``101`` with the right ``Sec-WebSocket-Accept`` and no extension;
- frames are parsed in ``data_received`` itself, and the receive time (``time.time_ns()`` and
  ``time.monotonic_ns()``) is taken **once per ``data_received`` call**, before parsing, and given to
  every message parsed from those bytes: the moment the bytes were read from the socket;
- pings are answered with pongs, a close frame with a close frame (same code), and the close code maps
  to the same decision clients' subscriber makes: ``1003``, ``1008``, ``1009`` and ``4000``-``4999``
  (our side broke a rule, e.g. ``4403`` forbidden) raise :class:`clients.SubscriberError`; any other
  code (``1001`` going away, ``1011``, ``1013`` try again later), a dropped connection or a timeout
  reconnects. A frame that breaks RFC 6455 is answered with close ``1002``/``1007`` and reconnects
  (as wsproto's error does in clients' subscriber); a message above ``max_size``, close ``1009``, is
  refused for good. A handshake refused with a ``4xx`` is a :class:`clients.SubscriberError`, a ``5xx``
  reconnects;
- ``TCP_NODELAY`` is on (the pongs and the close frame are small writes);
- every byte written and read is counted in a :class:`bench.agents.meter.WireMeter`, the handshake apart.

A peer's protocol over the same connection (Engine.IO: :mod:`bench.agents.socketio`) overrides three hooks
of :class:`LeanWebSocketSubscriber`: :meth:`~LeanWebSocketSubscriber._target` (the Upgrade's request target),
:meth:`~LeanWebSocketSubscriber._headers` (extra request header lines),
:meth:`~LeanWebSocketSubscriber._opened` (called with a function that sends a text message, once the ``101``
is checked) and :meth:`~LeanWebSocketSubscriber._on_text` (each text message, with its receive time); by
default they do what the lab's protocol needs (the path template, nothing, ``decode`` then the message path).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from bench.agents.frames import (
    MAX_SIZE,
    Close,
    Control,
    FrameParser,
    Message,
    Opcode,
    ProtocolError,
    close,
    encode_frame,
    pong,
)
from clients import HandshakeRejected, Subscriber, SubscriberError

from .messages import Decode, lab_message
from .meter import WireMeter
from .tls import TLSMeter, open_tls

__all__ = ["HANDSHAKE_TIMEOUT", "LeanWebSocketSubscriber", "WebSocketClosed", "accept_key"]

HANDSHAKE_TIMEOUT = 10.0
"""Seconds to connect and get the ``101`` (a loaded server may accept slowly): beyond, reconnect."""
MAX_HEAD = 64 << 10
"""Largest handshake answer head accepted, bytes."""
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``Sec-WebSocket-Key: key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


class WebSocketClosed(ConnectionError):
    """The WebSocket was closed with a close frame: ``code`` and ``reason``, and who sent it first."""

    def __init__(self, code: int, reason: str, by_server: bool) -> None:
        who = "server" if by_server else "client"
        super().__init__(f"{who} closed the WebSocket: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.by_server = by_server
        """The server sent the first close frame (else this client did, after a protocol error)."""


class _Connection(asyncio.Protocol):
    """One connection of a :class:`LeanWebSocketSubscriber`: the handshake, then frames into its message path."""

    def __init__(self, sub: LeanWebSocketSubscriber, request: bytes, key: str) -> None:
        loop = asyncio.get_running_loop()
        self.sub = sub
        self.request = request
        self.accept = accept_key(key)
        self.opened: asyncio.Future[None] = loop.create_future()
        """Done when the ``101`` was checked (or with the reason there is none)."""
        self.done: asyncio.Future[None] = loop.create_future()
        """Done with the reason the open WebSocket ended (always an exception)."""
        self.lost: asyncio.Future[None] = loop.create_future()
        """Done when the transport is closed."""
        self.transport: asyncio.Transport | None = None
        self.parser: FrameParser | None = None
        """Set once the handshake succeeded."""
        self.head = bytearray()
        """The handshake answer read so far."""
        self.status = 0
        """The status of a refused handshake whose body is being read."""
        self.body_length: int | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._write(self.request, head=True)

    def _write(self, data: bytes, head: bool = False) -> None:
        """Write ``data``, counted in the subscriber's meter (as a handshake header block if ``head``)."""
        assert self.transport is not None
        meter = self.sub.meter
        if meter is not None:
            meter.up += len(data)
            if head:
                meter.head_up += len(data)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        recv_ns, recv_mono_ns = time.time_ns(), time.monotonic_ns()  # once per read, for every message in it
        if self.sub.meter is not None:
            self.sub.meter.down += len(data)
        try:
            if self.parser is None:
                data = self._handshake(data)
                if self.parser is None or not data:
                    return
            try:
                messages = self.parser.feed(data)
            except ProtocolError as exc:
                self._deliver(exc.messages, recv_ns, recv_mono_ns)
                self._close(exc.code, str(exc), by_server=False)
                return
            self._deliver(messages, recv_ns, recv_mono_ns)
        except Exception as exc:  # a refusal or a bug: the session raises it (never asyncio's "fatal error" log)
            self._end(exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status:
            self._end(HandshakeRejected(self.status, bytes(self.head)))
        elif not self.opened.done():
            self._end(ConnectionResetError("connection closed during the WebSocket handshake"))
        else:
            self._end(ConnectionResetError(f"connection lost without a close frame ({exc!r})"))
        if not self.lost.done():
            self.lost.set_result(None)

    # -- the handshake --------------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        """Read the answer to the Upgrade; return the bytes after a ``101`` (frames already sent)."""
        self.head += data
        if self.status:  # a refusal: read its body for the error message
            self._refused_maybe()
            return b""
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                raise ConnectionResetError(f"a handshake answer head over {MAX_HEAD} bytes")
            return b""
        head, rest = bytes(self.head[:end]), bytes(self.head[end + 4 :])
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ConnectionResetError(f"not an HTTP/1.x answer to the Upgrade: {lines[0][:80]!r}")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if status != 101:
            self.status = status
            self.head = bytearray(rest)
            length = headers.get(b"content-length", b"")
            self.body_length = int(length) if length.isdigit() else None
            self._refused_maybe()
            return b""
        if headers.get(b"upgrade", b"").lower() != b"websocket":
            raise ConnectionResetError("101 without Upgrade: websocket")
        if b"upgrade" not in {t.strip() for t in headers.get(b"connection", b"").lower().split(b",")}:
            raise ConnectionResetError("101 without Connection: Upgrade")
        if headers.get(b"sec-websocket-accept", b"").decode("latin-1") != self.accept:
            raise ConnectionResetError("101 with a wrong Sec-WebSocket-Accept")
        if headers.get(b"sec-websocket-extensions"):
            raise ConnectionResetError("101 with an extension none was offered")
        if self.sub.meter is not None:
            self.sub.meter.head_down += end + 4
            self.sub.meter.heads += 1
        self.head = bytearray()
        self.parser = FrameParser(self.sub.max_size)
        self.opened.set_result(None)
        self.sub._opened(self.send_text)
        return rest

    def _refused_maybe(self) -> None:
        """The whole body of a refusal is here: the handshake failed with it."""
        if self.body_length is not None and len(self.head) >= self.body_length and not self.opened.done():
            self.opened.set_exception(HandshakeRejected(self.status, bytes(self.head[: self.body_length])))
            assert self.transport is not None
            self.transport.close()

    # -- messages -------------------------------------------------------------------------------------

    def _deliver(self, messages: list[Message], recv_ns: int, recv_mono_ns: int) -> None:
        """Hand every message to the subscriber with the read's time; answer pings and close."""
        sub = self.sub
        stats = sub.stats
        for message in messages:
            if isinstance(message, str):
                stats.frames += 1
                stats.payload_bytes += len(message) if message.isascii() else len(message.encode())
                sub._on_text(message, recv_ns, recv_mono_ns)
            elif isinstance(message, Control):
                if message.opcode is Opcode.PING and self.transport is not None:
                    self._write(pong(message.payload))
            elif isinstance(message, Close):
                self._close(message.code, message.reason, by_server=True)
                return
            else:
                raise SubscriberError("the server sent a binary frame")

    def send_text(self, text: str) -> None:
        """Send one text message (a masked frame) on this WebSocket, counted in the meter; nothing once closing."""
        if self.transport is not None and not self.transport.is_closing():
            self._write(encode_frame(Opcode.TEXT, text.encode()))

    def _close(self, code: int, reason: str, *, by_server: bool) -> None:
        """Send a close frame (``code``; an echo of the server's), end the session with it, close the transport."""
        if self.transport is not None and not self.transport.is_closing():
            self._write(close(None if code == 1005 else code, reason if not by_server else ""))
            self.transport.close()
        self._end(WebSocketClosed(code, reason, by_server))

    def _end(self, exc: BaseException) -> None:
        """End the handshake, or else the open WebSocket, with ``exc`` (the first reason given wins)."""
        future = self.done if self.opened.done() else self.opened
        if not future.done():
            future.set_exception(exc)

    def shutdown(self) -> None:
        """Close politely (close ``1000``) if the WebSocket is still open; close the transport in any case."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self.parser is not None and not self.parser.closed:
                self._write(close(1000))
            transport.close()
        for future in (self.opened, self.done):  # retrieved, so asyncio never logs them as lost
            if future.done() and not future.cancelled():
                future.exception()


class LeanWebSocketSubscriber(Subscriber):
    """Subscribe to ``channel`` of the lab server at ``base_url`` (``http://host:port``) over one WebSocket.

    The fleet's subscriber (see the module): no compression, no publishing on the connection.
    ``max_size`` is the largest message accepted. Other keyword arguments are
    :class:`clients.Subscriber`'s.
    """

    transport = "websocket"
    retry_on = (OSError,)

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        max_size: int = MAX_SIZE,
        meter: WireMeter | None = None,
        context: ssl.SSLContext | None = None,
        tls_meter: TLSMeter | None = None,
        path: str = "/channels/{channel}/ws?after={after}",
        decode: Decode = lab_message,
        headers: Iterable[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, **kwargs)
        self.extra_headers = tuple(headers)
        """Header lines added to every Upgrade after the handshake's own (a browser's:
        :func:`bench.agents.http.browser_headers`); none by default."""
        self.meter = meter
        """Where the bytes written and read are counted (:mod:`bench.agents.meter`), if anywhere."""
        parts = urlsplit(base_url.rstrip("/"))
        tls = parts.scheme in ("https", "wss")
        if parts.scheme not in ("http", "ws", "https", "wss") or tls != (context is not None):
            raise ValueError(f"not an http:// or ws:// URL, or a TLS one without a TLS context: {base_url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if tls else 80)
        self.context = context
        """TLS (in memory, :mod:`bench.agents.tls`) for an ``https://`` URL: :attr:`meter` counts the clear bytes."""
        self.tls_meter = tls_meter
        """Where the TLS bytes on the wire are counted, if anywhere."""
        self.max_size = max_size
        """Largest message accepted, bytes (beyond: close ``1009`` and :class:`clients.SubscriberError`)."""
        self._netloc = parts.netloc
        self._path = parts.path + path
        """The request target, a template of ``channel`` (quoted) and ``after`` (the cursor at each connect)."""
        self.decode = decode
        """Turns each text message into the lab's message object (:mod:`bench.agents.messages`; a peer's differs)."""
        self._conn: _Connection | None = None

    def drop(self) -> bool:
        """Abort the open connection, if any, with no close frame (as a network failure would); it reconnects."""
        conn = self._conn
        if conn is None or conn.transport is None:
            return False
        conn.transport.abort()
        return True

    # -- hooks for a peer's protocol over the same connection (Engine.IO: bench/agents/socketio.py) ---------

    def _target(self) -> str:
        """The request target of the next Upgrade: the path template with the channel and the cursor."""
        return self._path.format(channel=quote(self.channel, safe=""), after=self.tracker.cursor)

    def _headers(self) -> str:
        """Extra request header lines of the next Upgrade, each ending in CRLF (a subprotocol); none here."""
        return ""

    def _opened(self, send: Callable[[str], None]) -> None:
        """The ``101`` was checked: ``send(text)`` sends a text message on this connection. Nothing here."""
        return None

    def _on_text(self, text: str, recv_ns: int, recv_mono_ns: int) -> None:
        """One text message, read at ``recv_ns``: decoded (:attr:`decode`) into the lab's message path."""
        self._on_message(self.decode(self.channel, text), recv_ns, recv_mono_ns)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.extra_headers)
        request = (
            f"GET {self._target()} HTTP/1.1\r\n"
            f"Host: {self._netloc}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}{self._headers()}\r\n"
        ).encode("ascii")
        conn = _Connection(self, request, key)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                if self.context is not None:
                    await open_tls(lambda: conn, self.host, self.port, self.context, self.tls_meter, self.host)
                else:
                    await loop.create_connection(lambda: conn, self.host, self.port)
                try:
                    await conn.opened
                except HandshakeRejected as exc:
                    if exc.status < 500:
                        raise SubscriberError(str(exc)) from exc
                    raise ConnectionResetError(str(exc)) from exc
            self.stats.connections += 1
            self._conn = conn
            try:
                await conn.done
            except WebSocketClosed as exc:
                _check_close(exc)
                raise
        finally:
            self._conn = None
            conn.shutdown()
            if conn.transport is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.lost), 1.0)


def _check_close(exc: WebSocketClosed) -> None:
    """A close that reconnecting cannot fix becomes a SubscriberError (the codes of clients' subscriber)."""
    if exc.code in (1003, 1008, 1009) or 4000 <= exc.code < 5000:
        raise SubscriberError(str(exc)) from exc
