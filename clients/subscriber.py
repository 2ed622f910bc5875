"""The asyncio subscriber base: sessions, reconnects, resume, accounting.

Every transport (long poll, interval polling, WebSocket) is a subclass that
only implements :meth:`Subscriber._session`: open a connection, read until it
breaks, feeding each decoded message to :meth:`Subscriber._on_message` (or
the finer :meth:`_accept_event`, :meth:`_gap`, :meth:`_reset`). The loop
that survives a broken connection, backs off, and resumes from the tracker's
cursor is written once, here.

**Delivery latency** is ``recv_ns - ts``: the subscriber's wall clock when
the message carrying the event was read, minus the server's wall clock when
the event was published (``ts``, from the event). Both clocks are the same
host's in this lab. It includes the server's fan-out, the transport, and
this process's event loop; it does not include the publisher's request (the
benchmark measures end-to-end latency separately, against the send time its
publisher puts in the payload, with ``recv_mono_ns``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from .accounting import Tracker
from .latency import LatencyHistogram

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "Received", "Subscriber", "SubscriberError", "SubscriberStats", "now_ns"]

BACKOFF_MIN = 0.05
"""First reconnect delay, seconds."""
BACKOFF_MAX = 2.0
"""Cap of the doubling reconnect delay, seconds."""


class Received(NamedTuple):
    """One accepted event as a subscriber got it."""

    channel: str
    seq: int
    ts: int | None
    """Server publish time: wall clock, ns since the epoch (from the event); ``None`` from a server that does not
    stamp its messages (a peer of the benchmark: ``peers/``)."""
    data: Any
    """The payload, decoded from JSON."""
    recv_ns: int
    """``time.time_ns()`` when the message carrying it was read."""
    recv_mono_ns: int
    """``time.monotonic_ns()`` at the same moment (for same-host end-to-end latency)."""


@dataclass(slots=True)
class SubscriberStats:
    """Transport-level counters of one subscriber (events are in its :class:`Tracker`)."""

    connections: int = 0
    """Connections opened: WebSocket handshakes, or new TCP connections for HTTP."""
    requests: int = 0
    """HTTP requests answered (long poll and interval polling)."""
    empty_responses: int = 0
    """HTTP answers that carried no event (a timed-out hold, an idle poll)."""
    frames: int = 0
    """WebSocket messages received (events and control messages)."""
    payload_bytes: int = 0
    """Bytes of HTTP response bodies or WebSocket message payloads received."""
    reconnects: int = 0
    """Sessions started again after a broken one."""

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)

    def merge(self, other: SubscriberStats) -> SubscriberStats:
        """A new :class:`SubscriberStats` with the sums of both."""
        mine, theirs = asdict(self), asdict(other)
        return SubscriberStats(**{k: v + theirs[k] for k, v in mine.items()})


class SubscriberError(Exception):
    """A refusal that reconnecting cannot fix (a bad channel name, a 4xx answer)."""


class Subscriber(abc.ABC):
    """An asyncio subscriber to one channel: reconnects and resumes until stopped.

    Transport subclasses implement :meth:`_session` and list the exceptions
    that mean "the connection broke, try again" in :attr:`retry_on`.
    """

    transport: str = "?"
    """Name of the transport, for people and raw results."""
    retry_on: tuple[type[BaseException], ...] = (OSError,)
    """Exceptions that end a session and trigger a reconnect."""

    def __init__(
        self,
        channel: str,
        *,
        after: int = 0,
        tracker: Tracker | None = None,
        histogram: LatencyHistogram | None = None,
        on_event: Callable[[Received], None] | None = None,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.channel = channel
        self.tracker = tracker if tracker is not None else Tracker(after)
        """Cursor and delivery accounting; the next session resumes from its cursor."""
        self.histogram = histogram
        """Delivery latencies (``recv_ns - ts``) in microseconds, if given."""
        self.on_event = on_event
        """Called with every accepted event, in the order accepted."""
        self.stats = SubscriberStats()
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.last_error: BaseException | None = None
        """Why the latest session ended, if it broke."""

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run sessions one after another until ``stop`` is set or the task is cancelled.

        A broken session (one of :attr:`retry_on`) is followed by a reconnect
        after a delay of ``backoff_min`` that doubles with each further
        failure up to ``backoff_max``; a session that received anything
        starts the sequence again.
        :class:`SubscriberError` and unexpected exceptions propagate.
        """
        stop = stop if stop is not None else asyncio.Event()
        stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        delay: float | None = None
        first = True
        try:
            while not stop.is_set():
                if not first:
                    self.stats.reconnects += 1
                first = False
                before = (self.tracker.counters.delivered, self.tracker.counters.duplicate, self.stats.payload_bytes)
                session = asyncio.ensure_future(self._session())
                try:
                    await asyncio.wait((session, stopper), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not session.done():
                        session.cancel()
                        # Wait without raising: a session that ended on its own as it was cancelled (Python 3.11's
                        # wait_for can surface the inner error instead of the cancellation) is judged below.
                        await asyncio.wait((session,))
                if session.cancelled():  # stopped while connected
                    break
                error = session.exception()
                if error is not None and not isinstance(error, self.retry_on):
                    raise error
                self.last_error = error
                after = (self.tracker.counters.delivered, self.tracker.counters.duplicate, self.stats.payload_bytes)
                delay = self.backoff_min if after != before or delay is None else min(delay * 2, self.backoff_max)
                if stop.is_set():
                    break
                await self._pause(delay, stopper)
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper

    async def _pause(self, delay: float, stopper: asyncio.Future[Any]) -> None:
        """Wait ``delay`` seconds before reconnecting, or less if ``stopper`` completes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stopper), delay)

    @abc.abstractmethod
    async def _session(self) -> None:
        """One connection: connect, receive until it breaks. Resume from ``tracker.cursor``."""

    # -- the per-message path, shared by every transport ---------------------------------------

    def _on_message(self, obj: dict[str, Any], recv_ns: int, recv_mono_ns: int) -> None:
        """One decoded message: an event, or a ``gap``/``reset`` control message."""
        kind = obj.get("type")
        if kind is None:
            self._accept_event(obj, recv_ns, recv_mono_ns)
        elif kind == "gap":
            self.tracker.gap(obj["first"], obj["last"])
        elif kind == "reset":
            self.tracker.reset(obj["after"], obj["last_seq"])
        else:
            self._on_control(kind, obj)

    def _on_control(self, kind: str, obj: dict[str, Any]) -> None:
        """A control message other than gap/reset (a WebSocket ``ack`` or ``pong``); ignored here."""
        return None

    def _accept_event(self, obj: dict[str, Any], recv_ns: int, recv_mono_ns: int) -> None:
        """Account one event; record its latency and hand it on if accepted."""
        seq: int = obj["seq"]
        if not self.tracker.event(seq):
            return
        ts: int | None = obj["ts"]
        if self.histogram is not None and ts is not None:
            self.histogram.record_us((recv_ns - ts) / 1000)
        if self.on_event is not None:
            self.on_event(Received(obj["channel"], seq, ts, obj.get("data"), recv_ns, recv_mono_ns))


def now_ns() -> tuple[int, int]:
    """``(time.time_ns(), time.monotonic_ns())``: the moment a message was read."""
    return time.time_ns(), time.monotonic_ns()
