"""Tests of clients.latency: HdrHistogram wrapper in microseconds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clients.latency import HIGHEST_US, LatencyHistogram

KEYS = {"count", "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"}


def test_empty_summary_invents_nothing():
    s = LatencyHistogram().summary()
    assert set(s) == KEYS
    assert s["count"] == 0
    assert all(v is None for k, v in s.items() if k != "count")


def test_summary_within_three_significant_digits():
    h = LatencyHistogram()
    for v in range(1, 1001):
        h.record_us(v * 100)  # 100 us .. 100 ms
    s = h.summary()
    assert s["count"] == 1000
    assert abs(s["min_us"] - 100) <= 1
    assert abs(s["p50_us"] - 50_000) <= 50
    assert abs(s["p99_us"] - 99_000) <= 99
    assert abs(s["max_us"] - 100_000) <= 100
    assert abs(s["mean_us"] - 50_050) <= 60


def test_out_of_range_is_clamped_and_counted():
    h = LatencyHistogram()
    h.record_us(-5)
    h.record_us(0.2)
    h.record_us(10 * HIGHEST_US)
    h.record_us(7)
    assert h.count == 4
    assert h.clamped == 3
    s = h.summary()
    assert s["min_us"] == 1
    assert s["max_us"] >= HIGHEST_US


values = st.lists(st.integers(min_value=1, max_value=HIGHEST_US), max_size=200)


@settings(deadline=None, max_examples=10)
@given(values)
def test_encode_decode_round_trip_is_exact(vs):
    h = LatencyHistogram()
    for v in vs:
        h.record_us(v)
    text = h.encode()
    assert isinstance(text, str)
    back = LatencyHistogram.decode(text)
    assert back.summary() == h.summary()
    assert back.encode() == text


@settings(deadline=None, max_examples=10)
@given(values, values)
def test_merge_equals_recording_everything_in_one(a, b):
    ha, hb, hall = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in a:
        ha.record_us(v)
        hall.record_us(v)
    for v in b:
        hb.record_us(v)
        hall.record_us(v)
    merged = LatencyHistogram.decode(ha.encode()).merge(LatencyHistogram.decode(hb.encode()))
    assert merged.count == len(a) + len(b)
    assert merged.summary() == hall.summary()
    assert merged.encode() == hall.encode()


def test_merge_with_an_empty_histogram_keeps_the_minimum():
    """hdrh's own add() reports min 0 after merging with an empty histogram; ours must not."""
    h = LatencyHistogram()
    h.record_us(250)
    assert h.merge(LatencyHistogram()).summary()["min_us"] == 250
    empty = LatencyHistogram()
    assert empty.merge(h).summary()["min_us"] == 250
    assert empty.merge(h).count == 2
