"""bench.kaazing: the white paper's figures reproduced from its own inputs, and recomputed from a run."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from bench.report.kaazing import (
    BATCHED_BELOW,
    BITS_PER_MBIT,
    PAPER_CLIENTS,
    PAPER_FRAME_BYTES,
    PAPER_HEADER_BYTES,
    mbps,
    measured_table,
    paper_table,
)
from bench.report.load import load_run
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run


def _as_printed(value: float, printed: str) -> str:
    """Round ``value`` to the number of decimals the paper printed, half up as people round."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    quantum = Decimal(1).scaleb(-decimals)
    return str(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


@pytest.mark.parametrize(
    ("bytes_per_message", "printed"),
    [(871, ("6.6", "66", "665")), (2, ("0.015", "0.153", "1.526"))],
)
def test_paper_figures_reproduced_to_the_printed_precision(bytes_per_message, printed):
    for clients, expected in zip(PAPER_CLIENTS, printed, strict=True):
        assert _as_printed(mbps(bytes_per_message, clients), expected) == expected


def test_units_are_two_to_the_twenty_bits():
    assert BITS_PER_MBIT == 1_048_576
    assert mbps(871, 1000) == pytest.approx(871 * 8 * 1000 / 1_048_576)
    assert mbps(871, 1000) != pytest.approx(871 * 8 * 1000 / 1e6)


def test_paper_table_uses_the_paper_inputs():
    rows = {row.transport: row for row in paper_table()}
    assert rows["polling"].bytes_per_message == PAPER_HEADER_BYTES == 871
    assert rows["websocket"].bytes_per_message == PAPER_FRAME_BYTES == 2
    for row in rows.values():
        for value, printed in zip(row.mbps, row.printed, strict=True):
            assert _as_printed(value, printed) == printed


def test_mbps_scales_with_clients_and_rate():
    assert mbps(100, 2000) == pytest.approx(2 * mbps(100, 1000))
    assert mbps(100, 1000, messages_per_second=10) == pytest.approx(10 * mbps(100, 1000))


def test_measured_table_names_its_source_and_prefers_one_event_per_second(tmp_path):
    specs = [
        Spec("fast", "rate", rate=100, reps=1),
        Spec("slow", "rate", rate=1, reps=2),
        Spec("slow-delayed", "delay", rate=1, one_way_ms=50, reps=1),
    ]
    run = load_run(write_synthetic_run(tmp_path / "run", specs))
    rows = {row.transport: row for row in measured_table(run)}
    assert set(rows) == {"longpoll", "websocket"}  # floor is no transport of the paper
    for name, row in rows.items():
        assert row.source.startswith("slow (1 ev/s per subscriber, loopback; median of r1, r2)")
        chosen = [r for r in run.results if r.scenario.name == "slow" and r.scenario.transport == name]
        per_event = sorted(r.raw["bytes"]["per_event"]["up"] + r.raw["bytes"]["per_event"]["down"] for r in chosen)
        assert row.bytes_per_event == pytest.approx(sum(per_event) / 2)
        assert row.mbps == pytest.approx(tuple(mbps(row.bytes_per_event, n) for n in PAPER_CLIENTS))
        assert row.overhead_bytes == pytest.approx(row.bytes_per_event - 32)


def test_a_batched_row_says_how_many_events_a_request_carried(tmp_path):
    """Interval polling at 1 s with 10 ev/s: 5 polls carry 50 events, so its bytes per event are a batch's share."""
    specs = [
        Spec("poll", "p", rate=10, poll_interval_s=1.0, reps=1, transports=("polling",)),
        Spec("lp", "p", rate=1, reps=1, transports=("longpoll",)),
    ]
    rows = {row.transport: row for row in measured_table(load_run(write_synthetic_run(tmp_path / "run", specs)))}
    polling = next(row for name, row in rows.items() if name.startswith("polling"))
    assert polling.requests_per_event == pytest.approx(0.1)
    assert "BATCHED: 10 events per request" in polling.source
    lp = rows["longpoll"]
    assert lp.requests_per_event is not None and lp.requests_per_event > BATCHED_BELOW
    assert "BATCHED" not in lp.source and "requests per event" in lp.source
