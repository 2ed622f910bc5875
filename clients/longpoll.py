"""The long-poll subscriber: an asyncio I/O frontend over :mod:`clients._subscriber`.

It asks ``GET /channels/<c>/poll?after=<cursor>&timeout=<hold>`` in a loop
(docs/protocol.md, "Long polling"): the server holds each request until the
channel has news or the hold runs out, and the next request follows at once
with the new cursor. Requests go over httpx keep-alive connections, so a
steady subscriber makes one TCP connection and many requests on it.

httpx defaults that do not fit long polling are overridden:

- its 5 s timeout: every request here has a read timeout of the hold plus
  ``margin`` seconds, whatever the client's default;
- its pool cap of 100 connections: a client this class creates has no cap,
  and a client passed in by a fleet should be made with
  :func:`make_http_client` (or its own, sized :class:`httpx.Limits`), since
  every held poll occupies one connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx

from ._subscriber import Subscriber, SubscriberError, now_ns

__all__ = ["LongPollSubscriber", "ServerUnavailable", "make_http_client"]

CONNECT_TIMEOUT = 10.0
"""Seconds to open a TCP connection (a loaded server may accept slowly)."""


def make_http_client(*, max_connections: int | None = None) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` fit to share among many pollers.

    No pool cap unless ``max_connections`` is given (one held poll, one
    connection), keep-alive on, and a default timeout the pollers override
    per request anyway.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT))


class ServerUnavailable(Exception):
    """A 5xx answer (``503 shutting_down`` while the server stops): poll again later."""


class LongPollSubscriber(Subscriber):
    """Subscribe to ``channel`` of the lab server at ``base_url`` by HTTP long polling.

    ``timeout`` is the hold asked of the server (0 to 30 s). ``client`` is an
    :class:`httpx.AsyncClient` to share (not closed here); without one, the
    subscriber makes its own for the duration of :meth:`run`. Other keyword
    arguments are :class:`~clients._subscriber.Subscriber`'s.
    """

    transport = "longpoll"
    retry_on = (httpx.TransportError, ServerUnavailable, OSError)

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        after: int = 0,
        timeout: float = 25.0,
        client: httpx.AsyncClient | None = None,
        margin: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, after=after, **kwargs)
        if not 0 <= timeout <= 30:
            raise ValueError(f"timeout must be from 0 to 30 s, got {timeout}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        """The hold asked of the server, seconds."""
        self.margin = margin
        """Seconds the client waits beyond the hold before calling the answer late."""
        self._client = client
        self._url = f"{self.base_url}/channels/{quote(channel, safe='')}/poll"
        self._request_timeout = httpx.Timeout(timeout + margin, connect=CONNECT_TIMEOUT)
        self._extensions = {"trace": self._trace}
        self._more = False
        """The last answer was cut short by the server's batch cap."""

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """See :meth:`Subscriber.run`; opens (and closes) a client if none was given."""
        if self._client is not None:
            await super().run(stop)
            return
        async with make_http_client() as client:
            self._client = client
            try:
                await super().run(stop)
            finally:
                self._client = None

    async def _before_poll(self) -> None:
        """Hook before each request: long polling asks again at once.

        It still yields to the event loop once: an answer already buffered
        (or a mock transport) completes a request without suspending, and a
        subscriber following ``more`` must not starve the others.
        """
        await asyncio.sleep(0)

    async def _session(self) -> None:
        client = self._client
        if client is None:  # pragma: no cover - run() always sets one
            raise RuntimeError("no HTTP client")
        hold = f"{self.timeout:g}"
        while True:
            await self._before_poll()
            response = await client.get(
                f"{self._url}?after={self.tracker.cursor}&timeout={hold}",
                timeout=self._request_timeout,
                extensions=self._extensions,
            )
            recv_ns, recv_mono_ns = now_ns()
            body = response.content
            self.stats.requests += 1
            self.stats.payload_bytes += len(body)
            if response.status_code != 200:
                _refused(response)
            self._on_answer(json.loads(body), recv_ns, recv_mono_ns)

    def _on_answer(self, answer: dict[str, Any], recv_ns: int, recv_mono_ns: int) -> None:
        """One long-poll answer: notices first, then the events, oldest first."""
        reset = answer["reset"]
        if reset is not None:  # first: a gap in the same answer is relative to the reset cursor
            self.tracker.reset(reset["after"], reset["last_seq"])
        gap = answer["gap"]
        if gap is not None:
            self.tracker.gap(gap["first"], gap["last"])
        events = answer["events"]
        if not events:
            self.stats.empty_responses += 1
        for event in events:
            self._accept_event(event, recv_ns, recv_mono_ns)
        self._more = answer["more"]

    async def _trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: counts the TCP connections actually opened."""
        if name == "connection.connect_tcp.complete":
            self.stats.connections += 1


def _refused(response: httpx.Response) -> None:
    """Raise for a non-200 answer: 5xx can be retried, anything else cannot."""
    try:
        err = response.json()
        what = f"{err.get('error')}: {err.get('detail')}"
    except ValueError:
        what = response.text[:200]
    message = f"{response.request.method} {response.request.url.path} -> {response.status_code} {what}"
    if response.status_code >= 500:
        raise ServerUnavailable(message)
    raise SubscriberError(message)
