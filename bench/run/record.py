"""Raw results: assembling one scenario repetition's JSON, and writing a run's files.

Run layer of the benchmark, pure where it can be: :func:`assemble_result` turns what the
runner measured (publisher report, merged fleet reports, relay and server
snapshots) into the object docs/results.md defines, and computes the flags;
:func:`failed_result` records a repetition that could not be carried out;
:func:`write_json` and :func:`update_latest` lay the files out. Nothing here starts a process.

Counting rules (docs/metrics.md says why):

- ``expected`` = for every subscriber, the measured events acknowledged on
  its channel; ``delivered`` = measured events accepted by the subscribers.
- ``missing`` = the larger of the trackers' missing count (over the whole
  session, warm-up included: a lost warm-up event is still a loss) and
  ``expected - delivered``; ``duplicate``, ``out_of_order``, ``gap_lost``,
  ``gaps``, ``resets`` come from the trackers, ``reconnects`` from the
  subscribers' statistics.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.contract.names import HOST_STEAL_PERCENT, SCHEMA_VERSION
from clients import LatencyHistogram

__all__ = [
    "assemble_result",
    "failed_result",
    "host_window",
    "latency_block",
    "update_latest",
    "utc_now",
    "write_json",
]


def utc_now() -> str:
    """The current UTC time as ``2026-11-27T20:15:00Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def latency_block(hist: LatencyHistogram) -> dict[str, Any]:
    """A latency summary with its encoded HdrHistogram and how many values were clamped into its range."""
    return {**hist.summary(), "hdr": hist.encode(), "clamped": hist.clamped}


def host_window(start: Mapping[str, float], end: Mapping[str, float], cpus: int) -> dict[str, Any]:
    """What the whole machine did between two readings of its CPU times (``psutil.cpu_times()._asdict()``).

    ``steal_percent`` is the share of all CPU time (every CPU, every state) that the hypervisor gave to
    other guests while this one had work to run; ``busy_percent`` the share this machine used. The
    readings are /proc/stat's, in clock ticks (10 ms): on a 10 s window over 2 CPUs a step of 0.05 %.
    """
    delta = {k: max(float(end[k]) - float(start[k]), 0.0) for k in start}
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)  # guest is in user
    idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)
    steal = delta.get("steal", 0.0)

    def share(part: float) -> float:
        return round(100 * part / total, 2) if total > 0 else 0.0

    return {
        "seconds": round(total / cpus, 3),
        "cpus": cpus,
        "busy_percent": share(total - idle - steal),
        "steal_percent": share(steal),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def assemble_result(
    *,
    scenario_block: dict[str, Any],
    repetition: int,
    started_utc: str,
    wall_s: float,
    publisher: dict[str, Any] | None,
    fleet: dict[str, Any],
    relay_window: dict[str, Any],
    server_window: dict[str, Any],
    idle_seconds: float | None,
    server_errors: list[str],
    host: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One scenario repetition as docs/results.md defines it.

    ``fleet`` is :func:`bench.agents.fleet.merge_reports`'s output plus ``window_stats`` (subscriber statistics
    over the window) and ``expected``; ``relay_window`` holds ``steady`` ``{up, down}``, ``handshake``
    ``{up, down, connections}``; ``server_window`` holds ``cpu_s``, ``rss_bytes``, ``rss_start_bytes``,
    ``requests``; ``host`` is :func:`host_window` over the same window (``None``: not measured).
    """
    tracked = fleet["counters"]
    delivered = int(fleet["delivered_measured"])
    expected = int(fleet["expected"])
    counters = {
        "expected": expected,
        "delivered": delivered,
        "missing": max(int(tracked["missing"]), expected - delivered, 0),
        "duplicate": int(tracked["duplicate"]),
        "out_of_order": int(tracked["out_of_order"]),
        "gap_lost": int(tracked["gap_lost"]),
        "gaps": int(tracked["gaps"]),
        "resets": int(tracked["resets"]),
        "reconnects": int(fleet["stats"].get("reconnects", 0)),
    }
    steady = relay_window["steady"]
    subscribers = int(scenario_block["subscribers"])
    requests = int(server_window["requests"])
    rss_growth = int(server_window["rss_bytes"]) - int(server_window["rss_start_bytes"])
    idle = None
    if idle_seconds is not None:
        minutes = idle_seconds / 60
        idle = {
            "seconds": idle_seconds,
            "bytes_per_connection_per_min": {
                "up": steady["up"] / subscribers / minutes,
                "down": steady["down"] / subscribers / minutes,
            },
            "rss_per_connection_bytes": rss_growth / subscribers,
        }
    saturated = bool(fleet["reasons"])
    behind = bool(publisher and publisher["behind"])
    flags = []
    if counters["missing"] + counters["duplicate"] + counters["out_of_order"] > 0:
        flags.append("loss")
    if saturated:
        flags.append("clients_saturated")
    if behind:
        flags.append("publisher_behind")
    if server_errors:
        flags.append("server_errors")
    if host is not None and host["steal_percent"] > HOST_STEAL_PERCENT:
        flags.append("host_steal")
    return {
        "schema": SCHEMA_VERSION,
        "status": "ok",
        "scenario": scenario_block,
        "repetition": repetition,
        "started_utc": started_utc,
        "wall_s": round(wall_s, 3),
        "publisher": {
            "intended": int(publisher["intended"]) if publisher else 0,
            "sent": int(publisher["sent"]) if publisher else 0,
            "errors": int(publisher["errors"]) if publisher else 0,
            "lag_ms": {
                "p99": float(publisher["lag_ms"]["p99"]) if publisher else 0.0,
                "max": float(publisher["lag_ms"]["max"]) if publisher else 0.0,
            },
        },
        "counters": counters,
        "latency": {"end_to_end": latency_block(fleet["end_to_end"]), "delivery": latency_block(fleet["delivery"])},
        "bytes": {
            "meter": relay_window.get("meter", "relay"),
            "handshake": {k: int(relay_window["handshake"][k]) for k in ("up", "down", "connections")},
            "steady": {"up": int(steady["up"]), "down": int(steady["down"])},
            "per_event": {"up": _ratio(steady["up"], delivered), "down": _ratio(steady["down"], delivered)},
        },
        "http": {
            "requests": requests,
            "requests_per_event": _ratio(requests, delivered),
            "empty_responses": int(fleet["window_stats"].get("empty_responses", 0)),
        },
        "server": {
            "cpu_s": round(float(server_window["cpu_s"]), 6),
            "cpu_us_per_event": _ratio(float(server_window["cpu_s"]) * 1e6, delivered),
            "rss_bytes": int(server_window["rss_bytes"]),
            "rss_start_bytes": int(server_window["rss_start_bytes"]),
            # RSS can shrink over a run (the allocator returns memory): then there is no per-connection figure.
            "rss_per_connection_bytes": rss_growth / subscribers if rss_growth >= 0 else None,
            **({"peer": server_window["peer"]} if "peer" in server_window else {}),
        },
        "clients": {
            "processes": len(fleet["cpu_percent"]),
            "cpu_percent": [round(c, 2) for c in fleet["cpu_percent"]],
            "loop_lag_ms": {
                "p99": max(fleet["loop_lag_p99_ms"], default=0.0),
                "max": max(fleet["loop_lag_max_ms"], default=0.0),
            },
            "saturated": saturated,
            "reasons": list(fleet["reasons"]),
        },
        "idle": idle,
        **({"host": host} if host is not None else {}),
        "valid": not (saturated or behind),
        "flags": flags,
    }


def failed_result(
    scenario_block: dict[str, Any], repetition: int, started_utc: str, wall_s: float, error: str
) -> dict[str, Any]:
    """A repetition that could not be carried out, as a raw file: which one, when, and the error."""
    return {
        "schema": SCHEMA_VERSION,
        "status": "failed",
        "scenario": scenario_block,
        "repetition": repetition,
        "started_utc": started_utc,
        "wall_s": round(wall_s, 3),
        "error": error or "unknown error",
    }


def write_json(path: Path, obj: Any) -> None:
    """Write once, atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def update_latest(results_root: Path, run_dir: Path) -> Path:
    """Point ``<results_root>/latest`` at ``run_dir`` (a relative symlink), replacing the old one."""
    link = results_root / "latest"
    tmp = results_root / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(run_dir, results_root))
    os.replace(tmp, link)
    return link
