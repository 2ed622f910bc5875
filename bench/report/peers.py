"""The peers section: the lab beside Flask-SocketIO, Nchan and ``websockets``, measured in the same run.

Report layer, pure functions over :class:`bench.contract.schema.Run` (docs/peers.md says what the peers are
and how the bench runs them). The results it reads are those of every sweep that holds at least one peer
(``scenario.server`` not ``lab``), the lab's own points of those sweeps included: they ran in the same run,
on the same machine, with the same publisher and fleet, so the ratios lab/peer compare like with like.

Those results fall in four tables, by what their scenario says, never by its name:

- the **points** (events published, connections kept): one row per server variant and transport, grouped
  by sweep (``peers-ws-100x100``...);
- the **idle** runs (``scenario.idle``): memory and bytes per open connection;
- the **bytes** at 1 ev/s per subscriber: each protocol's own envelope per event;
- the **resume** runs (``scenario.drop_every_s``): every subscriber's connection aborted that often, and
  what each protocol delivered, lost, duplicated or reordered across the reconnects.

The numbers obey the rest of the report's rules (:mod:`bench.report.tables`): a cell is the median of the
valid repetitions with their range, an invalid repetition is left out and labelled, loss is marked and
counted over every repetition. Flask-SocketIO and Nchan do not stamp their events, so latency here is
end-to-end only, for every server (from the publisher's intended send time); requests are the clients' own count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.contract.names import SERVERS, TRANSPORTS
from bench.contract.scenarios import Scenario
from bench.contract.schema import MIN_CPU_S, Result, Run, min_samples

from .tables import Getter, Group, format_number, markdown_table, median_of_valid

__all__ = [
    "SECTION_TITLE",
    "PeerRow",
    "Point",
    "RatioRow",
    "peer_bytes_rows",
    "peer_idle_rows",
    "peer_points",
    "peer_ratios",
    "peer_results",
    "peer_resume_rows",
    "peers_section",
    "resume_sentence",
    "variant_label",
]

SECTION_TITLE = "Peers: the lab beside Flask-SocketIO, Nchan and websockets"


def variant_label(sc: Scenario) -> str:
    """What a reader calls the server a scenario ran: ``lab (gevent)``, ``Nchan, 1 worker per core``...

    A Flask-SocketIO label names what differs from its plain variant (gevent, ``TCP_NODELAY`` on its
    listener, a WebSocket opened directly): its threading mode, the listener ``socketio.run()`` makes, the
    official client's default handshake.
    """
    if sc.server == "lab":
        return f"lab ({sc.runtime}, fast path)" if sc.fast_path else f"lab ({sc.runtime})"
    if sc.server == "flask_socketio":
        parts = ["Flask-SocketIO"]
        if sc.runtime == "werkzeug":
            parts.append("threading")
        elif sc.runtime != "gevent":
            parts.append(sc.runtime)
        elif not sc.tcp_nodelay:
            parts.append("gevent, no TCP_NODELAY (socketio.run)")
        elif not sc.upgrade:
            parts.append("gevent, TCP_NODELAY")
        if sc.upgrade:
            parts.append("default handshake (polling then upgrade)")
        return ", ".join(parts)
    if sc.server == "nchan":
        if sc.workers == 0:
            return "Nchan, 1 worker per core"
        return f"Nchan, {sc.workers} worker{'s' if sc.workers > 1 else ''}"
    if sc.server == "websockets":
        return "websockets (asyncio)"
    return sc.server


# --- which results -----------------------------------------------------------------------------------


def _key(r: Result) -> str:
    """The comparison a result belongs to: its sweep, or its scenario when it belongs to none."""
    return r.scenario.sweep or r.scenario.name


def peer_results(run: Run) -> list[Result]:
    """Every result of a sweep that holds a peer, the lab's points of that sweep included; empty without peers."""
    with_peer = {_key(r) for r in run.results if r.scenario.server != "lab"}
    return [r for r in run.results if _key(r) in with_peer]


def _continuous(r: Result) -> bool:
    """Events published to connections left alone (not idle, not dropped)."""
    return not r.scenario.idle and r.scenario.drop_every_s is None


# --- rows --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerRow:
    """The repetitions of one server variant on one transport at one point, and their numbers."""

    point: str
    """The sweep (or scenario) the row belongs to."""
    variant: str
    """:func:`variant_label` of its scenario."""
    series: str
    """The transport (with its interval for interval polling)."""
    results: tuple[Result, ...]

    @property
    def scenario(self) -> Scenario:
        return self.results[0].scenario

    @property
    def server(self) -> str:
        return self.scenario.server

    @property
    def group(self) -> Group:
        """The repetitions as table cells (spread, marks, flags)."""
        return Group(self.results)

    @property
    def valid_reps(self) -> int:
        return sum(r.valid for r in self.results)

    @property
    def lossy(self) -> bool:
        return any(r.lossy for r in self.results)

    def median(self, get: Getter) -> float | None:
        """Median of ``get`` over the valid repetitions (``None`` when none is valid or has a value)."""
        return median_of_valid(self.results, get)

    def total(self, key: str) -> int:
        """A counter (``missing``, ``reconnects``...) summed over every repetition, valid or not."""
        return sum(int(getattr(r.counters, key)) for r in self.results)

    @property
    def cpu_us_per_event(self) -> float | None:
        """Median server CPU per delivered event (µs), ``None`` below the CPU floor (:data:`MIN_CPU_S`)."""
        return self.median(lambda r: r.cpu_us_per_event)

    @property
    def p99_us(self) -> float | None:
        """Median end-to-end p99 (µs), ``None`` when the sample count cannot support a p99."""
        return self.median(lambda r: r.end_to_end.p99_us)


def _order(r: Result) -> tuple[int, str, int]:
    """Servers in :data:`SERVERS` order, a server's plain variant first (its name is its variants' prefix)."""
    sc = r.scenario
    transport = sc.transport or ""
    return (SERVERS.index(sc.server), sc.name, TRANSPORTS.index(transport) if transport in TRANSPORTS else 99)


def _rows(results: Iterable[Result]) -> list[PeerRow]:
    """One row per point, scenario and series, servers in order."""
    groups: dict[tuple[str, str, str], list[Result]] = defaultdict(list)
    for r in sorted(results, key=_order):
        groups[(_key(r), r.scenario.name, r.scenario.series)].append(r)
    return [
        PeerRow(point=point, variant=variant_label(rs[0].scenario), series=series, results=tuple(rs))
        for (point, _, series), rs in groups.items()
    ]


@dataclass(frozen=True)
class Point:
    """One point of the comparison (a sweep over servers): its load, and a row per server variant and transport."""

    name: str
    subscribers: int
    rate: float
    rows: tuple[PeerRow, ...]
    """By transport (:data:`TRANSPORTS` order), then server."""

    @property
    def title(self) -> str:
        return f"{self.subscribers:,} subscribers x {self.rate:g} ev/s"


def _series_order(series: str) -> int:
    transport = series.split(" ")[0]
    return TRANSPORTS.index(transport) if transport in TRANSPORTS else 99


def peer_points(run: Run) -> list[Point]:
    """The points with events published to connections left alone, in the order the run planned them."""
    continuous = [r for r in peer_results(run) if _continuous(r)]
    order = {name: i for i, name in enumerate(run.meta.files)}
    by_point: dict[str, list[PeerRow]] = defaultdict(list)
    for row in _rows(continuous):
        by_point[row.point].append(row)
    first = {
        name: min(order.get(r.file, len(order)) for row in rows for r in row.results) for name, rows in by_point.items()
    }
    out = []
    for name in sorted(by_point, key=lambda n: (first[n], n)):
        rows = sorted(by_point[name], key=lambda row: _series_order(row.series))  # stable: servers stay in order
        sc = rows[0].scenario
        out.append(Point(name, sc.subscribers, sc.rate, tuple(rows)))
    return out


def peer_idle_rows(run: Run) -> list[PeerRow]:
    """The idle runs of the peer sweeps (no event published: what an open connection costs)."""
    return _rows(r for r in peer_results(run) if r.raw["idle"] is not None)


def peer_bytes_rows(run: Run) -> list[PeerRow]:
    """The continuous runs at 1 ev/s per subscriber, where bytes per event are the protocols' envelopes."""
    return [
        row
        for point in peer_points(run)
        for row in point.rows
        if row.scenario.rate_per_subscriber == 1 and any(r.counters.delivered for r in row.results)
    ]


def peer_resume_rows(run: Run) -> list[PeerRow]:
    """The resume test of the peer sweeps: runs whose every connection is aborted every ``drop_every_s``."""
    return _rows(r for r in peer_results(run) if r.scenario.drop_every_s is not None and not r.scenario.idle)


# --- ratios ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatioRow:
    """The lab beside one peer at one point and transport, both from the same run (medians of valid repetitions)."""

    point: str
    series: str
    lab: str
    """The lab's variant label."""
    peer: str
    """The peer's variant label."""
    lab_cpu_us: float | None
    peer_cpu_us: float | None
    lab_p99_us: float | None
    peer_p99_us: float | None

    @staticmethod
    def _ratio(lab: float | None, peer: float | None) -> float | None:
        return None if lab is None or peer is None or peer <= 0 else lab / peer

    @property
    def cpu(self) -> float | None:
        """Lab CPU per event / peer CPU per event: below 1 the lab spends less per event."""
        return self._ratio(self.lab_cpu_us, self.peer_cpu_us)

    @property
    def p99(self) -> float | None:
        """Lab p99 / peer p99: below 1 the lab's tail is shorter."""
        return self._ratio(self.lab_p99_us, self.peer_p99_us)


def peer_ratios(run: Run) -> list[RatioRow]:
    """For every point and transport with a lab row: one row per peer variant on that transport."""
    out = []
    for point in peer_points(run):
        for lab in (row for row in point.rows if row.server == "lab"):
            for peer in (row for row in point.rows if row.server != "lab" and row.series == lab.series):
                out.append(
                    RatioRow(
                        point=point.name,
                        series=lab.series,
                        lab=lab.variant,
                        peer=peer.variant,
                        lab_cpu_us=lab.cpu_us_per_event,
                        peer_cpu_us=peer.cpu_us_per_event,
                        lab_p99_us=lab.p99_us,
                        peer_p99_us=peer.p99_us,
                    )
                )
    return out


# --- the resume sentence -----------------------------------------------------------------------------


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def resume_sentence(rows: Sequence[PeerRow]) -> str:
    """What the resume test showed, said from its counters: who resumed with nothing lost, who lost how much.

    Counted over every repetition. A row with no reconnect was never dropped (the test did not happen for
    it) and is said so, not counted as a resume.
    """
    resumed: dict[str, list[str]] = defaultdict(list)
    lost: list[str] = []
    disordered: list[str] = []
    not_dropped: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        missing, duplicate, ooo = row.total("missing"), row.total("duplicate"), row.total("out_of_order")
        if row.total("reconnects") == 0:
            not_dropped[row.variant].append(row.series)
            continue
        if missing == duplicate == ooo == 0:
            resumed[row.variant].append(row.series)
            continue
        reps = len(row.results)
        over = f"over {row.series} ({reps} repetition{'s' if reps > 1 else ''})"
        if missing:
            lost.append(f"{row.variant} lost {missing:,} of {row.total('expected'):,} events {over}")
        if duplicate or ooo:
            disordered.append(f"{row.variant} delivered {duplicate:,} duplicate(s) and {ooo:,} out of order {over}")
    sentences = []
    if resumed:
        sentences.append(
            "Resumed across every drop with nothing missing, duplicated or out of order: "
            + "; ".join(f"{variant} over {_join(series)}" for variant, series in resumed.items())
            + "."
        )
    if lost:
        sentences.append("Lost what was published while their clients were away: " + "; ".join(lost) + ".")
    if disordered:
        sentences.append("Delivered events twice or out of order: " + "; ".join(disordered) + ".")
    if not_dropped:
        sentences.append(
            "Never dropped (no reconnect counted, so the test did not happen): "
            + "; ".join(f"{variant} over {_join(series)}" for variant, series in not_dropped.items())
            + "."
        )
    return " ".join(sentences)


# --- markdown ----------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [*markdown_table(header, rows).split("\n"), ""]


def _point_table(point: Point) -> list[str]:
    rows = []
    for row in point.rows:
        g = row.group
        rows.append(
            (
                row.variant + g.marks,
                row.series,
                str(len(row.results)),
                f"{g.total('delivered'):,}/{g.total('expected'):,}",
                g.loss_cell,
                g.cell(lambda r: float(r.end_to_end.count)),
                g.cell(lambda r: r.end_to_end.p50_us, 1e-3),
                g.cell(lambda r: r.end_to_end.p99_us, 1e-3),
                g.cell(lambda r: r.cpu_us_per_event),
                g.cell(lambda r: r.num("bytes", "per_event", "down")),
                g.cell(lambda r: r.num("http", "requests_per_event")),
                g.flags_cell,
            )
        )
    header = (
        "server",
        "transport",
        "reps",
        "delivered/expected",
        "missing/dup/ooo",
        "n",
        "p50 ms",
        "p99 ms",
        "server µs/event",
        "bytes/event down",
        "req/event",
        "flags",
    )
    return [f"**{point.title}** (sweep `{point.name}`)", "", *_table(header, rows)]


def _ratio_table(rows: Sequence[RatioRow], titles: dict[str, str]) -> list[str]:
    def pair(lab: float | None, peer: float | None, scale: float = 1.0) -> str:
        scaled = [None if v is None else v * scale for v in (lab, peer)]
        return " / ".join(format_number(v) for v in scaled)

    body = [
        (
            titles.get(row.point, row.point),
            row.series,
            row.lab,
            row.peer,
            format_number(row.cpu, 2),
            pair(row.lab_cpu_us, row.peer_cpu_us),
            format_number(row.p99, 2),
            pair(row.lab_p99_us, row.peer_p99_us, 1e-3),
        )
        for row in rows
    ]
    header = (
        "point",
        "transport",
        "lab",
        "peer",
        "CPU/event lab/peer",
        "µs/event (lab / peer)",
        "p99 lab/peer",
        "p99 ms (lab / peer)",
    )
    return _table(header, body)


def _idle_table(rows: Sequence[PeerRow]) -> list[str]:
    def per_min(r: Result) -> float:
        b = r.raw["idle"]["bytes_per_connection_per_min"]
        return float(b["up"] + b["down"])

    body = [
        (
            row.variant + row.group.marks,
            row.series,
            f"{row.scenario.subscribers:,}",
            str(len(row.results)),
            row.group.cell(lambda r: float(r.raw["idle"]["rss_per_connection_bytes"]), 2**-10),
            row.group.cell(per_min),
            row.group.flags_cell,
        )
        for row in rows
    ]
    header = ("server", "transport", "connections", "reps", "RSS/connection KiB", "idle bytes/connection/min", "flags")
    return _table(header, body)


def _bytes_table(rows: Sequence[PeerRow]) -> list[str]:
    body = [
        (
            row.variant + row.group.marks,
            row.series,
            str(row.scenario.payload_bytes),
            row.group.cell(lambda r: r.num("bytes", "per_event", "up")),
            row.group.cell(lambda r: r.num("bytes", "per_event", "down")),
            row.group.cell(lambda r: r.num("http", "requests_per_event")),
            row.group.flags_cell,
        )
        for row in rows
    ]
    header = ("server", "transport", "payload B", "bytes/event up", "bytes/event down", "req/event", "flags")
    return _table(header, body)


def _resume_table(rows: Sequence[PeerRow]) -> list[str]:
    body = [
        (
            row.variant + row.group.marks,
            row.series,
            f"{row.scenario.subscribers:,} x {row.scenario.rate:g} ev/s, every {row.scenario.drop_every_s:g} s",
            str(len(row.results)),
            f"{row.total('delivered'):,}/{row.total('expected'):,}",
            f"{row.total('missing'):,}",
            f"{row.total('duplicate'):,}",
            f"{row.total('out_of_order'):,}",
            f"{row.total('reconnects'):,}",
            row.group.flags_cell,
        )
        for row in rows
    ]
    header = (
        "server",
        "transport",
        "subscribers x rate, dropped",
        "reps",
        "delivered/expected",
        "missing",
        "duplicate",
        "out of order",
        "reconnects",
        "flags",
    )
    return _table(header, body)


def peers_section(run: Run) -> list[str]:
    """The peers section of REPORT.md (empty when the run has no peer result)."""
    if not peer_results(run):
        return []
    found = peer_points(run)
    titles = {p.name: p.title for p in found}
    lines = [
        f"## {SECTION_TITLE}",
        "",
        "The same publisher, fleet and accounting against each server in turn, all in this run (docs/peers.md). "
        "Flask-SocketIO and Nchan do not stamp their events, so latency here is end-to-end for every server "
        "(receive time minus the publisher's intended send time). Requests are counted by the clients; bytes "
        "are TCP payload with each protocol's own envelope (Engine.IO packets, Nchan's HTTP answers, the lab's "
        "event objects). "
        f"A cell is the median of the valid repetitions [range]; a percentile the samples cannot support is "
        f"withheld (—: p99 needs {min_samples(99):,} samples per repetition, `n`), and so is server CPU per event "
        f"below {MIN_CPU_S * 1000:g} ms of CPU in the window.",
        "",
    ]
    if found:
        lines += ["### At each point", ""]
        for point in found:
            lines += _point_table(point)
    ratio_rows = peer_ratios(run)
    if ratio_rows:
        lines += [
            "### Lab / peer, same run",
            "",
            "Each ratio divides the lab's median over its valid repetitions by the peer's, at the same point and "
            "on the same transport, both measured in this same run: below 1 the lab spends less CPU per event, or "
            "has the shorter p99. — where either side has no valid value.",
            "",
            *_ratio_table(ratio_rows, titles),
        ]
    idle = peer_idle_rows(run)
    if idle:
        lines += [
            "### Idle connections",
            "",
            "No event published: the server's resident memory per open connection, and the bytes each idle "
            "connection costs per minute, up + down (re-polls, heartbeats, pings).",
            "",
            *_idle_table(idle),
        ]
    at_one = peer_bytes_rows(run)
    if at_one:
        lines += [
            "### Bytes per event at 1 ev/s",
            "",
            "Bytes on the wire per delivered event at one event per second per subscriber, each protocol's own "
            "envelope included (handshakes apart); requests per event as the clients counted them.",
            "",
            *_bytes_table(at_one),
        ]
    resume = peer_resume_rows(run)
    if resume:
        lines += [
            "### Resume: connections dropped",
            "",
            "Every subscriber's connection aborted once per interval, at a random moment of it, as a network failure "
            "would; each client reconnects and resumes as its protocol lets it. Counted over every repetition.",
            "",
            resume_sentence(resume),
            "",
            *_resume_table(resume),
        ]
    return lines
