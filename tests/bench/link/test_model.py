"""bench.link.model: the sans-I/O release-time schedule and the byte meter."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.contract.scenarios import Link
from bench.link import DirectionMeter, LinkSchedule
from bench.link.model import HEAD_LIMIT


def test_schedule_adds_the_one_way_delay() -> None:
    schedule = LinkSchedule(Link(one_way_ms=50))
    assert schedule.release(10.0, 100) == pytest.approx(10.05)
    assert schedule.release(10.5, 100) == pytest.approx(10.55)


def test_schedule_serializes_at_the_bandwidth_then_propagates() -> None:
    schedule = LinkSchedule(Link(one_way_ms=10, bandwidth_kbps=8))  # 8 kbit/s: 1000 bytes take one second
    assert schedule.release(0.0, 1000) == pytest.approx(1.01)
    assert schedule.release(0.0, 500) == pytest.approx(1.51)  # queued behind the first chunk
    assert schedule.release(5.0, 1000) == pytest.approx(6.01)  # the link was idle again


@settings(max_examples=200, deadline=None)
@given(
    one_way=st.floats(0, 200),
    jitter=st.floats(0, 200),
    kbps=st.integers(0, 100_000),
    seed=st.integers(0, 2**32),
    steps=st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 65536)), min_size=1, max_size=50),
)
def test_schedule_never_reorders_nor_releases_early(
    one_way: float, jitter: float, kbps: int, seed: int, steps: list[tuple[float, int]]
) -> None:
    link = Link(one_way_ms=one_way, jitter_ms=jitter, bandwidth_kbps=kbps, seed=seed)
    schedule = LinkSchedule(link)
    arrival, previous, sent = 0.0, -math.inf, 0
    floor = max(one_way - jitter, 0) / 1000
    for gap, size in steps:
        arrival += gap
        sent += size
        at = schedule.release(arrival, size)
        assert at >= previous
        assert at >= arrival + floor - 1e-9
        if kbps:
            assert at >= sent * 8 / (kbps * 1000) - 1e-9
        previous = at
    assert (
        previous
        <= arrival + sum(s for _, s in steps) * 8 / (kbps * 1000 or math.inf) + (one_way + jitter) / 1000 + 1e-9
    )


def test_schedule_jitter_is_reproducible_from_the_seed_and_varies() -> None:
    def releases(seed: int) -> list[float]:
        schedule = LinkSchedule(Link(one_way_ms=50, jitter_ms=20, seed=seed))
        return [schedule.release(i * 1.0, 10) - i for i in range(100)]

    assert releases(7) == releases(7)
    assert releases(7) != releases(8)
    delays = releases(7)
    assert all(0.03 - 1e-9 <= d <= 0.07 + 1e-9 for d in delays)
    assert len({round(d, 6) for d in delays}) > 50


# --- DirectionMeter (sans-I/O) ----------------------------------------------------------------------------

HEAD = b"GET /channels/a/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 3000), max_size=20))
def test_meter_finds_the_first_header_block_however_it_is_split(body: bytes, cuts: list[int]) -> None:
    stream = HEAD + body + b"\r\n\r\n"  # a later terminator must not move the end of the first block
    meter = DirectionMeter()
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in itertools.pairwise(bounds):
        meter.observe(stream[start:end])
    assert meter.nbytes == len(stream)
    assert meter.chunks == len(bounds) - 1
    assert meter.head == "complete"
    assert meter.head_bytes == len(HEAD)


def test_meter_counts_no_head_until_it_is_complete_and_none_for_non_http() -> None:
    meter = DirectionMeter()
    meter.observe(HEAD[:-1])
    assert (meter.head, meter.head_bytes) == ("pending", 0)
    meter.observe(HEAD[-1:])
    assert (meter.head, meter.head_bytes) == ("complete", len(HEAD))

    binary = DirectionMeter()
    for _ in range(HEAD_LIMIT // 1000 + 1):
        binary.observe(b"\x00" * 1000)
    binary.observe(b"\r\n\r\n")
    assert (binary.head, binary.head_bytes) == ("none", 0)
