"""The WebSocket adapter: one connection, one loop, over the same bus.

WebSocket is a protocol of its own after an HTTP Upgrade handshake: once the
connection is open either side may send at any time. This loop sleeps on a
single event that both the bus (a new event on the channel) and
simple-websocket's reader thread (a client message, or the peer closing) set,
then drains client messages and delivers the bus's next batch.

With compression off (the default), each event is framed once for every
subscriber: :func:`text_frame` caches the RFC 6455 frame of the event's
stored bytes, and the loop writes it to the socket directly, as
``websockets.broadcast`` does. With permessage-deflate negotiated, frames go
through wsproto, which compresses per connection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from functools import lru_cache
from typing import Any

from simple_websocket import ConnectionClosed, Server
from wsproto.frame_protocol import FrameProtocol

from .bus import Batch, Bus, Event, InvalidPayload, parse_payload, valid_channel
from .errors import CLOSE_BAD_MESSAGE, CLOSE_GOING_AWAY, CLOSE_UNSUPPORTED
from .stats import Stats

__all__ = ["WebSocketSession", "text_frame"]


@lru_cache(maxsize=4096)
def text_frame(payload: bytes) -> bytes:
    """The unmasked, uncompressed server text frame carrying ``payload``.

    Keyed by the event's stored bytes object, whose hash CPython caches, so
    every subscriber after the first gets the frame for a dict lookup.
    """
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(payload.decode("utf-8")))


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _Close(Exception):
    """Raised inside the loop to close the connection with a code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close frame's reason fits in 123 bytes


class WebSocketSession:
    """One subscriber's WebSocket: catch up from ``after``, then push.

    Two paths deliver events, both under ``_write_lock`` and both advancing
    ``cursor``, so an event is sent once whichever path gets it:

    - the fast path, :meth:`offer`, runs in the publisher's thread or greenlet
      when the bus has a new event: if this connection is exactly one event
      behind and its socket takes the whole frame without blocking, the event
      is written there and then;
    - the session loop, :meth:`run`, woken by :meth:`set` for anything else
      (catching up, a partial write, client messages, the peer closing).
    """

    def __init__(
        self,
        ws: Server,
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
        """The seq of the last event sent (or queued in ``_pending``) on this connection."""
        self.max_batch = max_batch
        self.compressed = compressed
        self.delivered = 0
        """Events written to this connection (read by :class:`~server.stats.Stats`)."""
        self.bytes_sent = 0
        """Event payload bytes written (frame headers excluded)."""
        self._wake = ws.event  # simple-websocket also sets it on input and on close
        self._write_lock = threading.Lock()
        self._pending = b""
        """The unsent tail of a frame the fast path could only partly write."""
        sock = ws.sock
        # gevent wraps the OS socket; the fast path needs the raw one, whose
        # send() with MSG_DONTWAIT never blocks nor yields.
        self._raw_sock: socket.socket = getattr(sock, "_sock", sock)

    def set(self) -> None:
        """Waiter protocol: wake the session loop."""
        self._wake.set()

    def offer(self, event: Event) -> bool:
        """Waiter protocol: try to send ``event`` now; false means "wake me"."""
        if self.compressed or event.seq != self.cursor + 1 or not self._write_lock.acquire(blocking=False):
            return False
        try:
            if event.seq != self.cursor + 1 or self._pending or not self.ws.connected:
                return False
            frame = text_frame(event.wire)
            try:
                sent = self._raw_sock.send(frame, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                return False  # the loop will find the connection closed
            self.cursor = event.seq
            self.delivered += 1
            self.bytes_sent += len(event.wire)
            if sent < len(frame):
                self._pending = frame[sent:]
                return False
            return True
        finally:
            self._write_lock.release()

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
            with self._write_lock:
                if self._pending:
                    self._sendall(self._pending)
                    self._pending = b""
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
                self.ws.send(payload.decode("utf-8"))
        else:
            self._sendall(b"".join([text_frame(f) for f in frames]))
        self.delivered += len(batch.events)
        self.bytes_sent += sum(len(e.wire) for e in batch.events)

    def _sendall(self, data: bytes) -> None:
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        self.ws.sock.sendall(data)

    def _reply(self, obj: dict[str, Any]) -> None:
        payload = _json(obj)
        with self._write_lock:
            if self.compressed:
                self.ws.send(payload.decode("utf-8"))
            else:
                if self._pending:
                    self._sendall(self._pending)
                    self._pending = b""
                self._sendall(text_frame(payload))

    def _handle(self, message: str | bytes) -> None:
        """One client message (docs/protocol.md, "Client to server")."""
        if isinstance(message, bytes):
            raise _Close(CLOSE_UNSUPPORTED, "binary frames are not supported")
        try:
            obj = json.loads(message, parse_constant=_no_constants)
        except ValueError as exc:
            raise _Close(CLOSE_BAD_MESSAGE, f"bad_json: {exc}") from None
        if not isinstance(obj, dict):
            raise _Close(CLOSE_BAD_MESSAGE, "bad_message: a message must be a JSON object")
        kind = obj.get("type")
        if kind == "ping":
            self._reply({"type": "pong", "id": obj.get("id"), "ts": time.time_ns()})
        elif kind == "publish":
            self._publish(obj)
        else:
            raise _Close(CLOSE_BAD_MESSAGE, f"bad_message: unknown type {kind!r}")

    def _publish(self, obj: dict[str, Any]) -> None:
        if "data" not in obj:
            raise _Close(CLOSE_BAD_MESSAGE, "bad_message: publish needs a 'data' field")
        channel = obj.get("channel", self.channel)
        if not isinstance(channel, str) or not valid_channel(channel):
            raise _Close(CLOSE_BAD_MESSAGE, f"bad_channel: {str(channel)[:64]!r}")
        try:
            data = parse_payload(json.dumps(obj["data"], separators=(",", ":"), ensure_ascii=False).encode())
        except InvalidPayload as exc:  # pragma: no cover - json.dumps output is JSON
            raise _Close(CLOSE_BAD_MESSAGE, f"bad_json: {exc}") from None
        event = self.bus.publish(channel, data)
        self.stats.published()
        self._reply({"type": "ack", "id": obj.get("id"), "seq": event.seq, "ts": event.ts})


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
