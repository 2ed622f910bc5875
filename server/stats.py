"""Per-process counters behind ``GET /stats``.

Increments take a lock: cheap next to a socket write, and exact, which the
benchmark relies on when it divides server CPU by events delivered.
"""

from __future__ import annotations

import gc
import os
import threading
from typing import Any, Protocol

import psutil

__all__ = ["TRANSPORTS", "Stats"]

TRANSPORTS = ("longpoll", "websocket", "sse")


class Session(Protocol):
    """A long-lived connection that keeps its own counters (a WebSocket, an SSE stream)."""

    delivered: int
    bytes_sent: int


class Stats:
    """Connections, events and bytes by transport, for one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connections = dict.fromkeys(TRANSPORTS, 0)
        self.delivered = dict.fromkeys(TRANSPORTS, 0)
        self.bytes_sent = dict.fromkeys(TRANSPORTS, 0)
        self.requests = {"longpoll": 0, "publish": 0}
        self.events_published = 0
        self._process = psutil.Process(os.getpid())
        self._sessions: dict[int, tuple[str, Session]] = {}
        """Live sessions, summed in at snapshot time: their per-event path takes no lock here."""

    def track(self, session: Session, transport: str = "websocket") -> None:
        """Count a live session; its counters join the totals when it ends."""
        with self._lock:
            self.connections[transport] += 1
            self._sessions[id(session)] = (transport, session)

    def untrack(self, session: Session) -> None:
        with self._lock:
            transport, _ = self._sessions.pop(id(session))
            self.connections[transport] -= 1
            self.delivered[transport] += session.delivered
            self.bytes_sent[transport] += session.bytes_sent

    def connect(self, transport: str, delta: int = 1) -> None:
        """A held request started (``delta`` 1) or ended (-1)."""
        with self._lock:
            self.connections[transport] += delta

    def answered(self, transport: str, events: int, nbytes: int) -> None:
        """A request was answered with ``events`` events in ``nbytes`` bytes (one lock for all three counters)."""
        with self._lock:
            self.requests[transport] += 1
            self.delivered[transport] += events
            self.bytes_sent[transport] += nbytes

    def published(self, via_http: bool = False) -> None:
        """One event published (``via_http``: by ``POST /events``, which also counts a request)."""
        with self._lock:
            self.events_published += 1
            if via_http:
                self.requests["publish"] += 1

    def snapshot(self) -> dict[str, Any]:
        cpu = self._process.cpu_times()
        with self._lock:
            delivered = dict(self.delivered)
            bytes_sent = dict(self.bytes_sent)
            for transport, session in self._sessions.values():
                delivered[transport] += session.delivered
                bytes_sent[transport] += session.bytes_sent
            return {
                "pid": os.getpid(),
                "connections": dict(self.connections),
                "events_published": self.events_published,
                "delivered": delivered,
                "bytes_sent": bytes_sent,
                "requests": dict(self.requests),
                "cpu_seconds": cpu.user + cpu.system,
                "rss_bytes": self._process.memory_info().rss,
                "gc": {
                    "frozen": gc.get_freeze_count(),
                    "collections": [generation["collections"] for generation in gc.get_stats()],
                },
            }
