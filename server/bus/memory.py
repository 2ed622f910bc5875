"""The in-memory bus: one process, no services, the embedded default.

Thread-safe under Werkzeug's and gunicorn's threads and, because it only uses
:mod:`threading` primitives created after gevent patched them, under gevent.
A publish takes one lock, serializes the event once, and wakes only the
waiters of that channel.
"""

from __future__ import annotations

import time

from .base import Bus, notify
from .core import Batch, ChannelLog, Event

__all__ = ["MemoryBus"]


class MemoryBus(Bus):
    """Channels held in this process's memory; lost when it exits."""

    name = "memory"

    def __init__(self, history: int = 10_000) -> None:
        super().__init__()
        self.history = history
        self._channels: dict[str, ChannelLog] = {}

    def _log(self, channel: str) -> ChannelLog:
        log = self._channels.get(channel)
        if log is None:
            log = self._channels[channel] = ChannelLog(channel, self.history)
        return log

    def publish(self, channel: str, data: bytes) -> Event:
        with self._lock:
            # ts is taken under the lock so it never decreases along seq.
            event = self._log(channel).append(data, time.time_ns())
            waiters = self._waiters.of(channel)
        notify(waiters, event)
        return event

    def read(self, channel: str, after: int, limit: int) -> Batch:
        with self._lock:
            log = self._channels.get(channel)
            if log is None:
                log = ChannelLog(channel, 1)  # empty, not retained
            return log.read(after, limit)
