"""The fleet's adapters for the Nchan peer (``peers/nchan``): long poll, interval poll, WebSocket, EventSource.

Agent layer of the benchmark. Nchan delivers the published body verbatim and numbers nothing, so every adapter
decodes each message with :func:`bench.agents.messages.numbered_by_publisher`: the event's ``seq`` is the
number the publisher put in the payload, and loss, duplicates and order are counted against the publisher's
sequence (``ts`` is ``None``: end-to-end latency only). What differs is how each of Nchan's subscriber types
keeps its place in a channel's message buffer (``nchan_message_buffer_length``: the peer keeps the lab's
history, 10,000 messages), which is also how each resumes after :meth:`drop`:

- **long poll** (``GET /channels/<c>/poll``): the cursor is the previous ``200``'s ``Last-Modified`` and
  ``Etag``, sent back verbatim as ``If-Modified-Since`` and ``If-None-Match`` (:class:`NchanCursor`; nginx parses
  the date case-sensitively, so it is never rebuilt). One message per answer (Nchan does not batch unless
  ``nchan_longpoll_multipart_response`` is on; the lab and Engine.IO do). A poll with no cursor starts at the
  oldest message kept (the peer sets ``nchan_subscriber_first_message oldest``, as the lab's ``after=0``).
  The cursor lives in the subscriber, not the connection, so a poll on a new connection after a drop asks for
  the message after the last one received: nothing is lost while the history still holds it. A held poll
  answers ``408`` after the peer's ``--poll-timeout``; the next poll follows at once, with the same cursor.
- **interval poll** (``GET /channels/<c>/interval``): the same cursor; Nchan answers ``304`` at once when
  nothing is new. After a ``200`` it asks again at once (there may be more: one message per answer), after a
  ``304`` it waits for its next slot (``interval`` apart, from a ``phase``, as :class:`clients.PollingSubscriber`).
- **WebSocket** (``GET /channels/<c>/ws``): the ``ws+meta.nchan`` subprotocol, so every message carries its
  Nchan message id (``id: <time>:<tag>``, then a ``content-type:`` line, a blank line, the payload); a
  reconnect passes the last id as ``?last_event_id=``. The meta lines are Nchan's envelope for a resumable
  WebSocket, and are counted in the bytes. Everything else is :class:`bench.agents.websocket.LeanWebSocketSubscriber`.
- **EventSource** (``GET /channels/<c>/sse``): :class:`bench.agents.sse.LeanSSESubscriber`, which sends the last
  ``id:`` back as ``Last-Event-ID`` on a reconnect (Nchan's resume).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from clients import ServerUnavailable, Subscriber, SubscriberError

from .http import Answer, BarePoller
from .messages import numbered_by_publisher, peer_event
from .meter import WireMeter
from .sse import LeanSSESubscriber
from .websocket import LeanWebSocketSubscriber

__all__ = [
    "META_SUBPROTOCOL",
    "NchanCursor",
    "NchanEventSourceSubscriber",
    "NchanIntervalPollSubscriber",
    "NchanLongPollSubscriber",
    "NchanWebSocketSubscriber",
    "nchan_sse_event",
    "next_slot",
    "parse_meta_message",
]

META_SUBPROTOCOL = "ws+meta.nchan"
"""Nchan's WebSocket subprotocol whose messages carry their id (and content type) before the payload."""
POLL_MARGIN_S = 5.0
"""Seconds a long poll waits beyond the peer's hold before it calls the answer late."""


class NchanCursor:
    """Sans-I/O: a long-poll or interval-poll subscriber's place in a channel, as Nchan keeps it in HTTP headers.

    Nchan's message id is a time (seconds) and a tag; over HTTP it is the answer's ``Last-Modified`` (the time,
    as an HTTP date) and ``Etag`` (the tag). The next request sends them back as ``If-Modified-Since`` and
    ``If-None-Match``, byte for byte: nginx parses the date case-sensitively, and the tag is opaque. Only a
    ``200`` (a message) moves the cursor; ``304`` and ``408`` leave it where it was.
    """

    __slots__ = ("etag", "last_modified")

    def __init__(self) -> None:
        self.last_modified: str | None = None
        """The last message's ``Last-Modified``, verbatim (``None`` before the first message)."""
        self.etag: str | None = None
        """The last message's ``Etag``, verbatim."""

    def headers(self) -> dict[str, str]:
        """The request headers that ask for the message after the last one (none before the first)."""
        out: dict[str, str] = {}
        if self.last_modified is not None:
            out["If-Modified-Since"] = self.last_modified
        if self.etag is not None:
            out["If-None-Match"] = self.etag
        return out

    def advance(self, status: int, headers: Mapping[bytes, bytes]) -> None:
        """Take the cursor from an answer (only a ``200`` carries a new message; a ``200`` without them is refused)."""
        if status != 200:
            return
        last_modified, etag = headers.get(b"last-modified"), headers.get(b"etag")
        if last_modified is None or etag is None:
            raise SubscriberError("a 200 without Last-Modified and Etag: not Nchan's long-poll answer")
        self.last_modified = last_modified.decode("latin-1")
        self.etag = etag.decode("latin-1")


class NchanLongPollSubscriber(Subscriber):
    """Subscribe to ``channel`` of the Nchan peer at ``base_url`` by long polling (see the module).

    ``timeout`` is the peer's hold (its ``--poll-timeout``, 25 s by default); the subscriber waits ``margin``
    seconds more before calling an answer late (a broken connection: reconnect). Other keyword arguments are
    :class:`clients.Subscriber`'s.
    """

    transport = "longpoll"
    retry_on = (OSError, ServerUnavailable)
    _suffix = "poll"

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        meter: WireMeter | None = None,
        timeout: float = 25.0,
        margin: float = POLL_MARGIN_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, **kwargs)
        self.meter = meter
        """Where the bytes written and read are counted (:mod:`bench.agents.meter`), if anywhere."""
        self.timeout = timeout
        """The peer's hold, seconds."""
        self.margin = margin
        self.cursor = NchanCursor()
        self.poller = BarePoller(meter)
        """The one keep-alive connection every request goes through."""
        self._path = f"/channels/{quote(channel, safe='')}/{self._suffix}"
        self._url = base_url.rstrip("/") + self._path

    def drop(self) -> bool:
        """Abort the open connection, if any (as a network failure would); the next poll resumes from the cursor."""
        return self.poller.abort()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """See :meth:`clients.Subscriber.run`; closes the connection when it returns."""
        try:
            await super().run(stop)
        finally:
            await self.poller.aclose()

    async def _before_poll(self, answered: bool) -> None:
        """Hook before each request (``answered``: the previous one carried a message). Long polling asks at once,
        yielding to the loop once so a subscriber whose answers are already buffered does not starve the others."""
        await asyncio.sleep(0)

    async def _session(self) -> None:
        patience = self.timeout + self.margin
        answered = False
        while True:
            await self._before_poll(answered)
            answer, new, recv_ns, recv_mono_ns = await self.poller.request(
                "GET", self._url, patience, self.cursor.headers()
            )
            answered = self._on_answer(answer, new, recv_ns, recv_mono_ns)

    def _on_answer(self, answer: Answer, new: bool, recv_ns: int, recv_mono_ns: int) -> bool:
        """Account one answer; ``True`` if it carried a message. ``5xx`` retries, another refusal raises."""
        stats = self.stats
        stats.requests += 1
        stats.connections += new
        stats.payload_bytes += len(answer.body)
        status = answer.status
        if status == 200:
            self.cursor.advance(status, answer.headers)
            self._on_message(numbered_by_publisher(self.channel, answer.body.decode()), recv_ns, recv_mono_ns)
            return True
        if status in (304, 408):  # nothing new yet (interval poll), or the hold ran out (long poll)
            stats.empty_responses += 1
            return False
        message = f"GET {self._path} -> {status} {answer.body[:200].decode('utf-8', 'replace')}".rstrip()
        if status >= 500:
            raise ServerUnavailable(message)
        raise SubscriberError(message)


class NchanIntervalPollSubscriber(NchanLongPollSubscriber):
    """Subscribe to ``channel`` of the Nchan peer by interval polling: a poll every ``interval`` seconds.

    ``phase`` delays the first poll (a random one per subscriber spreads a fleet's polls, as
    :class:`clients.PollingSubscriber`'s). A poll that got a message is followed at once by another (Nchan
    answers one message per request); one that got ``304`` waits for the next slot.
    """

    transport = "polling"
    _suffix = "interval"

    def __init__(
        self, base_url: str, channel: str, *, interval: float = 1.0, phase: float = 0.0, **kwargs: Any
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if not 0 <= phase < interval:
            raise ValueError(f"phase must be in [0, interval), got {phase}")
        kwargs.setdefault("timeout", 0.0)
        super().__init__(base_url, channel, **kwargs)
        self.interval = interval
        """Seconds between the starts of two polls that found nothing new."""
        self.phase = phase
        self._next_at: float | None = None
        """Loop time of the latest slot used."""

    async def _before_poll(self, answered: bool) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next_at is None:
            self._next_at = now + self.phase
            if self.phase:
                await asyncio.sleep(self.phase)
            return
        if answered:
            await asyncio.sleep(0)
            return
        self._next_at = next_slot(self._next_at, self.interval, now)
        await asyncio.sleep(self._next_at - now)


def next_slot(previous: float, interval: float, now: float) -> float:
    """The first slot ``previous + k * interval`` (``k >= 1``) not in the past: a late poller skips, never bunches."""
    slot = previous + interval
    if slot < now:
        slot += -((slot - now) // interval) * interval
    return slot


def parse_meta_message(text: str) -> tuple[str | None, str]:
    """Sans-I/O: a ``ws+meta.nchan`` message's id (``None`` if it has none) and its payload.

    The form is ``id: <id>\\n``, optionally ``content-type: <type>\\n``, a blank line, then the message as
    published. A message with no blank line is not of this form (:class:`clients.SubscriberError`).
    """
    head, sep, data = text.partition("\n\n")
    if not sep:
        raise SubscriberError(f"not a ws+meta.nchan message: {text[:80]!r}")
    message_id = None
    for line in head.split("\n"):
        name, _, value = line.partition(": ")
        if name == "id":
            message_id = value
    return message_id, data


class NchanWebSocketSubscriber(LeanWebSocketSubscriber):
    """Subscribe to ``channel`` of the Nchan peer over a WebSocket with ``ws+meta.nchan`` (see the module).

    The messages are decoded here (:func:`parse_meta_message`, then the payload's number); the last id is
    sent back as ``?last_event_id=`` when the subscriber reconnects. Other keyword arguments are
    :class:`bench.agents.websocket.LeanWebSocketSubscriber`'s.
    """

    def __init__(self, base_url: str, channel: str, *, meter: WireMeter | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, channel, meter=meter, path="/channels/{channel}/ws", decode=self._decode, **kwargs)
        self.last_id: str | None = None
        """The id of the last message received: where a reconnect resumes."""

    def _decode(self, channel: str, text: str) -> dict[str, Any]:
        message_id, data = parse_meta_message(text)
        if message_id is not None:
            self.last_id = message_id
        return numbered_by_publisher(channel, data)

    def _target(self) -> str:
        """The next Upgrade's request target (the base class's hook): the channel's location, and the last id if any."""
        path = self._path.format(channel=quote(self.channel, safe=""), after=self.tracker.cursor)
        return path if self.last_id is None else f"{path}?last_event_id={quote(self.last_id, safe='')}"

    def _headers(self) -> str:
        """The Upgrade asks for the ``ws+meta.nchan`` subprotocol (the base class's hook): each message has its id."""
        return f"Sec-WebSocket-Protocol: {META_SUBPROTOCOL}\r\n"


def nchan_sse_event(channel: str, event: str, data: str) -> dict[str, Any] | None:
    """An Nchan EventSource event as the lab's event object: ``data`` is the payload (Nchan's pings are comments)."""
    if event != "message":
        return None
    return peer_event(channel, json.loads(data))


class NchanEventSourceSubscriber(LeanSSESubscriber):
    """Subscribe to ``channel`` of the Nchan peer over EventSource; resumes with ``Last-Event-ID`` (Nchan's id).

    Other keyword arguments are :class:`bench.agents.sse.LeanSSESubscriber`'s.
    """

    def __init__(self, base_url: str, channel: str, *, meter: WireMeter | None = None, **kwargs: Any) -> None:
        super().__init__(
            base_url, channel, meter=meter, path="/channels/{channel}/sse", decode=nchan_sse_event, **kwargs
        )
