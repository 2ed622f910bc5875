"""The HTTP seam of the long-poll and polling subscribers: :class:`Poller`, and httpx's.

:class:`~clients.longpoll.LongPollSubscriber` writes its requests, reads
its answers and keeps its cursor and accounting without doing any I/O
itself: each request is one :meth:`Poller.get` (as httpx's clients send
through a transport, which tests replace with ``MockTransport``). Whatever
makes the request is behind this one seam: :class:`HttpxPoller` for people
(the default), a bare keep-alive connection in the benchmark's fleet
(``bench.agents``), a scripted fake in tests.

The contract of a poller:

- ``get(url, timeout)`` sends ``GET url`` and returns the answer's status
  and body, whatever the status (refusals are the subscriber's business),
  and whether a new TCP connection was opened for it;
- it says when the answer's last byte was read (``PollAnswer.recv_ns`` and
  ``recv_mono_ns``), as close to the socket read as it can: the subscriber
  stamps every event of the answer with that time (0: the time ``get``
  returns);
- it raises :class:`OSError` (``ConnectionError``, ``TimeoutError``) when
  the exchange failed and a new connection might succeed: the subscriber
  then reconnects with backoff; anything else propagates as a bug or a
  refusal;
- ``timeout`` is the seconds the caller will wait for the whole answer;
- ``aclose()`` releases the poller's connections; the poller opens new
  ones on its next ``get``. A subscriber closes its poller when its
  ``run()`` returns.

httpx defaults that do not fit long polling are overridden in
:class:`HttpxPoller`: its 5 s timeout (each request's read timeout is the
caller's ``timeout``) and its pool cap of 100 connections (a client this
module makes has no cap, since every held poll occupies one connection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from .subscriber import now_ns

__all__ = ["CONNECT_TIMEOUT", "HttpxPoller", "PollAnswer", "Poller", "make_http_client"]

CONNECT_TIMEOUT = 10.0
"""Seconds to open a TCP connection (a loaded server may accept slowly)."""


@dataclass(frozen=True, slots=True)
class PollAnswer:
    """One HTTP answer to a poll, as a :class:`Poller` returns it.

    Two answers are equal when the server said the same (status, body) over the same kind of
    connection: the receive times are not compared.
    """

    status: int
    """The HTTP status code."""
    body: bytes
    """The response body (JSON from the lab server)."""
    new_connection: bool
    """A new TCP connection was opened to send this request (counted in ``SubscriberStats.connections``)."""
    recv_ns: int = field(default=0, compare=False)
    """``time.time_ns()`` when the answer's last byte was read; 0: the poller does not say (the
    subscriber then takes the time when :meth:`Poller.get` returns)."""
    recv_mono_ns: int = field(default=0, compare=False)
    """``time.monotonic_ns()`` at the same moment (0 with ``recv_ns``)."""


class Poller(Protocol):
    """The I/O seam of :class:`~clients.longpoll.LongPollSubscriber` (see the module's contract)."""

    async def get(self, url: str, timeout: float) -> PollAnswer:
        """``GET url``; wait at most ``timeout`` seconds for the answer. Raises :class:`OSError` if it failed."""
        ...

    async def aclose(self) -> None:
        """Close the connections this poller opened (it may open new ones later)."""
        ...


def make_http_client(*, max_connections: int | None = None) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` fit to share among many pollers.

    No pool cap unless ``max_connections`` is given (one held poll, one
    connection), keep-alive on, and a default timeout the pollers override
    per request anyway.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT))


class HttpxPoller:
    """:class:`Poller` over an :class:`httpx.AsyncClient`: the default, for people.

    ``client`` is a client to share among subscribers (never closed here; make
    it with :func:`make_http_client`, or size its own :class:`httpx.Limits`).
    Without one, the poller makes its own client at its first request and
    closes it in :meth:`aclose`: such a poller belongs to one subscriber.
    New TCP connections are seen with httpcore's trace hook.
    """

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._shared = client
        self._own: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The client requests go through (the shared one, else this poller's own)."""
        if self._shared is not None:
            return self._shared
        if self._own is None:
            self._own = make_http_client()
        return self._own

    async def get(self, url: str, timeout: float) -> PollAnswer:
        opened = False

        async def trace(name: str, info: dict[str, Any]) -> None:
            nonlocal opened
            if name == "connection.connect_tcp.complete":
                opened = True

        try:
            response = await self.client.get(
                url, timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT), extensions={"trace": trace}
            )
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"GET {url}: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ConnectionError(f"GET {url}: {exc!r}") from exc
        recv_ns, recv_mono_ns = now_ns()  # httpx read the body inside get(): the nearest moment after it
        return PollAnswer(response.status_code, response.content, opened, recv_ns, recv_mono_ns)

    async def aclose(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            await own.aclose()
