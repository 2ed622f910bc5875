"""The benchmark's payload codec: what the publisher puts in each event's ``data``, and how a subscriber reads it.

Contract layer. A payload is the JSON array ``[index, intended_mono_ns, warm, number, "xxx..."]``: the
event's position in the schedule, the monotonic time (ns) at which the open-loop schedule meant to send it, whether
it belongs to the warm-up, its number on its channel (1 for the channel's first event of the schedule, warm-up
included; 0 when the sender does not number), and padding up to ``payload_bytes``. The intended time is what
end-to-end latency is measured from (docs/metrics.md), so a late publisher shows in the numbers instead of hiding.
The number is what loss, duplicates and order are counted against for peers that do not number their messages
themselves (Nchan, Socket.IO: ``peers/``); the lab's server numbers events with its own ``seq``.

Not to be confused with :func:`server.bus.core.parse_payload`, which checks that a publish body is JSON.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["BenchPayload", "decode_payload", "encode_payload"]


class BenchPayload(NamedTuple):
    """What a subscriber learns from one benchmark payload."""

    position: int
    """The event's index in the publisher's schedule (0-based, warm-up included)."""
    intended_mono_ns: int
    warm: bool
    number: int = 0
    """The event's number on its channel, from 1 (0: not numbered)."""


def encode_payload(index: int, intended_mono_ns: int, warm: bool, payload_bytes: int, number: int = 0) -> bytes:
    """The JSON text of one payload, padded to ``payload_bytes`` when that is large enough."""
    head = b'[%d,%d,%d,%d,"' % (index, intended_mono_ns, int(warm), number)
    pad = max(0, payload_bytes - len(head) - 2)
    return head + b"x" * pad + b'"]'


def decode_payload(data: Any) -> BenchPayload:
    """The :class:`BenchPayload` of a decoded payload (the event's ``data``); ``ValueError`` if it is not one."""
    if not isinstance(data, list) or len(data) != 5:
        raise ValueError(f"not a benchmark payload: {data!r:.80}")
    return BenchPayload(int(data[0]), int(data[1]), bool(data[2]), int(data[3]))
