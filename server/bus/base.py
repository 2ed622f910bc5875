"""The one interface every event bus implements, and its shared waiting logic.

A bus owns channels (:class:`~server.bus.core.ChannelLog`), assigns ``seq``
and ``ts``, and wakes the subscribers of a channel when it changes. The
long-poll and WebSocket routes talk to a bus only through :class:`Bus`, so the
memory bus and the Redis bus are interchangeable and pass the same contract
tests (``tests/server/test_bus_contract.py``).

Waking uses :mod:`threading` primitives looked up at call time, so under the
gevent runtime (which monkey-patches :mod:`threading` before the app is
created) they are gevent's cooperative ones.
"""

from __future__ import annotations

import abc
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Protocol

from .core import Batch, Event

__all__ = ["GONE_CHECK", "Bus", "BusClosed", "BusUnavailable", "Waiter", "WaiterSet", "notify"]

GONE_CHECK = 1.0
"""Seconds between two checks that a held request's client is still there (:meth:`Bus.wait`)."""


class Waiter(Protocol):
    """Anything a bus can wake: a :class:`threading.Event` fits.

    A waiter may also offer ``offer(event) -> bool``: the bus calls it first,
    in the publisher's thread, and skips ``set()`` when it returns true. The
    WebSocket session uses it to write an event's frame straight to its socket
    when it can do so without blocking (as ``websockets.broadcast`` does),
    saving a thread or greenlet wake-up per subscriber per event.
    """

    def set(self) -> None: ...


def notify(waiters: Iterable[Waiter], event: Event | None) -> None:
    """Wake ``waiters`` about ``event`` (``None``: something changed, go read)."""
    for waiter in waiters:
        offer = getattr(waiter, "offer", None) if event is not None else None
        if offer is None or not offer(event):
            waiter.set()


class BusClosed(RuntimeError):
    """The bus is shutting down; held requests must answer now."""


class BusUnavailable(RuntimeError):
    """The bus's backing service cannot be reached (the Redis bus's Redis)."""


class WaiterSet:
    """Waiters per channel, so a publish wakes only that channel's waiters.

    Not thread-safe on its own: the bus guards it with its lock.
    """

    def __init__(self) -> None:
        self._by_channel: defaultdict[str, set[Waiter]] = defaultdict(set)

    def add(self, channel: str, waiter: Waiter) -> None:
        self._by_channel[channel].add(waiter)

    def discard(self, channel: str, waiter: Waiter) -> None:
        waiters = self._by_channel.get(channel)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._by_channel[channel]

    def of(self, channel: str) -> tuple[Waiter, ...]:
        """A snapshot of one channel's waiters, to wake outside the lock."""
        waiters = self._by_channel.get(channel)
        return tuple(waiters) if waiters else ()

    def everyone(self) -> tuple[Waiter, ...]:
        return tuple(w for ws in self._by_channel.values() for w in ws)


class Bus(abc.ABC):
    """An event bus: publish, read from a cursor, wait for news.

    Subclasses provide :meth:`publish`, :meth:`read` and :meth:`_locked_read`
    semantics; waiting, watching and closing are shared here.
    """

    name: str = "abstract"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters = WaiterSet()
        self.closed = False

    @abc.abstractmethod
    def publish(self, channel: str, data: bytes) -> Event:
        """Append ``data`` (validated JSON text) to ``channel``; wake its waiters."""

    @abc.abstractmethod
    def read(self, channel: str, after: int, limit: int) -> Batch:
        """Events of ``channel`` after the cursor, with gap and reset notices."""

    def watch(self, channel: str, waiter: Waiter) -> None:
        """Have ``waiter.set()`` called whenever ``channel`` gets an event."""
        with self._lock:
            self._waiters.add(channel, waiter)
        if self.closed:
            waiter.set()

    def unwatch(self, channel: str, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.discard(channel, waiter)

    def _wake(self, channel: str, event: Event | None = None) -> None:
        """Wake the waiters of ``channel``, offering them ``event`` if known."""
        with self._lock:
            waiters = self._waiters.of(channel)
        notify(waiters, event)

    def wait(
        self, channel: str, after: int, limit: int, timeout: float, gone: Callable[[], bool] | None = None
    ) -> Batch:
        """Long-poll semantics: a non-empty batch as soon as there is one.

        Returns at once when the cursor already has news (events, a gap or a
        reset); otherwise blocks until the channel changes or ``timeout``
        seconds pass, and returns whatever is there then (maybe nothing).
        ``gone``, asked every :data:`GONE_CHECK` seconds, ends the wait early
        when it says the client has left, so a departed client does not hold
        a thread, a greenlet or a connection slot until the timeout.
        Raises :class:`BusClosed` if the bus shuts down while waiting.
        """
        if self.closed:
            raise BusClosed()
        batch = self.read(channel, after, limit)
        if batch.events or batch.gap or batch.reset or timeout <= 0:
            return batch
        woken = threading.Event()
        self.watch(channel, woken)
        try:
            # A publish between the read above and watch() is caught here.
            batch = self.read(channel, after, limit)
            if batch.events or batch.gap or batch.reset:
                return batch
            if gone is None:
                woken.wait(timeout)
            else:
                deadline = time.monotonic() + timeout
                while not woken.wait(min(GONE_CHECK, max(0.0, deadline - time.monotonic()))):
                    if time.monotonic() >= deadline or gone():
                        break
        finally:
            self.unwatch(channel, woken)
        if self.closed:
            raise BusClosed()
        return self.read(channel, after, limit)

    def close(self) -> None:
        """Stop: wake every waiter so held requests and sockets can finish."""
        self.closed = True
        with self._lock:
            waiters = self._waiters.everyone()
        for waiter in waiters:
            waiter.set()
