"""bench.report.tables: the notebook's tables, from SYNTHETIC runs (tests/bench/fixtures/synthetic.py)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from bench.contract.schema import Run
from bench.report import load_run
from bench.report.tables import (
    beyond_one_transit,
    by_series,
    byte_parts,
    bytes_per_event,
    cost_rows,
    events_per_response,
    format_number,
    idle_rows,
    longpoll_batching,
    loss_totals,
    markdown_table,
    median_of_valid,
    spectrum_scenario,
    transits,
)
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run


def _run(tmp_path: Path, specs: list[Spec]) -> Run:
    return load_run(write_synthetic_run(tmp_path / "run", specs))


def test_bytes_per_event_is_up_plus_down(tmp_path):
    run = _run(tmp_path, [Spec("a", None, reps=1)])
    for r in run.results:
        per_event = r.raw["bytes"]["per_event"]
        assert bytes_per_event(r) == pytest.approx(per_event["up"] + per_event["down"])


def test_bytes_per_event_is_none_without_events(tmp_path):
    run = _run(tmp_path, [Spec("idle", "idle", idle=True, rate=0, transports=("websocket",), reps=1)])
    assert [bytes_per_event(r) for r in run.results] == [None]


def test_median_of_valid_leaves_invalid_repetitions_out(tmp_path):
    run = _run(tmp_path, [Spec("a", None, transports=("longpoll",), reps=3, saturated={("longpoll", 2)})])
    valid = [r.end_to_end.p50_us for r in run.results if r.valid]
    assert len(valid) == 2
    assert median_of_valid(run.results, lambda r: r.end_to_end.p50_us) == statistics.median(valid)


def test_median_of_valid_is_none_when_every_repetition_is_invalid(tmp_path):
    run = _run(
        tmp_path, [Spec("a", None, transports=("longpoll",), reps=2, saturated={("longpoll", 1), ("longpoll", 2)})]
    )
    assert median_of_valid(run.results, lambda r: r.end_to_end.p50_us) is None
    (group,) = by_series(run.results)
    assert (group.name, group.series, len(group.results), group.valid) == ("a", "longpoll", 2, ())


def test_spectrum_scenario_prefers_valid_then_most_transports_then_heaviest_load(tmp_path):
    run = _run(
        tmp_path,
        [
            Spec("two-light", None, transports=("longpoll", "websocket"), rate=10, reps=1),
            Spec("three-light", None, transports=("longpoll", "websocket", "floor"), rate=10, reps=1),
            Spec("three-heavy", None, transports=("longpoll", "websocket", "floor"), rate=100, reps=1),
            Spec(
                "three-heaviest-invalid",
                None,
                transports=("longpoll", "websocket", "floor"),
                rate=1000,
                reps=1,
                saturated={("longpoll", 1)},
            ),
            Spec("delayed", None, transports=("longpoll", "websocket", "floor"), rate=5000, one_way_ms=5, reps=1),
        ],
    )
    chosen = spectrum_scenario(run)
    assert {g.name for g in chosen} == {"three-heavy"}
    assert sorted(g.series for g in chosen) == ["floor", "longpoll", "websocket"]


def test_spectrum_scenario_is_empty_without_both_transports(tmp_path):
    run = _run(tmp_path, [Spec("ws", None, transports=("websocket", "floor"), reps=1)])
    assert spectrum_scenario(run) == []


def test_transits_divide_latency_by_the_one_way_delay(tmp_path):
    run = _run(
        tmp_path,
        [
            Spec("loopback", "delay", transports=("websocket",), reps=1),
            Spec("delay-50", "delay", transports=("websocket", "longpoll"), one_way_ms=50, reps=2),
            Spec("pairs", "pairs", transports=("longpoll",), one_way_ms=50, burst=2, burst_gap_ms=3, rate=2, reps=1),
        ],
    )
    rows = transits(run)
    assert [(t.series, t.one_way_ms, t.burst) for t in rows] == [
        ("longpoll", 50.0, 1),
        ("longpoll", 50.0, 2),
        ("websocket", 50.0, 1),
    ]  # the loopback scenario has no transit
    ws = rows[2]
    delivery = [
        r.delivery for r in run.results if r.scenario.name == "delay-50" and r.scenario.transport == "websocket"
    ]
    assert ws.p50 == pytest.approx(statistics.median(d.p50_us for d in delivery) / 1000 / 50)
    assert ws.max == pytest.approx(statistics.median(d.max_us for d in delivery) / 1000 / 50)
    assert (ws.reps, ws.valid_reps) == (2, 2)
    assert rows[1].technique == "longpoll, 2 ev/s, bursts of 2 3 ms apart"
    end_to_end = transits(run, kind="end_to_end")[2]
    e2e = [r.end_to_end for r in run.results if r.scenario.name == "delay-50" and r.scenario.transport == "websocket"]
    assert all(e.count < 100 and e.p99_us is None for e in e2e)  # too few samples: no p99, none invented
    assert end_to_end.p99 is None
    assert end_to_end.p50 == pytest.approx(statistics.median(e.p50_us for e in e2e) / 1000 / 50)


def test_transits_refuse_an_unknown_latency_kind(tmp_path):
    run = _run(tmp_path, [Spec("a", None, reps=1)])
    with pytest.raises(ValueError, match="kind"):
        transits(run, kind="p50")


def test_cost_rows_follow_the_payload_sweep(tmp_path):
    run = _run(
        tmp_path,
        [
            Spec("other", "rate", rate=5, transports=("longpoll", "websocket"), reps=1),
            Spec("other-2", "rate", rate=50, transports=("longpoll", "websocket"), reps=1),
            *(
                Spec(f"payload-{p}", "payload", payload_bytes=p, transports=("longpoll", "websocket"))
                for p in (16, 1024)
            ),
        ],
    )
    rows = cost_rows(run)
    assert [(c.scenario, c.series) for c in rows] == [
        ("payload-16", "longpoll"),
        ("payload-16", "websocket"),
        ("payload-1024", "longpoll"),
        ("payload-1024", "websocket"),
    ]
    ws = rows[3]
    reps = [r for r in run.results if r.scenario.name == "payload-1024" and r.scenario.transport == "websocket"]
    assert ws.down == pytest.approx(statistics.median(r.raw["bytes"]["per_event"]["down"] for r in reps))
    assert ws.overhead == pytest.approx(ws.total - 1024)
    assert ws.handshake_per_connection == pytest.approx(210 + 130)  # the fixture's handshake per subscriber
    assert rows[0].handshake_per_connection is None  # long polling opens no upgraded connection


def test_cost_rows_without_the_sweep_take_every_loopback_scenario(tmp_path):
    run = _run(
        tmp_path,
        [Spec("a", None, reps=1), Spec("far", None, one_way_ms=50, reps=1)],
    )
    assert {(c.scenario, c.series) for c in cost_rows(run)} == {("a", "longpoll"), ("a", "websocket"), ("a", "floor")}


def test_longpoll_batching_counts_events_per_non_empty_response(tmp_path):
    run = _run(
        tmp_path,
        [
            Spec("sparse", None, rate=1, transports=("longpoll", "websocket"), reps=1),
            Spec("busy", None, rate=100, one_way_ms=50, transports=("longpoll",), reps=1),
        ],
    )
    rows = longpoll_batching(run)
    assert [b.scenario for b in rows] == ["sparse", "busy"]
    busy = next(r for r in run.results if r.scenario.name == "busy")
    responses = busy.raw["http"]["requests"] - busy.raw["http"]["empty_responses"]
    assert rows[1].events_per_response == pytest.approx(busy.counters.delivered / responses)
    assert events_per_response(busy) == rows[1].events_per_response
    assert rows[1].requests_per_event == pytest.approx(busy.raw["http"]["requests_per_event"])
    assert rows[1].requests_per_event < rows[0].requests_per_event  # the busy link batches


def test_idle_rows(tmp_path):
    run = _run(
        tmp_path,
        [
            Spec(f"idle-{n}", "idle", subscribers=n, idle=True, rate=0, reps=1, transports=("longpoll", "websocket"))
            for n in (10, 100)
        ],
    )
    rows = idle_rows(run)
    assert [(i.series, i.connections) for i in rows] == [
        ("longpoll", 10),
        ("longpoll", 100),
        ("websocket", 10),
        ("websocket", 100),
    ]
    assert rows[0].rss_per_connection_bytes == 6000.0
    assert rows[0].bytes_per_connection_per_min == pytest.approx((130 + 230) * 60 / 25)
    assert rows[2].bytes_per_connection_per_min == 0.0


def test_loss_totals_count_every_repetition(tmp_path):
    run = _run(
        tmp_path,
        [
            Spec(
                "a",
                None,
                transports=("longpoll", "websocket"),
                reps=2,
                lossy={("websocket", 2)},
                saturated={("longpoll", 1)},
            )
        ],
    )
    totals = loss_totals(run)
    assert (totals.results, totals.missing, totals.duplicate, totals.out_of_order) == (4, 3, 0, 0)
    assert totals.lossy == ("a--websocket--r2.json",)
    assert totals.invalid == ("a--longpoll--r1.json",)
    assert totals.delivered == totals.expected - 3
    assert (totals.failed, totals.not_run) == ((), ())


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [(None, 3, "—"), (0, 3, "0"), (0.012345, 3, "0.0123"), (12.345, 3, "12.3"), (1234.5, 3, "1,234"), (2.0, 2, "2")],
)
def test_format_number(value, digits, text):
    assert format_number(value, digits) == text


def test_markdown_table_escapes_pipes_and_newlines():
    assert markdown_table(("a", "b"), [("x|y", "1\n2"), (3, None)]).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x\\|y | 1 2 |",
        "| 3 | None |",
    ]


def test_long_pollings_share_beyond_one_transit_against_the_model(tmp_path) -> None:
    """The synthetic long poll pays 1, 1, 1, 2 or 3 transits at random: 2 events in 5 are beyond one."""
    specs = [
        Spec("delay-poisson-50", "delay-poisson", one_way_ms=50, rate=5, arrivals="poisson", transports=("longpoll",)),
        Spec("delay-poisson-0", "delay-poisson", one_way_ms=0, rate=5, arrivals="poisson", transports=("longpoll",)),
        Spec("delay-50", "delay", one_way_ms=50, rate=5, transports=("longpoll",)),  # periodic: not this table
    ]
    rows = beyond_one_transit(load_run(write_synthetic_run(tmp_path / "run", specs)))
    assert [row.scenario for row in rows] == ["delay-poisson-50"]  # Poisson, under a delay, long poll only
    (row,) = rows
    assert row.samples == 2 * 25  # two repetitions of 25 events
    assert 0.2 < row.measured < 0.6  # 2/5 expected; 50 samples
    assert row.model == pytest.approx(1 - math.exp(-5 * 0.1))


def test_byte_parts_split_each_transports_bytes_by_what_they_carry(run_dir: Path) -> None:
    """Synthetic bytes: a WebSocket event is payload + 60 B envelope + a 2-byte frame header, nothing up."""
    parts = byte_parts(load_run(run_dir))
    assert [p.series for p in parts] == ["longpoll", "websocket"]  # the payload sweep's smallest point (16 B)
    by = {p.series: p for p in parts}
    ws = by["websocket"]
    assert (ws.payload, ws.envelope, ws.framing, ws.up, ws.response_head) == (16, 60, 2, 0, 0)
    assert ws.handshake == 210 + 130  # synthetic Upgrade bytes per connection, up + down
    lp = by["longpoll"]
    assert lp.payload == 16 and lp.envelope == 60
    assert lp.requests_per_event is not None and lp.response_head == 0  # no capture.json in the synthetic run
    run = load_run(run_dir)
    measured = {r.scenario.series: r for r in run.results if r.scenario.name == "payload-16"}
    assert lp.total == pytest.approx(bytes_per_event(measured["longpoll"]))
    assert ws.total == pytest.approx(bytes_per_event(measured["websocket"]))
