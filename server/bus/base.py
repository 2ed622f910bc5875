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
import itertools
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from .core import Batch, Event

__all__ = [
    "GONE_CHECK",
    "Broadcast",
    "Bus",
    "BusClosed",
    "BusUnavailable",
    "Fanout",
    "Waiter",
    "WaiterSet",
    "broadcast_of",
    "notify",
]

GONE_CHECK = 1.0
"""Seconds between two checks that a held request's client is still there (:meth:`Bus.wait`)."""


class Waiter(Protocol):
    """Anything a bus can wake: a :class:`threading.Event` fits.

    A waiter's class may also offer ``broadcast(waiters, event)`` (see
    :data:`Broadcast`): the bus calls it once per publish with all of that
    class's waiters of the channel, in the publisher's thread, and calls
    ``set()`` only on those it returns. The WebSocket session uses it to
    frame an event once and write it straight to every socket that takes it
    without blocking (as ``websockets.broadcast`` does), saving a thread or
    greenlet wake-up per subscriber per event.
    """

    def set(self) -> None: ...


Broadcast = Callable[[Sequence[Any], Event], Iterable[Waiter]]
"""A waiter class's ``broadcast(waiters, event)``: deliver ``event`` to each if it can; return those still to wake."""


class Fanout:
    """One channel's waiters, grouped for a publish: the plain ones, and each class's :data:`Broadcast` with its own.

    Built once per change of the channel's waiters (:meth:`WaiterSet.fanout`),
    not once per publish: a publish pays one loop per class, not a lookup
    per waiter.
    """

    __slots__ = ("broadcasts", "plain")

    def __init__(
        self, plain: tuple[Waiter, ...] = (), broadcasts: tuple[tuple[Broadcast, tuple[Waiter, ...]], ...] = ()
    ) -> None:
        self.plain = plain
        """Waiters woken with ``set()``."""
        self.broadcasts = broadcasts
        """``(broadcast, its waiters)`` per class that has one."""

    @classmethod
    def of(cls, waiters: Iterable[Waiter]) -> Fanout:
        """Group ``waiters`` by their class's ``broadcast`` (a lookup per waiter: for a one-off wake)."""
        groups: dict[Broadcast | None, list[Waiter]] = {}
        for waiter in waiters:
            groups.setdefault(broadcast_of(waiter), []).append(waiter)
        return cls.from_groups(groups)

    @classmethod
    def from_groups(cls, groups: Mapping[Broadcast | None, Collection[Waiter]]) -> Fanout:
        """From waiters already grouped by :func:`broadcast_of` (``None``: the plain ones)."""
        broadcasts = tuple((broadcast, tuple(group)) for broadcast, group in groups.items() if broadcast is not None)
        return cls(tuple(groups.get(None, ())), broadcasts)

    def __len__(self) -> int:
        return len(self.plain) + sum(len(group) for _, group in self.broadcasts)

    def notify(self, event: Event | None) -> None:
        """Offer ``event`` to the broadcasting waiters, then wake the rest (``None``: wake all, go read)."""
        for waiter in self.plain:
            waiter.set()
        for broadcast, group in self.broadcasts:
            if event is None:
                for waiter in group:
                    waiter.set()
            else:
                for waiter in broadcast(group, event):
                    waiter.set()


def broadcast_of(waiter: Waiter) -> Broadcast | None:
    """The ``broadcast`` of ``waiter``'s class, or ``None`` for a plain waiter."""
    broadcast: Broadcast | None = getattr(type(waiter), "broadcast", None)
    return broadcast


def notify(waiters: Iterable[Waiter] | Fanout, event: Event | None) -> None:
    """Wake ``waiters`` about ``event`` (``None``: something changed, go read)."""
    (waiters if isinstance(waiters, Fanout) else Fanout.of(waiters)).notify(event)


class BusClosed(RuntimeError):
    """The bus is shutting down; held requests must answer now."""


class BusUnavailable(RuntimeError):
    """The bus's backing service cannot be reached (the Redis bus's Redis)."""


class WaiterSet:
    """Waiters per channel, so a publish wakes only that channel's waiters.

    Each channel's waiters are kept grouped by their class's ``broadcast``
    (:func:`broadcast_of`, looked up once when a waiter is added), so the
    grouping a publish needs (:meth:`fanout`) is a few tuple copies, not a
    lookup per waiter: a channel of 1,000 long polls changes at every poll.
    Not thread-safe on its own: the bus guards it with its lock.
    """

    def __init__(self) -> None:
        self._by_channel: dict[str, dict[Broadcast | None, set[Waiter]]] = {}
        """Channel -> its waiters by ``broadcast`` (``None``: plain); no empty channel or group is kept."""
        self._fanouts: dict[str, Fanout] = {}
        """Channel -> its waiters as a :class:`Fanout`; dropped when they change, rebuilt by the next publish."""

    def add(self, channel: str, waiter: Waiter) -> None:
        self._by_channel.setdefault(channel, {}).setdefault(broadcast_of(waiter), set()).add(waiter)
        self._fanouts.pop(channel, None)

    def discard(self, channel: str, waiter: Waiter) -> None:
        groups = self._by_channel.get(channel)
        if groups is None:
            return
        kind = broadcast_of(waiter)
        group = groups.get(kind)
        if group is None or waiter not in group:
            return
        group.discard(waiter)
        self._fanouts.pop(channel, None)
        if not group:
            del groups[kind]
            if not groups:
                del self._by_channel[channel]

    def fanout(self, channel: str) -> Fanout:
        """One channel's waiters, grouped, to wake outside the lock (the same object until they change)."""
        fanout = self._fanouts.get(channel)
        if fanout is None:
            fanout = self._fanouts[channel] = Fanout.from_groups(self._by_channel.get(channel, {}))
        return fanout

    def of(self, channel: str) -> tuple[Waiter, ...]:
        """A snapshot of one channel's waiters."""
        return tuple(itertools.chain.from_iterable(self._by_channel.get(channel, {}).values()))

    def everyone(self) -> tuple[Waiter, ...]:
        return tuple(w for groups in self._by_channel.values() for group in groups.values() for w in group)


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
            fanout = self._waiters.fanout(channel)
        fanout.notify(event)

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
            (_hold_on_hub if _on_gevent_hub() else _hold)(woken, timeout, gone)
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


def _on_gevent_hub() -> bool:
    """Whether :mod:`threading` is gevent's (the gevent runtimes patch it before the app is built)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _hold(woken: threading.Event, timeout: float, gone: Callable[[], bool] | None) -> None:
    """Wait until ``woken`` is set, ``timeout`` passes or ``gone()`` says the client left (asked every
    :data:`GONE_CHECK` seconds): threads, with the event's own timed wait."""
    if gone is None:
        woken.wait(timeout)
        return
    deadline = time.monotonic() + timeout
    while not woken.wait(min(GONE_CHECK, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline or gone():
            break


def _hold_on_hub(woken: threading.Event, timeout: float, gone: Callable[[], bool] | None) -> None:
    """:func:`_hold` under gevent, without a ``gevent.Timeout`` per hold.

    An event's timed wait builds and starts a ``gevent.Timeout`` (a Python object around a libev
    timer): about a tenth of a held poll's CPU (docs/performance.md). Here the hub's loop runs a bare
    timer that sets ``woken`` itself when time is up or the client is gone; the wait has no timeout.
    Whoever set it, :meth:`Bus.wait` then reads the channel, as after a timed wait.
    """
    from gevent import get_hub

    loop = get_hub().loop
    deadline = time.monotonic() + timeout
    timers: list[Any] = []

    def arm(seconds: float) -> None:
        timer = loop.timer(seconds)
        timers.append(timer)
        timer.start(tick)

    def tick() -> None:  # in the hub: never blocks (gone() peeks without waiting)
        left = deadline - time.monotonic()
        if left <= 0 or (gone is not None and gone()):
            woken.set()
        else:
            arm(min(GONE_CHECK, left))

    arm(timeout if gone is None else min(GONE_CHECK, timeout))
    try:
        woken.wait()
    finally:
        for timer in timers:
            timer.close()
