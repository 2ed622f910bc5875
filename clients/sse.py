"""The Server-Sent Events subscriber: an asyncio frontend over :mod:`clients.subscriber` and httpx streaming.

It opens ``GET /channels/<c>/sse`` with ``Accept: text/event-stream`` and
``Last-Event-ID: <cursor>`` (docs/protocol.md, "Server-Sent Events") and reads
the response as it comes, through the sans-I/O
:class:`~clients.eventstream.EventStreamParser`. Each event's ``data`` is the
JSON text the other transports carry: an event object, or (as the ``gap`` and
``reset`` events) the same control message the WebSocket sends; all go
through the shared :meth:`~clients.subscriber.Subscriber._on_message`.

The server ends a stream only when it stops (or a proxy cuts it): the
subscriber then reconnects with the tracker's cursor as ``Last-Event-ID``, as
a browser's ``EventSource`` does with the last ``id`` it saw. A ``4xx`` answer
is a :class:`~clients.subscriber.SubscriberError`; a ``5xx``, a dropped
connection or silence longer than ``read_timeout`` (the server's heartbeats
come every 15 s by default) reconnect: httpx's errors are raised as
:class:`OSError` (``TimeoutError``, ``ConnectionError``), as the long-poll
subscriber's poller does.

Counted in :class:`~clients.subscriber.SubscriberStats`: ``connections`` and
``requests`` per stream opened, ``frames`` per SSE event dispatched (events
and notices), ``payload_bytes`` per body byte read (fields, heartbeats and all).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from .eventstream import EventStreamParser
from .longpoll import ServerUnavailable
from .poller import CONNECT_TIMEOUT
from .subscriber import Subscriber, SubscriberError, now_ns

__all__ = ["READ_TIMEOUT", "SSESubscriber"]

READ_TIMEOUT = 45.0
"""Seconds without a byte before a stream is taken for dead (three of the server's default heartbeats)."""


class SSESubscriber(Subscriber):
    """Subscribe to ``channel`` of the lab server at ``base_url`` over one Server-Sent Events stream.

    ``read_timeout`` is the longest silence accepted. ``transport`` replaces
    httpx's network transport (tests pass an :class:`httpx.MockTransport`).
    Other keyword arguments are :class:`~clients.subscriber.Subscriber`'s.
    """

    transport = "sse"
    retry_on = (OSError, ServerUnavailable)

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        after: int = 0,
        read_timeout: float = READ_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, after=after, **kwargs)
        self.base_url = base_url.rstrip("/")
        self.read_timeout = read_timeout
        self._transport = transport
        self._path = f"/channels/{quote(channel, safe='')}/sse"
        self.retry_ms: int | None = None
        """The ``retry:`` hint of the latest stream, ms."""

    async def _session(self) -> None:
        try:
            await self._stream()
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"GET {self._path}: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ConnectionError(f"GET {self._path}: {exc!r}") from exc

    async def _stream(self) -> None:
        """One stream: open it, feed it to the parser until it ends."""
        timeout = httpx.Timeout(self.read_timeout, connect=CONNECT_TIMEOUT)
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.tracker.cursor)}
        async with (
            httpx.AsyncClient(timeout=timeout, transport=self._transport) as http,
            http.stream("GET", f"{self.base_url}{self._path}", headers=headers) as resp,
        ):
            stats = self.stats
            stats.requests += 1
            if resp.status_code != 200:
                body = await resp.aread()
                stats.payload_bytes += len(body)
                self._refused(resp.status_code, body)
            ctype = resp.headers.get("Content-Type", "")
            if not ctype.startswith("text/event-stream"):
                raise SubscriberError(f"GET {self._path} -> 200 with Content-Type {ctype!r}, not text/event-stream")
            stats.connections += 1
            parser = EventStreamParser()
            on_message = self._on_message
            async for chunk in resp.aiter_bytes():
                recv_ns, recv_mono_ns = now_ns()
                stats.payload_bytes += len(chunk)
                for event in parser.feed(chunk):
                    if event.event not in ("message", "gap", "reset"):
                        continue
                    stats.frames += 1
                    on_message(json.loads(event.data), recv_ns, recv_mono_ns)
                self.retry_ms = parser.retry
        raise ConnectionResetError(f"GET {self._path}: the server ended the stream")

    def _refused(self, status: int, body: bytes) -> None:
        """A non-200 answer: ``5xx`` can be retried, anything else cannot."""
        try:
            err = json.loads(body)
            what = f"{err.get('error')}: {err.get('detail')}"
        except (ValueError, AttributeError):
            what = body[:200].decode("utf-8", "replace")
        message = f"GET {self._path} -> {status} {what}"
        if status >= 500:
            raise ServerUnavailable(message)
        raise SubscriberError(message)
