"""The Server-Sent Events adapter: one held ``GET`` whose body is the channel's event stream.

SSE (the WHATWG HTML standard's ``text/event-stream``) is plain HTTP like
long polling, but the answer never ends: after a catch-up from the cursor,
each new batch of the bus is written into the same response as it comes.
Every event goes out as ``id: <seq>`` and ``data: <the bus's stored event
bytes>``, so a browser's ``EventSource`` reconnects by itself with
``Last-Event-ID`` and loses nothing. Everything about cursors lives in the
bus core; this module only parses the request and frames the batches
(docs/protocol.md, "Server-Sent Events").

The response body is an iterator (:class:`EventStream`) that the runtime
drives: each ``next()`` blocks (cooperatively under gevent) until the bus
has news, a heartbeat is due, the client has left or the bus closes. One
``next()`` returns everything that was ready as one chunk, so a burst of
events is one write.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Response, request

from .bus import Batch, Bus, BusClosed
from .bus.base import GONE_CHECK
from .capacity import AtCapacity, Gate, client_gone
from .config import Config
from .errors import ApiError
from .longpoll import parse_cursor
from .stats import Stats

__all__ = ["HEARTBEAT", "RETRY_MS", "EventStream", "encode_sse_batch", "handle_sse", "sse_cursor"]

RETRY_MS = 1000
"""The ``retry:`` hint, ms: how long an ``EventSource`` waits before reconnecting (one ``Retry-After``)."""

HEARTBEAT = b": heartbeat\n\n"
"""The comment written when the stream has been silent for ``LAB_SSE_HEARTBEAT`` seconds.

It keeps proxies from closing an idle response and finds a client that has left (the write fails).
"""


def sse_cursor(last_event_id: str | None, after: str | None) -> int:
    """The cursor to resume from: ``Last-Event-ID`` if sent (the browser's reconnect cursor), else ``after``.

    Both follow :func:`~server.longpoll.parse_cursor`'s rules (an integer from
    0 to 2**63-1; present but empty is refused): ``400 bad_cursor`` otherwise.
    """
    if last_event_id is None:
        return parse_cursor(after)
    try:
        return parse_cursor(last_event_id.strip(" \t"))
    except ApiError:
        raise ApiError(
            400, "bad_cursor", f"Last-Event-ID must be an integer from 0 to 2**63-1, got {last_event_id[:40]!r}"
        ) from None


def _data_lines(payload: bytes) -> bytes:
    """``payload`` as ``data:`` lines: one per line of it, joined again with LF by the reader.

    The stored event bytes hold a line break only where the publisher's JSON
    text had white space between tokens. LF survives the round trip; SSE has
    no way to carry a CR, which the reader takes for a line end (it gets LF).
    """
    if b"\n" not in payload and b"\r" not in payload:
        return b"data: %s\n" % payload
    lines = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join(b"data: %s\n" % line for line in lines)


def encode_sse_batch(batch: Batch) -> bytes:
    """One batch as SSE events: ``reset``, then ``gap``, then one event per bus event.

    Each message carries ``id:`` with the cursor after it (a notice's too: ``0``
    after a reset, the gap's ``last`` after a gap), so a reconnect resumes
    exactly where the stream stopped.
    """
    parts: list[bytes] = []
    if batch.reset:
        r = batch.reset
        notice = b'{"type":"reset","after":%d,"last_seq":%d}' % (r.after, r.last_seq)
        parts.append(b"event: reset\nid: 0\ndata: %s\n\n" % notice)
    if batch.gap:
        g = batch.gap
        notice = b'{"type":"gap","first":%d,"last":%d}' % (g.first, g.last)
        parts.append(b"event: gap\nid: %d\ndata: %s\n\n" % (g.last, notice))
    for e in batch.events:
        parts.append(b"id: %d\n%s\n" % (e.seq, _data_lines(e.wire)))
    return b"".join(parts)


class EventStream:
    """The body of one SSE response: an iterator of chunks, driven by the runtime, closed by it.

    ``__next__`` returns the next chunk: the ``retry:`` hint with the catch-up
    first, then each batch as it comes, or :data:`HEARTBEAT` after
    ``heartbeat`` seconds of silence. It ends the stream (``StopIteration``)
    when the bus closes (the server is stopping: the client reconnects after
    ``retry``) or the client has left. :meth:`close` (WSGI calls it however
    the response ended) stops watching the bus and releases the gate's slot.
    """

    delivered: int
    """Events written (read by :class:`~server.stats.Stats`)."""
    bytes_sent: int
    """Body bytes written: event fields, notices, heartbeats."""

    def __init__(
        self,
        bus: Bus,
        stats: Stats,
        channel: str,
        after: int,
        max_batch: int,
        heartbeat: float,
        gone: Callable[[], bool] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.bus = bus
        self.stats = stats
        self.channel = channel
        self.cursor = after
        """The seq of the last event written (0 after a reset)."""
        self.max_batch = max_batch
        self.heartbeat = heartbeat
        self.gone = gone
        self.delivered = 0
        self.bytes_sent = 0
        self._release = release
        self._wake = threading.Event()
        self._started = False
        self._closed = False
        bus.watch(channel, self._wake)
        stats.track(self, "sse")

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        if not self._started:
            self._started = True
            events, chunk = self._read()
            return self._count(b"retry: %d\n\n%s" % (RETRY_MS, chunk), events)
        silent_until = time.monotonic() + self.heartbeat
        while True:
            if self.bus.closed:
                raise StopIteration
            self._wake.clear()
            events, chunk = self._read()
            if chunk:
                return self._count(chunk, events)
            left = silent_until - time.monotonic()
            if left <= 0:
                return self._count(HEARTBEAT, 0)
            if not self._wake.wait(min(left, GONE_CHECK)) and self.gone is not None and self.gone():
                raise StopIteration

    def _read(self) -> tuple[int, bytes]:
        """Every event ready after the cursor (``max_batch`` per read of the bus), as one chunk; and how many."""
        parts: list[bytes] = []
        events = 0
        while True:
            try:
                batch = self.bus.read(self.channel, self.cursor, self.max_batch)
            except BusClosed:
                break
            if not (batch.events or batch.gap or batch.reset):
                break
            parts.append(encode_sse_batch(batch))
            events += len(batch.events)
            self.cursor = batch.next
            if not batch.more:
                break
        return events, b"".join(parts)

    def _count(self, chunk: bytes, events: int) -> bytes:
        self.delivered += events
        self.bytes_sent += len(chunk)
        return chunk

    def close(self) -> None:
        """WSGI's ``close()``: stop watching, count the session out, free its slot (once)."""
        if self._closed:
            return
        self._closed = True
        self.bus.unwatch(self.channel, self._wake)
        self.stats.untrack(self)
        if self._release is not None:
            self._release()


def _no_delay(environ: dict[str, Any]) -> None:
    """``TCP_NODELAY`` on the response's socket: each chunk is sent now, not held for an ACK.

    gunicorn sets it on every connection; Werkzeug writes a chunk in three
    small writes, the second of which Nagle's algorithm would hold until the
    client's delayed ACK (tens of milliseconds) without it.
    """
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def handle_sse(bus: Bus, stats: Stats, gate: Gate, config: Config, channel: str) -> Response:
    """Serve ``GET /channels/<channel>/sse`` (docs/protocol.md, "Server-Sent Events").

    A bad cursor is refused (``400``) and a full gate answered (``503
    at_capacity``) before the stream starts; so is a server that is stopping
    (``503 shutting_down``).
    """
    after = sse_cursor(request.headers.get("Last-Event-ID"), request.args.get("after"))
    if bus.closed:
        raise ApiError(503, "shutting_down", "the server is stopping; reconnect later")
    if not gate.try_acquire("sse"):
        raise AtCapacity("sse", gate.limit_of("sse"))
    try:
        stream = EventStream(
            bus,
            stats,
            channel,
            after,
            config.max_batch,
            config.sse_heartbeat,
            gone=client_gone(request.environ),
            release=lambda: gate.release("sse"),
        )
    except BaseException:
        gate.release("sse")
        raise
    _no_delay(request.environ)
    resp = Response(stream, 200, mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
