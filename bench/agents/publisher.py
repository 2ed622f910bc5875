"""The benchmark's open-loop publisher: its own process, a fixed schedule, never waiting on replies.

Agent layer of the benchmark. Event ``k`` (0-based) has an *intended* send time fixed in
advance, ``start + tick(k // burst) + (k % burst) * burst_gap_ms``: ticks at ``rate / burst``
per second on average, each a burst of ``burst`` events ``burst_gap_ms`` apart. With
``arrivals = "periodic"`` tick ``j`` is at ``j * burst / rate``; with ``"poisson"`` the gaps between
ticks are drawn from an exponential distribution of that mean, seeded, so events arrive at random (as
real ones do, and as the model of long polling's three transits assumes) yet every run can be
replayed. The warm-up is the ticks before ``warmup_s``; the measured ticks follow until
``warmup_s + duration_s``. The loop sleeps until an
event is due and hands its request to a task, without waiting for the answer
before the next event is due (open loop, so a slow server cannot slow the
offered load down and hide its own latency: the "coordinated omission" trap).
Requests go over a few keep-alive connections straight to the server, not
through the relay, so publishing does not count in the subscribers' bytes.

Each payload is :func:`bench.contract.payload.encode_payload`'s JSON array
``[index, intended_monotonic_ns, warm, "pad"]`` (about 28 bytes at least): ``time.monotonic_ns()`` is the same clock in
every process of one host, so a subscriber computes end-to-end latency as its
receive monotonic time minus the intended send time. ``warm`` is 1 for events
of the warm-up, which subscribers deliver but do not count.

The publisher's own lag (the moment its request is written to a connection, minus the intended
time) goes into an HdrHistogram: taken at the write, so a send that waits for a free connection
shows as late. It is *behind* (flag ``publisher_behind``, run invalid) when
its lag p99 exceeds :data:`BEHIND_P99_MS` or any publish failed to be sent.

Process protocol (``python -m bench.agents.publisher``, JSON lines, :mod:`bench.process`): it reads
``{"cmd": "plan", "plan": {...}}``, connects, answers ``{"ready": true}``, reads
``{"cmd": "start", "t0": <monotonic ns>}``, publishes the schedule, and answers ``{"report": {...}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.agents.http import read_response
from bench.contract.payload import encode_payload
from bench.process import commands, say
from clients import LatencyHistogram

__all__ = [
    "BEHIND_P99_MS",
    "PublishPlan",
    "PublisherReport",
    "channel_for",
    "event_count",
    "intended_offset_ns",
]

BEHIND_P99_MS = 10.0
"""A publisher whose lag behind schedule has a p99 above this is behind: its run is invalid."""
CONNECTIONS = 8
"""Keep-alive connections of the HTTP publisher: a slow answer on one does not hold the schedule."""


def intended_offset_ns(index: int, rate: float, burst: int = 1, burst_gap_ms: float = 0.0) -> int:
    """Intended send time of event ``index`` after the start, in ns (module docstring)."""
    tick, within = divmod(index, burst)
    return round(tick * burst * 1e9 / rate + within * burst_gap_ms * 1e6)


def event_count(seconds: float, rate: float, burst: int = 1, burst_gap_ms: float = 0.0) -> int:
    """How many events have an intended time in ``[0, seconds)``: whole bursts only."""
    if seconds <= 0:
        return 0
    ticks = math.ceil(seconds * rate / burst - 1e-9)
    return ticks * burst


def channel_for(index: int, channels: list[str]) -> str:
    """The channel of event ``index``: round-robin (one channel: broadcast)."""
    return channels[index % len(channels)]


@dataclass(slots=True)
class PublishPlan:
    """What to publish: the schedule, the channels, where to."""

    url: str
    """Server (or floor) base URL, ``http://host:port``."""
    channels: list[str]
    rate: float
    burst: int = 1
    burst_gap_ms: float = 0.0
    warmup_s: float = 0.0
    duration_s: float = 1.0
    payload_bytes: int = 32
    arrivals: str = "periodic"
    """``periodic`` or ``poisson`` (module docstring)."""
    seed: int = 0
    """Seed of the Poisson arrivals."""
    numbering: str = "server"
    """Whose number an event's cursor is: ``server`` (the lab's ``seq`` from the publish answer) or
    ``publisher`` (the payload's own number on its channel, for peers that do not number: ``peers/``; then a
    channel has one publish in flight at a time, so the peer receives them in number order)."""
    _ticks: tuple[list[int], int] | None = field(default=None, init=False, repr=False)
    """The ticks' offsets in ns and how many are warm-up, computed once."""

    def ticks(self) -> tuple[list[int], int]:
        """Every tick's offset from the start (ns), and how many of them fall in the warm-up."""
        if self._ticks is None:
            if self.arrivals == "periodic":
                warm = event_count(self.warmup_s, self.rate, self.burst, self.burst_gap_ms) // self.burst
                measured = event_count(self.duration_s, self.rate, self.burst, self.burst_gap_ms) // self.burst
                tick = [intended_offset_ns(j * self.burst, self.rate, self.burst) for j in range(max(warm, measured))]
                offsets = tick[:warm] + [round(self.warmup_s * 1e9) + t for t in tick[:measured]]
            elif self.arrivals == "poisson":
                rng, t, offsets = random.Random(self.seed), 0.0, []
                end = self.warmup_s + self.duration_s
                while (t := t + rng.expovariate(self.rate / self.burst)) < end:
                    offsets.append(round(t * 1e9))
                warm = sum(1 for o in offsets if o < self.warmup_s * 1e9)
            else:
                raise ValueError(f"arrivals must be periodic or poisson, not {self.arrivals!r}")
            self._ticks = (offsets, warm)
        return self._ticks

    @property
    def warm_events(self) -> int:
        return self.ticks()[1] * self.burst

    @property
    def total_events(self) -> int:
        return len(self.ticks()[0]) * self.burst

    def offset_ns(self, index: int) -> int:
        """Intended time of event ``index`` after the start; measured events start at ``warmup_s``."""
        tick, within = divmod(index, self.burst)
        return self.ticks()[0][tick] + round(within * self.burst_gap_ms * 1e6)


@dataclass(slots=True)
class PublisherReport:
    """What the publisher did (the ``publisher`` block of a raw result, plus per-channel facts)."""

    intended: int = 0
    """Measured (not warm-up) events in the schedule."""
    sent: int = 0
    """Measured events the server acknowledged."""
    errors: int = 0
    """Publishes (warm-up included) that failed."""
    warm_sent: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    """Highest seq acknowledged per channel: what subscribers must reach."""
    measured: dict[str, int] = field(default_factory=dict)
    """Measured events acknowledged per channel."""
    lag: LatencyHistogram = field(default_factory=LatencyHistogram)
    """Time the request was written minus intended time, microseconds, every event sent."""

    @property
    def behind(self) -> bool:
        p99 = self.lag.percentile_us(99) / 1000 if self.lag.count else 0.0
        return p99 > BEHIND_P99_MS or self.errors > 0

    def as_dict(self) -> dict[str, Any]:
        lag = self.lag.summary()
        return {
            "intended": self.intended,
            "sent": self.sent,
            "errors": self.errors,
            "warm_sent": self.warm_sent,
            "lag_ms": {
                "p50": (lag["p50_us"] or 0) / 1000,
                "p99": (lag["p99_us"] or 0) / 1000,
                "max": (lag["max_us"] or 0) / 1000,
            },
            "behind": self.behind,
            "behind_threshold_p99_ms": BEHIND_P99_MS,
            "last_seq": self.last_seq,
            "measured": self.measured,
        }


Send = Callable[[str, bytes, Callable[[], None]], Awaitable[int]]
"""Publish one payload to a channel, calling the third argument right before its bytes are written;
returns the assigned seq."""


class HttpPublishPool:
    """Publishes over a few keep-alive HTTP/1.1 connections, written with bare asyncio streams.

    Why not httpx (which the lab's ``clients.AsyncPublisher`` uses): at hundreds of publishes per
    second on two shared cores, httpx's per-request CPU made the publisher fall behind its own
    schedule, and end-to-end latencies measured the publisher. A ``POST`` to the lab's own server
    and its ``201`` answer (always with ``Content-Length``) need only this. Each connection sends
    one request at a time; requests wait for a free connection in FIFO order.
    """

    def __init__(self, host: str, port: int, connections: int = CONNECTIONS, *, expect_seq: bool = True) -> None:
        self.host = host
        self.port = port
        self.size = connections
        self.expect_seq = expect_seq
        """The answer is the lab's ``201`` with a ``seq``; else any ``2xx`` will do (a peer's), and 0 is returned."""
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
        self._all: list[asyncio.StreamWriter] = []

    async def connect(self) -> None:
        """Open every connection before the schedule starts."""
        for _ in range(self.size):
            self._idle.put_nowait(await self._open())

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._all.append(writer)
        return reader, writer

    async def publish(self, channel: str, body: bytes, on_write: Callable[[], None] = lambda: None) -> int:
        """``POST /channels/<channel>/events``; the assigned seq, or ``ValueError`` for a non-201 answer.

        ``on_write`` is called once a connection is free, right before the request is written.
        """
        conn = await self._idle.get()
        try:
            if conn is None:
                conn = await self._open()
            reader, writer = conn
            on_write()
            writer.write(
                b"POST /channels/%s/events HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s"
                % (channel.encode("ascii"), self.host.encode("ascii"), self.port, len(body), body)
            )
            status, answer, close = await read_response(reader)
            if close:
                writer.close()
                conn = None
            if not self.expect_seq and 200 <= status < 300:
                return 0
            if status != 201:
                raise ValueError(f"publish answered {status}: {answer[:200]!r}")
            return int(json.loads(answer)["seq"])
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if conn is not None:
                conn[1].close()
            conn = None
            raise
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def run_schedule(plan: PublishPlan, send: Send, start_mono_ns: int) -> PublisherReport:
    """Publish ``plan`` open loop from ``start_mono_ns``; the I/O is ``send``."""
    report = PublisherReport(intended=plan.total_events - plan.warm_events)
    warm = plan.warm_events
    tasks: set[asyncio.Task[None]] = set()

    by_publisher = plan.numbering == "publisher"
    # A peer's order on a channel is the order it received the publishes in, and the payload's number must be
    # that order: with publisher numbering, one publish per channel is in flight at a time, in number order
    # (asyncio.Lock wakes its waiters first come, first served; tasks start in creation order). A slow answer
    # then delays the next publish of its channel, which the lag, taken at the write, shows.
    in_order = {channel: asyncio.Lock() for channel in plan.channels} if by_publisher else {}

    async def one(index: int, intended: int, channel: str, body: bytes, number: int) -> None:
        def written() -> None:
            report.lag.record_us(max(0, time.monotonic_ns() - intended) / 1000)

        try:
            if by_publisher:
                async with in_order[channel]:
                    await send(channel, body, written)
                seq = number
            else:
                seq = await send(channel, body, written)
        except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            report.errors += 1
            return
        report.last_seq[channel] = max(report.last_seq.get(channel, 0), seq)
        if index < warm:
            report.warm_sent += 1
        else:
            report.sent += 1
            report.measured[channel] = report.measured.get(channel, 0) + 1

    for channel in plan.channels:
        report.last_seq.setdefault(channel, 0)
        report.measured.setdefault(channel, 0)
    for index in range(plan.total_events):
        intended = start_mono_ns + plan.offset_ns(index)
        delay = intended - time.monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        number = index // len(plan.channels) + 1  # round-robin: the event's number on its channel
        body = encode_payload(index, intended, index < warm, plan.payload_bytes, number)
        task = asyncio.create_task(one(index, intended, channel_for(index, plan.channels), body, number))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return report


async def _serve() -> None:
    """The agent: a plan, ``ready``, a start time, the schedule, the report (module docstring)."""
    stream = commands()
    plan: PublishPlan | None = None
    async for command in stream:
        if command["cmd"] == "plan":
            plan = PublishPlan(**command["plan"])
            break
    if plan is None:
        return
    host, _, port = plan.url.removeprefix("http://").partition(":")
    # One connection per event of a burst at least: a burst must not queue for connections (its lag would
    # be the pool's, and the run flagged publisher_behind for it).
    pool = HttpPublishPool(
        host, int(port), connections=max(CONNECTIONS, plan.burst), expect_seq=plan.numbering == "server"
    )
    await pool.connect()  # the keep-alive connections are open before the clock starts
    send: Send = pool.publish
    try:
        say({"ready": True})
        async for command in stream:
            if command["cmd"] == "start":
                report = await run_schedule(plan, send, int(command["t0"]))
                say({"report": report.as_dict()})
                break
    finally:
        await pool.close()


def main() -> None:
    """Entry point of ``python -m bench.agents.publisher``."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
