"""Tests of bench/results.py: a raw result is assembled to the schema, with the right flags."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.contract.names import HOST_STEAL_PERCENT, result_file_name, run_dir_name
from bench.contract.scenarios import load_profile
from bench.contract.schema import validate_result
from bench.run.record import assemble_result, host_window, update_latest, utc_now
from clients.latency import LatencyHistogram


def fleet(
    delivered: int = 100, expected: int = 100, missing: int = 0, reasons: list[str] | None = None
) -> dict[str, Any]:
    e2e, delivery = LatencyHistogram(), LatencyHistogram()
    for v in range(delivered):
        e2e.record_us(1000 + v)
        delivery.record_us(500 + v)
    return {
        "delivered_measured": delivered,
        "expected": expected,
        "counters": {"delivered": delivered + 10, "duplicate": 0, "out_of_order": 0, "missing": missing,
                     "gap_lost": 0, "gaps": 0, "resets": 0},
        "stats": {"reconnects": 1, "requests": 40, "empty_responses": 3},
        "window_stats": {"requests": 30, "empty_responses": 2},
        "end_to_end": e2e,
        "delivery": delivery,
        "cpu_percent": [12.5, 20.0],
        "loop_lag_p99_ms": [1.0, 2.5],
        "loop_lag_max_ms": [3.0, 4.0],
        "reasons": reasons or [],
    }  # fmt: skip


def publisher(behind: bool = False) -> dict[str, Any]:
    return {"intended": 100, "sent": 100, "errors": 0, "lag_ms": {"p50": 0.1, "p99": 0.5, "max": 2.0}, "behind": behind}


def assemble(transport: str = "longpoll", idle: float | None = None, **kwargs: Any) -> dict[str, Any]:
    scenario = load_profile("smoke").scenarios[0]
    return assemble_result(
        scenario_block=scenario.block(transport),
        repetition=1,
        started_utc=utc_now(),
        wall_s=3.21,
        publisher=kwargs.pop("pub", publisher()),
        fleet=kwargs.pop("fleet", fleet()),
        relay_window={"steady": {"up": 5000, "down": 20000}, "handshake": {"up": 0, "down": 0, "connections": 0}},
        server_window={"cpu_s": 0.01, "rss_bytes": 2_000_000, "rss_start_bytes": 1_000_000, "requests": 50},
        idle_seconds=idle,
        server_errors=kwargs.pop("errors", []),
        host=kwargs.pop("host", None),
    )


def test_clean_result_matches_the_schema() -> None:
    r = assemble()
    validate_result(r)
    assert r["flags"] == [] and r["valid"]
    assert r["counters"]["delivered"] == r["counters"]["expected"] == 100
    assert r["counters"]["reconnects"] == 1
    assert r["bytes"]["per_event"] == {"up": 50.0, "down": 200.0}
    assert r["http"]["requests_per_event"] == 0.5
    assert r["http"]["empty_responses"] == 2
    assert r["server"]["cpu_us_per_event"] == pytest.approx(100.0)
    assert r["server"]["rss_per_connection_bytes"] == pytest.approx(1_000_000 / 6)
    assert r["latency"]["end_to_end"]["count"] == 100
    assert r["latency"]["end_to_end"]["min_us"] == 1000
    assert r["clients"]["loop_lag_ms"] == {"p99": 2.5, "max": 4.0}


def test_missing_measured_events_are_loss_even_if_trackers_saw_none() -> None:
    r = assemble(fleet=fleet(delivered=97, expected=100))
    validate_result(r)
    assert r["counters"]["missing"] == 3
    assert r["flags"] == ["loss"] and r["valid"]


def test_tracker_missing_counts_as_loss() -> None:
    r = assemble(fleet=fleet(missing=2))
    validate_result(r)
    assert r["counters"]["missing"] == 2 and "loss" in r["flags"]


def test_saturated_clients_and_late_publisher_make_the_run_invalid() -> None:
    r = assemble(fleet=fleet(reasons=["process 0 used 99% of a core (> 85%)"]), pub=publisher(behind=True))
    validate_result(r)
    assert r["flags"] == ["clients_saturated", "publisher_behind"]
    assert not r["valid"] and r["clients"]["saturated"]


def test_server_errors_are_flagged_but_do_not_invalidate() -> None:
    r = assemble(errors=["the server exited during the run"])
    validate_result(r)
    assert r["flags"] == ["server_errors"] and r["valid"]


def test_idle_result() -> None:
    r = assemble(idle=30.0, pub=None, fleet=fleet(delivered=0, expected=0))
    validate_result(r)
    # 6 subscribers, 30 s: bytes / 6 / 0.5 min.
    assert r["idle"]["bytes_per_connection_per_min"] == {"up": 5000 / 3, "down": 20000 / 3}
    assert r["bytes"]["per_event"] == {"up": None, "down": None}
    assert r["latency"]["end_to_end"]["count"] == 0 and r["latency"]["end_to_end"]["p50_us"] is None


def test_names_and_latest_link(tmp_path: Path) -> None:
    assert run_dir_name("quick", dt.datetime(2026, 11, 27, 20, 15, tzinfo=dt.UTC)) == "20261127T201500Z-quick"
    assert result_file_name("rate-100", "websocket", 2) == "rate-100--websocket--r2.json"
    first, second = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    first.mkdir(parents=True)
    second.mkdir()
    update_latest(tmp_path, first)
    link = update_latest(tmp_path, second)
    assert link.is_symlink() and link.resolve() == second.resolve()
    assert not Path(link.readlink()).is_absolute()


def times(**kwargs: float) -> dict[str, float]:
    """CPU times in seconds, every state psutil has on Linux, zero unless given."""
    states = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
    return {k: kwargs.get(k, 0.0) for k in states}


def test_host_window_shares_of_the_machines_cpu_time() -> None:
    start = times(user=100, system=50, idle=1000, steal=10, guest=5)
    end = times(user=112, system=53, idle=1003, iowait=1, steal=11, guest=7)  # 20 s of CPU time over 2 CPUs
    host = host_window(start, end, cpus=2)
    assert host == {"seconds": 10.0, "cpus": 2, "busy_percent": 75.0, "steal_percent": 5.0}
    assert host_window(start, start, cpus=2)["steal_percent"] == 0.0  # nothing elapsed: no division by zero


def test_host_window_of_two_real_readings_adds_up() -> None:
    start = psutil.cpu_times()._asdict()
    sum(i * i for i in range(300_000))  # some work between the readings
    host = host_window(start, psutil.cpu_times()._asdict(), psutil.cpu_count() or 1)
    assert 0 <= host["busy_percent"] + host["steal_percent"] <= 100
    assert host["cpus"] == (psutil.cpu_count() or 1)


@pytest.mark.parametrize(("steal", "flagged"), [(0.0, False), (HOST_STEAL_PERCENT, False), (41.0, True)])
def test_host_steal_is_flagged_above_the_threshold_and_does_not_invalidate(steal: float, flagged: bool) -> None:
    host = {"seconds": 10.0, "cpus": 2, "busy_percent": 50.0, "steal_percent": steal}
    r = assemble(host=host)
    validate_result(r)
    assert r["host"] == host
    assert ("host_steal" in r["flags"]) is flagged and r["valid"]


def test_a_result_without_a_host_reading_has_no_host_block() -> None:
    r = assemble()
    assert "host" not in r and "host_steal" not in r["flags"]
