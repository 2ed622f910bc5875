"""Tests of bench/publisher.py: schedule math as pure functions, payloads, and the open loop."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.agents.publisher import (
    BEHIND_P99_MS,
    HttpPublishPool,
    PublisherReport,
    PublishPlan,
    channel_for,
    event_count,
    intended_offset_ns,
    run_schedule,
)
from bench.contract.payload import decode_payload, encode_payload
from tests.support import UNIT, run_server


def test_offsets_are_evenly_spaced_without_bursts() -> None:
    assert [intended_offset_ns(k, 100.0) for k in range(4)] == [0, 10_000_000, 20_000_000, 30_000_000]


def test_bursts_share_a_tick_and_keep_the_total_rate() -> None:
    # 100 ev/s in bursts of 5: a tick every 50 ms, events back to back (gap 0) inside it.
    offsets = [intended_offset_ns(k, 100.0, burst=5) for k in range(10)]
    assert offsets == [0] * 5 + [50_000_000] * 5


def test_pairs_a_few_ms_apart() -> None:
    # The "pairs" scenario: 4 ev/s as 2 pairs per second, the second event 3 ms after the first.
    offsets = [intended_offset_ns(k, 4.0, burst=2, burst_gap_ms=3.0) for k in range(4)]
    assert offsets == [0, 3_000_000, 500_000_000, 503_000_000]


def test_event_count_is_whole_bursts_inside_the_window() -> None:
    assert event_count(1.0, 100.0) == 100
    assert event_count(1.0, 100.0, burst=20) == 100
    assert event_count(0.5, 1.0) == 1
    assert event_count(0.0, 100.0) == 0
    assert event_count(2.0, 4.0, burst=2, burst_gap_ms=3.0) == 8


@given(st.integers(1, 2000), st.integers(1, 20), st.floats(0.1, 5.0))
def test_every_counted_event_falls_inside_the_window(rate: int, burst: int, seconds: float) -> None:
    n = event_count(seconds, float(rate), burst)
    assert n % burst == 0
    if n:
        assert intended_offset_ns(n - burst, float(rate), burst) < seconds * 1e9
    assert intended_offset_ns(n, float(rate), burst) >= seconds * 1e9 - 1


def test_plan_measured_events_start_after_warmup() -> None:
    plan = PublishPlan(url="", channels=["c"], rate=10.0, warmup_s=0.5, duration_s=1.0)
    assert (plan.warm_events, plan.total_events) == (5, 15)
    assert plan.offset_ns(4) == 400_000_000
    assert plan.offset_ns(5) == 500_000_000
    assert plan.offset_ns(14) == 1_400_000_000


def test_round_robin_channels() -> None:
    assert [channel_for(k, ["a", "b", "c"]) for k in range(5)] == ["a", "b", "c", "a", "b"]
    assert {channel_for(k, ["bc"]) for k in range(5)} == {"bc"}


def test_open_loop_sends_without_waiting_for_answers() -> None:
    """Every send is started while no answer has come back: a closed loop would deadlock here."""
    plan = PublishPlan(url="", channels=["a", "b"], rate=1000.0, warmup_s=0.002, duration_s=0.01)
    started: list[tuple[str, int]] = []
    all_started = asyncio.Event()

    async def main() -> PublisherReport:
        seqs = {"a": 0, "b": 0}

        async def send(channel: str, body: bytes, on_write: Callable[[], None]) -> int:
            on_write()
            started.append((channel, decode_payload(json.loads(body))[0]))
            if len(started) == plan.total_events:
                all_started.set()
            await asyncio.wait_for(all_started.wait(), 10 * UNIT)
            seqs[channel] += 1
            return seqs[channel]

        return await run_schedule(plan, send, time.monotonic_ns())

    report = asyncio.run(main())
    assert [i for _, i in started] == list(range(plan.total_events))
    assert report.errors == 0
    assert report.intended == report.sent == plan.total_events - plan.warm_events == 10
    assert report.warm_sent == 2
    assert report.last_seq == {"a": 6, "b": 6}
    assert report.measured == {"a": 5, "b": 5}
    assert report.lag.count == plan.total_events


def test_payloads_carry_their_number_on_their_channel_and_a_peer_is_numbered_by_it() -> None:
    """Round robin over two channels: the n-th event of a channel carries n; ``publisher`` numbering reports it."""
    plan = PublishPlan(
        url="", channels=["a", "b"], rate=1000.0, warmup_s=0.002, duration_s=0.004, numbering="publisher"
    )
    numbers: dict[str, list[int]] = {"a": [], "b": []}

    async def send(channel: str, body: bytes, on_write: Callable[[], None]) -> int:
        on_write()
        numbers[channel].append(decode_payload(json.loads(body)).number)
        return 0  # a peer's answer has no seq

    report = asyncio.run(run_schedule(plan, send, time.monotonic_ns()))
    assert numbers == {"a": [1, 2, 3], "b": [1, 2, 3]}
    assert report.last_seq == {"a": 3, "b": 3}


def test_with_publisher_numbering_a_channel_has_one_publish_in_flight_in_number_order() -> None:
    """A peer orders a channel by arrival: the n-th publish of a channel starts only once the (n-1)-th answered."""
    plan = PublishPlan(url="", channels=["a", "b"], rate=2000.0, duration_s=0.02, numbering="publisher")
    in_flight = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}
    both = [0]
    order: dict[str, list[int]] = {"a": [], "b": []}

    async def send(channel: str, body: bytes, on_write: Callable[[], None]) -> int:
        on_write()
        order[channel].append(decode_payload(json.loads(body)).number)
        in_flight[channel] += 1
        most[channel] = max(most[channel], in_flight[channel])
        both[0] = max(both[0], in_flight["a"] + in_flight["b"])
        await asyncio.sleep(0.004 if order[channel][-1] % 2 else 0.001)  # slow and fast answers alternate
        in_flight[channel] -= 1
        return 0

    report = asyncio.run(run_schedule(plan, send, time.monotonic_ns()))
    assert order == {"a": list(range(1, 21)), "b": list(range(1, 21))}
    assert most == {"a": 1, "b": 1}
    assert both[0] == 2  # the two channels are not serialized with each other
    assert report.errors == 0 and report.last_seq == {"a": 20, "b": 20}


def test_failed_sends_are_counted_and_make_the_publisher_behind() -> None:
    plan = PublishPlan(url="", channels=["a"], rate=1000.0, duration_s=0.005)

    async def send(channel: str, body: bytes, on_write: Callable[[], None]) -> int:
        raise OSError("connection refused")

    report = asyncio.run(run_schedule(plan, send, time.monotonic_ns()))
    assert (report.sent, report.errors) == (0, 5)
    assert report.lag.count == 0  # nothing was written
    assert report.behind
    assert report.as_dict()["behind_threshold_p99_ms"] == BEHIND_P99_MS


def test_lag_above_threshold_is_behind() -> None:
    report = PublisherReport()
    for _ in range(100):
        report.lag.record_us(BEHIND_P99_MS * 1000 * 3)
    assert report.behind
    quiet = PublisherReport()
    quiet.lag.record_us(10)
    assert not quiet.behind


@pytest.mark.parametrize("runtime", ["werkzeug", "gevent"])
def test_http_pool_publishes_every_event_once(runtime: str) -> None:
    with run_server(runtime) as server:

        async def main() -> list[int]:
            pool = HttpPublishPool("127.0.0.1", server.port, connections=4)
            await pool.connect()
            try:
                seqs = await asyncio.gather(*(pool.publish("pool", encode_payload(i, 0, False, 64)) for i in range(50)))
                # "!" is not a channel character: the server's channel check answers, not its HTTP parser.
                with pytest.raises(ValueError, match=r"publish answered 400: .*bad_channel"):
                    await pool.publish("bad!channel", b"1")
                seqs.append(await pool.publish("pool", b'"after an error"'))
            finally:
                await pool.close()
            return seqs

        seqs = asyncio.run(asyncio.wait_for(main(), 30 * UNIT))
    assert sorted(seqs) == list(range(1, 52))


def test_lag_is_taken_when_the_request_is_written_not_when_it_is_due() -> None:
    """A send that waits 50 ms for a free connection shows 50 ms of lag (a lower bound from the model)."""
    plan = PublishPlan(url="", channels=["a"], rate=100.0, duration_s=0.03)

    async def send(channel: str, body: bytes, on_write: Callable[[], None]) -> int:
        await asyncio.sleep(0.05)  # queued behind other requests
        on_write()
        return 1

    report = asyncio.run(run_schedule(plan, send, time.monotonic_ns()))
    assert report.lag.count == 3
    assert report.lag.summary()["min_us"] >= 49_000


def test_poisson_arrivals_are_seeded_random_and_keep_the_rate() -> None:
    plan = PublishPlan(url="", channels=["a"], rate=100.0, warmup_s=5.0, duration_s=100.0, arrivals="poisson", seed=7)
    offsets, warm_ticks = plan.ticks()
    again = PublishPlan(url="", channels=["a"], rate=100.0, warmup_s=5.0, duration_s=100.0, arrivals="poisson", seed=7)
    assert again.ticks() == (offsets, warm_ticks)  # the same seed, the same schedule
    other = PublishPlan(url="", channels=["a"], rate=100.0, warmup_s=5.0, duration_s=100.0, arrivals="poisson", seed=8)
    assert other.ticks()[0] != offsets
    assert offsets == sorted(offsets) and offsets[-1] < 105e9
    assert 9_500 < plan.total_events - plan.warm_events < 10_500  # seed 7: deterministic, about 10,000
    assert all(o < 5e9 for o in offsets[:warm_ticks]) and all(o >= 5e9 for o in offsets[warm_ticks:])
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(offsets)]
    cv = statistics.pstdev(gaps) / statistics.mean(gaps)
    assert 0.9 < cv < 1.1  # exponential gaps: standard deviation about the mean (periodic: 0)


def test_poisson_bursts_keep_their_gap() -> None:
    plan = PublishPlan(url="", channels=["a"], rate=20.0, burst=2, burst_gap_ms=3.0, duration_s=5.0, arrivals="poisson")
    assert plan.total_events % 2 == 0
    for k in range(0, plan.total_events, 2):
        assert plan.offset_ns(k + 1) - plan.offset_ns(k) == 3_000_000


def test_periodic_plan_matches_the_formula() -> None:
    plan = PublishPlan(url="", channels=["a"], rate=4.0, burst=2, burst_gap_ms=3.0, warmup_s=0.5, duration_s=1.0)
    assert [plan.offset_ns(k) for k in range(plan.total_events)] == [
        0, 3_000_000, 500_000_000, 503_000_000, 1_000_000_000, 1_003_000_000,
    ]  # fmt: skip
    assert plan.warm_events == 2
