"""The benchmark's minimal HTTP/1.1: a response reader (publisher and fleet) and the fleet's poller.

Why not httpx here: on the lab's 2 cores its per-request CPU saturated the
fleet (100 long-pollers: loop lag p99 117 ms) and put the publisher 100 ms
behind schedule at 100 ev/s (docs/metrics.md). The benchmark only ever talks
to the lab's own server (and to peers' HTTP ends, which do the same), which answer with ``Content-Length``
and keep-alive, so reading a response is a head up to the blank line and a
body of known length. Anything else is refused loudly rather than guessed.

:class:`BarePoller` is the fleet's :class:`clients.Poller`: the I/O seam of
:class:`clients.LongPollSubscriber` and :class:`clients.PollingSubscriber`,
whose requests, answers, cursors, accounting and reconnects stay theirs.

:func:`browser_headers` gives the request headers Chromium sends with ``fetch``, ``EventSource`` and
``new WebSocket`` on a same-origin page (``bench/contract/browser_headers.json``, recorded from a real
Chromium): what a scenario with ``request_headers = "browser"`` sends instead of the lean fleet's bare ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple, SupportsIndex
from urllib.parse import urlsplit

from clients import PollAnswer, now_ns

from .meter import WireMeter
from .tls import TLSMeter, open_tls

__all__ = [
    "BROWSER_HEADERS_FILE",
    "REQUEST_HEADERS",
    "Answer",
    "BarePoller",
    "StampedReader",
    "browser_headers",
    "read_answer",
    "read_response",
]

BROWSER_HEADERS_FILE = Path(__file__).parent.parent / "contract" / "browser_headers.json"
"""Chromium's request headers per kind of request, with where they come from (its ``about``)."""
REQUEST_HEADERS = ("bare", "browser")
"""The scenario field ``request_headers``: the lean fleet's bare requests, or a browser's headers."""


@functools.cache
def _browser_header_sets() -> dict[str, tuple[tuple[str, str], ...]]:
    data = json.loads(BROWSER_HEADERS_FILE.read_text(encoding="utf-8"))
    return {kind: tuple((str(n), str(v)) for n, v in data[kind]) for kind in ("fetch", "eventsource", "websocket")}


def browser_headers(kind: str, base_url: str) -> tuple[tuple[str, str], ...]:
    """Chromium's request headers for ``kind`` (``fetch``, ``eventsource`` or ``websocket``) from a page of
    ``base_url``'s origin, in Chromium's order, ``Host`` left out (the caller writes its own first)."""
    parts = urlsplit(base_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    origin = f"{scheme}://{parts.netloc}"
    return tuple((name, value.replace("{origin}", origin)) for name, value in _browser_header_sets()[kind])


READ_LIMIT = 2**16
"""The stream reader's buffer limit (asyncio's default)."""


class Answer(NamedTuple):
    """One HTTP/1.1 response as :func:`read_answer` read it."""

    status: int
    headers: dict[bytes, bytes]
    """Header names lower-cased, values stripped (a repeated header: the last one)."""
    body: bytes
    close: bool
    """The server will close the connection after it."""


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """The next response on ``reader``: a head up to the blank line, then a body of ``Content-Length``."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, lines = head.partition(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if b"transfer-encoding" in headers:
        raise ValueError("chunked responses are not expected here")
    close = parts[0] == b"HTTP/1.0" or headers.get(b"connection", b"").lower() == b"close"
    length = int(headers.get(b"content-length", b"0"))
    body = await reader.readexactly(length) if length else b""
    return Answer(int(parts[1]), headers, body, close)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """``(status, body, close)`` of the next response; ``close``: the server will close the connection."""
    answer = await read_answer(reader)
    return answer.status, answer.body, answer.close


class StampedReader(asyncio.StreamReader):
    """A :class:`asyncio.StreamReader` that notes when its protocol last fed it bytes.

    ``feed_data`` is called from the transport's ``data_received``, the moment the bytes were read
    from the socket; ``read_response`` returns later, once the task that awaited it runs again.
    The lab's server sends nothing on a keep-alive connection but the answer to the request
    written, so when a response has been read, the last bytes fed are the ones that completed it.
    """

    fed_ns: int = 0
    """``time.time_ns()`` when bytes were last fed."""
    fed_mono_ns: int = 0
    """``time.monotonic_ns()`` at the same moment."""
    meter: WireMeter | None = None
    """Where the bytes read are counted, if anywhere."""

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.fed_ns, self.fed_mono_ns = now_ns()
        if self.meter is not None:
            self.meter.down += len(data)  # type: ignore[arg-type]
        super().feed_data(data)


async def _open_stamped(
    host: str,
    port: int,
    meter: WireMeter | None = None,
    context: ssl.SSLContext | None = None,
    tls_meter: TLSMeter | None = None,
) -> tuple[StampedReader, asyncio.StreamWriter]:
    """:func:`asyncio.open_connection` with a :class:`StampedReader` (counting into ``meter``).

    With ``context``, over TLS done in memory (:mod:`bench.agents.tls`): ``meter`` then counts the bytes in the
    clear and ``tls_meter`` the bytes on the wire.
    """
    loop = asyncio.get_running_loop()
    reader = StampedReader(limit=READ_LIMIT, loop=loop)
    reader.meter = meter
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport: asyncio.BaseTransport
    if context is not None:
        transport, _ = await open_tls(lambda: protocol, host, port, context, tls_meter, server_hostname=host)
    else:
        transport, _ = await loop.create_connection(lambda: protocol, host, port)
    assert isinstance(transport, asyncio.Transport)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class BarePoller:
    """:class:`clients.Poller` over one bare asyncio HTTP/1.1 keep-alive connection: the fleet's.

    Everything but the I/O stays :class:`clients.LongPollSubscriber`'s (requests, answers, cursors,
    accounting, reconnects, and polling's schedule): the fleet passes one of these to each of its
    long-poll and polling subscribers. Why not httpx there: on the lab's 2 cores, httpx's CPU per
    request (about 1.5 ms) saturated the fleet at 100 long-polling subscribers, so the numbers
    measured the clients. The connection is opened at the first :meth:`get`, and again after a
    failed exchange, a ``Connection: close`` or a request to another origin; ``timeout`` bounds the
    connect and the whole exchange. Each answer carries the time its last byte was read
    (:class:`StampedReader`), not the later time the awaiting task resumed.
    """

    def __init__(
        self,
        meter: WireMeter | None = None,
        *,
        context: ssl.SSLContext | None = None,
        tls_meter: TLSMeter | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.meter = meter
        """Where the bytes written and read are counted (:mod:`bench.agents.meter`), if anywhere (in the clear)."""
        self.context = context
        """The TLS context for ``https://`` URLs (:func:`bench.agents.tls.client_context`)."""
        self.tls_meter = tls_meter
        """Where the TLS bytes on the wire are counted, if anywhere."""
        self.headers = dict(headers)
        """Header lines every :meth:`get` sends after ``Host`` (a browser's, :func:`browser_headers`); none: bare."""
        self._origin: tuple[str, int] | None = None
        self._reader: StampedReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, url: str, timeout: float) -> PollAnswer:
        """``GET url`` on the open connection (or a new one); a failed exchange raises :class:`OSError`."""
        answer, new, recv_ns, recv_mono_ns = await self.request("GET", url, timeout, self.headers)
        return PollAnswer(answer.status, answer.body, new, recv_ns, recv_mono_ns)

    async def request(
        self, method: str, url: str, timeout: float, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> tuple[Answer, bool, int, int]:
        """One exchange: the answer, whether a new connection was opened for it, and when it was read.

        Only ``Host`` is sent besides ``headers`` (and ``Content-Length`` with a body): the peers' adapters
        (Nchan's cursor headers, Engine.IO's ``POST``) use this; the lab's pollers use :meth:`get`.
        """
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        origin = (parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80))
        if tls and self.context is None:
            raise ValueError(f"an https:// URL needs a TLS context: {url!r}")
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        if body or method == "POST":
            extra += f"Content-Length: {len(body)}\r\n"
        request = f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode("latin-1") + body
        reader, writer, new = self._reader, self._writer, False
        try:
            async with asyncio.timeout(timeout):
                if reader is None or writer is None or origin != self._origin:
                    self._close()
                    context = self.context if tls else None
                    reader, writer = await _open_stamped(*origin, self.meter, context, self.tls_meter)
                    self._reader, self._writer, self._origin, new = reader, writer, origin, True
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                writer.write(request)
                if self.meter is not None:
                    self.meter.up += len(request)
                answer = await read_answer(reader)
                recv_ns, recv_mono_ns = reader.fed_ns, reader.fed_mono_ns
        except BaseException as exc:  # the connection is in an unknown state: never reuse it
            self._close()
            if isinstance(exc, EOFError | asyncio.LimitOverrunError):
                raise ConnectionResetError(f"GET {target}: {exc!r}") from exc
            raise
        if answer.close:
            self._close()
        return answer, new, recv_ns, recv_mono_ns

    def abort(self) -> bool:
        """Abort the open connection, if any, as a network failure would (the exchange under way fails)."""
        writer = self._writer
        if writer is None:
            return False
        writer.transport.abort()
        return True

    async def aclose(self) -> None:
        """Close the connection, if one is open, and wait until it is."""
        writer = self._writer
        self._close()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _close(self) -> None:
        writer, self._reader, self._writer, self._origin = self._writer, None, None, None
        if writer is not None:
            writer.close()
