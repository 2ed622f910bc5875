"""The benchmark runner: one scenario x transport x repetition at a time, every process stopped in ``finally``.

Run layer of the benchmark, the orchestrator. For each run it starts, in this order:
the server (``python -m server`` with the scenario's runtime and flags, or the
loopback floor :mod:`bench.agents.floor`), probed until ready; when the scenario
emulates a link, a relay (:mod:`bench.link`) in front of it, which delays and
meters bytes (otherwise nothing stands between the clients and the server and
the fleet meters its own bytes); with ``proxy = "nginx"``, nginx (:class:`bench.run.proxy.Nginx`, on
docs/nginx/lab.conf) in front of the server, before the relay (which then only delays: the fleet meters, in the
clear and as TLS bytes), its CPU read apart from the server's; the open-loop publisher
(:mod:`bench.agents.publisher`, straight to the server, never through the relay or nginx: the publish leg is
not what is compared, and delivery latency is measured from the server's stamp); the client fleet
(:mod:`bench.agents.fleet` processes).
Then the schedule: the publisher starts at ``T0``; warm-up events are
published until ``T0 + warmup_s``, when the measurement window opens (relay,
server CPU and fleet snapshots); it closes when every subscriber has
received the last published event (the drain). Everything is stopped in a
``finally``, process group by process group (:mod:`bench.process`), so no process outlives a run.

A profile writes one raw file per repetition as it goes, a failed one too
(``status: failed`` with its error), and rewrites ``meta.json`` after each, so
a profile interrupted in the middle (SIGINT) leaves a run directory that
``python -m bench report`` can still read: it lists the runs that are missing.

docs/metrics.md defines every number this writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.agents.fleet import FleetConfig, merge_reports, saturation_reasons
from bench.agents.publisher import PublishPlan
from bench.contract.names import result_file_name, run_dir_name
from bench.contract.scenarios import Profile, Scenario
from bench.contract.schema import min_samples, validate_meta, validate_result
from bench.link import RelayProcess, measure_overhead
from bench.process import Child

from .capture import write_capture, write_socketio_capture
from .memory import run_memory
from .meta import run_meta
from .proxy import Nginx
from .record import assemble_result, failed_result, host_window, update_latest, utc_now, write_json
from .server import READY_TIMEOUT_S, RunError, ServerHandle, launch_server

__all__ = ["RunError", "ServerHandle", "proxy_problem", "run_one", "run_profile", "selected", "shard"]

DRAIN_TIMEOUT_S = 15.0
"""Longest wait, after the last publish, for every subscriber to reach the last seq (plus the link's delay)."""


def shard(items: list[str], parts: int) -> list[list[str]]:
    """Deal ``items`` round-robin into at most ``parts`` non-empty shards."""
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


def selected(scenarios: tuple[Scenario, ...], only: str | None) -> list[Scenario]:
    """Scenarios whose name matches the glob ``only`` (all when ``None``); comma-separated globs are alternatives."""
    if not only:
        return list(scenarios)
    globs = [g.strip() for g in only.split(",") if g.strip()]
    return [s for s in scenarios if any(fnmatch.fnmatch(s.name, g) for g in globs)]


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RunError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _relay_totals(snap: dict[str, Any]) -> dict[str, int]:
    return {
        "up": int(snap["up"]["bytes"]),
        "down": int(snap["down"]["bytes"]),
        "head_up": int(snap["up"]["head_bytes"]),
        "head_down": int(snap["down"]["head_bytes"]),
        "heads": int(snap["up"]["heads"]),
    }


def _wire_totals(answers: list[dict[str, Any]]) -> dict[str, int]:
    """The fleet processes' byte meters (their ``wire`` totals), added up: the relay's snapshot keys."""
    total = {"up": 0, "down": 0, "head_up": 0, "head_down": 0, "heads": 0}
    for answer in answers:
        for key in total:
            total[key] += int(answer["wire"][key])
    return total


def proxy_problem(scenario: Scenario, transport: str) -> str | None:
    """Why the scenario's proxy, TLS and HTTP version fields make no sense together for ``transport`` (or None).

    HTTP/2 and TLS are nginx's (the lab's server speaks plain HTTP/1.1), so both need ``proxy = "nginx"``; several
    streams per connection need HTTP/2; nginx stands in front of the lab's own server only (a peer brings its own
    front end); the buffering trap is nginx's.
    """
    tls = scenario.tls or scenario.http == "2"
    if scenario.proxy == "none":
        if scenario.http == "2":
            return 'http = "2" needs proxy = "nginx" (the lab\'s server speaks HTTP/1.1; HTTP/2 is the proxy\'s)'
        if scenario.tls:
            return 'tls = true needs proxy = "nginx" (the proxy ends TLS; the lab\'s server has none)'
        if scenario.proxy_buffering:
            return 'proxy_buffering = true needs proxy = "nginx"'
    if scenario.streams_per_connection > 1 and scenario.http != "2":
        return 'streams_per_connection > 1 needs http = "2" (HTTP/1.1 has one request at a time per connection)'
    if scenario.proxy != "none":
        if scenario.server != "lab":
            return f"proxy = {scenario.proxy!r} stands in front of the lab's server only, not {scenario.server!r}"
        if scenario.kind != "transport" or transport == "floor":
            return f"proxy = {scenario.proxy!r} applies to transport runs of the lab's server, not {transport!r}"
        if tls and transport == "websocket" and scenario.compression:
            return "compressed WebSocket (clients' own subscriber) has no TLS in the fleet"
    return None


def _sleep_until(mono_ns: int) -> None:
    delay = (mono_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def run_one(scenario: Scenario, transport: str, repetition: int, log_dir: Path) -> dict[str, Any]:
    """Run one scenario x transport x repetition; returns its raw result (docs/results.md)."""
    problem = proxy_problem(scenario, transport)
    if problem is not None:
        raise RunError(f"scenario {scenario.name!r}: {problem}")
    tls = scenario.tls or scenario.http == "2"
    started_utc, t_start = utc_now(), time.monotonic()
    channels = scenario.channels
    unique_channels = list(dict.fromkeys(channels))
    plan = PublishPlan(
        url="",
        channels=unique_channels,
        rate=scenario.rate,
        burst=scenario.burst,
        burst_gap_ms=scenario.burst_gap_ms,
        warmup_s=scenario.warmup_s,
        duration_s=scenario.duration_s,
        payload_bytes=scenario.payload_bytes,
        arrivals=scenario.arrivals,
        seed=scenario.seed + repetition,
        numbering="server" if scenario.server in ("lab", "websockets") else "publisher",
    )
    history = max(10_000, plan.total_events + 1_000)
    server_errors: list[str] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{scenario.name}--{transport}--r{repetition}.log"
    with log_path.open("wb") as log, contextlib.ExitStack() as stack:

        def mark(phase: str) -> None:
            log.write(f"[runner] {time.monotonic() - t_start:8.3f} s {phase}\n".encode())
            log.flush()

        stack.callback(mark, "stopped")
        # Helper processes first: their imports overlap the server's start; they get their config later.
        parts = shard(channels, scenario.client_processes)
        fleets: list[Child] = []
        for _ in parts:
            fleet = Child(["-m", "bench.agents.fleet"], log=log, name="a fleet process")
            stack.callback(fleet.stop)
            fleets.append(fleet)
        publisher: Child | None = None
        if not scenario.idle:
            publisher = Child(["-m", "bench.agents.publisher"], log=log, name="the publisher")
            stack.callback(publisher.stop)
        server = launch_server(scenario, transport, history, log)
        stack.callback(server.stop)
        # Runs first on the way out: every process gets SIGTERM at once, then each stop() waits for its own.
        for child in [server.child, *fleets, *([publisher] if publisher else [])]:
            stack.callback(child.terminate)
        server.wait_ready()
        # nginx (docs/nginx/lab.conf) after the server, before the relay and the fleet; stopped in `finally`.
        nginx: Nginx | None = None
        front = ("127.0.0.1", server.port)
        if scenario.proxy == "nginx":
            # The trap: buffering on and the SSE stream compressed (a generic gzip_types list): buffering alone lets
            # each event through at once with nginx 1.22 (tests/bench/run/test_proxy_traps.py).
            trap = scenario.proxy_buffering
            nginx = Nginx(front, sse_buffering=trap, sse_gzip=trap, workers=1)
            stack.callback(nginx.stop)
            nginx.start()
            port = nginx.plain_port
            if tls:  # HTTP/2 offered by ALPN on the first; WebSocket over TLS asks for http/1.1 there too
                port = nginx.tls_port if scenario.http == "2" else nginx.tls_h1_port
            front = ("127.0.0.1", port)
            mark(f"nginx {nginx.versions.get('nginx', '?')} in front, subscribers to port {port}")
        # The relay is in the data path only to emulate a link (and for compressed WebSocket, whose client is
        # clients' own, which has no byte meter); otherwise the fleet connects straight to the server (or nginx)
        # and its subscribers count their own bytes (bench.agents.meter).
        relay: RelayProcess | None = None
        if not scenario.link.is_loopback or (transport == "websocket" and scenario.compression):
            relay = RelayProcess(front, scenario.link).start()  # one upstream per connection
            stack.callback(relay.stop)
        # Behind a proxy the fleet's meters count, the relay only delays: they see the HTTP (or HTTP/2) bytes in the
        # clear and the TLS bytes apart, where the relay would see ciphertext only.
        relay_meters = relay is not None and nginx is None
        mark("server ready" + (" behind the relay" if relay else ""))
        rss_start = server.rss_bytes()
        if publisher is not None:
            plan.url = server.publish_base  # straight to the server, never through the relay or the proxy
            publisher.send({"cmd": "plan", "plan": _fields(plan)})
        for shard_index, (fleet, part) in enumerate(zip(fleets, parts, strict=True)):
            config = FleetConfig(
                transport=transport,
                url=f"{'https' if tls else 'http'}://127.0.0.1:{relay.port if relay else front[1]}",
                channels=part,
                poll_timeout_s=scenario.poll_timeout_s,
                poll_interval_s=scenario.poll_interval_s,
                compression=scenario.compression,
                throttle=scenario.throttle,
                seed=(scenario.seed + repetition) * 1000 + shard_index,
                server=scenario.server,
                upgrade=scenario.upgrade,
                drop_every_s=scenario.drop_every_s,
                request_headers=scenario.request_headers,
                http=scenario.http,
                cert_path=nginx.cert_path if nginx is not None and tls else None,
                streams_per_connection=scenario.streams_per_connection,
                late_head=scenario.proxy_buffering,
            )
            fleet.send({"cmd": "config", "config": _fields(config)})
        for fleet in fleets:
            if not fleet.expect("ready", READY_TIMEOUT_S)["ready"]:
                raise RunError("a fleet process did not connect every subscriber")
        mark("fleet ready")
        # The lab's /stats says when every connection is held. A peer has none: its fleet's ready is the subscription
        # itself (a Socket.IO session in its room; an open WebSocket or stream; Nchan's long poll starts at its
        # buffer's oldest message, so a poll not yet held loses nothing).
        held = {"longpoll": "every long poll to be held", "websocket": "every WebSocket to be open"}
        held["sse"] = "every SSE stream to be open"
        if server.peer is None and transport in held:
            _wait(
                lambda: server.stats()["connections"].get(transport, 0) >= scenario.subscribers,
                READY_TIMEOUT_S,
                held[transport],
            )
        if publisher is not None and not publisher.expect("ready", READY_TIMEOUT_S)["ready"]:
            raise RunError("the publisher did not get ready")
        mark("connections held, publisher ready")
        # The schedule: T0 a little ahead, so every process is waiting when it comes.
        t0 = time.monotonic_ns() + 100_000_000
        if publisher is not None:
            publisher.send({"cmd": "start", "t0": t0})
        _sleep_until(t0 + round(scenario.warmup_s * 1e9))
        cpu0, stats0, host0 = server.cpu_seconds(), server.stats(), psutil.cpu_times()._asdict()
        proxy_cpu0 = nginx.cpu_seconds() if nginx is not None else 0.0
        for fleet in fleets:
            fleet.send({"cmd": "window"})
        opened = [fleet.expect("window", READY_TIMEOUT_S) for fleet in fleets]
        wire0 = _relay_totals(relay.snapshot()) if relay and relay_meters else _wire_totals(opened)
        window_stats0 = [w["window"] for w in opened]
        pub_report: dict[str, Any] | None = None
        last_seq: dict[str, int] = {}
        if publisher is not None:
            pub_report = publisher.expect("report", scenario.duration_s + READY_TIMEOUT_S)["report"]
            last_seq = pub_report["last_seq"]
        else:
            time.sleep(scenario.duration_s)
        idle_seconds = (time.monotonic_ns() - t0) / 1e9 - scenario.warmup_s if scenario.idle else None
        drain_timeout = DRAIN_TIMEOUT_S + 4 * (scenario.link.one_way_ms + scenario.link.jitter_ms) / 1000
        for fleet in fleets:
            fleet.send({"cmd": "drain", "last_seq": last_seq, "timeout": drain_timeout})
        drained = [fleet.expect("drained", drain_timeout + READY_TIMEOUT_S) for fleet in fleets]
        mark("drained")
        wire1 = _relay_totals(relay.snapshot()) if relay and relay_meters else _wire_totals(drained)
        cpu1, stats1, host1 = server.cpu_seconds(), server.stats(), psutil.cpu_times()._asdict()
        proxy_cpu1 = nginx.cpu_seconds() if nginx is not None else 0.0
        rss_end = server.rss_bytes()
        if server.exited():
            server_errors.append("the server exited during the run")
        reports = []
        for fleet in fleets:
            fleet.send({"cmd": "stop"})
        for fleet in fleets:
            reports.append(fleet.expect("report", READY_TIMEOUT_S)["report"])
        mark("fleet reports in")
    merged = merge_reports(reports)
    if scenario.idle:
        # Nothing latency-like is measured when idle; a loop-lag spike (every hold ending at once) is no reason.
        merged["reasons"] = saturation_reasons(merged["cpu_percent"], [])
    merged["expected"] = sum(int((pub_report or {}).get("measured", {}).get(ch, 0)) for ch in channels)
    merged["window_stats"] = _diff_stats([d["stats"] for d in drained], window_stats0)
    if pub_report is not None and pub_report["errors"]:
        server_errors.append(f"{pub_report['errors']} publishes failed")
    if merged["errors"]:
        server_errors.extend(merged["errors"])
    handshake = {"up": 0, "down": 0, "connections": 0}
    streams = ("websocket", "floor", "sse")  # one request opens a stream: its head is the handshake
    if transport in streams:
        handshake = {"up": wire1["head_up"], "down": wire1["head_down"], "connections": wire1["heads"]}
    steady = {
        "up": wire1["up"] - wire0["up"] - (wire1["head_up"] - wire0["head_up"]),
        "down": wire1["down"] - wire0["down"] - (wire1["head_down"] - wire0["head_down"]),
    }
    if transport not in streams:
        # HTTP requests each carry their headers: they are steady-state bytes (docs/results.md).
        steady = {"up": wire1["up"] - wire0["up"], "down": wire1["down"] - wire0["down"]}
    requests = 0
    if stats0 and stats1:
        requests = stats1["requests"]["longpoll"] - stats0["requests"]["longpoll"]
    elif server.peer is not None and transport in ("longpoll", "polling"):
        requests = int(merged["window_stats"].get("requests", 0))  # no /stats: the subscribers' own count
    result = assemble_result(
        scenario_block=scenario.block(transport),
        repetition=repetition,
        started_utc=started_utc,
        wall_s=time.monotonic() - t_start,
        publisher=pub_report,
        fleet=merged,
        relay_window={"steady": steady, "handshake": handshake, "meter": "relay" if relay_meters else "client"},
        server_window={
            "cpu_s": cpu1 - cpu0,
            "rss_bytes": rss_end,
            "rss_start_bytes": rss_start,
            "requests": requests,
            **({"peer": server.peer} if server.peer is not None else {}),
        },
        idle_seconds=idle_seconds,
        server_errors=server_errors,
        host=host_window(host0, host1, psutil.cpu_count() or 1),
    )
    if nginx is not None:
        result["proxy"] = proxy_block(
            nginx, scenario, tls, proxy_cpu1 - proxy_cpu0, opened, drained, merged, int(merged["delivered_measured"])
        )
    return result


def _ratio(value: float, events: int) -> float | None:
    return value / events if events else None


def proxy_block(
    nginx: Nginx,
    scenario: Scenario,
    tls: bool,
    cpu_s: float,
    opened: list[dict[str, Any]],
    drained: list[dict[str, Any]],
    merged: dict[str, Any],
    delivered: int,
) -> dict[str, Any]:
    """The raw result's ``proxy`` block (docs/results.md): nginx's own CPU, the TLS bytes, HPACK, the reads.

    TLS bytes are the window's (the fleet's TLS meters at the window's edges, the handshakes apart); HPACK's
    header blocks are the whole run's (a connection's first request is made before the window opens).
    """
    tls_block: dict[str, Any] | None = None
    if tls:
        keys = ("up", "down", "handshake_up", "handshake_down", "handshakes")
        start = {k: sum(int(a.get("tls", {}).get(k, 0)) for a in opened) for k in keys}
        end = {k: sum(int(a.get("tls", {}).get(k, 0)) for a in drained) for k in keys}
        window = {k: end[k] - start[k] for k in keys}
        steady = {"up": window["up"] - window["handshake_up"], "down": window["down"] - window["handshake_down"]}
        tls_block = {
            **window,
            "steady": steady,
            "per_event": {"up": _ratio(steady["up"], delivered), "down": _ratio(steady["down"], delivered)},
        }
    hpack = merged.get("hpack") if scenario.http == "2" else None
    return {
        "name": "nginx",
        "versions": dict(nginx.versions),
        "options": {
            "http": scenario.http,
            "tls": tls,
            "streams_per_connection": scenario.streams_per_connection,
            "sse_buffering": scenario.proxy_buffering,
            "workers": nginx.workers,
            "config": "docs/nginx/lab.conf",
            "publisher": "direct",
        },
        "cpu_s": cpu_s,
        "cpu_us_per_event": _ratio(cpu_s * 1e6, delivered),
        "tls": tls_block,
        "hpack": dict(hpack) if hpack else None,
        "reads": {
            "reads": int(merged.get("reads", 0)),
            "events_per_read": _ratio(delivered, int(merged.get("reads", 0))),
            "largest_read": int(merged.get("largest_read", 0)),
        },
    }


def _fields(obj: PublishPlan | FleetConfig) -> dict[str, Any]:
    """A plan or a fleet configuration as the JSON its agent reads (its constructor's arguments)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


def _diff_stats(ends: list[dict[str, int]], starts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for end, start in zip(ends, starts, strict=True):
        for key, value in end.items():
            total[key] = total.get(key, 0) + value - start.get(key, 0)
    return total


def temp_log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lab-bench-logs-"))


# --- a whole profile ------------------------------------------------------------------------------------------


def _fmt_ms(us: float | None, count: int | None = None, percentile: float | None = None) -> str:
    """Milliseconds, or ``-`` when there is no value or too few samples for ``percentile``."""
    if us is None or (percentile is not None and (count or 0) < min_samples(percentile)):
        return "-"
    return f"{us / 1000:.2f}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(results: list[dict[str, Any]]) -> Any:
    """A rich table: one row per scenario/transport/repetition."""
    from rich.table import Table

    table = Table(title="Benchmark summary (latency end to end, ms)", show_lines=False)
    for column in ("scenario", "transport", "r", "delivered", "loss", "p50", "p99", "max"):
        table.add_column(column, justify="left" if column in ("scenario", "transport") else "right")
    for column in ("B/event down", "req/event", "server us/event", "flags"):
        table.add_column(column, justify="right" if column != "flags" else "left")
    for r in results:
        c, e2e = r["counters"], r["latency"]["end_to_end"]
        loss = c["missing"] + c["duplicate"] + c["out_of_order"]
        table.add_row(
            r["scenario"]["name"],
            r["scenario"]["transport"],
            str(r["repetition"]),
            f"{c['delivered']}/{c['expected']}",
            "[red]" + str(loss) + "[/red]" if loss else "0",
            _fmt_ms(e2e["p50_us"], e2e["count"], 50),
            _fmt_ms(e2e["p99_us"], e2e["count"], 99),
            _fmt_ms(e2e["max_us"]),
            _fmt(r["bytes"]["per_event"]["down"]),
            _fmt(r["http"]["requests_per_event"], 2),
            _fmt(r["server"]["cpu_us_per_event"]),
            ",".join(r["flags"]) or ("" if r["valid"] else "invalid"),
        )
    return table


def _say_done(console: Any, label: str, result: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """One line on the console for a finished repetition; transport results are kept for the summary table."""
    if "memory" in result:
        peak = result["memory"]["peak_rss_bytes"] / 2**20
        dropped = result["memory"]["stalled_dropped_after_s"]
        console.print(f"{label}: peak RSS {peak:.0f} MiB, stalled readers dropped after {dropped} s")
        return
    results.append(result)
    c, e2e = result["counters"], result["latency"]["end_to_end"]
    console.print(
        f"{label}: {c['delivered']}/{c['expected']} delivered, p50 "
        f"{_fmt_ms(e2e['p50_us'], e2e['count'], 50)} ms, p99 "
        f"{_fmt_ms(e2e['p99_us'], e2e['count'], 99)} ms (n={e2e['count']}) "
        f"{' '.join(result['flags'])}"
    )


def run_profile(
    profile: Profile,
    out: Path,
    *,
    only: str | None = None,
    command: str = "python -m bench run",
    report: bool = True,
) -> Path:
    """Run every selected scenario of ``profile`` into ``out/runs/<UTC>-<profile>/``; returns that directory.

    Every repetition becomes a raw file as soon as it ends; one that raised is written as ``status: failed``
    with its error, and the profile goes on. ``meta.json`` is rewritten after each, so an interrupted profile
    (KeyboardInterrupt) leaves a readable run whose meta has no ``finished_utc``. After everything else is
    written (meta.json, latest, report), :class:`RunError` says how many runs failed.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=200)
    scenarios = selected(profile.scenarios, only)
    if not scenarios:
        raise RunError(f"no scenario of profile {profile.name!r} matches {only!r}")
    runs = [(s, t, k) for s in scenarios for k in range(1, s.repetitions + 1) for t in s.transports]
    started_utc, wall0 = utc_now(), time.monotonic()
    run_dir = out / "runs" / run_dir_name(profile.name)
    run_dir.mkdir(parents=True, exist_ok=False)
    log_dir = run_dir / "logs"
    console.print(f"[bold]{profile.name}[/bold]: {len(runs)} runs of {len(scenarios)} scenarios -> {run_dir}")
    console.print("measuring the relay's own cost ...")
    meta = run_meta(profile.name, command, started_utc, measure_overhead(samples=1000, bulk_bytes=4 << 20))
    meta["planned"] = [result_file_name(s.name, t, k) for s, t, k in runs]
    meta["files"] = []
    meta["finished_utc"] = None

    def save_meta() -> None:
        validate_meta(meta)
        write_json(run_dir / "meta.json", meta)

    save_meta()
    console.print("capturing one long poll and one WebSocket session byte for byte ...")
    try:
        write_capture(run_dir)
    except (OSError, RuntimeError, ValueError, TimeoutError) as exc:  # the numbers do not depend on it
        console.print(f"[yellow]no capture.json[/yellow]: {exc!r}")
    if any(s.server == "flask_socketio" for s in scenarios):
        console.print("capturing one Socket.IO session (polling, then the upgrade) byte for byte ...")
        try:
            write_socketio_capture(run_dir)
        except (OSError, RuntimeError, ValueError, TimeoutError) as exc:  # the numbers do not depend on it
            console.print(f"[yellow]no socketio-capture.json[/yellow]: {exc!r}")
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("starting", total=len(runs))
            for scenario, transport, k in runs:
                label = f"{scenario.name} / {transport} / r{k}"
                progress.update(task, description=label)
                started, t0 = utc_now(), time.monotonic()
                try:
                    run = run_memory if scenario.kind == "memory" else run_one
                    result = run(scenario, transport, k, log_dir)
                    validate_result(result)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    result = failed_result(scenario.block(transport), k, started, time.monotonic() - t0, error)
                    failures.append(f"{label}: {error}")
                    progress.console.print(f"[red]FAILED[/red] {label}: {error} (logs: {log_dir})")
                else:
                    _say_done(progress.console, label, result, results)
                name = result_file_name(scenario.name, transport, k)
                write_json(run_dir / name, result)
                meta["files"].append(name)
                save_meta()
                progress.advance(task)
    except KeyboardInterrupt:
        Child.stop_all()  # what a run's own cleanup could not reach (the interrupt fell while it was starting)
        console.print(
            f"[yellow]interrupted[/yellow]: {len(meta['files'])} of {len(runs)} runs written to {run_dir}; "
            f"`python -m bench report {run_dir}` reports them and lists the missing ones"
        )
        update_latest(out, run_dir)
        raise
    meta["finished_utc"] = utc_now()
    save_meta()
    update_latest(out, run_dir)
    console.print(summary_table(results))
    done = len(meta["files"]) - len(failures)
    console.print(f"{done} of {len(runs)} runs measured in {time.monotonic() - wall0:.0f} s -> {run_dir}")
    for failure in failures:
        console.print(f"[red]failed run[/red] {failure}")
    if report:
        from bench.report import write_report

        written = write_report(run_dir)
        console.print(f"report: {run_dir / 'REPORT.md'} ({len(written)} files)")
    if failures:
        raise RunError(f"{len(failures)} of {len(runs)} runs failed (their errors are in their raw files in {run_dir})")
    return run_dir
