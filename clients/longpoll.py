"""The long-poll subscriber: an asyncio frontend over :mod:`clients.subscriber` and a :class:`~clients.poller.Poller`.

It asks ``GET /channels/<c>/poll?after=<cursor>&timeout=<hold>`` in a loop
(docs/protocol.md, "Long polling"): the server holds each request until the
channel has news or the hold runs out, and the next request follows at once
with the new cursor. Each request is one call of its poller (the I/O seam,
:mod:`clients.poller`): httpx keep-alive connections by default, so a steady
subscriber makes one TCP connection and many requests on it. The requests,
the answer handling, the cursor and the accounting are written here once,
whatever the poller.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from .poller import HttpxPoller, PollAnswer, Poller
from .subscriber import Subscriber, SubscriberError, now_ns

__all__ = ["LongPollSubscriber", "ServerUnavailable"]


class ServerUnavailable(Exception):
    """A 5xx answer (``503 shutting_down`` while the server stops): poll again later."""


class LongPollSubscriber(Subscriber):
    """Subscribe to ``channel`` of the lab server at ``base_url`` by HTTP long polling.

    ``timeout`` is the hold asked of the server (0 to 30 s); the subscriber
    waits ``margin`` seconds more before calling an answer late (a broken
    connection: reconnect). ``poller`` makes the requests (default: an
    :class:`~clients.poller.HttpxPoller` of its own); it is closed when
    :meth:`run` returns. Other keyword arguments are
    :class:`~clients.subscriber.Subscriber`'s.
    """

    transport = "longpoll"
    retry_on = (OSError, ServerUnavailable)

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        after: int = 0,
        timeout: float = 25.0,
        poller: Poller | None = None,
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
        self.poller: Poller = poller if poller is not None else HttpxPoller()
        """The I/O seam every request goes through."""
        self._path = f"/channels/{quote(channel, safe='')}/poll"
        self._url = f"{self.base_url}{self._path}"
        self._more = False
        """The last answer was cut short by the server's batch cap."""

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """See :meth:`Subscriber.run`; closes the poller when it returns."""
        try:
            await super().run(stop)
        finally:
            await self.poller.aclose()

    async def _before_poll(self) -> None:
        """Hook before each request: long polling asks again at once.

        It still yields to the event loop once: an answer already buffered
        (or a fake poller) completes a request without suspending, and a
        subscriber following ``more`` must not starve the others.
        """
        await asyncio.sleep(0)

    async def _session(self) -> None:
        hold = f"{self.timeout:g}"
        patience = self.timeout + self.margin
        while True:
            await self._before_poll()
            answer = await self.poller.get(f"{self._url}?after={self.tracker.cursor}&timeout={hold}", patience)
            # The time the poller read the answer's last byte, else now (a poller that does not say).
            recv_ns, recv_mono_ns = (answer.recv_ns, answer.recv_mono_ns) if answer.recv_ns else now_ns()
            self._on_response(answer)
            self._on_answer(json.loads(answer.body), recv_ns, recv_mono_ns)

    def _on_response(self, answer: PollAnswer) -> None:
        """Count one HTTP answer; raise for a refusal (5xx can be retried, anything else cannot)."""
        stats = self.stats
        stats.requests += 1
        stats.payload_bytes += len(answer.body)
        stats.connections += answer.new_connection
        if answer.status == 200:
            return
        try:
            err = json.loads(answer.body)
            what = f"{err.get('error')}: {err.get('detail')}"
        except (ValueError, AttributeError):
            what = answer.body[:200].decode("utf-8", "replace")
        message = f"GET {self._path} -> {answer.status} {what}"
        if answer.status >= 500:
            raise ServerUnavailable(message)
        raise SubscriberError(message)

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
