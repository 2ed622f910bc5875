"""Plain interval polling: the naive baseline long polling is measured against.

As in Kaazing's white paper on HTTP polling, the client asks "anything new?"
every ``interval`` seconds on a fixed schedule, and the server answers at
once (``timeout=0``), usually with nothing. Delivery latency is then about
half an interval on average, and most requests carry no event.

Slots are fixed (``start + k * interval``): a slow answer does not shift
the schedule, and a slot already missed is skipped rather than crammed in.
One exception: an answer cut short by the server's batch cap (``more``) is
followed at once, as the protocol asks, without using up a slot.

It is the long-poll subscriber with a zero hold and a wait before each
request; the request, the answer handling and the reconnect loop are shared.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from .longpoll import LongPollSubscriber

__all__ = ["PollingSubscriber"]


class PollingSubscriber(LongPollSubscriber):
    """Subscribe to ``channel`` by polling every ``interval`` seconds (``timeout=0``)."""

    transport = "polling"

    def __init__(
        self, base_url: str, channel: str, *, interval: float = 1.0, phase: float = 0.0, **kwargs: Any
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if not 0 <= phase < interval:
            raise ValueError(f"phase must be in [0, interval), got {phase}")
        super().__init__(base_url, channel, timeout=0.0, **kwargs)
        self.interval = interval
        """Seconds between the starts of two polls."""
        self.phase = phase
        """Seconds to wait before the first poll. Many pollers that all start at once poll in lockstep; a
        random phase each (as real clients that opened their page at different times) spreads them."""
        self._next_at: float | None = None
        """Loop time of the latest slot used."""

    async def _before_poll(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._next_at is None:
            self._next_at = now + self.phase
            if self.phase:
                await asyncio.sleep(self.phase)
            return
        if self._more:
            return
        slot = self._next_at + self.interval
        if slot < now:
            slot += math.ceil((now - slot) / self.interval) * self.interval
        self._next_at = slot
        await asyncio.sleep(slot - now)
