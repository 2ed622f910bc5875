"""The "Behind a proxy" section: the transports direct, through nginx over HTTP/1.1 and over HTTP/2, from a run.

Report layer, pure functions over a run's results (and one chart written with matplotlib). The results it reads
are those of every sweep that holds at least one run through a proxy (``scenario.proxy`` not ``none``), the
direct points of those sweeps included: they ran in the same run, on the same machine, with the same publisher,
so direct against nginx compares like with like. What each field means is docs/results.md's ("Behind a proxy").

The section holds:

- one table per point (a sweep: ``deploy-100x10``...), a row per transport and way in (direct, nginx over TLS
  with HTTP/1.1, nginx over TLS with HTTP/2, and HTTP/2 with several streams per connection): loss, latency
  p50 and p99 end to end, bytes per event in the clear (HTTP/1.1 bytes, or HTTP/2 frame bytes) and on the wire
  (TLS), server CPU and nginx CPU per event apart, events per read;
- a chart of bytes per event per transport, direct / HTTP/1.1 / HTTP/2, the TLS bytes behind the clear ones;
- HPACK: the header block of the first request (and answer) on each HTTP/2 connection against later ones;
- the SSE buffering trap as measured: buffering on against off (events per read, the largest lump, latency,
  what never arrived);
- the Kaazing white paper's table for HTTP/2 beside HTTP/1.1 (:func:`bench.report.kaazing.mbps`), and a closing
  sentence with the bytes per event of long polling and SSE over HTTP/2 against HTTP/1.1 and WebSocket.

A cell is the median of the valid repetitions with their range (invalid ones in italics when no repetition is
valid), as in the rest of the report (:class:`bench.report.tables.Group`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.contract.schema import Result

from .kaazing import PAPER_CLIENTS, mbps
from .tables import Group, format_number, markdown_table, median_of_valid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SECTION_TITLE",
    "DeployRow",
    "HpackRow",
    "by_point",
    "bytes_figure",
    "clear_bytes",
    "closing_sentence",
    "deploy_chart",
    "deploy_results",
    "deploy_rows",
    "deploy_section",
    "events_per_read",
    "hpack_rows",
    "hpack_table",
    "kaazing_picks",
    "kaazing_table",
    "largest_read",
    "mode_label",
    "nginx_cpu_us",
    "point_table",
    "point_title",
    "tls_bytes",
    "trap_rows",
    "trap_table",
    "wire_by_http",
    "wire_bytes",
]

SECTION_TITLE = "Behind a proxy: direct, nginx over HTTP/1.1, nginx over HTTP/2"

MODES = ("direct", "nginx HTTP/1.1", "nginx HTTP/1.1 + TLS", "nginx HTTP/2 + TLS")
"""The ways in, in the order tables and charts show them (HTTP/2 with several streams after these)."""

TRANSPORT_ORDER = ("longpoll", "polling", "sse", "websocket")


def mode_label(r: Result) -> str:
    """How a result's subscribers reached the server: ``direct``, ``nginx HTTP/2 + TLS, 10 streams/conn``..."""
    sc = r.scenario
    if sc.proxy == "none":
        return "direct"
    tls = sc.tls or sc.http == "2"
    if sc.http == "2" and sc.transport == "websocket":
        label = "nginx HTTP/2 + TLS (WebSocket: HTTP/1.1 Upgrade)"
    else:
        label = f"nginx HTTP/{sc.http}" + (" + TLS" if tls else "")
    if sc.streams_per_connection > 1:
        label += f", {sc.streams_per_connection} streams/conn"
    if sc.proxy_buffering:
        label += ", SSE buffered + gzipped"
    return label


def _mode_order(label: str) -> tuple[int, str]:
    for i, mode in enumerate(MODES):
        if label.startswith(mode) and (label == mode or not label[len(mode) :].startswith(" +")):
            return i, label
    return len(MODES), label


def deploy_results(results: Sequence[Result]) -> list[Result]:
    """Every result of a sweep that holds a proxy run (the direct points of those sweeps included)."""
    sweeps = {r.scenario.sweep or r.scenario.name for r in results if r.scenario.proxy != "none"}
    return [r for r in results if (r.scenario.sweep or r.scenario.name) in sweeps and r.scenario.server == "lab"]


def _proxy(r: Result, *path: str) -> float | None:
    """A number of the result's ``proxy`` block by key path, ``None`` without one (or a null on the way)."""
    value: Any = r.raw.get("proxy")
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def clear_bytes(r: Result) -> float | None:
    """Bytes per delivered event in the clear, both directions (HTTP/1.1 bytes, or HTTP/2 frame bytes)."""
    up, down = r.num("bytes", "per_event", "up"), r.num("bytes", "per_event", "down")
    return None if up is None or down is None else up + down


def tls_bytes(r: Result) -> float | None:
    """TLS bytes on the wire per delivered event, both directions (``None`` without TLS)."""
    up, down = _proxy(r, "tls", "per_event", "up"), _proxy(r, "tls", "per_event", "down")
    return None if up is None or down is None else up + down


def wire_bytes(r: Result) -> float | None:
    """What the network carries per event: the TLS bytes when there is TLS, else the clear ones."""
    return tls_bytes(r) if r.raw.get("proxy", {}).get("tls") else clear_bytes(r)


def nginx_cpu_us(r: Result) -> float | None:
    """nginx's own CPU (master and worker) per delivered event, in µs; ``None`` direct."""
    return _proxy(r, "cpu_us_per_event")


def events_per_read(r: Result) -> float | None:
    """Events one read of a subscriber's socket delivered, on average (above 1: lumps); ``None`` unmeasured."""
    return _proxy(r, "reads", "events_per_read")


def largest_read(r: Result) -> float | None:
    """The most events one read of a subscriber's socket delivered (the largest lump); ``None`` unmeasured."""
    return _proxy(r, "reads", "largest_read")


def _ms(key: str) -> Callable[[Result], float | None]:
    def get(r: Result) -> float | None:
        value = getattr(r.end_to_end, key)
        return None if value is None else float(value) / 1000

    return get


@dataclass(frozen=True)
class DeployRow:
    """The repetitions of one scenario and transport, labelled by how the subscribers came in."""

    point: str
    """The sweep (or the scenario, if in none): rows of one point share a table."""
    transport: str
    mode: str
    group: Group

    def median(self, get: Callable[[Result], float | None]) -> float | None:
        """Median over the valid repetitions, else over all (a byte count does not depend on a saturated fleet)."""
        value = median_of_valid(self.group.all, get)
        if value is None:
            value = median_of_valid([dataclasses.replace(r, valid=True) for r in self.group.all], get)
        return value


def deploy_rows(results: Sequence[Result]) -> list[DeployRow]:
    """One row per point, transport and way in, in the order: point, transport, direct / HTTP/1.1 / HTTP/2."""
    groups: dict[tuple[str, str, str], list[Result]] = defaultdict(list)
    for r in deploy_results(results):
        point = r.scenario.sweep or r.scenario.name
        groups[(point, r.scenario.transport or "?", mode_label(r))].append(r)
    rows = [DeployRow(p, t, m, Group(rs)) for (p, t, m), rs in groups.items()]
    order = {t: i for i, t in enumerate(TRANSPORT_ORDER)}
    rows.sort(key=lambda row: (row.point, order.get(row.transport, 9), _mode_order(row.mode)))
    return rows


def _point_title(rows: Sequence[DeployRow]) -> str:
    sc = rows[0].group.scenario
    link = "loopback" if sc.link.is_loopback else f"one-way {sc.link.one_way_ms:g} ms"
    arrivals = ", random arrivals" if sc.arrivals == "poisson" else ""
    return f"{rows[0].point}: {sc.subscribers} subscribers x {sc.rate:g} ev/s, {link}{arrivals}"


def _point_table(rows: Sequence[DeployRow]) -> list[str]:
    header = (
        "transport",
        "way in",
        "missing/dup/ooo",
        "p50 ms",
        "p99 ms",
        "B/event (clear)",
        "B/event (TLS)",
        "server µs/event",
        "nginx µs/event",
        "events/read",
        "flags",
    )
    body = []
    for row in rows:
        g = row.group
        body.append(
            (
                row.transport + g.marks,
                row.mode,
                g.loss_cell,
                g.cell(_ms("p50_us")),
                g.cell(_ms("p99_us")),
                g.cell(clear_bytes),
                g.cell(tls_bytes),
                g.cell(lambda r: r.cpu_us_per_event),
                g.cell(nginx_cpu_us),
                g.cell(events_per_read),
                g.flags_cell,
            )
        )
    return markdown_table(header, body).splitlines()


@dataclass(frozen=True)
class HpackRow:
    """HPACK on one row's HTTP/2 connections, over the whole run: header block bytes (``HEADERS`` payloads).

    The first request (and answer) on each connection against the later ones, as means; ``None`` where there
    was no such request or answer.
    """

    point: str
    transport: str
    mode: str
    connections: int
    first_request: float | None
    """Mean header block of a connection's first request (its headers as literals)."""
    later_request: float | None
    """Mean header block of every later request (mostly indexes into the connection's dynamic table)."""
    later_requests: int
    first_response: float | None
    later_response: float | None


def hpack_rows(rows: Sequence[DeployRow]) -> list[HpackRow]:
    """One :class:`HpackRow` per row measured over HTTP/2 with at least one connection, in the rows' order."""
    out = []
    for row in rows:
        results = [r for r in row.group.all if isinstance(r.raw.get("proxy", {}).get("hpack"), dict)]
        if not results:
            continue
        totals: dict[str, int] = defaultdict(int)
        for r in results:
            for key, value in r.raw["proxy"]["hpack"].items():
                totals[key] += int(value)
        if not totals["connections"]:
            continue

        def mean(total: str, count: str, totals: dict[str, int] = totals) -> float | None:
            return totals[total] / totals[count] if totals[count] else None

        out.append(
            HpackRow(
                row.point,
                row.transport,
                row.mode,
                totals["connections"],
                mean("first_request_bytes", "connections"),
                mean("later_request_bytes", "later_requests"),
                totals["later_requests"],
                mean("first_response_bytes", "first_responses"),
                mean("later_response_bytes", "later_responses"),
            )
        )
    return out


def _hpack_table(rows: Sequence[DeployRow]) -> list[str]:
    """First request/answer header block on each HTTP/2 connection against the later ones (bytes, means)."""
    body = [
        (
            h.point,
            h.transport,
            h.mode,
            str(h.connections),
            format_number(h.first_request),
            format_number(h.later_request),
            f"{h.later_requests:,}",
            format_number(h.first_response),
            format_number(h.later_response),
        )
        for h in hpack_rows(rows)
    ]
    if not body:
        return []
    header = (
        "point",
        "transport",
        "way in",
        "connections",
        "request block: first",
        "later (mean)",
        "later requests",
        "answer block: first",
        "later (mean)",
    )
    return markdown_table(header, body).splitlines()


def trap_rows(rows: Sequence[DeployRow]) -> list[DeployRow]:
    """The SSE buffering trap's rows through nginx, buffering on first, then off; empty without an "on" row."""
    trap = [
        row
        for row in rows
        if row.transport == "sse" and row.group.scenario.proxy != "none" and row.point.endswith("buffering")
    ]
    if not any(row.group.scenario.proxy_buffering for row in trap):
        return []
    return sorted(trap, key=lambda row: not row.group.scenario.proxy_buffering)


def _trap_table(rows: Sequence[DeployRow]) -> list[str]:
    """The SSE rows through nginx without TLS: buffering on against off."""
    body = []
    for row in trap_rows(rows):
        g = row.group
        body.append(
            (
                "on + gzip (X-Accel-Buffering ignored)" if g.scenario.proxy_buffering else "off (docs/nginx/lab.conf)",
                g.cell(events_per_read),
                g.cell(largest_read),
                g.cell(_ms("p50_us")),
                g.cell(_ms("p99_us")),
                g.cell(_ms("max_us")),
                f"{g.total('missing'):,} of {sum(r.counters.expected for r in g.all):,}",
            )
        )
    if not body:
        return []
    header = ("nginx buffering", "events/read", "largest read", "p50 ms", "p99 ms", "max ms", "never arrived")
    return markdown_table(header, body).splitlines()


def kaazing_picks(rows: Sequence[DeployRow]) -> list[DeployRow]:
    """The row of each transport and way in that the Kaazing table reads: loopback, one stream per connection,
    buffering off, the lowest rate per subscriber (the nearest to the paper's one event per second); in the
    order transport, direct / HTTP/1.1 / HTTP/2."""
    picked: dict[tuple[str, str], DeployRow] = {}
    for row in rows:
        sc = row.group.scenario
        if not sc.link.is_loopback or sc.proxy_buffering or sc.streams_per_connection > 1:
            continue
        key = (row.transport, row.mode)
        if key not in picked or sc.rate_per_subscriber < picked[key].group.scenario.rate_per_subscriber:
            picked[key] = row
    return [
        row
        for _, row in sorted(
            picked.items(), key=lambda kv: (TRANSPORT_ORDER.index(kv[0][0]) if kv[0][0] in TRANSPORT_ORDER else 9,
                                            _mode_order(kv[0][1]))
        )
    ]  # fmt: skip


def _kaazing_rows(rows: Sequence[DeployRow]) -> list[tuple[str, ...]]:
    """The Kaazing table's Mbps per transport and way in, from the wire bytes of the loopback point nearest 1 ev/s."""
    out = []
    for row in kaazing_picks(rows):
        wire = row.median(wire_bytes)
        if wire is None:
            continue
        out.append(
            (
                row.transport,
                row.mode,
                format_number(wire),
                *(format_number(mbps(wire, n), 4) for n in PAPER_CLIENTS),
                f"{row.point} ({row.group.scenario.rate_per_subscriber:g} ev/s per subscriber)",
            )
        )
    return out


def wire_by_http(rows: Sequence[DeployRow]) -> dict[tuple[str, str], float]:
    """Bytes on the wire per event through nginx over TLS, by ``(transport, http)``: loopback, one stream per
    connection, buffering off, the lowest rate per subscriber measured (``http`` is the listener's: a WebSocket
    under ``"2"`` is its HTTP/1.1 Upgrade on the HTTP/2 listener)."""
    chosen: dict[tuple[str, str], tuple[float, float]] = {}
    for row in rows:
        sc = row.group.scenario
        tls = sc.tls or sc.http == "2"
        if not sc.link.is_loopback or sc.proxy_buffering or sc.streams_per_connection > 1 or not tls:
            continue
        value = row.median(wire_bytes)
        key = (row.transport, sc.http)
        if value is not None and (key not in chosen or sc.rate_per_subscriber < chosen[key][0]):
            chosen[key] = (sc.rate_per_subscriber, value)
    return {key: value for key, (_, value) in chosen.items()}


def _closing(rows: Sequence[DeployRow]) -> str:
    """Bytes per event over HTTP/2 for long polling and SSE against HTTP/1.1 and WebSocket (loopback, 1 stream)."""
    best = wire_by_http(rows)
    parts = []
    for transport in ("longpoll", "sse"):
        h2, h1 = best.get((transport, "2")), best.get((transport, "1.1"))
        if h2 is not None:
            parts.append(f"{transport} {format_number(h2)} B/event over HTTP/2 (HTTP/1.1: {format_number(h1)})")
    ws = best.get(("websocket", "2")) or best.get(("websocket", "1.1"))
    if not parts:
        return ""
    tail = f"; WebSocket over TLS: {format_number(ws)} B/event" if ws is not None else ""
    return (
        "Through nginx over TLS, on the wire (TLS bytes, both directions, per delivered event, at the lowest rate "
        "measured per subscriber): " + "; ".join(parts) + tail + "."
    )


def bytes_figure(rows: Sequence[DeployRow]) -> Figure | None:
    """Bytes per event per transport, direct / nginx HTTP/1.1 / nginx HTTP/2, the TLS bytes behind the clear ones.

    From the loopback point with the most rows (one stream per connection, buffering off); ``None``: nothing to
    draw. WebSocket's row on the HTTP/2 listener (an HTTP/1.1 Upgrade there) takes the HTTP/2 slot, its tick says
    so. The report saves it (:func:`deploy_chart`), the notebook shows it.
    """
    usable = [
        row
        for row in rows
        if row.group.scenario.link.is_loopback
        and not row.group.scenario.proxy_buffering
        and row.group.scenario.streams_per_connection == 1
    ]
    if not usable:
        return None
    per_point: dict[str, list[DeployRow]] = defaultdict(list)
    for row in usable:
        per_point[row.point].append(row)
    point, chosen = max(per_point.items(), key=lambda kv: (len(kv[1]), -kv[1][0].group.scenario.rate))
    transports = [t for t in TRANSPORT_ORDER if any(row.transport == t for row in chosen)]
    upgrade = " (WebSocket: HTTP/1.1 Upgrade)"

    def slot(mode: str) -> str:
        return mode.replace(upgrade, "")

    modes = sorted({slot(row.mode) for row in chosen}, key=_mode_order)

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.8, 4.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(modes))
    colors = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
    for i, mode in enumerate(modes):
        xs, clear, tls = [], [], []
        for j, transport in enumerate(transports):
            found = next((r for r in chosen if r.transport == transport and slot(r.mode) == mode), None)
            if found is None:
                continue
            xs.append(j + (i - (len(modes) - 1) / 2) * width)
            clear.append(found.median(clear_bytes) or 0.0)
            tls.append(found.median(tls_bytes) or 0.0)
        color = colors[i % len(colors)]
        ax.bar(xs, tls, width * 0.95, color=color, alpha=0.35, hatch="//", edgecolor=color)
        ax.bar(xs, clear, width * 0.95, color=color, label=mode)
    ticks = [
        f"{t}\n(HTTP/2 listener:\nHTTP/1.1 Upgrade)"
        if any(r.transport == t and upgrade in r.mode for r in chosen)
        else t
        for t in transports
    ]
    ax.set_xticks(range(len(transports)), ticks)
    ax.set_ylabel("bytes per delivered event (both directions)")
    ax.set_title(f"Bytes per event, {point}: clear (solid) and TLS on the wire (hatched)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.05)
    fig.legend(loc="outside lower center", ncol=len(modes), fontsize=8)  # below the axes: no bar hidden
    return fig


def deploy_chart(rows: Sequence[DeployRow], charts_dir: Path) -> Path | None:
    """:func:`bytes_figure` written as ``deploy-bytes.png`` and ``.svg`` in ``charts_dir``; returns the PNG's path
    (``None``: nothing to draw)."""
    fig = bytes_figure(rows)
    if fig is None:
        return None
    charts_dir.mkdir(parents=True, exist_ok=True)
    png = charts_dir / "deploy-bytes.png"
    fig.savefig(png, dpi=110)
    fig.savefig(charts_dir / "deploy-bytes.svg")
    return png


def deploy_section(results: Sequence[Result], charts_dir: Path | None = None) -> list[str]:
    """The "Behind a proxy" section of REPORT.md (empty when no result ran through a proxy).

    ``charts_dir``: where the bytes chart is written (linked as ``charts/<name>``, beside REPORT.md); ``None``:
    no chart.
    """
    rows = deploy_rows(results)
    if not rows:
        return []
    lines = [
        f"## {SECTION_TITLE}",
        "",
        "nginx runs docs/nginx/lab.conf in front of the lab's server (bench/run/proxy.py); the subscribers reach it "
        "over TLS with HTTP/1.1, or over TLS with HTTP/2 (long poll, polling and SSE as HTTP/2 streams; WebSocket "
        "stays HTTP/1.1 with an Upgrade). The publisher publishes straight to the server, so end-to-end latency "
        "holds one proxy hop (server to subscriber), not the publish leg's. Bytes in the clear are HTTP/1.1 bytes "
        "or HTTP/2 frame bytes after decryption; TLS bytes are the TCP payload. nginx's CPU is its own (master and "
        "worker), apart from the server's.",
        "",
    ]
    for rows_of_point in by_point(rows).values():
        lines += [f"### {_point_title(rows_of_point)}", "", *_point_table(rows_of_point), ""]
    if charts_dir is not None:
        png = deploy_chart(rows, charts_dir)
        if png is not None:
            lines += [
                f"![Bytes per event behind a proxy](charts/{png.name})",
                "",
                "*Bytes per event, direct / nginx HTTP/1.1 / nginx HTTP/2* "
                f"([SVG](charts/{png.with_suffix('.svg').name}))",
                "",
            ]
    hpack = _hpack_table(rows)
    if hpack:
        lines += [
            "### HPACK: the first request on a connection against later ones",
            "",
            "Header block bytes (the `HEADERS` frames' payloads, without the 9-byte frame headers), over the whole "
            "run: the first request on each HTTP/2 connection carries its headers as literals; later ones mostly "
            "as indexes into the connection's dynamic table. nginx's answers show what its encoder does with them.",
            "",
            *hpack,
            "",
        ]
    trap = _trap_table(rows)
    if trap:
        lines += [
            "### The SSE buffering trap, measured",
            "",
            "SSE through nginx with response buffering on and the stream compressed (the lab's `X-Accel-Buffering: no` "
            "ignored and `text/event-stream` in `gzip_types`, as a generic proxy block would; the subscribers send a "
            "browser's `Accept-Encoding`) against docs/nginx/lab.conf's SSE location (buffering off, gzip off). "
            "Events per read: how many events one read of a subscriber's socket delivered (lumps); never arrived: "
            "still in the proxy's buffers when the run ended.",
            "",
            *trap,
            "",
        ]
    kaazing = kaazing_table(rows)
    if kaazing:
        lines += [
            "### The Kaazing table, HTTP/2 beside HTTP/1.1",
            "",
            "The white paper's throughput at one event per second per client (Mbps = 2^20 bit/s), from the bytes "
            "this run measured on the wire (TLS bytes where there is TLS) per delivered event, both directions:",
            "",
            *kaazing.splitlines(),
            "",
        ]
    closing = _closing(rows)
    if closing:
        lines += [closing, ""]
    return lines


# --- the same, one piece at a time (the notebook shows them between its own sentences) ---------------------


def by_point(rows: Sequence[DeployRow]) -> dict[str, list[DeployRow]]:
    """The rows grouped by point (a sweep), in the rows' order: one table each."""
    points: dict[str, list[DeployRow]] = defaultdict(list)
    for row in rows:
        points[row.point].append(row)
    return dict(points)


def point_title(rows: Sequence[DeployRow]) -> str:
    """A point's title: ``deploy-100x10: 100 subscribers x 10 ev/s, loopback`` (the rows of one point)."""
    return _point_title(rows)


def point_table(rows: Sequence[DeployRow]) -> str:
    """A point's Markdown table, as in REPORT.md: a row per transport and way in (the rows of one point)."""
    return "\n".join(_point_table(rows))


def hpack_table(rows: Sequence[DeployRow]) -> str:
    """REPORT.md's HPACK table (:func:`hpack_rows` as Markdown); empty without an HTTP/2 row."""
    return "\n".join(_hpack_table(rows))


def trap_table(rows: Sequence[DeployRow]) -> str:
    """REPORT.md's SSE buffering trap table (:func:`trap_rows` as Markdown); empty without the trap."""
    return "\n".join(_trap_table(rows))


def kaazing_table(rows: Sequence[DeployRow]) -> str:
    """REPORT.md's Kaazing table, HTTP/2 beside HTTP/1.1 (:func:`kaazing_picks` as Markdown); empty without one."""
    body = _kaazing_rows(rows)
    if not body:
        return ""
    clients = [f"{n:,} clients (Mbps)" for n in PAPER_CLIENTS]
    return markdown_table(("transport", "way in", "B/event", *clients, "measured in"), body)


def closing_sentence(rows: Sequence[DeployRow]) -> str:
    """REPORT.md's closing sentence: long polling and SSE over HTTP/2 against HTTP/1.1 and WebSocket (or "")."""
    return _closing(rows)
