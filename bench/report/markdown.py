"""REPORT.md and the charts of a run, regenerated from its raw files alone.

Report layer: ``write_report(run_dir)`` reads ``meta.json`` and the result
files (validated by :mod:`bench.schema`), deletes the charts it drew before,
draws them again (:mod:`bench.charts`) and writes ``<run>/REPORT.md`` with the
summary tables, the performance targets (:mod:`bench.targets`), the peers
section when the run has peers (:mod:`bench.report.peers`), the proxy section
when it went through nginx (:mod:`bench.report.deploy`), the Kaazing table
(:mod:`bench.kaazing`) and every chart embedded. Nothing else is read:
the raw files are the source of truth. ``python -m bench.report RUN`` does the
same; so does the runner's ``python -m bench report RUN``.

Every repetition counts: a table cell is the median of the valid repetitions
with their range beside it, never the best one. A scenario with loss is
marked ✗ in every table; an invalid repetition (clients saturated, publisher
behind) is left out of the numbers and labelled ⚠; when no valid repetition
is left, the numbers shown are the invalid ones, in italics and labelled.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.contract.names import HOST_STEAL_PERCENT, run_dir_name
from bench.contract.schema import MIN_CPU_S, Result, Run, min_samples

from .charts import Chart, write_charts
from .deploy import deploy_section
from .kaazing import PAPER_CLIENTS, measured_table, paper_table
from .load import load_run
from .peers import peers_section
from .tables import (
    BEYOND_ONE_TRANSIT,
    INVALID_MARK,
    LOSS_MARK,
    Group,
    beyond_one_transit,
    byte_parts,
    bytes_per_event,
    format_number,
    markdown_table,
)
from .targets import evaluate

__all__ = ["SUMMARY_COLUMNS", "main", "summary_rows", "summary_table", "write_report"]

SUMMARY_COLUMNS = (
    "scenario",
    "transport",
    "reps",
    "delivered",
    "missing/dup/ooo",
    "p50 ms",
    "p99 ms",
    "max ms",
    "bytes/event",
    "req/event",
    "server µs/event",
    "flags",
)
"""Columns of :func:`summary_rows`, for a terminal table."""


def _groups(run: Run) -> list[Group]:
    """One :class:`bench.report.tables.Group` of cells per scenario and series, every server's."""
    by_key: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in run.results:
        by_key[(r.scenario.name, r.scenario.series)].append(r)
    return [Group(results) for results in by_key.values()]


def summary_rows(run: Run | Path | str) -> list[tuple[str, ...]]:
    """One row of plain strings per scenario and transport (columns :data:`SUMMARY_COLUMNS`), for a terminal."""
    if not isinstance(run, Run):
        run = load_run(run)
    rows = []
    for g in _groups(run):
        rows.append(
            (
                g.name,
                g.scenario.series,
                str(len(g.all)),
                g.cell(lambda r: float(r.counters.delivered), digits=6),
                g.loss_cell,
                g.cell(lambda r: r.end_to_end.p50_us, 1e-3),
                g.cell(lambda r: r.end_to_end.p99_us, 1e-3),
                g.cell(lambda r: r.end_to_end.max_us, 1e-3),
                g.cell(bytes_per_event),
                g.cell(lambda r: r.num("http", "requests_per_event")),
                g.cell(lambda r: r.cpu_us_per_event),
                g.flags_cell,
            )
        )
    return [tuple(c.replace("*", "") for c in row) for row in rows]


def summary_table(run: Run | Path | str) -> Any:
    """:func:`summary_rows` as a ``rich.table.Table``."""
    from rich.table import Table

    table = Table(title="Summary (median of valid repetitions [range])")
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="left" if column in ("scenario", "transport", "flags") else "right")
    for row in summary_rows(run):
        table.add_row(*row)
    return table


# --- markdown -----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return markdown_table(header, rows).split("\n")


def _provenance(run: Run) -> list[str]:
    meta = run.meta.raw
    machine = meta["machine"]
    relay = meta["relay"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items()))
    rows = [
        ("profile", meta["profile"]),
        ("command", f"`{meta['command']}`"),
        ("started / finished (UTC)", f"{meta['started_utc']} / {meta['finished_utc']}"),
        ("commit", f"`{meta['git']['commit']}`" + (" (dirty: uncommitted changes)" if meta["git"]["dirty"] else "")),
        ("machine", f"{machine['cpu_model']}, {machine['cores']} cores, {machine['memory_bytes'] / 2**30:.1f} GiB"),
        ("platform", f"{machine['platform']} (kernel {machine['kernel']}), Python {meta['python']}"),
        ("versions", versions),
        (
            "relay's own cost",
            f"+{relay['added_latency_us']['p50']:g} µs p50, +{relay['added_latency_us']['p99']:g} µs p99 per round "
            f"trip; {relay['cpu_us_per_kib']:g} µs CPU per KiB (measured at the start of the run)",
        ),
        ("result files", str(len(run.results))),
        *_host_rows(run),
    ]
    if run.meta.finished_utc is None:
        rows.append(("status", "**interrupted**: the profile did not finish (see *Runs not measured*)"))
    return _table(("", ""), rows)


def _host_rows(run: Run) -> list[tuple[str, str]]:
    """The hypervisor's steal over the measurement windows, when the results recorded it (older runs did not)."""
    steals = sorted(float(r.raw["host"]["steal_percent"]) for r in run.results if "host" in r.raw)
    if not steals:
        return []
    flagged = sum(1 for r in run.results if "host_steal" in r.flags)
    return [
        (
            "CPU time stolen by the host",
            f"median {statistics.median(steals):.1f} %, max {steals[-1]:.1f} % of the machine's CPU time over a "
            f"window; {flagged} of {len(steals)} repetitions above {HOST_STEAL_PERCENT:g} % (flagged `host_steal`: "
            "their latency is in part the host's)",
        )
    ]


def _unmeasured_section(run: Run) -> list[str]:
    """Repetitions that failed (with their errors) and planned ones never written (an interrupted profile)."""
    if not run.failed and not run.missing:
        return []
    lines = ["## Runs not measured", ""]
    if run.failed:
        lines += [f"{len(run.failed)} repetition(s) could not be carried out; their raw files hold the error:", ""]
        lines += _table(
            ("scenario", "transport", "r", "error"),
            [(f.scenario.name, f.scenario.series, str(f.repetition), f.error) for f in run.failed],
        )
        lines.append("")
    if run.missing:
        lines += [
            f"{len(run.missing)} planned repetition(s) were never run (the profile was interrupted): "
            + ", ".join(f"`{name}`" for name in run.missing),
            "",
        ]
    return lines


def _targets_section(run: Run) -> list[str]:
    rows = []
    for row in evaluate(run):
        if row.values:
            each = ", ".join(f"{label} {format_number(v)}" for label, v in row.values)
            measured = (
                f"{format_number(row.median or 0.0)} ({each})"
                if len(row.values) > 1
                else format_number(row.values[0][1])
            )
        else:
            measured = "—"
        if row.invalid_reps:
            measured += f"; {INVALID_MARK} left out, invalid: {', '.join(row.invalid_reps)}"
        verdict = (
            f"**{row.verdict}**" if row.verdict in ("pass", "FAIL") or row.verdict.startswith("MIXED") else row.verdict
        )
        floor = "—" if row.floor is None else format_number(row.floor)
        rows.append((row.target, row.check, measured, row.limit, verdict, floor, row.source))
    lines = [
        "## Performance targets",
        "",
        "Matched by transport, subscribers and rate, with runtime gevent, broadcast layout and no emulated link, "
        "on the lab's own server (definitions in `bench/targets.toml`; peers have their own section). A verdict "
        "covers every valid repetition: **pass** only when all pass. "
        "The floor column is the loopback floor's value of the same metric in this run (for the p50 ratio: the "
        "floor's p50 in ms).",
        "",
    ]
    return lines + _table(("target", "check", "measured", "target", "verdict", "floor", "from scenario"), rows)


def _latency(kind: str, key: str) -> Callable[[Result], float | None]:
    """A getter of one latency statistic (``end_to_end``/``delivery``, ``p50_us``...) of a result."""

    def get(r: Result) -> float | None:
        value = getattr(getattr(r, kind), key)
        return None if value is None else float(value)

    return get


def _summary_sections(run: Run) -> list[str]:
    groups = _groups(run)
    correctness = [
        (
            g.name,
            g.scenario.series,
            str(len(g.all)),
            g.cell(lambda r: float(r.counters.expected), digits=6),
            g.cell(lambda r: float(r.counters.delivered), digits=6),
            g.loss_cell,
            str(sum(r.counters.gap_lost for r in g.all)),
            str(sum(r.counters.reconnects for r in g.all)),
            g.flags_cell,
        )
        for g in groups
    ]
    latency = []
    for g in groups:
        for kind in ("end_to_end", "delivery"):
            row = [g.name if kind == "end_to_end" else "", g.scenario.series if kind == "end_to_end" else "", kind]
            row.append(g.cell(lambda r, kind=kind: float(getattr(r, kind).count), digits=6))  # type: ignore[misc]
            for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
                row.append(g.cell(_latency(kind, key), 1e-3))
            latency.append(row)
    cost = [
        (
            g.name,
            g.scenario.series,
            g.cell(lambda r: r.num("bytes", "per_event", "up")),
            g.cell(lambda r: r.num("bytes", "per_event", "down")),
            g.cell(lambda r: float(r.raw["bytes"]["handshake"]["up"] + r.raw["bytes"]["handshake"]["down"])),
            g.cell(lambda r: r.num("http", "requests_per_event")),
            g.cell(lambda r: r.cpu_us_per_event),
            g.cell(lambda r: r.num("server", "rss_bytes"), 2**-20),
            g.cell(lambda r: r.num("server", "rss_per_connection_bytes"), 2**-10),
        )
        for g in groups
    ]
    return [
        "## Summary",
        "",
        "One row per scenario and transport: the median of its valid repetitions, with their range "
        "[min-max] when there are several.",
        "",
        "### Correctness",
        "",
        *_table(
            (
                "scenario",
                "transport",
                "reps",
                "expected",
                "delivered",
                "missing/dup/ooo",
                "gap-lost",
                "reconnects",
                "flags",
            ),
            correctness,
        ),
        "",
        "### Latency (ms)",
        "",
        "`end_to_end`: receive time minus the publisher's intended send time (includes publishing); "
        "`delivery`: receive wall-clock time minus the bus's publish time `ts`. `n`: latency samples per "
        f"repetition. A percentile the sample count cannot support is not printed (—): p99 needs "
        f"{min_samples(99):,} samples, p99.9 {min_samples(99.9):,}; below that it would only be the maximum.",
        "",
        *_table(("scenario", "transport", "latency", "n", "p50", "p90", "p99", "p99.9", "max"), latency),
        "",
        "### Cost",
        "",
        f"Server µs/event is left out (—) where the window held less than {MIN_CPU_S * 1000:g} ms of server CPU: "
        "too little to say what an event costs.",
        "",
        *_table(
            (
                "scenario",
                "transport",
                "bytes/event up",
                "bytes/event down",
                "handshake bytes (up+down)",
                "req/event",
                "server µs/event",
                "server RSS MiB",
                "RSS/conn KiB",
            ),
            cost,
        ),
    ]


def _memory_section(run: Run) -> list[str]:
    """The server's RSS after each step of the memory scenarios, and when it dropped a stalled reader."""
    if not run.memory:
        return []
    lines = [
        "## Server memory: idle channels, big payloads, a stalled reader",
        "",
        "Resident memory of the server's process tree after each step of the memory probe "
        "(`bench.agents.memory`): `channels` gives that many channels one small event each, `big` publishes "
        "events of the scenario's payload size to one channel, `stall` opens WebSocket readers that never read "
        "and publishes as many big events to theirs; `after_stall` is read once the server has dropped the "
        "stalled readers (or the wait ran out). The server's own bounds (history by bytes, idle-channel expiry, "
        "the writer's give-up on a stalled reader) are what keeps these figures bounded: docs/security.md.",
        "",
    ]
    rows = []
    for m in run.memory:
        sc = m.scenario
        steps = ", ".join(f"{step} {rss / 2**20:.0f}" for step, _, rss in m.steps)
        dropped = (
            "not within " + f"{m.drop_timeout_s:g} s"
            if m.stalled_dropped_after_s is None
            else (f"{m.stalled_dropped_after_s:g} s")
        )
        rows.append(
            (
                f"{sc.name} r{m.repetition}",
                sc.runtime,
                f"{sc.idle_channels:,} / {sc.big_events} x {sc.payload_bytes / 1e6:g} MB / {sc.stalled}",
                steps,
                f"{m.peak_rss_bytes / 2**20:.0f}",
                dropped,
            )
        )
    return lines + _table(
        ("run", "runtime", "channels / big events / stalled readers", "RSS after each step (MiB)", "peak MiB",
         "stalled readers dropped after"),
        rows,
    ) + [""]  # fmt: skip


def _tail_section(run: Run) -> list[str]:
    """Long polling's share of events beyond one transit under Poisson arrivals, against the model."""
    rows = beyond_one_transit(run)
    if not rows:
        return []
    lines = [
        "## Long polling under random arrivals: events beyond one transit",
        "",
        "With events arriving at random (Poisson, rate λ per subscriber) over a link of round trip RTT, an "
        "event that arrives while no poll is held at the server (the answer to the previous one is on its way "
        "back, the next poll on its way out) waits for it: it pays more than one transit, up to three. The "
        "chance of that is `1 - exp(-λ·RTT)`. Measured: the share of delivery latencies above "
        f"{BEYOND_ONE_TRANSIT:g} one-way delays, over the valid repetitions.",
        "",
    ]
    return (
        lines
        + _table(
            ("scenario", "one-way (ms)", "λ (ev/s)", "samples", "measured share", "model 1 - exp(-λ·RTT)"),
            [
                (
                    r.scenario,
                    f"{r.one_way_ms:g}",
                    f"{r.rate_per_subscriber:g}",
                    f"{r.samples:,}",
                    f"{r.measured:.1%}",
                    f"{r.model:.1%}",
                )
                for r in rows
            ],
        )
        + [""]
    )


def _kaazing_section(run: Run) -> list[str]:
    clients = [f"{n:,} clients" for n in PAPER_CLIENTS]
    paper = [
        (
            row.transport,
            f"{row.bytes_per_message:g}",
            *(f"{v:.4g} (printed {p})" for v, p in zip(row.mbps, row.printed, strict=True)),
        )
        for row in paper_table()
    ]
    measured = [
        (
            row.transport,
            f"{format_number(row.bytes_per_event)} "
            f"(overhead {format_number(row.overhead_bytes)}, payload {row.payload_bytes})",
            *(format_number(v, 4) for v in row.mbps),
            row.source,
        )
        for row in measured_table(run)
    ]
    lines = [
        "## The Kaazing white paper's table, reproduced and recomputed",
        "",
        '"HTML5 Web Sockets: A Quantum Leap in Scalability for the Web" (Kaazing): 871 bytes of HTTP headers per '
        "poll, 2 bytes of framing per WebSocket message, one message per second per client; "
        "Mbps = 2^20 bits per second.",
        "",
        "**From the paper's own inputs:**",
        "",
        *_table(("transport", "bytes per message", *clients), paper),
        "",
        "**From this run's measured bytes per delivered event** (TCP payload both directions, counted by the relay, "
        "including the event itself; overhead = wire bytes minus payload bytes). Each transport's number comes from "
        "the scenario closest to one event per second per subscriber, uncompressed and loopback first:",
        "",
    ]
    if measured:
        lines += _table(("transport", "bytes per event", *clients, "measured in"), measured)
    else:
        lines.append("_No polling, long-poll, WebSocket or SSE result of the lab with bytes per event in this run._")
    return lines + _bytes_parts_section(run)


def _bytes_parts_section(run: Run) -> list[str]:
    """What one event's bytes carry, per transport (the bytes-decomposed chart's numbers)."""
    parts = byte_parts(run)
    if not parts:
        return []
    rows = [
        (
            p.label,
            p.scenario,
            f"{p.payload:.0f}",
            f"{p.envelope:.0f}",
            f"{p.response_head:.0f}",
            f"{p.framing:.1f}",
            f"{p.up:.1f}",
            f"{p.total:.0f}",
            "" if not p.requests_per_event else f"{p.requests_per_event:.2f}",
            "" if p.handshake is None else f"{p.handshake:.0f}",
        )
        for p in parts
    ]
    lines = [
        "",
        "**What those bytes carry** (per delivered event, medians of the valid repetitions at the payload sweep's "
        "smallest payload, and rows with a browser's request headers). The event's JSON is the same bytes on every "
        "transport: its size is WebSocket's frame minus the RFC 6455 header (2 bytes up to 125, 4 up to 65,535); "
        "the long-poll answer's head is `capture.json`'s; framing is what is left of the bytes down.",
        "",
        *_table(
            (
                "transport",
                "scenario",
                "payload",
                "envelope",
                "response head",
                "framing",
                "up",
                "total",
                "requests per event",
                "handshake per connection (once)",
            ),
            rows,
        ),
    ]
    ws = next((p for p in parts if p.series == "websocket" and not p.browser), None)
    if ws is not None:
        lines += [
            "",
            f"WebSocket's {ws.total - ws.payload:.0f} bytes of overhead per event beside the paper's 2 are the lab's "
            f"JSON envelope ({ws.envelope:.0f} B: channel, seq, ts) and a {ws.framing:.0f}-byte frame header: "
            "the paper counts the frame alone, with no envelope around its payload.",
        ]
    return lines


def _chart_sections(charts: Sequence[Chart]) -> list[str]:
    lines = ["## Charts", ""]
    by_section: dict[str, list[Chart]] = defaultdict(list)
    for chart in charts:
        by_section[chart.section].append(chart)
    for section, items in by_section.items():
        lines += [f"### {section}", ""]
        for chart in items:
            lines += [
                f"![{chart.title}](charts/{chart.png.name})",
                "",
                f"*{chart.title}* — {chart.caption}. ([SVG](charts/{chart.svg.name}))",
                "",
            ]
    return lines


def _run_name(run: Run) -> str:
    """The run's name as the runner gave its directory, from meta.json (so a copied run reports the same)."""
    started = dt.datetime.strptime(run.meta.started_utc[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return run_dir_name(run.meta.profile, started)


def _markdown(run: Run, charts: Sequence[Chart]) -> str:
    any_loss = any(r.lossy for r in run.results)
    any_invalid = any(not r.valid for r in run.results)
    lines = [
        f"# Benchmark report: {_run_name(run)}",
        "",
        "Generated by `python -m bench report` from the raw files of this directory alone; do not edit it, "
        "regenerate it. How to read every table and chart: `docs/reading-a-report.md`.",
        "",
        f"Marks: {LOSS_MARK} = loss (missing, duplicate or out-of-order events above 0)"
        f"{' — this run HAS LOSS, see the flags' if any_loss else ''}; "
        f"{INVALID_MARK} = invalid repetition (clients saturated or publisher behind): its latency is the clients' "
        f"or the publisher's, not the server's; left out of medians, shown in italics when nothing else is left"
        f"{' — this run HAS INVALID repetitions' if any_invalid else ''}.",
        "",
        "## Run",
        "",
        *_provenance(run),
        "",
        *_unmeasured_section(run),
        *_targets_section(run),
        "",
        *_summary_sections(run),
        "",
        *peers_section(run),
        *deploy_section(run.results, run.path / "charts"),
        *_tail_section(run),
        *_memory_section(run),
        *_kaazing_section(run),
        "",
        *_chart_sections(charts),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_report(run_dir: Path | str) -> list[Path]:
    """Regenerate ``<run>/charts/*.png|svg`` and ``<run>/REPORT.md`` from the raw files; return the paths written."""
    run = load_run(run_dir)
    charts_dir = run.path / "charts"
    if charts_dir.is_dir():
        for old in [*charts_dir.glob("*.png"), *charts_dir.glob("*.svg")]:
            old.unlink()
    charts = write_charts(run, charts_dir)
    report = run.path / "REPORT.md"
    report.write_text(_markdown(run, charts), encoding="utf-8")
    return [*(p for c in charts for p in (c.png, c.svg)), report]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report RUN``: regenerate a run's report; print what was written."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (results/runs/<UTC>-<profile> or results/latest)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.run)
    except (ValueError, OSError) as exc:
        print(f"bench.report: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
