"""Tables of a run the notebook reads: per-event bytes, transits, batching, idle cost, loss totals, spectra.

Report layer, pure functions over :class:`bench.contract.schema.Run` (read with
:func:`bench.report.load.load_run`). Each table is a list of small frozen rows
holding numbers, not strings, so a reader (the notebook) can both draw them and
quote them in prose: whatever text cites a number takes it from here, from the
run it is reading.

The report's rules hold: every repetition counts, a cell is the median of the
VALID repetitions (clients saturated or publisher behind are left out: their
latency is the clients' or the publisher's), each row says how many
repetitions it has and how many are valid, and loss is carried along, never
averaged away. A row whose repetitions are all invalid has ``None`` numbers.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bench.contract.scenarios import Scenario
from bench.contract.schema import Result, Run

from .capture import load_capture
from .sweeps import find_sweeps

__all__ = [
    "BEYOND_ONE_TRANSIT",
    "INVALID_MARK",
    "LOSS_MARK",
    "BatchingRow",
    "BytesParts",
    "CostRow",
    "Group",
    "IdleRow",
    "LossTotals",
    "Series",
    "TailRow",
    "TransitRow",
    "beyond_one_transit",
    "by_series",
    "byte_parts",
    "bytes_per_event",
    "cost_rows",
    "events_per_response",
    "format_number",
    "idle_rows",
    "lab_results",
    "longpoll_batching",
    "loss_totals",
    "markdown_table",
    "median_of_valid",
    "spectrum_scenario",
    "spread",
    "transits",
]

Getter = Callable[[Result], float | None]

LOSS_MARK = "✗"
"""Marks a scenario with loss (missing, duplicate or out-of-order events above 0) in every table."""
INVALID_MARK = "⚠"
"""Marks an invalid repetition (clients saturated or publisher behind): its latency is not the server's."""


# --- text ---------------------------------------------------------------------------------------


def format_number(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits and thousands separators, no exponent; ``—`` for ``None``."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are ``str()``-ed, pipes escaped, newlines flattened."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def spread(values: Sequence[float | None], scale: float = 1.0, digits: int = 3) -> str:
    """Median of the values, with their range when there are several: ``1.2 [1.1-1.4]``; ``—`` for none."""
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "—"
    med = format_number(statistics.median(vals), digits)
    if len(vals) == 1 or min(vals) == max(vals):
        return med
    return f"{med} [{format_number(min(vals), digits)}-{format_number(max(vals), digits)}]"


class Group:
    """The repetitions of one scenario and transport as table cells: those to show, and those left out.

    A cell is the :func:`spread` of the valid repetitions; when none is valid, of the invalid ones, in
    italics. The report's summary tables and its peers section both draw their cells from here.
    """

    def __init__(self, results: Sequence[Result]) -> None:
        self.all = list(results)
        self.valid = [r for r in results if r.valid]
        self.shown = self.valid or self.all
        self.only_invalid = not self.valid
        self.scenario = results[0].scenario
        self.lossy = any(r.lossy for r in results)

    def cell(self, get: Getter, scale: float = 1.0, digits: int = 3) -> str:
        text = spread([get(r) for r in self.shown], scale, digits)
        return f"*{text}*" if self.only_invalid and text != "—" else text

    @property
    def marks(self) -> str:
        """`` ✗`` for loss, `` ⚠ INVALID`` when no repetition is valid (empty when neither)."""
        mark = f" {LOSS_MARK}" if self.lossy else ""
        return mark + (f" {INVALID_MARK} INVALID" if self.only_invalid else "")

    @property
    def name(self) -> str:
        """The scenario's name, its server when that is a peer (``[server flask_socketio]``), and its marks."""
        server = f" [server {self.scenario.server}]" if self.scenario.server != "lab" else ""
        return self.scenario.name + server + self.marks

    def total(self, key: str) -> int:
        """A correctness counter summed over every repetition, valid or not (a lost event is lost)."""
        return sum(int(getattr(r.counters, key)) for r in self.all)

    @property
    def loss_cell(self) -> str:
        text = "/".join(str(self.total(k)) for k in ("missing", "duplicate", "out_of_order"))
        return f"{LOSS_MARK} {text}" if self.lossy else text

    @property
    def flags_cell(self) -> str:
        notes = []
        for r in self.all:
            if r.flags:
                label = f"{INVALID_MARK} invalid: " if not r.valid else ""
                notes.append(f"r{r.repetition} {label}{', '.join(r.flags)}")
        return "; ".join(notes) or "—"


# --- one result ---------------------------------------------------------------------------------


def lab_results(results: Iterable[Result]) -> list[Result]:
    """The lab's own server in steady state: what the tables, charts, targets and Kaazing rows are about.

    A peer's results (``scenario.server`` not ``lab``) and the resume test's (connections dropped every
    ``drop_every_s``) belong to the peers section (:mod:`bench.report.peers`): a peer's WebSocket is not the
    lab's, and a latency measured across deliberate reconnects is not a steady-state one. Runs through a proxy
    (``scenario.proxy``) belong to the "Behind a proxy" section (:mod:`bench.report.deploy`).
    """
    return [
        r
        for r in results
        if r.scenario.server == "lab" and r.scenario.drop_every_s is None and r.scenario.proxy == "none"
    ]


def bytes_per_event(r: Result) -> float | None:
    """TCP payload bytes per delivered event, both directions (``bytes.per_event`` up + down)."""
    up, down = r.num("bytes", "per_event", "up"), r.num("bytes", "per_event", "down")
    return None if up is None or down is None else up + down


def events_per_response(r: Result) -> float | None:
    """Events delivered per non-empty HTTP response (long polling's batching); ``None`` without responses."""
    responses = r.raw["http"]["requests"] - r.raw["http"]["empty_responses"]
    return r.counters.delivered / responses if responses > 0 else None


def median_of_valid(results: Iterable[Result], get: Getter) -> float | None:
    """Median of ``get`` over the valid repetitions that have a value; ``None`` when none has."""
    values = [v for r in results if r.valid and (v := get(r)) is not None]
    return statistics.median(values) if values else None


# --- one scenario, one series -------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """The repetitions of one scenario for one series (the transport, with its interval for polling)."""

    name: str
    """The scenario's name."""
    series: str
    results: tuple[Result, ...]

    @property
    def scenario(self) -> Scenario:
        return self.results[0].scenario

    @property
    def valid(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if r.valid)

    @property
    def lossy(self) -> bool:
        return any(r.lossy for r in self.results)

    def median(self, get: Getter) -> float | None:
        """Median of ``get`` over the valid repetitions (:func:`median_of_valid`)."""
        return median_of_valid(self.results, get)


def by_series(results: Iterable[Result]) -> list[Series]:
    """Group results by scenario and series, in the order they come (a run's results are sorted)."""
    groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.scenario.name, r.scenario.series)].append(r)
    return [Series(name, series, tuple(rs)) for (name, series), rs in groups.items()]


def spectrum_scenario(run: Run) -> list[Series]:
    """The loopback scenario whose latency spectra compare the transports best, one :class:`Series` per transport.

    Among uncompressed, not idle, loopback scenarios that delivered events and have both long polling and
    WebSocket: those where both have valid repetitions first, then the one with the most transports (the
    loopback floor among them), then the heaviest load (events per second delivered to all subscribers).
    Empty when the run has no such scenario.
    """
    usable = [
        r
        for r in lab_results(run.results)
        if r.scenario.link.is_loopback and not r.scenario.idle and not r.scenario.compression and r.end_to_end.count
    ]
    by_name: dict[str, list[Series]] = defaultdict(list)
    for s in by_series(usable):
        by_name[s.name].append(s)

    def transports(group: Sequence[Series]) -> set[str]:
        return {s.scenario.transport or "" for s in group}

    def both_valid(group: Sequence[Series]) -> bool:
        return all(any(s.valid for s in group if s.scenario.transport == t) for t in ("longpoll", "websocket"))

    candidates = [g for g in by_name.values() if {"longpoll", "websocket"} <= transports(g)]
    if not candidates:
        return []

    def score(group: Sequence[Series]) -> tuple[bool, int, float, str]:
        sc = group[0].scenario
        return (both_valid(group), len(group), sc.rate_per_subscriber * sc.subscribers, sc.name)

    return max(candidates, key=score)


# --- latency under delay ------------------------------------------------------------------------


@dataclass(frozen=True)
class TransitRow:
    """Latency of one series at one emulated one-way delay, in transits (latency / one-way delay)."""

    series: str
    rate_per_subscriber: float
    burst: int
    burst_gap_ms: float
    one_way_ms: float
    reps: int
    valid_reps: int
    p50: float | None
    p99: float | None
    max: float | None

    @property
    def technique(self) -> str:
        """What is compared across delays: the series, its rate per subscriber, and its bursts if any."""
        label = f"{self.series}, {self.rate_per_subscriber:g} ev/s"
        if self.burst > 1:
            label += f", bursts of {self.burst} {self.burst_gap_ms:g} ms apart"
        return label


def _in_transits(kind: str, key: str, one_way_ms: float) -> Getter:
    """A getter of one latency statistic (``kind``, ``key``) in transits of ``one_way_ms``."""

    def get(r: Result) -> float | None:
        value = getattr(getattr(r, kind), key)
        return None if value is None else float(value) / 1000.0 / one_way_ms

    return get


def transits(run: Run, kind: str = "delivery") -> list[TransitRow]:
    """Every series measured under an emulated delay, its latency percentiles divided by the one-way delay.

    ``kind`` is ``delivery`` (receive time minus the bus's publish time: the transport alone) or
    ``end_to_end`` (from the publisher's intended send time, as the report's transit charts draw it).
    One row per series, rate per subscriber, burst shape and one-way delay; sorted in that order, then by delay.
    """
    if kind not in ("delivery", "end_to_end"):
        raise ValueError(f"kind must be 'delivery' or 'end_to_end', not {kind!r}")
    groups: dict[tuple[str, float, int, float, float], list[Result]] = defaultdict(list)
    for r in lab_results(run.results):
        sc = r.scenario
        if sc.idle or sc.link.one_way_ms <= 0 or r.counters.delivered == 0:
            continue
        groups[(sc.series, sc.rate_per_subscriber, sc.burst, sc.burst_gap_ms, sc.link.one_way_ms)].append(r)
    rows = []
    for (series, rate, burst, gap, one_way), results in groups.items():
        rows.append(
            TransitRow(
                series=series,
                rate_per_subscriber=rate,
                burst=burst,
                burst_gap_ms=gap,
                one_way_ms=one_way,
                reps=len(results),
                valid_reps=sum(r.valid for r in results),
                p50=median_of_valid(results, _in_transits(kind, "p50_us", one_way)),
                p99=median_of_valid(results, _in_transits(kind, "p99_us", one_way)),
                max=median_of_valid(results, _in_transits(kind, "max_us", one_way)),
            )
        )
    return sorted(
        rows, key=lambda row: (row.series, row.burst, row.burst_gap_ms, row.rate_per_subscriber, row.one_way_ms)
    )


# --- bytes and requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CostRow:
    """Bytes and requests per delivered event of one scenario and series (medians of valid repetitions)."""

    scenario: str
    series: str
    payload_bytes: int
    compression: bool
    """permessage-deflate allowed: the payload crossed the wire compressed (overhead can be negative)."""
    reps: int
    valid_reps: int
    lossy: bool
    up: float | None
    """Bytes per event, client to server."""
    down: float | None
    """Bytes per event, server to client."""
    requests_per_event: float | None
    handshake_up: float | None
    """Bytes of the connections' handshakes, client to server (paid once per connection, apart from ``up``)."""
    handshake_down: float | None
    connections: float | None
    """Connections the handshakes opened (``bytes.handshake.connections``)."""

    @property
    def handshake_per_connection(self) -> float | None:
        """Handshake bytes, both directions, per connection opened."""
        if self.handshake_up is None or self.handshake_down is None or not self.connections:
            return None
        return (self.handshake_up + self.handshake_down) / self.connections

    @property
    def total(self) -> float | None:
        return None if self.up is None or self.down is None else self.up + self.down

    @property
    def overhead(self) -> float | None:
        """Wire bytes per event beyond the payload: envelope, HTTP or frame headers, requests."""
        return None if self.total is None else self.total - self.payload_bytes


def cost_rows(run: Run, axis: str = "payload_bytes") -> list[CostRow]:
    """Bytes per event of the first sweep varying ``axis`` (as the report finds sweeps); without one, of every
    loopback scenario that delivered events. Sorted by payload size, then scenario and series."""
    sweeps = [s for s in find_sweeps(run.results) if s.axis == axis]
    if sweeps:
        results: Iterable[Result] = sweeps[0].results
    else:
        results = [r for r in lab_results(run.results) if r.scenario.link.is_loopback and not r.scenario.idle]
    rows = []
    for s in by_series(results):
        if not any(r.counters.delivered for r in s.results):
            continue
        rows.append(
            CostRow(
                scenario=s.name,
                series=s.series,
                payload_bytes=s.scenario.payload_bytes,
                compression=s.scenario.compression,
                reps=len(s.results),
                valid_reps=len(s.valid),
                lossy=s.lossy,
                up=s.median(lambda r: r.num("bytes", "per_event", "up")),
                down=s.median(lambda r: r.num("bytes", "per_event", "down")),
                requests_per_event=s.median(lambda r: r.num("http", "requests_per_event")),
                handshake_up=s.median(lambda r: r.num("bytes", "handshake", "up")),
                handshake_down=s.median(lambda r: r.num("bytes", "handshake", "down")),
                connections=s.median(lambda r: r.num("bytes", "handshake", "connections")),
            )
        )
    return sorted(rows, key=lambda row: (row.payload_bytes, row.scenario, row.series))


def _ws_frame_header(frame_bytes: float) -> int:
    """RFC 6455 §5.2 header of an unmasked server frame of ``frame_bytes`` on the wire (header included)."""
    if frame_bytes - 2 <= 125:
        return 2
    return 4 if frame_bytes - 4 <= 0xFFFF else 10


@dataclass(frozen=True)
class BytesParts:
    """One scenario and series' measured bytes per delivered event, split by what they carry.

    From the raw files: ``bytes.per_event`` (median of the valid repetitions), the scenario's payload size,
    WebSocket's frame header from its frame size (RFC 6455), and the long-poll answer's head from the run's
    ``capture.json``. The event's JSON (envelope and payload) is serialized to the same bytes for every transport,
    so its size is WebSocket's frame minus the frame header, in the same scenario.
    """

    scenario: str
    series: str
    browser: bool
    """The subscribers sent a browser's request headers (``request_headers = "browser"``)."""
    payload: float
    envelope: float
    """The lab's JSON around the payload: ``{"channel": ..., "seq": ..., "ts": ..., "data": ...}``."""
    response_head: float
    """HTTP response head per event (long poll and polling: the answer's head times requests per event)."""
    framing: float
    """The rest of the bytes down: WebSocket's frame header, SSE's ``id:``/``data:`` lines and chunk sizes, the
    long-poll answer's JSON wrapper (``{"channel": ..., "events": [...]}``) per event."""
    up: float
    """Bytes up per event: the HTTP request (head) for polling and long polling; WebSocket and SSE send none
    per event (a client frame would carry a 4-byte mask)."""
    requests_per_event: float | None
    handshake: float | None = None
    """Bytes of a connection's handshake, up + down, paid once per connection (WebSocket's Upgrade, SSE's
    request and response head): where a browser's headers weigh on a push transport."""

    @property
    def label(self) -> str:
        return self.series + (", browser headers" if self.browser else "")

    @property
    def total(self) -> float:
        return self.payload + self.envelope + self.response_head + self.framing + self.up


def byte_parts(run: Run) -> list[BytesParts]:
    """Bytes per event decomposed, for the payload sweep's smallest payload and the scenarios with a browser's
    request headers at the same payload (loopback, uncompressed, valid repetitions); sorted by series, bare first.

    Empty when the run has no WebSocket result at that payload to size the event's JSON from.
    """
    sweeps = [s for s in find_sweeps(run.results) if s.axis == "payload_bytes"]
    lab = [
        r
        for r in lab_results(run.results)
        if r.scenario.link.is_loopback and not r.scenario.compression and not r.scenario.idle and r.valid
    ]
    if sweeps:
        smallest = min(r.scenario.payload_bytes for r in sweeps[0].results)
        names = {r.scenario.name for r in sweeps[0].results if r.scenario.payload_bytes == smallest}
    else:
        return []
    chosen = [
        r
        for r in lab
        if r.scenario.payload_bytes == smallest
        and (r.scenario.name in names or r.scenario.request_headers == "browser")
    ]
    capture = load_capture(run.path)
    head = float(capture.longpoll_response.head_size) if capture is not None else 0.0
    groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in chosen:
        if r.scenario.transport in ("websocket", "longpoll", "polling", "sse"):
            groups[(r.scenario.name, r.scenario.series)].append(r)

    def median(results: Sequence[Result], *key: str) -> float | None:
        values = [v for r in results if (v := r.num(*key)) is not None]
        return statistics.median(values) if values else None

    ws_down = [
        d
        for (_, series), rs in groups.items()
        if series == "websocket" and (d := median(rs, "bytes", "per_event", "down"))
    ]
    if not ws_down:
        return []
    frame = statistics.median(ws_down)
    event_json = frame - _ws_frame_header(frame)
    rows = []
    for (name, series), results in groups.items():
        down = median(results, "bytes", "per_event", "down")
        up = median(results, "bytes", "per_event", "up")
        if down is None or up is None:
            continue
        rpe = median(results, "http", "requests_per_event")
        response_head = head * rpe if rpe is not None else 0.0
        per_connection = [
            (float(r.num("bytes", "handshake", "up") or 0) + float(r.num("bytes", "handshake", "down") or 0)) / conns
            for r in results
            if (conns := r.num("bytes", "handshake", "connections"))
        ]
        rows.append(
            BytesParts(
                scenario=name,
                series=series,
                browser=results[0].scenario.request_headers == "browser",
                payload=float(smallest),
                envelope=event_json - smallest,
                response_head=response_head,
                framing=down - event_json - response_head,
                up=up,
                requests_per_event=rpe,
                handshake=statistics.median(per_connection) if per_connection else None,
            )
        )
    order = ["polling", "longpoll", "sse", "websocket"]
    return sorted(
        rows, key=lambda p: (p.browser, next((i for i, o in enumerate(order) if p.series.startswith(o)), 9), p.series)
    )


@dataclass(frozen=True)
class BatchingRow:
    """How many events each long-poll response carried in one scenario (medians of valid repetitions)."""

    scenario: str
    subscribers: int
    rate_per_subscriber: float
    one_way_ms: float
    reps: int
    valid_reps: int
    requests_per_event: float | None
    events_per_response: float | None


def longpoll_batching(run: Run) -> list[BatchingRow]:
    """Every long-poll scenario that delivered events, sorted by one-way delay, then rate per subscriber.

    Below one request per event, responses carry several events: events published while a poll
    was on its way back rode the next response.
    """
    rows = []
    for s in by_series(
        r for r in lab_results(run.results) if r.scenario.transport == "longpoll" and not r.scenario.idle
    ):
        if not any(r.counters.delivered for r in s.results):
            continue
        sc = s.scenario
        rows.append(
            BatchingRow(
                scenario=s.name,
                subscribers=sc.subscribers,
                rate_per_subscriber=sc.rate_per_subscriber,
                one_way_ms=sc.link.one_way_ms,
                reps=len(s.results),
                valid_reps=len(s.valid),
                requests_per_event=s.median(lambda r: r.num("http", "requests_per_event")),
                events_per_response=s.median(events_per_response),
            )
        )
    return sorted(rows, key=lambda row: (row.one_way_ms, row.rate_per_subscriber, row.subscribers, row.scenario))


# --- idle connections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdleRow:
    """What idle connections cost in one idle scenario and series (medians of valid repetitions)."""

    scenario: str
    series: str
    connections: int
    reps: int
    valid_reps: int
    rss_per_connection_bytes: float | None
    bytes_per_connection_per_min: float | None
    """Up + down: long-poll re-polls at each hold timeout, WebSocket pings."""


def idle_rows(run: Run) -> list[IdleRow]:
    """Every idle scenario (no publishing: what open connections cost), sorted by series, then connections."""
    rows = []
    for s in by_series(r for r in lab_results(run.results) if r.raw["idle"] is not None):

        def per_min(r: Result) -> float:
            b = r.raw["idle"]["bytes_per_connection_per_min"]
            return float(b["up"] + b["down"])

        rows.append(
            IdleRow(
                scenario=s.name,
                series=s.series,
                connections=s.scenario.subscribers,
                reps=len(s.results),
                valid_reps=len(s.valid),
                rss_per_connection_bytes=s.median(lambda r: float(r.raw["idle"]["rss_per_connection_bytes"])),
                bytes_per_connection_per_min=s.median(per_min),
            )
        )
    return sorted(rows, key=lambda row: (row.series, row.connections, row.scenario))


# --- correctness -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossTotals:
    """Correctness over the whole run: every repetition counts, valid or not."""

    results: int
    """Repetitions that ran."""
    expected: int
    delivered: int
    missing: int
    duplicate: int
    out_of_order: int
    lossy: tuple[str, ...]
    """Files of the repetitions with loss."""
    invalid: tuple[str, ...]
    """Files of the repetitions whose clients were saturated or whose publisher fell behind."""
    failed: tuple[str, ...]
    """Files of the repetitions that could not be carried out."""
    not_run: tuple[str, ...]
    """Files planned but never written (an interrupted profile)."""


def loss_totals(run: Run) -> LossTotals:
    """Sum the correctness counters of every repetition of the run."""

    def total(key: str) -> int:
        return sum(int(getattr(r.counters, key)) for r in run.results)

    return LossTotals(
        results=len(run.results),
        expected=total("expected"),
        delivered=total("delivered"),
        missing=total("missing"),
        duplicate=total("duplicate"),
        out_of_order=total("out_of_order"),
        lossy=tuple(r.file for r in run.results if r.lossy),
        invalid=tuple(r.file for r in run.results if not r.valid),
        failed=tuple(f.file for f in run.failed),
        not_run=run.missing,
    )


# --- long polling's tail under random arrivals ---------------------------------------------------


BEYOND_ONE_TRANSIT = 1.1
"""An event counts as "beyond one transit" when its delivery latency exceeds 1.1 one-way delays: the margin
keeps loopback and scheduling noise out; events that waited less than a tenth of a transit for a poll are
missed, which undercounts the model's share by at most a twentieth of it (their wait is spread over the
round trip, two transits)."""


@dataclass(frozen=True)
class TailRow:
    """Long polling under Poisson arrivals at one delay: the share of events beyond one transit, and the model's."""

    scenario: str
    one_way_ms: float
    rate_per_subscriber: float
    samples: int
    """Delivery latencies counted (valid repetitions)."""
    measured: float
    """Share of them above :data:`BEYOND_ONE_TRANSIT` one-way delays."""
    model: float
    """``1 - exp(-λ·RTT)``: the chance an event arrives while no poll is held at the server (λ the rate per
    subscriber, RTT two one-way delays): after each answer, the next poll takes a round trip to arrive."""


def beyond_one_transit(run: Run) -> list[TailRow]:
    """Long polling's share of events beyond one transit, per delay, for scenarios with Poisson arrivals."""
    rows = []
    by_scenario: dict[str, list[Result]] = defaultdict(list)
    for r in lab_results(run.results):
        sc = r.scenario
        if sc.transport == "longpoll" and sc.arrivals == "poisson" and sc.link.one_way_ms > 0 and r.valid:
            by_scenario[sc.name].append(r)
    for name, results in sorted(by_scenario.items(), key=lambda kv: kv[1][0].scenario.link.one_way_ms):
        sc = results[0].scenario
        threshold_us = BEYOND_ONE_TRANSIT * sc.link.one_way_ms * 1000
        total = beyond = 0
        for r in results:
            hist = r.delivery.histogram()
            total += hist.get_total_count()
            beyond += sum(
                item.count_added_in_this_iter_step
                for item in hist.get_recorded_iterator()
                if item.value_iterated_to > threshold_us
            )
        if total == 0:
            continue
        rtt_s = 2 * sc.link.one_way_ms / 1000
        rows.append(
            TailRow(
                scenario=name,
                one_way_ms=sc.link.one_way_ms,
                rate_per_subscriber=sc.rate_per_subscriber,
                samples=total,
                measured=beyond / total,
                model=1 - math.exp(-sc.rate_per_subscriber * rtt_s),
            )
        )
    return rows
