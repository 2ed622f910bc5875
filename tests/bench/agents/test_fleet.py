"""Tests of bench/fleet.py: merging across processes, the recorder, and the saturation flag forced by throttling."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from bench.agents.fleet import (
    CPU_SATURATED_PERCENT,
    LOOP_LAG_SATURATED_MS,
    FleetConfig,
    FleetRecorder,
    merge_reports,
    saturation_reasons,
)
from bench.agents.floor import FloorProcess
from bench.agents.publisher import HttpPublishPool
from bench.contract.payload import encode_payload
from bench.process import Child
from clients import Received
from clients.latency import LatencyHistogram
from tests.support import UNIT, run_server


def report(values: list[int], counters: dict[str, int], cpu: float, lag_us: list[int]) -> dict[str, Any]:
    e2e, delivery, lag = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in values:
        e2e.record_us(v)
        delivery.record_us(v // 2)
    for v in lag_us:
        lag.record_us(v)
    e2e.record_us(0.2)  # below the histogram's 1 µs: clamped, and counted as such
    base = {"delivered": 0, "duplicate": 0, "out_of_order": 0, "missing": 0, "gap_lost": 0, "gaps": 0, "resets": 0}
    return {
        "subscribers": 3,
        "delivered_measured": len(values),
        "delivered_warm": 1,
        "foreign": 0,
        "counters": {**base, **counters},
        "stats": {"requests": 10, "reconnects": 1},
        "end_to_end": e2e.encode(),
        "delivery": delivery.encode(),
        "clamped": {"end_to_end": e2e.clamped, "delivery": delivery.clamped},
        "loop_lag": lag.encode(),
        "cpu_percent": cpu,
        "errors": [],
    }


def test_merge_adds_counters_and_merges_histograms_exactly() -> None:
    a = report([100, 200, 300], {"delivered": 4, "duplicate": 1}, 10.0, [50, 60])
    b = report([400, 5000], {"delivered": 3, "missing": 2, "out_of_order": 1}, 30.0, [25_000] * 100)
    merged = merge_reports([a, b])
    assert merged["subscribers"] == 6
    assert merged["delivered_measured"] == 5
    assert merged["delivery"].clamped == 0
    assert merged["counters"]["delivered"] == 7
    assert (merged["counters"]["duplicate"], merged["counters"]["missing"], merged["counters"]["out_of_order"]) == (
        1,
        2,
        1,
    )
    assert merged["stats"] == {"requests": 20, "reconnects": 2}
    e2e: LatencyHistogram = merged["end_to_end"]
    assert e2e.count == 7  # five values and one clamped per report
    assert e2e.clamped == 2  # survives the encoding between processes
    assert e2e.summary()["min_us"] == 1
    assert e2e.summary()["max_us"] == pytest.approx(5000, rel=1e-3)
    assert merged["delivery"].count == 5
    assert merged["cpu_percent"] == [10.0, 30.0]
    assert merged["loop_lag_p99_ms"][0] == pytest.approx(0.06, rel=1e-2)
    assert merged["loop_lag_p99_ms"][1] == pytest.approx(25.0, rel=1e-2)
    # Process 1's loop lag is above the threshold: the fleet is saturated, and says which process and why.
    assert merged["reasons"] == [f"process 1 loop lag p99 25.0 ms (> {LOOP_LAG_SATURATED_MS:.0f} ms)"]


def test_merge_round_trips_through_encode() -> None:
    merged = merge_reports([report([7, 8, 9], {}, 1.0, [1])])
    again = LatencyHistogram.decode(merged["end_to_end"].encode())
    assert again.summary() == merged["end_to_end"].summary()


@pytest.mark.parametrize(
    ("cpu", "lag", "reasons"),
    [
        ([10.0, 84.9], [1.0, 19.9], 0),
        ([CPU_SATURATED_PERCENT + 0.1], [0.0], 1),
        ([0.0], [LOOP_LAG_SATURATED_MS + 0.1], 1),
        ([99.0, 99.0], [50.0, 1.0], 3),
    ],
)
def test_saturation_thresholds(cpu: list[float], lag: list[float], reasons: int) -> None:
    assert len(saturation_reasons(cpu, lag)) == reasons


def test_recorder_counts_measured_events_only() -> None:
    rec = FleetRecorder()
    now_wall, now_mono = time.time_ns(), time.monotonic_ns()

    def received(index: int, warm: bool, data: Any = None) -> Received:
        payload = data if data is not None else [index, now_mono - 2_000_000, int(warm), index + 1, ""]
        return Received("c", index + 1, now_wall - 1_000_000, payload, now_wall, now_mono)

    rec.on_event(received(0, True))
    rec.on_event(received(1, False))
    rec.on_event(received(2, False))
    rec.on_event(received(3, False, data={"not": "ours"}))
    assert (rec.warm, rec.delivered, rec.foreign) == (1, 2, 1)
    assert rec.end_to_end.count == rec.delivery.count == 2
    assert rec.end_to_end.summary()["min_us"] == pytest.approx(2000, rel=1e-2)
    assert rec.delivery.summary()["min_us"] == pytest.approx(1000, rel=1e-2)


def test_recorder_keeps_end_to_end_only_for_a_peer_that_stamps_nothing() -> None:
    rec = FleetRecorder()
    now_wall, now_mono = time.time_ns(), time.monotonic_ns()
    rec.on_event(Received("c", 1, None, [0, now_mono - 3_000_000, 0, 1, ""], now_wall, now_mono))
    assert (rec.delivered, rec.end_to_end.count, rec.delivery.count) == (1, 1, 0)


def run_fleet_process(tmp_path: Path, throttle: float, events: int) -> dict[str, Any]:
    """A real fleet process (one floor subscriber) against the floor server; returns its merged report."""
    floor = FloorProcess()
    log = (tmp_path / "fleet.log").open("wb")
    fleet = Child(["-m", "bench.agents.fleet"], log=log)
    try:
        config = FleetConfig("floor", f"http://127.0.0.1:{floor.port}", ["c", "c"], throttle=throttle)
        fleet.send({"cmd": "config", "config": dataclasses.asdict(config)})
        assert fleet.expect("ready", 30 * UNIT)["ready"] is True
        fleet.send({"cmd": "window"})
        fleet.expect("window", 30 * UNIT)

        async def publish() -> int:
            pool = HttpPublishPool("127.0.0.1", floor.port, connections=1)
            await pool.connect()
            seq = 0
            try:
                for i in range(events):
                    seq = await pool.publish("c", encode_payload(i, time.monotonic_ns(), i == 0, 40))
                    await asyncio.sleep(0.05)
            finally:
                await pool.close()
            return seq

        last = asyncio.run(publish())
        fleet.send({"cmd": "drain", "last_seq": {"c": last}, "timeout": 30 * UNIT})
        assert fleet.expect("drained", 60 * UNIT)["drained"] is True
        fleet.send({"cmd": "stop"})
        return merge_reports([fleet.expect("report", 30 * UNIT)["report"]])
    finally:
        fleet.stop()
        floor.stop()
        log.close()


def test_fleet_process_counts_every_event_exactly(tmp_path: Path) -> None:
    merged = run_fleet_process(tmp_path, throttle=0.0, events=20)
    # Two subscribers on channel c; event 0 is warm-up: 19 measured events each.
    assert merged["delivered_measured"] == 38
    assert merged["counters"]["delivered"] == 40
    assert merged["counters"]["missing"] == merged["counters"]["duplicate"] == 0
    assert merged["end_to_end"].count == merged["delivery"].count == 38
    assert merged["errors"] == []


def test_throttled_fleet_process_is_flagged_saturated(tmp_path: Path) -> None:
    merged = run_fleet_process(tmp_path, throttle=0.99, events=20)
    assert merged["delivered_measured"] == 38
    assert merged["reasons"], merged
    assert all("process 0" in reason for reason in merged["reasons"])


@pytest.mark.parametrize(
    ("runtime", "transport", "headers"),
    [
        ("werkzeug", "longpoll", "bare"),
        ("gevent", "longpoll", "bare"),
        ("gevent", "polling", "bare"),
        ("werkzeug", "websocket", "bare"),
        ("gevent", "websocket", "bare"),
        ("gevent", "longpoll", "browser"),
        ("gevent", "sse", "browser"),
        ("gevent", "websocket", "browser"),
    ],
)
def test_a_fleet_process_counts_every_event_exactly(tmp_path: Path, runtime: str, transport: str, headers: str) -> None:
    """The fleet's lean clients (bare HTTP poller, lean WebSocket, lean SSE) against the real server: every event
    once, with bare requests and with Chromium's request headers (which the server must accept as a browser's)."""
    with run_server(runtime) as server, (tmp_path / "fleet.log").open("wb") as log:
        fleet = Child(["-m", "bench.agents.fleet"], log=log)
        try:
            config = FleetConfig(
                transport,
                server.url,
                ["a", "b", "a"],
                poll_timeout_s=2.0,
                poll_interval_s=0.05,
                request_headers=headers,
            )
            fleet.send({"cmd": "config", "config": dataclasses.asdict(config)})
            assert fleet.expect("ready", 30 * UNIT)["ready"] is True

            async def publish() -> dict[str, int]:
                pool = HttpPublishPool("127.0.0.1", server.port, connections=2)
                await pool.connect()
                last: dict[str, int] = {}
                try:
                    for i in range(30):
                        channel = "ab"[i % 2]
                        last[channel] = await pool.publish(channel, encode_payload(i, time.monotonic_ns(), i < 2, 40))
                        await asyncio.sleep(0.01)
                finally:
                    await pool.close()
                return last

            last = asyncio.run(publish())
            fleet.send({"cmd": "drain", "last_seq": last, "timeout": 30 * UNIT})
            assert fleet.expect("drained", 60 * UNIT)["drained"] is True
            fleet.send({"cmd": "stop"})
            merged = merge_reports([fleet.expect("report", 30 * UNIT)["report"]])
        finally:
            fleet.stop()
    # 15 events per channel; events 0 (on a) and 1 (on b) are warm-up. Channel a has two subscribers, b one.
    assert last == {"a": 15, "b": 15}
    assert merged["counters"]["delivered"] == 2 * 15 + 15
    assert merged["delivered_measured"] == 2 * 14 + 14
    c = merged["counters"]
    assert c["missing"] == c["duplicate"] == c["out_of_order"] == c["gaps"] == c["resets"] == 0
    assert merged["end_to_end"].count == merged["delivery"].count == 42
    assert merged["errors"] == []
    if transport == "websocket":  # one connection each, every event a frame
        assert (merged["stats"]["connections"], merged["stats"]["frames"], merged["stats"]["requests"]) == (3, 45, 0)
    elif transport == "sse":  # one stream (one request) each
        assert merged["stats"]["connections"] == merged["stats"]["requests"] == 3
    else:
        assert merged["stats"]["requests"] > 0 and merged["stats"]["frames"] == 0


@pytest.mark.parametrize("mode", ["polling", "websocket", "upgrade"])
def test_a_socketio_subscriber_is_ready_only_once_in_its_room(mode: str) -> None:
    """A polling request or an open connection is not yet the room: events emitted before the ack are never seen."""
    from bench.agents.fleet import _connected
    from bench.agents.socketio import SocketIOSubscriber

    sub = SocketIOSubscriber("http://127.0.0.1:9", "c", mode=mode)
    sub.stats.connections = sub.stats.requests = 1  # what made the fleet call it ready before the CONNECT ack
    assert not _connected(sub)
    sub.connected = True
    assert _connected(sub)
