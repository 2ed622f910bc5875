"""The benchmark's client fleet: subscribers sharded over processes, and how their numbers are merged.

Agent layer of the benchmark. One fleet process (``python -m bench.agents.fleet``) is
one asyncio loop running many subscribers of one transport (``longpoll``,
``websocket``, ``polling``, or ``floor``: the WebSocket subscriber against the loopback floor
:mod:`bench.agents.floor`), each subscriber on its own connection, straight to the server (or
through the relay when the scenario emulates a link). Long-poll and polling subscribers are
:mod:`clients`' own, each given a :class:`bench.agents.http.BarePoller` (one bare
keep-alive HTTP/1.1 connection; see there why not httpx) as its poller; the WebSocket one is
:class:`bench.agents.websocket.LeanWebSocketSubscriber`. Every byte they write and read is counted in
one :class:`bench.agents.meter.WireMeter` per process, reported with the statistics.

Behind a proxy (an ``https://`` URL: nginx's TLS listener, the run's certificate in ``cert_path`` the only one
trusted) the same subscribers run over TLS done in memory (:mod:`bench.agents.tls`): the meter then counts the
bytes in the clear and a :class:`bench.agents.tls.TLSMeter` the TLS bytes on the wire (``tls`` in the reports).
With ``http = "2"`` the long-poll, polling and SSE subscribers speak HTTP/2 (:mod:`bench.agents.h2`): each
``streams_per_connection`` consecutive subscribers share one connection, each its own stream, cursor and
accounting; the meter counts HTTP/2 frame bytes, and HPACK's header blocks are reported (``hpack``). WebSocket
stays HTTP/1.1 over TLS.

For every *measured* event (a payload of :func:`bench.contract.payload.encode_payload` with ``warm`` 0)
it records:

- end-to-end latency: receive ``monotonic_ns`` minus the payload's intended
  send time (same host, same clock), in microseconds;
- delivery latency: receive wall time minus the event's ``ts`` (the bus's
  publish time).

Warm-up events are delivered and accounted by each subscriber's Tracker but
not counted as delivered nor recorded. Over its measurement window the
process records its own CPU (``time.process_time_ns``) and its event-loop lag: a ticker task
sleeps :data:`TICK_S` and records how late it wakes up. A fleet process is
*saturated* when it used more than :data:`CPU_SATURATED_PERCENT` of one core
or its loop lag p99 exceeded :data:`LOOP_LAG_SATURATED_MS`: its latencies are
then the client's, not the server's (flag ``clients_saturated``). The
``throttle`` option burns that fraction of each tick in a busy loop, so a
test can prove the flag works.

Process protocol (:mod:`bench.process`): stdout and stdin carry one JSON object per line. The
first command is ``{"cmd": "config", "config": {...}}`` (a :class:`FleetConfig`). The
process prints ``{"ready": ...}`` once every subscriber has connected (or
made its first request), then obeys ``{"cmd": "window"}`` (start of the
measurement window: reset CPU and loop lag), ``{"cmd": "drain", "last_seq":
{channel: seq}, "timeout": s}`` (wait until every subscriber's cursor reached
the last published seq; answers ``{"drained": bool}``), and ``{"cmd":
"stop"}`` (stop, then print ``{"report": ...}`` and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.agents import nchan
from bench.agents.h2 import H2Group, H2Poller, H2SSESubscriber, HpackStats
from bench.agents.http import BarePoller, browser_headers
from bench.agents.meter import WireMeter
from bench.agents.socketio import SocketIOSubscriber
from bench.agents.sse import LeanSSESubscriber
from bench.agents.tls import TLSMeter, client_context
from bench.agents.websocket import LeanWebSocketSubscriber
from bench.contract.payload import decode_payload
from bench.process import commands, say
from clients import (
    Counters,
    LatencyHistogram,
    LongPollSubscriber,
    PollingSubscriber,
    Received,
    Subscriber,
    WebSocketSubscriber,
)

__all__ = [
    "CPU_SATURATED_PERCENT",
    "LOOP_LAG_SATURATED_MS",
    "FleetConfig",
    "FleetRecorder",
    "merge_reports",
    "saturation_reasons",
]

CPU_SATURATED_PERCENT = 85.0
"""A fleet process above this share of one core over the window is saturated."""
LOOP_LAG_SATURATED_MS = 20.0
"""A fleet process whose event-loop lag p99 is above this is saturated."""
TICK_S = 0.01
"""The loop-lag ticker's period."""
POLL_MARGIN_S = 10.0
"""Seconds a long-poll or polling subscriber waits beyond the hold before calling an answer late."""
BURN_CHUNK_S = 0.05
"""The throttle's period: it burns ``throttle`` of each."""


def saturation_reasons(cpu_percent: Iterable[float], loop_lag_p99_ms: Iterable[float]) -> list[str]:
    """Why a fleet's numbers are the clients' rather than the server's (empty: they are not)."""
    reasons = []
    for i, cpu in enumerate(cpu_percent):
        if cpu > CPU_SATURATED_PERCENT:
            reasons.append(f"process {i} used {cpu:.0f}% of a core (> {CPU_SATURATED_PERCENT:.0f}%)")
    for i, lag in enumerate(loop_lag_p99_ms):
        if lag > LOOP_LAG_SATURATED_MS:
            reasons.append(f"process {i} loop lag p99 {lag:.1f} ms (> {LOOP_LAG_SATURATED_MS:.0f} ms)")
    return reasons


@dataclass(slots=True)
class FleetConfig:
    """One fleet process's share of a scenario."""

    transport: str
    url: str
    """The server's (or the floor's, or the relay's in front of either) base URL, ``http://127.0.0.1:port``."""
    channels: list[str]
    """One entry per subscriber: the channel it subscribes to."""
    poll_timeout_s: float = 25.0
    poll_interval_s: float | None = None
    compression: bool = False
    throttle: float = 0.0
    seed: int = 0
    """Seed of the interval pollers' random phases (each process of a run gets its own)."""
    server: str = "lab"
    """Whose protocol to speak: the lab's, or a peer's (:data:`bench.contract.names.SERVERS`)."""
    upgrade: bool = False
    """Socket.IO's ``websocket``: connect with the official client's handshake (polling, then upgrade)."""
    drop_every_s: float | None = None
    """Abort every subscriber's connection this often (the resume test); ``None``: never."""
    http: str = "1.1"
    """``2``: long-poll, polling and SSE subscribers speak HTTP/2 over TLS (:mod:`bench.agents.h2`); WebSocket stays
    HTTP/1.1 (over TLS)."""
    cert_path: str | None = None
    """The run's certificate, the only one trusted: set when ``url`` is ``https://`` (the proxy's TLS listener)."""
    streams_per_connection: int = 1
    """HTTP/2: this many consecutive subscribers share one connection (each its own stream)."""
    late_head: bool = False
    """The answer's head may come late (an SSE stream through a buffering, compressing proxy sends nothing until its
    buffers fill): a subscriber counts as subscribed once started, and the runner checks the server's own count."""
    request_headers: str = "bare"
    """``browser``: the lab's HTTP/1.1 subscribers (and the WebSocket Upgrade) send Chromium's request headers
    (:func:`bench.agents.http.browser_headers`) instead of the bare ones."""


@dataclass(slots=True)
class FleetRecorder:
    """Sans-I/O: turns received events into counts and histograms (one per fleet process)."""

    end_to_end: LatencyHistogram = field(default_factory=LatencyHistogram)
    delivery: LatencyHistogram = field(default_factory=LatencyHistogram)
    delivered: int = 0
    """Measured (not warm-up) events accepted."""
    warm: int = 0
    """Warm-up events accepted."""
    foreign: int = 0
    """Events whose payload is not a benchmark payload."""
    reads: int = 0
    """Reads that delivered measured events to a subscriber: its events with the same receive time are one read's
    (a lump: a buffering proxy's shows here)."""
    largest_read: int = 0
    """The most measured events one read delivered to one subscriber."""
    _last: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Per subscriber: the receive time of its latest measured event and how many that read gave it so far."""

    def on_event(self, event: Received, sub: int = 0) -> None:
        """One accepted event of subscriber number ``sub``."""
        try:
            _index, intended_mono_ns, warm, _number = decode_payload(event.data)
        except ValueError:
            self.foreign += 1
            return
        if warm:
            self.warm += 1
            return
        self.delivered += 1
        mono, run = self._last.get(sub, (-1, 0))
        if event.recv_mono_ns != mono:  # every event of one read carries the read's time
            mono, run = event.recv_mono_ns, 0
            self.reads += 1
        self._last[sub] = (mono, run + 1)
        self.largest_read = max(self.largest_read, run + 1)
        self.end_to_end.record_us((event.recv_mono_ns - intended_mono_ns) / 1000)
        if event.ts is not None:  # a peer that does not stamp its messages has no delivery latency
            self.delivery.record_us((event.recv_ns - event.ts) / 1000)


@dataclass(slots=True)
class _Secure:
    """What a fleet process's subscribers share over TLS: the context, the TLS meter, HTTP/2's connections."""

    config: FleetConfig
    meter: WireMeter
    tls_meter: TLSMeter = field(default_factory=TLSMeter)
    hpack: HpackStats = field(default_factory=HpackStats)
    groups: list[H2Group] = field(default_factory=list)
    made: int = 0
    """Subscribers given a connection so far (the group of the next one: ``made // streams_per_connection``)."""

    def context(self, alpn: str) -> ssl.SSLContext:
        assert self.config.cert_path is not None, "an https:// URL needs the run's certificate (cert_path)"
        return client_context(self.config.cert_path, [alpn])

    def group(self) -> H2Group:
        """The HTTP/2 connection of the next subscriber: ``streams_per_connection`` consecutive ones share one."""
        index = self.made // max(1, self.config.streams_per_connection)
        self.made += 1
        if index == len(self.groups):
            h2_context = self.context("h2")
            self.groups.append(
                H2Group(self.config.url, h2_context, meter=self.meter, tls_meter=self.tls_meter, hpack=self.hpack)
            )
        return self.groups[index]


def _make_subscriber(
    config: FleetConfig,
    channel: str,
    on_event: Callable[[Received], None],
    phase: float = 0.0,
    meter: WireMeter | None = None,
    secure: _Secure | None = None,
) -> Subscriber:
    """One subscriber of ``config.transport`` on ``config.server``; the lean ones count their bytes in ``meter``.

    With ``secure`` (an ``https://`` URL: the proxy's TLS listener), over TLS, the TLS bytes counted in its meter;
    with ``config.http`` ``2`` the HTTP ones over HTTP/2 on the connections it shares out.
    """
    if config.server != "lab":
        return _peer_subscriber(config, channel, on_event, phase, meter)
    h2 = secure is not None and config.http == "2" and config.transport in ("longpoll", "polling", "sse")
    if h2:
        assert secure is not None
        group = secure.group()
        if config.transport == "sse":
            return H2SSESubscriber(group, channel, on_event=on_event)
    context = secure.context("http/1.1") if secure is not None else None
    tls_meter = secure.tls_meter if secure is not None else None

    browser = config.request_headers == "browser"

    def poller() -> BarePoller | H2Poller:
        if h2:
            return H2Poller(group)
        headers = browser_headers("fetch", config.url) if browser else ()
        return BarePoller(meter, context=context, tls_meter=tls_meter, headers=headers)

    if config.transport == "longpoll":
        return LongPollSubscriber(
            config.url,
            channel,
            timeout=config.poll_timeout_s,
            margin=POLL_MARGIN_S,
            poller=poller(),
            on_event=on_event,
        )
    if config.transport == "polling":
        return PollingSubscriber(
            config.url,
            channel,
            interval=config.poll_interval_s or 1.0,
            phase=phase,
            margin=POLL_MARGIN_S,
            poller=poller(),
            on_event=on_event,
        )
    if config.transport == "websocket" and config.compression:
        # permessage-deflate: wsproto's, through clients' subscriber (its bytes are metered by the relay)
        return WebSocketSubscriber(config.url, channel, compression=True, on_event=on_event)
    if config.transport in ("websocket", "floor"):  # the floor speaks the same WebSocket to the same client
        return LeanWebSocketSubscriber(
            config.url,
            channel,
            meter=meter,
            context=context,
            tls_meter=tls_meter,
            on_event=on_event,
            headers=browser_headers("websocket", config.url) if browser else (),
        )
    if config.transport == "sse":
        return LeanSSESubscriber(
            config.url,
            channel,
            meter=meter,
            context=context,
            tls_meter=tls_meter,
            on_event=on_event,
            headers=browser_headers("eventsource", config.url) if browser else None,
        )
    raise ValueError(f"unknown transport {config.transport!r}")


def _peer_subscriber(
    config: FleetConfig,
    channel: str,
    on_event: Callable[[Received], None],
    phase: float,
    meter: WireMeter | None,
) -> Subscriber:
    """A subscriber speaking a peer's protocol (``peers/``): its adapter (the ``websockets`` peer speaks the lab's)."""
    if config.server == "websockets" and config.transport == "websocket":
        return LeanWebSocketSubscriber(config.url, channel, meter=meter, on_event=on_event)  # the lab's protocol
    if config.server == "flask_socketio" and config.transport in ("longpoll", "websocket"):
        mode = "polling" if config.transport == "longpoll" else "upgrade" if config.upgrade else "websocket"
        return SocketIOSubscriber(config.url, channel, mode=mode, meter=meter, on_event=on_event)
    if config.server == "nchan":
        if config.transport == "longpoll":
            return nchan.NchanLongPollSubscriber(
                config.url, channel, timeout=config.poll_timeout_s, meter=meter, on_event=on_event
            )
        if config.transport == "polling":
            return nchan.NchanIntervalPollSubscriber(
                config.url, channel, interval=config.poll_interval_s or 1.0, phase=phase, meter=meter, on_event=on_event
            )
        if config.transport == "websocket":
            return nchan.NchanWebSocketSubscriber(config.url, channel, meter=meter, on_event=on_event)
        if config.transport == "sse":
            return nchan.NchanEventSourceSubscriber(config.url, channel, meter=meter, on_event=on_event)
    raise ValueError(f"server {config.server!r} has no transport {config.transport!r}")


def _connected(sub: Subscriber, late_head: bool = False) -> bool:
    """Whether ``sub`` is subscribed: events published from now on reach it (``late_head``: see FleetConfig)."""
    if late_head and sub.transport == "sse":
        return True
    if isinstance(sub, H2SSESubscriber):  # one connection counted for the streams sharing it: its stream is open
        return sub.streaming
    if isinstance(sub, SocketIOSubscriber):
        # In its room once the CONNECT ack came back. Over polling or the upgrade, a request or a connection is not
        # yet the room: events emitted before the ack never reach the session (a first peers run counted them
        # missing in Socket.IO's polling scenarios).
        return sub.connected
    if sub.transport in ("longpoll", "polling"):
        # A held long poll has not been answered yet: the server's /stats says when it is held (the runner checks).
        return sub.transport == "longpoll" or sub.stats.requests > 0
    return sub.stats.connections > 0


def _total_stats(subs: list[Subscriber]) -> dict[str, int]:
    total: dict[str, int] = {}
    for s in subs:
        for key, value in s.stats.as_dict().items():
            total[key] = total.get(key, 0) + value
    return total


def _drop(sub: Subscriber) -> bool:
    """Abort ``sub``'s connection as a network failure would (it reconnects and resumes as its protocol lets it)."""
    drop = getattr(sub, "drop", None)
    if drop is not None:
        return bool(drop())
    poller = getattr(sub, "poller", None)
    return isinstance(poller, BarePoller | H2Poller) and poller.abort()


async def _dropper(subs: list[Subscriber], every_s: float, rng: random.Random, stop: asyncio.Event) -> None:
    """The resume test: each subscriber's connection aborted every ``every_s``, the subscribers staggered."""
    order = list(subs)
    rng.shuffle(order)
    while not stop.is_set():
        for sub in order:
            # At a random moment of each slot, not on a fixed beat: a fixed beat locks the drops to the publisher's
            # periodic ticks, and a drop that always falls just after an event loses nothing it would otherwise lose.
            await asyncio.sleep(rng.uniform(0.5, 1.5) * every_s / len(order))
            _drop(sub)


async def _ticker(lag: list[LatencyHistogram], stop: asyncio.Event) -> None:
    """Record event-loop lag: how late a ``TICK_S`` sleep wakes up, every tick."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + TICK_S
        await asyncio.sleep(TICK_S)
        lag[0].record_us(max(0.0, loop.time() - due) * 1e6)


async def _burner(throttle: float, stop: asyncio.Event) -> None:
    """Burn ``throttle`` of the time in busy chunks on the event loop (forces saturation, for tests).

    Chunks of ``throttle * BURN_CHUNK_S`` stall the loop the way a CPU-bound client does, so the
    loop lag shows it even when the machine is so loaded that the process gets little CPU.
    """
    busy, rest = throttle * BURN_CHUNK_S, (1 - throttle) * BURN_CHUNK_S
    while not stop.is_set():
        end = time.perf_counter() + busy
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(rest)


async def run_fleet(config: FleetConfig, stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Run one fleet process under the stdin/stdout protocol; returns its report."""
    recorder = FleetRecorder()
    stop = asyncio.Event()
    lag = [LatencyHistogram()]
    # Interval pollers start at a random phase each, as independent clients would, not in lockstep.
    rng = random.Random(config.seed)
    interval = config.poll_interval_s or 1.0
    meter = WireMeter()
    secure = _Secure(config, meter) if config.url.startswith("https://") else None
    subs = [
        _make_subscriber(
            config, ch, functools.partial(recorder.on_event, sub=i), rng.uniform(0, interval), meter, secure
        )
        for i, ch in enumerate(config.channels)
    ]

    def snapshot() -> dict[str, Any]:
        """The byte meters now: the clear (or HTTP/2 frame) bytes, the TLS bytes and the header blocks if any."""
        out: dict[str, Any] = {"wire": meter.as_dict()}
        if secure is not None:
            out["tls"] = secure.tls_meter.as_dict()
            out["hpack"] = secure.hpack.as_dict()
        return out

    tasks = [asyncio.create_task(s.run(stop)) for s in subs]
    helpers = [asyncio.create_task(_ticker(lag, stop))]
    if config.throttle > 0:
        helpers.append(asyncio.create_task(_burner(config.throttle, stop)))

    cpu0 = time.process_time_ns()  # this process's own CPU, at nanosecond resolution
    wall0 = time.monotonic()
    cpu_percent = 0.0
    last_published: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while not all(_connected(s, config.late_head) for s in subs) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise RuntimeError(f"a subscriber failed: {t.exception()!r}")
        say({"ready": all(_connected(s, config.late_head) for s in subs)})
        async for cmd in stream:
            if cmd["cmd"] == "window":
                if config.drop_every_s:  # from the window on: the warm-up connected every subscriber once
                    dropper = _dropper(subs, config.drop_every_s, random.Random(config.seed), stop)
                    helpers.append(asyncio.create_task(dropper))
                lag[0] = LatencyHistogram()
                cpu0, wall0 = time.process_time_ns(), time.monotonic()
                say({"window": _total_stats(subs), **snapshot()})
            elif cmd["cmd"] == "drain":
                last_published = last = {str(k): int(v) for k, v in cmd["last_seq"].items()}
                until = time.monotonic() + float(cmd["timeout"])
                while time.monotonic() < until:
                    if all(s.tracker.cursor >= last.get(s.channel, 0) for s in subs):
                        break
                    await asyncio.sleep(0.01)
                cpu1, wall1 = time.process_time_ns(), time.monotonic()
                used = (cpu1 - cpu0) / 1e9
                cpu_percent = 100.0 * used / max(wall1 - wall0, 1e-9)
                drained = all(s.tracker.cursor >= last.get(s.channel, 0) for s in subs)
                say({"drained": drained, "stats": _total_stats(subs), **snapshot()})
            elif cmd["cmd"] == "stop":
                break
    finally:
        stop.set()
        done = await asyncio.wait(tasks, timeout=10)
        for t in done[1]:
            t.cancel()
        for helper in helpers:
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper
    counters = Counters.total(s.tracker.finish(last_published.get(s.channel)) for s in subs)
    errors = [repr(t.exception()) for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    return {
        "subscribers": len(subs),
        "delivered_measured": recorder.delivered,
        "delivered_warm": recorder.warm,
        "reads": recorder.reads,
        "largest_read": recorder.largest_read,
        "foreign": recorder.foreign,
        "counters": counters.as_dict(),
        "stats": _total_stats(subs),
        **snapshot(),
        "end_to_end": recorder.end_to_end.encode(),
        "delivery": recorder.delivery.encode(),
        "clamped": {"end_to_end": recorder.end_to_end.clamped, "delivery": recorder.delivery.clamped},
        "loop_lag": lag[0].encode(),
        "cpu_percent": cpu_percent,
        "errors": errors,
    }


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the reports of several fleet processes: counters add, histograms merge exactly."""
    e2e, delivery = LatencyHistogram(), LatencyHistogram()
    counters = Counters()
    stats: dict[str, int] = {}
    lag_p99, lag_max, cpu = [], [], []
    for r in reports:
        e2e.merge(LatencyHistogram.decode(r["end_to_end"]))
        delivery.merge(LatencyHistogram.decode(r["delivery"]))
        e2e.clamped += int(r["clamped"]["end_to_end"])  # not part of the encoding: carried beside it
        delivery.clamped += int(r["clamped"]["delivery"])
        counters = counters.merge(Counters(**r["counters"]))
        for key, value in r["stats"].items():
            stats[key] = stats.get(key, 0) + value
        lag = LatencyHistogram.decode(r["loop_lag"])
        lag_p99.append(lag.percentile_us(99) / 1000 if lag.count else 0.0)
        lag_max.append(lag.summary()["max_us"] or 0)
        cpu.append(float(r["cpu_percent"]))
    return {
        "subscribers": sum(r["subscribers"] for r in reports),
        "delivered_measured": sum(r["delivered_measured"] for r in reports),
        "reads": sum(int(r.get("reads", 0)) for r in reports),
        "largest_read": max((int(r.get("largest_read", 0)) for r in reports), default=0),
        "foreign": sum(r["foreign"] for r in reports),
        "counters": counters.as_dict(),
        "stats": stats,
        "end_to_end": e2e,
        "delivery": delivery,
        "cpu_percent": cpu,
        "loop_lag_p99_ms": lag_p99,
        "loop_lag_max_ms": [float(v) / 1000 for v in lag_max],
        "errors": [e for r in reports for e in r["errors"]],
        "reasons": saturation_reasons(cpu, lag_p99),
        **{key: _sum_counts(r.get(key) for r in reports) for key in ("tls", "hpack") if any(key in r for r in reports)},
    }


def _sum_counts(counts: Iterable[dict[str, int] | None]) -> dict[str, int]:
    """Counters of several processes added up, key by key (a process without them adds nothing)."""
    total: dict[str, int] = {}
    for one in counts:
        for key, value in (one or {}).items():
            total[key] = total.get(key, 0) + int(value)
    return total


async def _serve() -> None:
    """The agent: a configuration, then the commands of :func:`run_fleet`, then the report."""
    stream = commands()
    async for command in stream:
        if command["cmd"] == "config":
            report = await run_fleet(FleetConfig(**command["config"]), stream)
            say({"report": report})
            return


def main() -> None:
    """Entry point of ``python -m bench.agents.fleet``: started early, configured over stdin."""
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
