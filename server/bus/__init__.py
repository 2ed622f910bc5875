"""The event bus: one interface (:class:`Bus`), a memory and a Redis engine.

``make_bus(config)`` picks the engine named by the configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Bus, BusClosed, BusUnavailable, Waiter
from .core import Batch, ChannelLog, Event, Gap, InvalidPayload, Reset, Window, parse_payload, valid_channel
from .memory import MemoryBus

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "Batch",
    "Bus",
    "BusClosed",
    "BusUnavailable",
    "ChannelLog",
    "Event",
    "Gap",
    "InvalidPayload",
    "MemoryBus",
    "Reset",
    "Waiter",
    "Window",
    "make_bus",
    "parse_payload",
    "valid_channel",
]


def make_bus(config: Config) -> Bus:
    """The bus the configuration asks for."""
    if config.bus == "redis":
        from .redis import RedisBus

        return RedisBus(
            config.redis_url,
            history=config.history,
            history_bytes=config.history_bytes,
            channel_ttl=config.channel_ttl,
        )
    return MemoryBus(
        history=config.history,
        history_bytes=config.history_bytes,
        channel_ttl=config.channel_ttl,
        total_bytes=config.history_total_bytes,
    )
