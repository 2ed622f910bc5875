"""The fleet's SSE subscriber: :class:`clients.Subscriber` over a bare :class:`asyncio.Protocol`.

Agent layer of the benchmark (:mod:`bench.agents`). What it does is :class:`clients.SSESubscriber`'s
(docs/protocol.md, "Server-Sent Events"), and everything but the connection is shared with it: the
event-stream parser (the sans-I/O :class:`clients.EventStreamParser`), the cursor, gap, reset and delivery
accounting, the latency histogram, the reconnect loop with backoff. It only implements
:meth:`LeanSSESubscriber._session`, lean as :mod:`bench.agents.websocket` is and for the same reasons
(httpx's streaming costs a task hop and its own buffering per read, and the receive time would be taken
after them):

- the request is a minimal ``GET <path>`` with ``Host``, ``Accept: text/event-stream`` and, when there is a
  cursor to resume from, ``Last-Event-ID`` (the last ``id`` the stream gave, as a browser's ``EventSource``
  sends it; on the first connection the subscriber's ``after``, if not 0);
- the answer must be ``200`` with ``Content-Type: text/event-stream``; a ``4xx`` is a
  :class:`clients.SubscriberError` (never retried), a ``5xx``, a dropped connection, a stream the server
  ends (it does when it stops) or ``idle_timeout`` seconds without a byte (the lab's heartbeats come every
  15 s) reconnect. The body may be chunked (Werkzeug and gunicorn chunk it: :class:`ChunkedDecoder`), have
  a ``Content-Length``, or run to the connection's end; it may be gzip-compressed (a proxy that compresses
  the stream for a subscriber sending a browser's ``Accept-Encoding``: the buffering trap of docs/deployment.md);
- the receive time (``time.time_ns()`` and ``time.monotonic_ns()``) is taken **once per ``data_received``
  call**, before parsing, and given to every event parsed from those bytes;
- ``TCP_NODELAY`` is on; every byte written and read is counted in a :class:`bench.agents.meter.WireMeter`,
  the request and the answer's head counted as a handshake too (as the WebSocket's Upgrade and ``101``).

``decode(channel, event_name, data)`` turns one dispatched SSE event into the lab's message object
(:func:`lab_sse_message` by default); with ``path`` it lets the same subscriber read a peer's EventSource,
whose ``data`` is the published payload itself (nginx-Nchan). ``None`` skips the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from clients import EventStreamError, EventStreamParser, HandshakeRejected, Subscriber, SubscriberError

from .meter import WireMeter
from .tls import TLSMeter, open_tls

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "IDLE_TIMEOUT",
    "ChunkedDecoder",
    "LeanSSESubscriber",
    "SSEDecode",
    "StreamEnded",
    "lab_sse_message",
]

HANDSHAKE_TIMEOUT = 10.0
"""Seconds to connect and get the answer's head (a loaded server may accept slowly): beyond, reconnect."""
IDLE_TIMEOUT = 45.0
"""Seconds without a byte before an open stream is taken for dead (three of the lab's default heartbeats)."""
MAX_HEAD = 64 << 10
"""Largest answer head accepted, bytes."""
MAX_CHUNK_LINE = 1024
"""Longest chunk-size line accepted, bytes (extensions included)."""

SSEDecode = Callable[[str, str, str], dict[str, Any] | None]
"""``decode(channel, event_name, data)``: the lab's message object for one SSE event, or ``None`` to skip it."""


def lab_sse_message(channel: str, event: str, data: str) -> dict[str, Any] | None:
    """The lab's server's own events: ``data`` is the event object's JSON, or a notice's (``gap``, ``reset``)."""
    if event == "message":
        obj: dict[str, Any] = json.loads(data)
        return obj
    if event in ("gap", "reset"):
        notice: dict[str, Any] = json.loads(data)
        notice["type"] = event
        return notice
    return None


class StreamEnded(ConnectionError):
    """The server ended the stream (a complete chunked or sized body): reconnect and resume."""


class ChunkedDecoder:
    """Sans-I/O decoder of an HTTP/1.1 chunked body (RFC 9112 section 7.1): chunks in, body bytes out.

    Chunk extensions and trailer fields are read and ignored. :attr:`done` is set at the last chunk;
    anything malformed raises :class:`ConnectionError` (the connection is then useless: reconnect).
    """

    __slots__ = ("_buf", "_crlf", "_left", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0
        """Bytes of the current chunk still to come."""
        self._crlf = False
        """A chunk's data is complete; its CRLF is next."""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Decode ``data``; return the body bytes it completes (possibly none)."""
        buf = self._buf + data if self._buf else data
        pos = 0
        out: list[bytes] = []
        end = len(buf)
        while not self.done:
            if self._left:
                take = min(self._left, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ConnectionError("a chunk not followed by CRLF")
                pos += 2
                self._crlf = False
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > MAX_CHUNK_LINE:
                    raise ConnectionError("a chunk-size line too long")
                break
            size = buf[pos:eol].split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise ConnectionError(f"a bad chunk size {bytes(buf[pos:eol][:40])!r}")
            pos = eol + 2
            self._left = int(size, 16)
            if not self._left:
                self.done = True  # trailers, if any, are not read
        self._buf = buf[pos:] if not self.done else b""
        return b"".join(out) if len(out) != 1 else out[0]


class _Connection(asyncio.Protocol):
    """One connection of a :class:`LeanSSESubscriber`: the answer's head, then the body into its parser."""

    def __init__(self, sub: LeanSSESubscriber, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.sub = sub
        self.request = request
        self.opened: asyncio.Future[None] = loop.create_future()
        """Done when the ``200`` was checked (or with the reason there is none)."""
        self.done: asyncio.Future[None] = loop.create_future()
        """Done with the reason the open stream ended (always an exception)."""
        self.lost: asyncio.Future[None] = loop.create_future()
        """Done when the transport is closed."""
        self.transport: asyncio.Transport | None = None
        self.parser: EventStreamParser | None = None
        """Set once the head was checked."""
        self.chunked: ChunkedDecoder | None = None
        self.inflate: Any = None
        """A ``zlib`` decompressor when the body is ``Content-Encoding: gzip`` (a proxy that compresses the stream,
        to a subscriber that sent a browser's ``Accept-Encoding``)."""
        self.body_left: int | None = None
        """Bytes of a sized body still to come (``None``: chunked or to the connection's end)."""
        self.head = bytearray()
        self.status = 0
        """The status of a refusal whose body is being read."""
        self.last_recv_mono_ns = time.monotonic_ns()
        """When the latest bytes arrived (for the idle timeout)."""

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        meter = self.sub.meter
        if meter is not None:
            meter.up += len(self.request)
            meter.head_up += len(self.request)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        recv_ns, recv_mono_ns = time.time_ns(), time.monotonic_ns()  # once per read, for every event in it
        self.last_recv_mono_ns = recv_mono_ns
        if self.sub.meter is not None:
            self.sub.meter.down += len(data)
        try:
            if self.parser is None:
                data = self._head(data)
                if self.parser is None or not data:
                    return
            self._body(data, recv_ns, recv_mono_ns)
        except Exception as exc:  # a refusal, a broken stream or a bug: the session raises it
            self._end(exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status:
            self._end(HandshakeRejected(self.status, bytes(self.head)))
        elif not self.opened.done():
            self._end(ConnectionResetError("connection closed before the answer's head"))
        elif self.chunked is None and self.body_left is None:
            self._end(StreamEnded("the server closed the stream"))
        else:
            self._end(ConnectionResetError(f"connection lost in the middle of the stream ({exc!r})"))
        if not self.lost.done():
            self.lost.set_result(None)

    # -- the answer's head --------------------------------------------------------------------------------

    def _head(self, data: bytes) -> bytes:
        """Read the answer's head; return the body bytes after a ``200`` (events already sent)."""
        self.head += data
        if self.status:  # a refusal: read its body for the error message
            self._refused_maybe()
            return b""
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                raise ConnectionResetError(f"an answer head over {MAX_HEAD} bytes")
            return b""
        head, rest = bytes(self.head[:end]), bytes(self.head[end + 4 :])
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ConnectionResetError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        length = headers.get(b"content-length", b"")
        if status != 200:
            self.status = status
            self.head = bytearray(rest)
            self.body_left = int(length) if length.isdigit() else None
            self._refused_maybe()
            return b""
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"text/event-stream":
            raise SubscriberError(f"200 with Content-Type {ctype[:60].decode('latin-1')!r}, not text/event-stream")
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding == b"gzip":
            self.inflate = zlib.decompressobj(wbits=31)
        elif encoding != b"identity":
            raise SubscriberError(f"a stream with Content-Encoding {encoding[:40].decode('latin-1')!r}")
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            self.chunked = ChunkedDecoder()
        elif length.isdigit():
            self.body_left = int(length)
        meter = self.sub.meter
        if meter is not None:
            meter.head_down += end + 4
            meter.heads += 1
        self.head = bytearray()
        self.parser = EventStreamParser(self.sub.max_size)
        self.opened.set_result(None)
        return rest

    def _refused_maybe(self) -> None:
        """The whole body of a refusal is here: the request failed with it."""
        if self.body_left is not None and len(self.head) >= self.body_left and not self.opened.done():
            self.opened.set_exception(HandshakeRejected(self.status, bytes(self.head[: self.body_left])))
            assert self.transport is not None
            self.transport.close()

    # -- the body -----------------------------------------------------------------------------------------

    def _body(self, data: bytes, recv_ns: int, recv_mono_ns: int) -> None:
        """Body bytes (still chunked if the answer was) into the parser; each event into the message path."""
        ended = False
        if self.chunked is not None:
            data = self.chunked.feed(data)
            ended = self.chunked.done
        elif self.body_left is not None:
            data = data[: self.body_left]
            self.body_left -= len(data)
            ended = not self.body_left
        if self.inflate is not None:
            data = self.inflate.decompress(data)
        sub = self.sub
        stats = sub.stats
        stats.payload_bytes += len(data)
        assert self.parser is not None
        try:
            events = self.parser.feed(data)
        except EventStreamError as exc:
            raise SubscriberError(str(exc)) from exc
        decode, channel, on_message = sub.decode, sub.channel, sub._on_message
        for event in events:
            obj = decode(channel, event.event, event.data)
            if obj is not None:
                stats.frames += 1
                on_message(obj, recv_ns, recv_mono_ns)
        sub.last_event_id = self.parser.last_event_id
        sub.retry_ms = self.parser.retry
        if ended:
            raise StreamEnded("the server ended the stream")

    def _end(self, exc: BaseException) -> None:
        """End the head, or else the open stream, with ``exc`` (the first reason given wins)."""
        future = self.done if self.opened.done() else self.opened
        if not future.done():
            future.set_exception(exc)

    def shutdown(self) -> None:
        """Close the transport; settle the futures so asyncio never logs an exception of theirs as lost.

        One still pending (the session was stopped) is cancelled: the ``connection_lost`` the close causes
        then finds it done and leaves it.
        """
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        for future in (self.opened, self.done):
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()


class LeanSSESubscriber(Subscriber):
    """Subscribe to ``channel`` at ``base_url`` (``http://host:port``) over one Server-Sent Events stream.

    The fleet's subscriber (see the module). ``path`` is the request target, a template of ``channel``
    (quoted) and ``after`` (the cursor at each connect); ``decode`` turns each SSE event into the lab's
    message object; ``max_size`` is the longest line accepted (beyond: :class:`clients.SubscriberError`).
    Other keyword arguments are :class:`clients.Subscriber`'s.
    """

    transport = "sse"
    retry_on = (OSError,)

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        meter: WireMeter | None = None,
        context: ssl.SSLContext | None = None,
        tls_meter: TLSMeter | None = None,
        path: str = "/channels/{channel}/sse",
        decode: SSEDecode | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_size: int = 16 << 20,
        headers: Iterable[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, **kwargs)
        self.headers: tuple[tuple[str, str], ...] = (
            tuple(headers) if headers is not None else (("Accept", "text/event-stream"),)
        )
        """Header lines after ``Host`` (and before ``Last-Event-ID``): ``Accept`` alone by default; a browser's
        (:func:`bench.agents.http.browser_headers`) replace them, their own ``Accept`` included."""
        self.meter = meter
        """Where the bytes written and read are counted (:mod:`bench.agents.meter`), if anywhere."""
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or (parts.scheme == "https") != (context is not None):
            raise ValueError(f"not an http:// URL, or an https:// one without a TLS context: {base_url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if context is not None else 80)
        self.context = context
        """TLS (in memory, :mod:`bench.agents.tls`) for an ``https://`` URL: :attr:`meter` counts the clear bytes."""
        self.tls_meter = tls_meter
        """Where the TLS bytes on the wire are counted, if anywhere."""
        self.idle_timeout = idle_timeout
        self.max_size = max_size
        self.decode: SSEDecode = decode if decode is not None else lab_sse_message
        """Turns each SSE event into the lab's message object, or ``None`` to skip it."""
        self.last_event_id: str | None = None
        """The last event ID the server gave (sent back as ``Last-Event-ID`` on reconnect)."""
        self.retry_ms: int | None = None
        """The stream's ``retry:`` hint, ms."""
        self._netloc = parts.netloc
        self._path = parts.path + path
        self._conn: _Connection | None = None

    def drop(self) -> bool:
        """Abort the open connection, if any (as a network failure would); it reconnects."""
        conn = self._conn
        if conn is None or conn.transport is None:
            return False
        conn.transport.abort()
        return True

    def _request(self) -> bytes:
        cursor = self.tracker.cursor
        target = self._path.format(channel=quote(self.channel, safe=""), after=cursor)
        resume = self.last_event_id if self.last_event_id is not None else (str(cursor) if cursor else "")
        last = f"Last-Event-ID: {resume}\r\n" if resume else ""
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        return f"GET {target} HTTP/1.1\r\nHost: {self._netloc}\r\n{extra}{last}\r\n".encode("ascii")

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        conn = _Connection(self, self._request())
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                if self.context is not None:
                    await open_tls(lambda: conn, self.host, self.port, self.context, self.tls_meter, self.host)
                else:
                    await loop.create_connection(lambda: conn, self.host, self.port)
                try:
                    await conn.opened
                except HandshakeRejected as exc:
                    self.stats.requests += 1
                    if exc.status < 500:
                        raise SubscriberError(str(exc)) from exc
                    raise ConnectionResetError(str(exc)) from exc
            self.stats.requests += 1
            self.stats.connections += 1
            self._conn = conn
            await self._watch(conn)
        finally:
            self._conn = None
            conn.shutdown()
            if conn.transport is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.lost), 1.0)

    async def _watch(self, conn: _Connection) -> None:
        """Wait for the stream to end; abort it after :attr:`idle_timeout` seconds without a byte."""
        idle_ns = int(self.idle_timeout * 1e9)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(conn.done), self.idle_timeout / 3)
            if conn.done.done():
                conn.done.result()  # always raises: the reason the stream ended
            if time.monotonic_ns() - conn.last_recv_mono_ns > idle_ns:
                raise TimeoutError(f"nothing received for {self.idle_timeout:g} s")
