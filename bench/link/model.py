"""The link emulator's model, sans I/O: when a chunk is released, and how many bytes of which kind passed.

Link layer of the benchmark. A chunk read from one side at time ``arrival`` is released to the other side at
``release = max(previous release, serialized + one_way + jitter)``, where ``serialized`` is ``arrival`` on an
unlimited link, and otherwise the time the link finishes serializing the chunk at ``bandwidth_kbps`` (one
queue per direction per connection). The ``max`` keeps the order: nothing is ever reordered.
:class:`DirectionMeter` counts one direction's bytes, including the first HTTP header block (up to and
including the first ``b"\\r\\n\\r\\n"``: a WebSocket Upgrade request or its ``101`` response).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.contract.scenarios import Link

__all__ = ["HEAD_LIMIT", "DirectionMeter", "LinkSchedule"]

HEAD_LIMIT = 65536
"""A first header block not ended within this many bytes is not HTTP: the direction has no header block."""


class LinkSchedule:
    """Sans-I/O release-time model of one direction of one connection. Times are seconds on any clock.

    ``release(arrival, size)`` returns when a chunk of ``size`` bytes read at ``arrival`` reaches the other
    side: the link serializes chunks one after the other at the link's rate (a FIFO queue), each then takes
    ``one_way + jitter`` to propagate, and a chunk is never released before the one read before it.
    """

    def __init__(self, link: Link, rng: random.Random | None = None) -> None:
        self.link = link
        self._rng = rng or random.Random(link.seed)
        self._link_free = -math.inf
        """When the link finishes serializing what it was given so far."""
        self._last_release = -math.inf

    def delay(self) -> float:
        """One propagation delay sample in seconds: ``one_way +- jitter``, uniform, clipped at 0."""
        ms = self.link.one_way_ms
        if self.link.jitter_ms:
            ms += self._rng.uniform(-self.link.jitter_ms, self.link.jitter_ms)
        return max(ms, 0.0) / 1000.0

    def serialized(self, arrival: float, size: int) -> float:
        """When the link has finished putting ``size`` bytes read at ``arrival`` on the wire."""
        if not self.link.bandwidth_kbps:
            return arrival
        start = max(arrival, self._link_free)
        self._link_free = start + size * 8 / (self.link.bandwidth_kbps * 1000.0)
        return self._link_free

    def release(self, arrival: float, size: int) -> float:
        """When a chunk of ``size`` bytes read at ``arrival`` is handed to the other side."""
        at = max(self._last_release, self.serialized(arrival, size) + self.delay())
        self._last_release = at
        return at


HeadState = Literal["pending", "complete", "none"]


@dataclass(slots=True)
class DirectionMeter:
    """Sans-I/O byte accounting for one direction of one connection.

    ``nbytes`` counts what the relay read from the sending side, ``delivered`` what it wrote to the receiving
    side (they are equal once the direction is drained). ``head_bytes`` is the length of the first HTTP
    header block, up to and including the first ``b"\\r\\n\\r\\n"``, once that block is complete; 0 before,
    and 0 for a direction whose first ``HEAD_LIMIT`` bytes hold no such terminator (``head`` is ``"none"``).
    """

    nbytes: int = 0
    delivered: int = 0
    chunks: int = 0
    head_bytes: int = 0
    head: HeadState = "pending"
    sample_limit: int = 0
    """Keep this many first bytes in :attr:`sample` (0: keep none), for captures."""
    sample: bytearray = field(default_factory=bytearray)
    _tail: bytes = b""

    def observe(self, data: bytes) -> None:
        """Count a chunk read from the sending side."""
        if len(self.sample) < self.sample_limit:
            self.sample += data[: self.sample_limit - len(self.sample)]
        before = self.nbytes
        self.nbytes += len(data)
        self.chunks += 1
        if self.head != "pending":
            return
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        if end >= 0:
            self.head_bytes = before - len(self._tail) + end + 4
            self.head = "complete"
            self._tail = b""
        elif self.nbytes >= HEAD_LIMIT:
            self.head = "none"
            self._tail = b""
        else:
            self._tail = window[-3:]

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.nbytes,
            "delivered": self.delivered,
            "chunks": self.chunks,
            "head_bytes": self.head_bytes,
            "head": self.head,
        }
