"""The Kaazing white paper's bandwidth table, reproduced from its inputs and recomputed from a run.

Report layer, pure functions. "HTML5 Web Sockets: A Quantum Leap in
Scalability for the Web" (Kaazing, Lubbers and Greco) counts 871 bytes of
HTTP request and response headers per poll and 2 bytes of framing per
WebSocket message, and, at one message per second per client, prints:

=========  ===============  =================
clients    polling (Mbps)   WebSocket (Mbps)
=========  ===============  =================
1,000      6.6              0.015
10,000     66               0.153
100,000    665              1.526
=========  ===============  =================

with Mbps meaning 2^20 bits per second (871 x 8 x 1,000 / 2^20 = 6.645).
:func:`paper_table` reproduces those figures from the paper's own inputs;
:func:`measured_table` recomputes the same table from the bytes per delivered
event (both directions, TCP payload counted by the relay) that this run
measured for polling, long polling, WebSocket and SSE, and says which scenario each
number came from. The measured bytes include the event itself (envelope and
payload); the paper's figures are overhead only, so the overhead (wire bytes
minus payload bytes) is shown beside them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.contract.schema import Result, Run

from .tables import bytes_per_event, lab_results

__all__ = [
    "BITS_PER_MBIT",
    "PAPER_CLIENTS",
    "PAPER_FRAME_BYTES",
    "PAPER_HEADER_BYTES",
    "PAPER_PRINTED",
    "MeasuredRow",
    "PaperRow",
    "mbps",
    "measured_table",
    "paper_table",
]

PAPER_HEADER_BYTES = 871
"""HTTP request + response header bytes per poll in the paper's example."""
PAPER_FRAME_BYTES = 2
"""WebSocket framing bytes per message in the paper (0x00 ... 0xFF framing of the draft protocol)."""
PAPER_CLIENTS = (1_000, 10_000, 100_000)
PAPER_MESSAGES_PER_SECOND = 1.0
BITS_PER_MBIT = 2**20
"""The paper's Mbps: 2^20 bits per second."""
PAPER_PRINTED = {"polling": ("6.6", "66", "665"), "websocket": ("0.015", "0.153", "1.526")}
"""The figures as the paper prints them, for the three client counts."""


def mbps(bytes_per_message: float, clients: int, messages_per_second: float = PAPER_MESSAGES_PER_SECOND) -> float:
    """Network throughput in the paper's Mbps (2^20 bit/s) for ``clients`` at this byte cost per message."""
    return bytes_per_message * 8 * clients * messages_per_second / BITS_PER_MBIT


BATCHED_BELOW = 0.8
"""Requests per event below which a row is called batched: several events per request. Above it, a count of
requests a little under one per event is the fencepost of a short window (14 polls for 15 events), not batching."""


@dataclass(frozen=True)
class PaperRow:
    """One transport of the paper's table: bytes per message and Mbps per client count."""

    transport: str
    bytes_per_message: float
    mbps: tuple[float, ...]
    printed: tuple[str, ...]


def paper_table() -> list[PaperRow]:
    """The paper's table recomputed from its own inputs (871 B per poll, 2 B per frame)."""
    return [
        PaperRow(name, float(b), tuple(mbps(b, n) for n in PAPER_CLIENTS), PAPER_PRINTED[name])
        for name, b in (("polling", PAPER_HEADER_BYTES), ("websocket", PAPER_FRAME_BYTES))
    ]


@dataclass(frozen=True)
class MeasuredRow:
    """One transport recomputed from this run's measured bytes per delivered event."""

    transport: str
    source: str
    """Scenario name, link and repetitions the bytes came from."""
    bytes_per_event: float
    payload_bytes: int
    mbps: tuple[float, ...]
    requests_per_event: float | None = None
    """HTTP requests per delivered event (polling, long polling); below 1 a request carried several events."""

    @property
    def overhead_bytes(self) -> float:
        return self.bytes_per_event - self.payload_bytes


def _pick(results: Sequence[Result]) -> list[Result]:
    """The scenario closest to the paper's one message per second per client (uncompressed, loopback first)."""
    usable = [r for r in results if r.valid and not r.scenario.idle and bytes_per_event(r) is not None]
    if not usable:
        return []

    def score(r: Result) -> tuple[bool, bool, float, bool, int, str]:
        per_sub = r.scenario.rate_per_subscriber
        distance = abs(math.log10(per_sub)) if per_sub > 0 else math.inf
        return (
            r.scenario.compression,  # the paper's bytes are uncompressed
            not r.scenario.link.is_loopback,
            distance,
            r.scenario.layout != "broadcast",
            r.scenario.payload_bytes,
            r.scenario.name,
        )

    best = min(usable, key=score)
    return [r for r in usable if r.scenario.name == best.scenario.name and r.scenario.series == best.scenario.series]


def measured_table(run: Run) -> list[MeasuredRow]:
    """The same table from this run's bytes per event, for each of polling, long polling, WebSocket and SSE it has.

    The lean fleet's bare requests give one row per series; scenarios with a browser's request headers
    (``request_headers = "browser"``) give rows of their own, named so. A polling or long-poll row says how many
    events a request carried: below one request per event, its bytes per event are shared by a batch.
    """
    rows = []
    lab = lab_results(run.results)  # a peer's bytes are its protocol's, not the lab's (the peers section has them)
    series = sorted(
        {r.scenario.series for r in lab if r.scenario.transport in ("polling", "longpoll", "websocket", "sse")}
    )
    for headers in ("bare", "browser"):
        for name in series:
            chosen = _pick([r for r in lab if r.scenario.series == name and r.scenario.request_headers == headers])
            if not chosen:
                continue
            rows.append(_row(name if headers == "bare" else f"{name}, a browser's request headers", chosen))
    return rows


def _row(transport: str, chosen: Sequence[Result]) -> MeasuredRow:
    per_event = statistics.median(v for r in chosen if (v := bytes_per_event(r)) is not None)
    rpes = [v for r in chosen if (v := r.num("http", "requests_per_event")) is not None]
    rpe = statistics.median(rpes) if rpes else None
    sc = chosen[0].scenario
    link = "loopback" if sc.link.is_loopback else f"one-way {sc.link.one_way_ms:g} ms"
    link += ", COMPRESSED (permessage-deflate)" if sc.compression else ""
    reps = ", ".join(f"r{r.repetition}" for r in chosen)
    source = f"{sc.name} ({sc.rate_per_subscriber:g} ev/s per subscriber, {link}; median of {reps})"
    if rpe is not None and rpe > 0:
        batch = 1 / rpe
        if rpe < BATCHED_BELOW:
            source += f"; BATCHED: {batch:.2g} events per request, so its request bytes are shared {batch:.2g} ways"
        else:
            source += f"; {rpe:.2g} requests per event"
    return MeasuredRow(
        transport=transport,
        source=source,
        bytes_per_event=per_event,
        payload_bytes=sc.payload_bytes,
        mbps=tuple(mbps(per_event, n) for n in PAPER_CLIENTS),
        requests_per_event=rpe,
    )
