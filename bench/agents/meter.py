"""The passive byte meter: what the fleet's subscribers wrote to and read from their sockets.

Agent layer of the benchmark. With no link to emulate, the fleet connects straight to the server and no
process stands in the data path; the bytes are counted where the subscribers' transports read and write
them: every chunk a protocol's ``data_received`` gets and every buffer handed to ``write``. That is exactly
the TCP payload each direction carried (``tests/bench/agents/test_meter.py`` checks it against a packet
capture on ``lo``, to the byte): TCP has no other payload. The WebSocket handshake (the Upgrade request
and its ``101`` head) is counted apart, as the relay does (:mod:`bench.link.model`).

One meter per fleet process, shared by its subscribers; the runner reads it at the window's edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["WireMeter"]


@dataclass(slots=True)
class WireMeter:
    """Bytes on the wire, both directions, with the handshake header blocks counted apart too.

    The keys are the relay's snapshot totals (``up``, ``down``, ``head_up``, ``head_down``, ``heads``), so
    the runner reads either the same way.
    """

    up: int = 0
    """Bytes written by the subscribers (requests, Upgrade requests, pongs, close frames)."""
    down: int = 0
    """Bytes read by the subscribers (responses, ``101`` heads, frames)."""
    head_up: int = 0
    """Of ``up``: WebSocket Upgrade requests."""
    head_down: int = 0
    """Of ``down``: the heads of ``101`` answers, up to and including their blank line."""
    heads: int = 0
    """WebSocket handshakes completed."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
