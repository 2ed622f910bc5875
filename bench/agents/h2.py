"""The fleet's HTTP/2 subscribers: long polls, interval polls and SSE streams over one TLS connection each group.

Agent layer of the benchmark (:mod:`bench.agents`), over the sans-I/O ``h2`` library, lean as the HTTP/1.1
ones are (:mod:`bench.agents.http`, :mod:`bench.agents.sse`) and sharing everything but the connection with
them and with :mod:`clients`: the long-poll and polling subscribers are :mod:`clients`' own, given an
:class:`H2Poller` (the :class:`clients.Poller` seam); the SSE one reuses the event-stream parser and the lab's
message decoding. HTTP/2 multiplexes: an :class:`H2Group` is one connection (opened again when it breaks or the
server sends ``GOAWAY``) shared by the ``streams_per_connection`` subscribers the fleet gives it, each request
or stream its own HTTP/2 stream, each subscriber its own cursor and accounting.

Bytes, counted two ways:

- TLS bytes on the wire: the TCP payload, in a :class:`bench.agents.tls.TLSMeter` (:mod:`bench.agents.tls`);
- HTTP/2 frame bytes after decryption (the connection preface, ``SETTINGS``, ``HEADERS``, ``DATA``,
  ``WINDOW_UPDATE``, ...), in the fleet's :class:`bench.agents.meter.WireMeter`. An SSE stream's request
  ``HEADERS`` frame and its answer's are counted as its handshake (``head_up``, ``head_down``), as the
  HTTP/1.1 stream's request and head are.

HPACK's effect is kept per connection in :class:`HpackStats`: the header block of the first request on a
connection (every header a literal, entered in the dynamic table) against those of later requests (mostly
indexes into it), and the same for the answers' ``HEADERS`` frames.

The receive time is taken once per read from the TLS layer, before any parsing, and given to every event that
read completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from clients import EventStreamError, EventStreamParser, PollAnswer, Subscriber, SubscriberError

from .meter import WireMeter
from .sse import HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, SSEDecode, StreamEnded, lab_sse_message
from .tls import TLSMeter, open_tls

__all__ = ["H2Group", "H2Poller", "H2SSESubscriber", "HpackStats"]

_HEADERS, _CONTINUATION = 0x1, 0x9
"""HTTP/2 frame types carrying a header block (RFC 9113 section 6)."""
FRAME_HEAD = 9
"""Bytes of an HTTP/2 frame's header."""


@dataclass(slots=True)
class HpackStats:
    """Header block bytes of requests and answers, the first on each connection apart from later ones.

    A header block is the payload of a ``HEADERS`` frame (and its ``CONTINUATION`` frames), without the
    9-byte frame headers. One per fleet process, shared by its connections; the report divides.
    """

    connections: int = 0
    """HTTP/2 connections opened."""
    first_request_bytes: int = 0
    """Sum over connections of the first request's header block."""
    later_request_bytes: int = 0
    """Sum of every later request's header block."""
    later_requests: int = 0
    first_response_bytes: int = 0
    """Sum over connections of the first answer's header block."""
    first_responses: int = 0
    later_response_bytes: int = 0
    later_responses: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Stream:
    """One request's stream: its answer's head, its body (or a sink for it), how it ended."""

    __slots__ = (
        "body",
        "ended",
        "head_down",
        "head_up",
        "headers",
        "id",
        "recv_mono_ns",
        "recv_ns",
        "response",
        "sink",
        "status",
    )

    def __init__(self, stream_id: int, sink: Callable[[bytes, int, int], None] | None) -> None:
        loop = asyncio.get_running_loop()
        self.id = stream_id
        self.sink = sink
        """Where body bytes go as they arrive (with their read's times); ``None``: kept in :attr:`body`."""
        self.body: list[bytes] = []
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.response: asyncio.Future[None] = loop.create_future()
        """Done when the answer's head arrived (or with the reason the stream failed)."""
        self.ended: asyncio.Future[None] = loop.create_future()
        """Done when the answer ended (or with the reason the stream failed)."""
        self.recv_ns = 0
        self.recv_mono_ns = 0
        """When the latest bytes of this stream were read."""
        self.head_up = 0
        """Bytes of the request's ``HEADERS`` frame (frame header included)."""
        self.head_down = 0
        """Bytes of the answer's header frames (frame headers included)."""

    def fail(self, exc: BaseException) -> None:
        for future in (self.response, self.ended):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: a poll that gave up on it must not leave asyncio a log line

    def finish(self) -> None:
        if not self.response.done():
            self.response.set_exception(ConnectionResetError("the stream ended without an answer"))
            self.response.exception()
        if not self.ended.done():
            self.ended.set_result(None)


class _Link(asyncio.Protocol):
    """One HTTP/2 connection (the protocol under :class:`bench.agents.tls.MeteredTLS`): streams in and out."""

    def __init__(self, group: H2Group) -> None:
        self.group = group
        # The headers are the fleet's own and nginx's: h2's checks and normalization of them (a sizeable share of its
        # CPU per request) are left out, as a lean client's would be.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.closed = False
        self.goaway = False
        """The server sent ``GOAWAY``: no new stream here."""
        self.requests = 0
        self.responses = 0
        self._frame_left = 0
        """Payload bytes of the current incoming frame still to come."""
        self._frame_head = b""
        self._frame_counted: _Stream | None = None
        """The stream whose header block the current incoming frame belongs to, if it is one."""

    @property
    def usable(self) -> bool:
        return not self.closed and not self.goaway and self.transport is not None and not self.transport.is_closing()

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        recv_ns, recv_mono_ns = time.time_ns(), time.monotonic_ns()  # once per read, for every event in it
        self.group.meter.down += len(data)
        self._count_frames(data)
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(ConnectionResetError(f"HTTP/2 protocol error: {exc!r}"))
            if self.transport is not None:
                self.transport.abort()
            return
        streams = self.streams
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream = streams.get(event.stream_id)
                if stream is not None and event.data:
                    stream.recv_ns, stream.recv_mono_ns = recv_ns, recv_mono_ns
                    if stream.sink is not None:
                        stream.sink(event.data, recv_ns, recv_mono_ns)
                    else:
                        stream.body.append(event.data)
            elif isinstance(event, h2.events.ResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    headers = {bytes(k): bytes(v) for k, v in event.headers}
                    stream.status = int(headers.get(b":status", b"0"))
                    stream.headers = headers
                    stream.recv_ns, stream.recv_mono_ns = recv_ns, recv_mono_ns
                    if not stream.response.done():
                        stream.response.set_result(None)
            elif isinstance(event, h2.events.StreamEnded):
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.finish()
            elif isinstance(event, h2.events.StreamReset):
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.fail(ConnectionResetError(f"stream reset by the server ({event.error_code!r})"))
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = True
                last = event.last_stream_id if event.last_stream_id is not None else 0
                graceful = event.error_code == h2.errors.ErrorCodes.NO_ERROR
                for sid in [sid for sid in streams if sid > last or not graceful]:
                    streams.pop(sid).fail(ConnectionResetError(f"GOAWAY ({event.error_code!r}) before the answer"))
        self._flush()
        if self.goaway and not self.streams and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_all(ConnectionResetError(f"the HTTP/2 connection was lost ({exc!r})"))

    # -- streams ---------------------------------------------------------------------------------------------

    def request(
        self, target: str, extra: list[tuple[bytes, bytes]], sink: Callable[[bytes, int, int], None] | None = None
    ) -> _Stream:
        """Open a stream: ``GET target`` with ``extra`` headers, its ``HEADERS`` frame counted (and HPACK's)."""
        if not self.usable:
            raise ConnectionResetError("the HTTP/2 connection is closing")
        assert self.transport is not None
        self._flush()  # anything pending first, so the bytes written next are this request's frame alone
        try:
            stream_id = self.conn.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError as exc:
            self.goaway = True
            raise ConnectionResetError("stream IDs exhausted") from exc
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", self.group.authority),
            (b":path", target.encode("ascii")),
            *extra,
        ]
        self.conn.send_headers(stream_id, headers, end_stream=True)
        out = self.conn.data_to_send()
        stream = _Stream(stream_id, sink)
        stream.head_up = len(out)
        self.streams[stream_id] = stream
        hpack = self.group.hpack
        block = len(out) - FRAME_HEAD  # a request this small is one HEADERS frame
        if self.requests == 0:
            hpack.first_request_bytes += block
        else:
            hpack.later_request_bytes += block
            hpack.later_requests += 1
        self.requests += 1
        self.group.meter.up += len(out)
        self.transport.write(out)
        return stream

    def cancel(self, stream: _Stream) -> None:
        """Reset a stream still open (the caller gave up on it): ``RST_STREAM`` with ``CANCEL``."""
        if self.streams.pop(stream.id, None) is None or self.closed:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
        self._flush()
        stream.fail(ConnectionResetError("cancelled"))

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.group.meter.up += len(out)
            self.transport.write(out)

    def _fail_all(self, exc: BaseException) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.fail(exc)

    def _count_frames(self, data: bytes) -> None:
        """Walk the incoming frames' headers: the answers' header blocks are counted (per stream and HPACK's)."""
        pos, end = 0, len(data)
        while pos < end:
            if self._frame_left:
                take = min(self._frame_left, end - pos)
                pos += take
                self._frame_left -= take
                if self._frame_counted is not None:
                    self._frame_counted.head_down += take
                continue
            need = FRAME_HEAD - len(self._frame_head)
            self._frame_head += data[pos : pos + need]
            pos += need
            if len(self._frame_head) < FRAME_HEAD:
                return
            head, self._frame_head = self._frame_head, b""
            length = int.from_bytes(head[0:3], "big")
            kind = head[3]
            stream_id = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            self._frame_left = length
            self._frame_counted = None
            if kind in (_HEADERS, _CONTINUATION):
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.head_down += FRAME_HEAD
                    self._frame_counted = stream
                hpack = self.group.hpack
                if kind == _HEADERS and self.responses == 0:
                    hpack.first_response_bytes += length
                    hpack.first_responses += 1
                elif kind == _HEADERS:
                    hpack.later_response_bytes += length
                    hpack.later_responses += 1
                else:  # a continuation: the same block as the HEADERS frame before it
                    if self.responses <= 1:
                        hpack.first_response_bytes += length
                    else:
                        hpack.later_response_bytes += length
                if kind == _HEADERS:
                    self.responses += 1


class H2Group:
    """One HTTP/2 connection over TLS shared by several subscribers (opened again when it breaks or ends).

    ``url`` is the proxy's ``https://host:port``; ``context`` offers ALPN ``h2`` and trusts the run's certificate
    (:func:`bench.agents.tls.client_context`). ``meter`` counts the HTTP/2 frame bytes, ``tls_meter`` the TLS
    bytes on the wire, ``hpack`` the header blocks; all may be shared by several groups.
    """

    def __init__(
        self,
        url: str,
        context: ssl.SSLContext,
        *,
        meter: WireMeter | None = None,
        tls_meter: TLSMeter | None = None,
        hpack: HpackStats | None = None,
    ) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme != "https":
            raise ValueError(f"not an https:// URL: {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.authority = parts.netloc.encode("ascii")
        self.base_path = parts.path
        self.context = context
        self.meter = meter if meter is not None else WireMeter()
        self.tls_meter = tls_meter
        self.hpack = hpack if hpack is not None else HpackStats()
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._users = 0

    async def link(self) -> tuple[_Link, bool]:
        """The open connection, or a new one (and ``True``: opened for this caller)."""
        link = self._link
        if link is not None and link.usable:
            return link, False
        async with self._lock:
            link = self._link
            if link is not None and link.usable:
                return link, False
            transport, proto = await open_tls(
                lambda: _Link(self), self.host, self.port, self.context, self.tls_meter, server_hostname=self.host
            )
            assert isinstance(proto, _Link)
            if transport.get_extra_info("alpn_protocol") != "h2":
                transport.abort()
                raise ConnectionResetError("the server did not agree to HTTP/2 (ALPN)")
            self._link = proto
            self.hpack.connections += 1
            return proto, True

    def use(self) -> None:
        """One more subscriber shares this connection."""
        self._users += 1

    def release(self) -> None:
        """A subscriber is done with it; the last one closes the connection."""
        self._users -= 1
        if self._users <= 0:
            self.abort(graceful=True)

    def abort(self, graceful: bool = False) -> bool:
        """Close the open connection, if any (``graceful``: a TLS close; else as a network failure would)."""
        link, self._link = self._link, None
        if link is None or link.transport is None:
            return False
        if graceful:
            link.transport.close()
        else:
            link.transport.abort()
        return True


class H2Poller:
    """:class:`clients.Poller` over an :class:`H2Group`'s connection: each ``get`` is one HTTP/2 stream.

    ``new_connection`` is true for the request that opened the group's connection (one count per connection,
    whichever subscriber opened it). The answer's time is when its last bytes were read.
    """

    def __init__(self, group: H2Group) -> None:
        self.group = group
        group.use()
        self._closed = False

    async def get(self, url: str, timeout: float) -> PollAnswer:
        parts = urlsplit(url)
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        async with asyncio.timeout(timeout):
            link, new = await self.group.link()
            stream = link.request(target, [])
            try:
                await stream.ended
            finally:
                if not stream.ended.done():
                    link.cancel(stream)
        return PollAnswer(stream.status, b"".join(stream.body), new, stream.recv_ns, stream.recv_mono_ns)

    def abort(self) -> bool:
        """Abort the shared connection (every stream on it fails, as a network failure would)."""
        return self.group.abort()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.group.release()


class H2SSESubscriber(Subscriber):
    """Subscribe to ``channel`` over a Server-Sent Events stream on an :class:`H2Group`'s connection.

    What :class:`bench.agents.sse.LeanSSESubscriber` does (its request headers, ``Last-Event-ID`` on resume, its
    answers, its idle timeout), on one HTTP/2 stream of a shared connection: a stream that ends, fails or is reset
    reconnects (a new stream; a new connection only if the shared one is gone).
    """

    transport = "sse"
    retry_on = (OSError,)

    def __init__(
        self,
        group: H2Group,
        channel: str,
        *,
        path: str = "/channels/{channel}/sse",
        decode: SSEDecode | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_size: int = 16 << 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, **kwargs)
        self.group = group
        group.use()
        self.idle_timeout = idle_timeout
        self.max_size = max_size
        self.decode: SSEDecode = decode if decode is not None else lab_sse_message
        self.last_event_id: str | None = None
        self._path = group.base_path + path
        self._parser: EventStreamParser | None = None
        self._last_recv_mono_ns = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """See :meth:`clients.Subscriber.run`; lets go of the shared connection when it returns."""
        try:
            await super().run(stop)
        finally:
            self.group.release()

    def drop(self) -> bool:
        """Abort the shared connection (as a network failure would): every stream on it reconnects."""
        return self.group.abort()

    @property
    def streaming(self) -> bool:
        """A stream is open and its ``200`` checked: events published from now on reach this subscriber."""
        return self._parser is not None

    def _sink(self, data: bytes, recv_ns: int, recv_mono_ns: int) -> None:
        """Body bytes of the open stream into the parser; each event into the message path."""
        self._last_recv_mono_ns = recv_mono_ns
        parser = self._parser
        if parser is None:
            return
        stats = self.stats
        stats.payload_bytes += len(data)
        try:
            events = parser.feed(data)
        except EventStreamError as exc:
            raise SubscriberError(str(exc)) from exc
        decode, channel, on_message = self.decode, self.channel, self._on_message
        for event in events:
            obj = decode(channel, event.event, event.data)
            if obj is not None:
                stats.frames += 1
                on_message(obj, recv_ns, recv_mono_ns)
        self.last_event_id = parser.last_event_id

    async def _session(self) -> None:
        cursor = self.tracker.cursor
        target = self._path.format(channel=quote(self.channel, safe=""), after=cursor)
        resume = self.last_event_id if self.last_event_id is not None else (str(cursor) if cursor else "")
        extra = [(b"accept", b"text/event-stream")]
        if resume:
            extra.append((b"last-event-id", resume.encode("ascii")))
        self._parser = None
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            link, new = await self.group.link()
            stream = link.request(target, extra)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await stream.response
            self.stats.requests += 1
            if stream.status != 200:
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                        await stream.ended
                message = f"GET {target} -> {stream.status} {b''.join(stream.body)[:200]!r}"
                if stream.status < 500:
                    raise SubscriberError(message)
                raise ConnectionResetError(message)
            ctype = stream.headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if ctype != b"text/event-stream":
                raise SubscriberError(f"200 with Content-Type {ctype[:60].decode('latin-1')!r}")
            self.stats.connections += new
            meter = self.group.meter
            meter.head_up += stream.head_up
            meter.head_down += stream.head_down
            meter.heads += 1
            self._parser = EventStreamParser(self.max_size)
            self._last_recv_mono_ns = time.monotonic_ns()
            early, stream.body = stream.body, []
            stream.sink = self._sink_guarded(stream, link)
            for chunk in early:  # bytes that came with the head, read at the head's time
                self._sink(chunk, stream.recv_ns, stream.recv_mono_ns)
            await self._watch(stream)
        finally:
            if not stream.ended.done():
                link.cancel(stream)

    def _sink_guarded(self, stream: _Stream, link: _Link) -> Callable[[bytes, int, int], None]:
        """The sink, failing the stream (not the whole connection) with the subscriber's error."""

        def sink(data: bytes, recv_ns: int, recv_mono_ns: int) -> None:
            try:
                self._sink(data, recv_ns, recv_mono_ns)
            except Exception as exc:  # a malformed stream or a bug: this session raises it
                stream.fail(exc)
                link.cancel(stream)

        return sink

    async def _watch(self, stream: _Stream) -> None:
        """Wait for the stream to end; give up on it after :attr:`idle_timeout` seconds without a byte."""
        idle_ns = int(self.idle_timeout * 1e9)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stream.ended), self.idle_timeout / 3)
            if stream.ended.done():
                stream.ended.result()  # a failure raises its reason
                raise StreamEnded("the server ended the stream")
            if time.monotonic_ns() - self._last_recv_mono_ns > idle_ns:
                raise TimeoutError(f"nothing received for {self.idle_timeout:g} s")
