"""The in-memory bus: one process, no services, the embedded default.

Thread-safe under Werkzeug's and gunicorn's threads and, because it only uses
:mod:`threading` primitives created after gevent patched them, under gevent.
A publish takes one lock, serializes the event once, and wakes only the
waiters of that channel.

**Memory is bounded** four ways: each channel's history by event count
(``history``) and by bytes (``history_bytes``), all channels' history together
by ``total_bytes`` (past it, the channel published to least recently is
expired early, as if its time had come), and the number of channels by
expiry. A channel that has had no publish for ``channel_ttl`` seconds loses
its history; what stays is a **tombstone**, its name and ``last_seq`` (about
150 bytes), so its ``seq`` goes on where it was and a subscriber that comes
back is told exactly what it missed (a gap notice) instead of being fed a new
channel's events under old cursors. Tombstones themselves go after
``TOMBSTONE_LIFETIMES`` times ``channel_ttl``; after that the channel starts
again from ``seq`` 1, and a returning subscriber whose cursor is above the
new ``last_seq`` gets a reset notice. Expiry is checked on every publish and
read (the oldest entry only, so it costs O(1) when nothing is due); an idle
server frees its expired channels at its next request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .base import Bus
from .core import Batch, ChannelLog, Event

__all__ = ["TOMBSTONE_LIFETIMES", "MemoryBus"]

TOMBSTONE_LIFETIMES = 16
"""How many ``channel_ttl`` an expired channel's ``last_seq`` is remembered for."""


class MemoryBus(Bus):
    """Channels held in this process's memory; lost when it exits."""

    name = "memory"

    def __init__(
        self,
        history: int = 10_000,
        history_bytes: int | None = None,
        channel_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        total_bytes: int | None = None,
    ) -> None:
        super().__init__()
        self.history = history
        self.history_bytes = history_bytes
        self.channel_ttl = channel_ttl
        self.total_bytes = total_bytes
        self._bytes = 0
        """Stored bytes of every channel's history; guarded by the lock."""
        self._clock = clock
        self._channels: dict[str, ChannelLog] = {}
        self._published_at: OrderedDict[str, float] = OrderedDict()
        """Channel -> clock of its last publish, least recent first."""
        self._tombstones: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """Expired channel -> (its last_seq, clock when it expired), oldest first."""

    def _log(self, channel: str) -> ChannelLog:
        log = self._channels.get(channel)
        if log is None:
            last_seq = self._tombstones.pop(channel, (0, 0.0))[0]
            log = self._channels[channel] = ChannelLog(channel, self.history, self.history_bytes, last_seq)
        return log

    def _expire(self, now: float) -> None:
        """Drop channels idle for ``channel_ttl`` (keeping a tombstone) and stale tombstones; hold the lock."""
        ttl = self.channel_ttl
        if ttl is None:
            return
        idle = self._published_at
        while idle:
            channel, at = next(iter(idle.items()))
            if now - at < ttl:
                break
            self._bury(channel, now)
        tombstones = self._tombstones
        while tombstones:
            channel, (_, at) = next(iter(tombstones.items()))
            if now - at < ttl * TOMBSTONE_LIFETIMES:
                break
            del tombstones[channel]

    def _bury(self, channel: str, now: float) -> None:
        """Drop a channel's history, keep its last_seq as a tombstone; hold the lock."""
        del self._published_at[channel]
        log = self._channels.pop(channel)
        self._bytes -= log.nbytes
        self._tombstones[channel] = (log.last_seq, now)

    def publish(self, channel: str, data: bytes) -> Event:
        with self._lock:
            now = self._clock()
            self._expire(now)
            log = self._log(channel)
            before = log.nbytes
            # ts is taken under the lock so it never decreases along seq.
            event = log.append(data, time.time_ns())
            self._bytes += log.nbytes - before
            self._published_at[channel] = now
            self._published_at.move_to_end(channel)
            if self.total_bytes is not None:
                while self._bytes > self.total_bytes and len(self._published_at) > 1:
                    self._bury(next(iter(self._published_at)), now)
            fanout = self._waiters.fanout(channel)
        fanout.notify(event)
        return event

    def read(self, channel: str, after: int, limit: int) -> Batch:
        with self._lock:
            self._expire(self._clock())
            log = self._channels.get(channel)
            if log is None:
                # Empty, not retained: nobody published, or it expired (its tombstone keeps last_seq).
                log = ChannelLog(channel, 1, last_seq=self._tombstones.get(channel, (0, 0.0))[0])
            return log.read(after, limit)

    def footprint(self) -> dict[str, int]:
        """Channels, tombstones and retained bytes held now (for /stats and the tests)."""
        with self._lock:
            return {
                "channels": len(self._channels),
                "tombstones": len(self._tombstones),
                "history_bytes": self._bytes,
            }
