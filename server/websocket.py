"""The WebSocket adapter: one connection, one loop, over the same bus.

WebSocket is a protocol of its own after an HTTP Upgrade handshake: once the
connection is open either side may send at any time. This loop sleeps on a
single event that both the bus (a new event on the channel) and
simple-websocket's reader thread (a client message, or the peer closing) set,
then drains client messages and delivers the bus's next batch.

**One writer per connection.** Three parties write to a WebSocket's socket:
the session loop (catch-up batches, acks, pongs to application pings, its
close frame), the publisher's thread or greenlet (the fast path of
:meth:`WebSocketSession.broadcast`) and simple-websocket's reader (the 101
answer, pongs to the client's pings, the server's own pings, the answer to a
close). Every byte of each goes through one :class:`_Writer` per connection,
under one lock, which first finishes any frame a fast-path write left half
sent: frames never interleave, on any runtime. (simple-websocket writes with
a bare ``sock.send`` from its reader; the lab gives it the writer as its
socket.)

With compression off (the default), each event is framed once per publish: a
2 to 10 byte RFC 6455 header (:func:`frame_header`) and the event's stored
bytes, one ``send`` of that frame per subscriber. With
permessage-deflate negotiated, frames go through wsproto, which compresses
per connection.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask, Response, current_app, request
from simple_websocket import ConnectionClosed, Server
from wsproto.events import CloseConnection, Message, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from .bus import Batch, Bus, Event, InvalidPayload, parse_payload, valid_channel
from .bus.core import loads_message
from .errors import (
    CLOSE_BAD_MESSAGE,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_UNSUPPORTED,
    ApiError,
)
from .stats import Stats

__all__ = [
    "CLOSE_LINGER",
    "CONTROL_WAIT",
    "LabWebSocket",
    "WebSocketSession",
    "check_handshake",
    "frame_header",
    "websocket_route",
]

log = logging.getLogger(__name__)

OP_TEXT = 0x1
"""RFC 6455 opcode of a text frame."""

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")

CONTROL_WAIT = 30.0
"""Seconds simple-websocket's reader waits to write a control frame (pong, ping, close).

Longer means a write of the session has not finished for that long: the
client stopped reading. The connection is then aborted (its socket shut
down), which also ends the stuck write.
"""

CLOSE_LINGER = 2.0
"""Seconds a closing connection waits for the client's close frame (and drains its input) before the socket closes.

Closing a socket with unread input sends a TCP reset, which can destroy the
close frame (or a refusal) before the client reads it.
"""


def frame_header(length: int, opcode: int = OP_TEXT) -> bytes:
    """The header of an unmasked, final server frame carrying ``length`` payload bytes (RFC 6455 section 5.2).

    FIN and the opcode, then the length in 7 bits, or 126 and 16 bits, or 127
    and 64 bits; a server never masks.
    """
    if length < 126:
        return _SHORT.pack(0x80 | opcode, length)
    if length < 65536:
        return _MEDIUM.pack(0x80 | opcode, 126, length)
    return _LONG.pack(0x80 | opcode, 127, length)


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _Writer:
    """A WebSocket's socket with one writer at a time: what simple-websocket and the session write through.

    Quacks like the socket simple-websocket expects (``send``, ``recv``,
    ``fileno``, ``close``). Every write holds :attr:`lock` and first sends
    :attr:`pending`, the tail of a frame the fast path could only partly
    write. The lock is a plain one, not re-entrant (under gevent an
    ``RLock`` costs twice as much on the fast path): methods say whether
    they take it or expect it held.
    """

    def __init__(self, sock: Any, timeout: float = CONTROL_WAIT) -> None:
        self.sock = sock
        """The runtime's socket (a gevent socket under gevent)."""
        self.timeout = timeout
        """Longest a write may wait for the lock or go without progress (``LAB_WS_WRITE_TIMEOUT``): past it the
        client has stopped reading (a slow consumer) and the connection is aborted; the client resumes from its
        cursor and loses nothing."""
        self.raw: socket.socket = getattr(sock, "_sock", sock)
        """The OS socket under it: ``send`` with ``MSG_DONTWAIT`` never block nor yield."""
        self.lock = threading.Lock()
        self.cooperative = type(self.lock).__module__.startswith("gevent")
        """Whether the lock is gevent's (the gevent runtime patched :mod:`threading`): every writer is then a
        greenlet of one OS thread, and code that does not yield runs alone, so the fast path needs only to see
        the lock free (:meth:`~WebSocketSession.broadcast`), not to take it."""
        self.pending = b""
        """Unsent tail of a frame; written before anything else. Guarded by :attr:`lock`."""

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def recv(self, size: int) -> bytes:
        data: bytes = self.sock.recv(size)
        return data

    def write(self, data: bytes) -> None:
        """Write ``data`` whole, after what is pending; the caller holds :attr:`lock`."""
        self.flush()
        self._sendall(data)

    def flush(self) -> None:
        """Write what is pending; the caller holds :attr:`lock`."""
        if self.pending:
            pending, self.pending = self.pending, b""
            self._sendall(pending)

    def _sendall(self, data: bytes) -> None:
        """Write ``data`` whole; a write that makes no progress for :attr:`timeout` aborts the connection.

        Non-blocking sends on the OS socket, waiting for room with ``select`` (cooperative under gevent,
        which patches it): a reader that stops reading cannot hold the session, a thread or a greenlet
        forever, whether or not pings are on.
        """
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            try:
                view = view[self.raw.send(view, socket.MSG_DONTWAIT) :]
                deadline = time.monotonic() + self.timeout
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.abort()
                    raise TimeoutError(f"the client read nothing for {self.timeout:g} s: a slow consumer") from None
                select.select([], [self.raw], [], min(left, 1.0))

    def send(self, data: bytes) -> int:
        """simple-websocket's writes (101 answer, pongs, pings, close frames): whole, in turn.

        Waits at most :data:`CONTROL_WAIT` for the lock; past that the client
        has stopped reading, and the connection is aborted.
        """
        if not self.lock.acquire(timeout=self.timeout):
            self.abort()
            raise TimeoutError(f"no write finished on this WebSocket for {self.timeout:g} s")
        try:
            self.write(data)
        finally:
            self.lock.release()
        return len(data)

    def push(self, frame: bytes) -> bool:
        """The fast path: write a frame without blocking; the writer is the caller's alone and nothing is pending.

        One ``send`` on the OS socket, which neither blocks nor yields.
        ``True``: all written. ``False``: partly written or not at all (the
        socket is full): the rest is :attr:`pending`, for the session loop.
        Other errors (the peer went away) propagate, nothing written.
        """
        try:
            sent = self.raw.send(frame, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent < len(frame):
            self.pending = frame[sent:]
            return False
        return True

    def abort(self) -> None:
        """Shut the socket down both ways: wakes a write or read blocked on it."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close gracefully: FIN after what was written, drain the input a while, then close."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        else:
            deadline = time.monotonic() + CLOSE_LINGER
            drained = 0
            try:
                while drained < 1 << 20 and (left := deadline - time.monotonic()) > 0:
                    self.sock.settimeout(left)
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        break
                    drained += len(chunk)
            except OSError:
                pass
        self.abort()  # a writer still blocked gets EPIPE now
        with self.lock:
            self.sock.close()


class LabWebSocket(Server):  # type: ignore[misc]
    """simple-websocket's server connection, with every write through one :class:`_Writer`.

    Also closes ``1009`` as soon as a frame header announces more than
    ``max_message_size`` bytes (simple-websocket only counts the bytes that
    have arrived, so a header claiming 2**62 bytes held the connection open).
    """

    connected: bool
    """simple-websocket's: false once either side has closed."""

    def __init__(self, environ: dict[str, Any], write_timeout: float = CONTROL_WAIT, **options: Any) -> None:
        environ = dict(environ)
        for key in ("werkzeug.socket", "gunicorn.socket"):
            if key in environ:
                environ[key] = _Writer(environ[key], write_timeout)
                self.writer: _Writer = environ[key]
                break
        else:  # pragma: no cover - the lab runs on Werkzeug and gunicorn only
            raise RuntimeError("no socket in the WSGI environment")
        super().__init__(environ, **options)

    def send(self, data: str | bytes) -> None:
        """Encode and write one message (takes the writer's lock: deflate state and socket in one order)."""
        with self.writer.lock:
            self.write_message(data)

    def write_message(self, data: str | bytes) -> None:
        """Encode and write one message; the caller holds the writer's lock."""
        if not self.connected:
            raise ConnectionClosed(self.close_reason, self.close_message)
        event = Message(data=data) if isinstance(data, bytes) else TextMessage(data=data)
        self.writer.write(self.ws.send(event))

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Send a close frame; if no write can start within :data:`CONTROL_WAIT`, abort instead.

        simple-websocket's own, but writing through the writer while
        holding its lock (the reader calls it on a ping timeout).
        """
        if not self.connected:
            raise ConnectionClosed(self.close_reason, self.close_message)
        if not self.writer.lock.acquire(timeout=self.writer.timeout):
            self.connected = False
            self.writer.abort()
            self.event.set()
            return
        try:
            self.writer.write(self.ws.send(CloseConnection(reason or CloseReason.NORMAL_CLOSURE, message)))
        except OSError:
            pass
        finally:
            self.connected = False
            self.writer.lock.release()

    def _handle_events(self) -> bool:
        keep_going: bool = super()._handle_events()
        if keep_going and self.connected and self.max_message_size and self._announced() > self.max_message_size:
            self.close(CloseReason.MESSAGE_TOO_BIG, "Message is too big")
            self.event.set()
            return False
        return keep_going

    def _announced(self) -> int:
        """Payload bytes the frame being received announces, plus those of its message already in."""
        try:
            header = self.ws.connection._proto._frame_decoder.header
        except AttributeError:  # during the handshake; wsproto internals are pinned
            return 0
        return 0 if header is None else int(header.payload_len) + int(self.incoming_message_len)

    def finish(self) -> None:
        """After the session: close if still open, let the reader end, never leave the socket open."""
        if self.connected:
            self.close()
        self.thread.join(CLOSE_LINGER + 1.0)
        if self.thread.is_alive():
            self.writer.abort()  # the client never answered our close: its recv returns, the reader ends
            self.thread.join(CLOSE_LINGER + 1.0)


def check_handshake(environ: dict[str, Any]) -> None:
    """Refuse an Upgrade request wsproto would choke on, with the answer RFC 6455 section 4.2.2 asks for.

    Another version than 13: ``426`` with ``Sec-WebSocket-Version: 13``. No
    key, or one that is not 16 bytes in base64: ``400 bad_handshake``.
    """
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "")
    if version.strip() != "13":
        raise ApiError(
            426,
            "unsupported_version",
            f"this server speaks WebSocket version 13, not {version[:20]!r}",
            headers={"Sec-WebSocket-Version": "13"},
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise ApiError(400, "bad_handshake", f"Sec-WebSocket-Key must be 16 bytes in base64, got {key[:40]!r}")


class _Upgraded(Response):
    """What the view returns once the WebSocket is over: nothing more for the runtime to write."""

    mode = "werkzeug"

    def __call__(self, environ: Any, start_response: Any) -> Any:
        if self.mode == "gunicorn":
            raise StopIteration()  # gunicorn: the connection is done, close it
        return super().__call__(environ, start_response)


def websocket_route(app: Flask, rule: str, endpoint: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``view(ws, **args)`` for WebSocket handshakes on ``rule`` (flask-sock's ``route``, with one writer).

    The handshake is checked before the upgrade (:func:`check_handshake`;
    wsproto's own refusals become ``400 bad_handshake``). Whatever the view
    raises ends in a close frame (``1011`` naming the exception for a bug),
    never in an HTTP answer written into the open WebSocket.
    ``app.config["SOCK_SERVER_OPTIONS"]`` holds simple-websocket's options.
    """

    def decorator(view: Callable[..., None]) -> Callable[..., None]:
        def route(**kwargs: Any) -> Response:
            options = current_app.config.get("SOCK_SERVER_OPTIONS", {})
            try:
                ws = LabWebSocket(request.environ, **options)
            except RemoteProtocolError as exc:
                raise ApiError(400, "bad_handshake", str(exc)[:200]) from None
            try:
                view(ws, **kwargs)
            except (ConnectionClosed, OSError):
                pass  # the peer went away
            except Exception as exc:
                log.exception("WebSocket session failed")
                if ws.connected:
                    ws.close(CLOSE_INTERNAL, f"internal error: {type(exc).__name__}")
            ws.finish()
            response = _Upgraded()
            response.mode = ws.mode
            return response

        app.add_url_rule(rule, endpoint, route, websocket=True)
        return view

    return decorator


class _Close(Exception):
    """Raised inside the loop to close the connection with a code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason.encode()[:120].decode(errors="ignore")  # a close reason fits in 123 bytes


class WebSocketSession:
    """One subscriber's WebSocket: catch up from ``after``, then push.

    Two paths deliver events, both under the connection's writer lock and
    both advancing ``cursor``, so an event is sent once whichever path gets it:

    - the fast path, :meth:`broadcast`, runs in the publisher's thread or
      greenlet when the bus has a new event, once for all the channel's
      sessions: if a connection is exactly one event behind and its socket
      takes the frame without blocking, the event is written there and then
      (a partial write leaves the rest pending);
    - the session loop, :meth:`run`, woken by :meth:`set` for anything else
      (catching up, a pending tail, client messages, the peer closing).
    """

    def __init__(
        self,
        ws: LabWebSocket,
        bus: Bus,
        stats: Stats,
        channel: str,
        after: int,
        max_batch: int,
        compressed: bool,
    ) -> None:
        self.ws = ws
        self.bus = bus
        self.stats = stats
        self.channel = channel
        self.cursor = after
        """The seq of the last event sent (or pending in the writer) on this connection."""
        self.max_batch = max_batch
        self.compressed = compressed
        self.delivered = 0
        """Events written to this connection (read by :class:`~server.stats.Stats`)."""
        self.bytes_sent = 0
        """Event payload bytes written (frame headers excluded)."""
        self._wake = ws.event  # simple-websocket also sets it on input and on close
        self._writer: _Writer = ws.writer

    def set(self) -> None:
        """Waiter protocol: wake the session loop."""
        self._wake.set()

    @staticmethod
    def broadcast(sessions: Sequence[WebSocketSession], event: Event) -> list[WebSocketSession]:
        """Waiter protocol (:data:`server.bus.base.Broadcast`): send ``event`` now where it can go; those to wake.

        The frame is built once for all ``sessions`` (a 2 to 10 byte header
        and the event's wire bytes: one copy per event, not one per
        subscriber), then written with one non-blocking ``send`` to each
        session exactly one event behind whose writer is free: under gevent
        free means unlocked (nothing here yields, so no other greenlet can
        take it meanwhile), on threads a non-blocking acquire. A session
        left out (behind, busy, compressed, a partial write) is returned, and
        its loop catches up from its cursor.
        """
        wire = event.wire
        frame = frame_header(len(wire)) + wire
        seq = event.seq
        after = seq - 1
        nbytes = len(wire)
        wake: list[WebSocketSession] = []
        for session in sessions:
            writer = session._writer
            if session.cursor != after or writer.pending or session.compressed or not session.ws.connected:
                wake.append(session)
                continue
            lock = writer.lock
            if writer.cooperative:
                if lock.locked():
                    wake.append(session)
                    continue
            elif not lock.acquire(blocking=False):
                wake.append(session)
                continue
            try:
                if session.cursor != after or writer.pending:  # moved on between the check and the lock
                    wake.append(session)
                    continue
                if not writer.push(frame):
                    wake.append(session)  # the rest is pending: the loop sends it
                session.cursor = seq
                session.delivered += 1
                session.bytes_sent += nbytes
            except OSError:
                wake.append(session)  # the loop will find the connection closed
            finally:
                if not writer.cooperative:
                    lock.release()
        return wake

    def run(self) -> None:
        """Serve until the client leaves, breaks the rules, or the bus closes."""
        self.bus.watch(self.channel, self)
        self.stats.track(self)
        try:
            self._deliver()
            while True:
                self._wake.wait()
                self._wake.clear()
                if self.bus.closed:
                    raise _Close(CLOSE_GOING_AWAY, "server shutting down")
                if self.ws.input_buffer or not self.ws.connected:
                    while (message := self.ws.receive(timeout=0)) is not None:
                        self._handle(message)
                self._deliver()
        except _Close as close:
            self.ws.close(close.code, close.reason)
        finally:
            self.bus.unwatch(self.channel, self)
            self.stats.untrack(self)

    def _deliver(self) -> None:
        """Send what is pending, then everything after the cursor."""
        while True:
            with self._writer.lock:
                self._check_open()
                self._writer.flush()
                batch = self.bus.read(self.channel, self.cursor, self.max_batch)
                if not (batch.events or batch.gap or batch.reset):
                    return
                self._send_batch(batch)
                self.cursor = batch.next
            if not batch.more:
                return

    def _send_batch(self, batch: Batch) -> None:
        """Notices first, then one text frame per event; caller holds the lock."""
        frames: list[bytes] = []
        # A reset moves the cursor back to 0 and a gap is relative to that: reset first.
        if batch.reset:
            frames.append(_json({"type": "reset", **batch.reset.as_dict()}))
        if batch.gap:
            frames.append(_json({"type": "gap", **batch.gap.as_dict()}))
        frames.extend(e.wire for e in batch.events)
        if self.compressed:
            for payload in frames:
                self.ws.write_message(payload.decode("utf-8"))
        else:
            parts: list[bytes] = []
            for payload in frames:
                parts.append(frame_header(len(payload)))
                parts.append(payload)
            self._writer.write(b"".join(parts))
        self.delivered += len(batch.events)
        self.bytes_sent += sum(len(e.wire) for e in batch.events)

    def _check_open(self) -> None:
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)

    def _reply(self, obj: dict[str, Any]) -> None:
        payload = _json(obj)
        with self._writer.lock:
            self._check_open()
            if self.compressed:
                self.ws.write_message(payload.decode("utf-8"))
            else:
                self._writer.write(frame_header(len(payload)) + payload)

    def _handle(self, message: str | bytes) -> None:
        """One client message (docs/protocol.md, "Client to server")."""
        if isinstance(message, bytes):
            raise _Close(CLOSE_UNSUPPORTED, "binary frames are not supported")
        try:
            obj = loads_message(message)
        except InvalidPayload as exc:
            code = CLOSE_BAD_MESSAGE if exc.error == "bad_json" else CLOSE_POLICY
            raise _Close(code, f"{exc.error}: {exc}") from None
        if not isinstance(obj, dict):
            raise _Close(CLOSE_BAD_MESSAGE, "bad_message: a message must be a JSON object")
        kind = obj.get("type")
        if kind == "ping":
            self._reply({"type": "pong", "id": obj.get("id"), "ts": time.time_ns()})
        elif kind == "publish":
            self._publish(obj)
        else:
            raise _Close(CLOSE_BAD_MESSAGE, f"bad_message: unknown type {str(kind)[:40]!r}")

    def _publish(self, obj: dict[str, Any]) -> None:
        if "data" not in obj:
            raise _Close(CLOSE_BAD_MESSAGE, "bad_message: publish needs a 'data' field")
        channel = obj.get("channel", self.channel)
        if not isinstance(channel, str) or not valid_channel(channel):
            raise _Close(CLOSE_BAD_MESSAGE, f"bad_channel: {str(channel)[:64]!r}")
        try:
            text = json.dumps(obj["data"], separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = parse_payload(text.encode())
        except ValueError as exc:  # a float literal beyond the double range (1e999) became inf
            raise _Close(CLOSE_BAD_MESSAGE, f"bad_json: {exc}") from None
        event = self.bus.publish(channel, data)
        self.stats.published()
        self._reply({"type": "ack", "id": obj.get("id"), "seq": event.seq, "ts": event.ts})
