"""Tests of clients.accounting: the sans-I/O Tracker and Counters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.accounting import Counters, Tracker


def feed(tracker: Tracker, seqs: list[int]) -> list[int]:
    return [s for s in seqs if tracker.event(s)]


def test_in_order_stream_is_clean():
    t = Tracker()
    assert feed(t, [1, 2, 3, 4]) == [1, 2, 3, 4]
    c = t.finish(4)
    assert c.as_dict() == {
        "delivered": 4,
        "duplicate": 0,
        "out_of_order": 0,
        "missing": 0,
        "gap_lost": 0,
        "gaps": 0,
        "resets": 0,
    }
    assert t.cursor == 4


def test_starting_cursor():
    t = Tracker(after=10)
    assert t.event(11)
    assert not t.event(10)  # before the start: a duplicate, never a hole
    assert t.counters.duplicate == 1
    with pytest.raises(ValueError):
        Tracker(after=-1)


def test_duplicate_is_refused_and_counted():
    t = Tracker()
    assert feed(t, [1, 2, 2, 1, 3]) == [1, 2, 3]
    assert t.counters.duplicate == 2
    assert t.counters.delivered == 3


def test_jump_makes_holes_and_late_arrivals_fill_them():
    t = Tracker()
    assert feed(t, [1, 4]) == [1, 4]
    assert t.holes == 2
    assert t.counters.out_of_order == 0  # a jump alone is not a reordering: the skipped events may be lost
    assert t.event(3)
    assert t.event(2)
    assert not t.event(3)
    c = t.finish(4)
    assert (c.delivered, c.out_of_order, c.duplicate, c.missing, t.holes) == (4, 2, 1, 0, 0)


def test_pure_loss_is_missing_and_not_also_out_of_order():
    t = Tracker()
    feed(t, [1, 2, 5, 6])
    c = t.finish(6)
    assert (c.delivered, c.missing, c.out_of_order) == (4, 2, 0)


def test_unfilled_holes_and_tail_are_missing():
    t = Tracker()
    feed(t, [1, 3, 5])
    assert t.finish(None).missing == 2  # holes 2 and 4
    assert t.finish(8).missing == 5  # and 6, 7, 8 never came
    assert t.finish(8).missing == 5  # finish recomputes, does not accumulate


def test_gap_is_counted_once_and_moves_the_cursor():
    t = Tracker()
    t.gap(1, 20)
    assert t.cursor == 20
    assert feed(t, list(range(21, 31))) == list(range(21, 31))
    c = t.finish(30)
    assert (c.gap_lost, c.gaps, c.delivered, c.missing, c.out_of_order) == (20, 1, 10, 0, 0)


def test_gap_over_holes_counts_them_as_gap_lost_only():
    t = Tracker()
    feed(t, [1, 5])  # holes 2, 3, 4
    t.gap(3, 8)
    c = t.finish(8)
    assert c.gap_lost == 6
    assert c.missing == 1  # only 2 is still a hole
    assert t.cursor == 8
    with pytest.raises(ValueError):
        t.gap(5, 4)


def test_reset_restarts_the_sequence_and_keeps_old_holes_missing():
    t = Tracker()
    feed(t, [1, 2, 4])  # hole 3
    t.reset(after=4, last_seq=2)
    assert t.cursor == 0
    assert feed(t, [1, 2]) == [1, 2]  # accepted again: a new epoch
    c = t.finish(2)
    assert (c.resets, c.delivered, c.duplicate, c.missing) == (1, 5, 0, 1)


def test_counters_merge_and_total():
    a = Counters(delivered=3, duplicate=1, missing=2, gaps=1)
    b = Counters(delivered=4, out_of_order=2, gap_lost=5, resets=1)
    m = a.merge(b)
    assert m == Counters(delivered=7, duplicate=1, out_of_order=2, missing=2, gap_lost=5, gaps=1, resets=1)
    assert a == Counters(delivered=3, duplicate=1, missing=2, gaps=1)  # merge does not mutate
    assert Counters.total([a, b, Counters()]) == m
    assert Counters.total([]) == Counters()


@st.composite
def shuffled_with_duplicates(draw):
    n = draw(st.integers(min_value=0, max_value=60))
    present = draw(st.lists(st.integers(min_value=1, max_value=n), unique=True)) if n else []
    extra = draw(st.lists(st.sampled_from(present), max_size=30)) if present else []
    seqs = draw(st.permutations(present + extra))
    return n, list(seqs)


@given(shuffled_with_duplicates())
def test_any_permutation_with_duplicates_is_accounted_consistently(case):
    n, seqs = case
    t = Tracker()
    accepted = feed(t, seqs)
    distinct = set(seqs)
    c = t.finish(n)
    assert sorted(accepted) == sorted(distinct)  # each seq handed on exactly once
    assert c.delivered == len(distinct)
    assert c.duplicate == len(seqs) - len(distinct)
    assert c.delivered + c.missing == n
    assert c.gap_lost == 0
    if seqs == sorted(distinct) and seqs == list(range(1, len(seqs) + 1)):
        assert c.out_of_order == 0
    assert c.out_of_order <= c.delivered


@given(st.integers(min_value=1, max_value=200), st.data())
def test_server_like_streams_with_gaps_add_up(n, data):
    """A stream as the server sends it: gap notices, retransmissions after reconnects, in order otherwise."""
    t = Tracker()
    next_seq = 1
    while next_seq <= n:
        action = data.draw(st.sampled_from(["event", "gap", "replay"]))
        if action == "gap":
            last = data.draw(st.integers(min_value=next_seq, max_value=n))
            t.gap(next_seq, last)
            next_seq = last + 1
        elif action == "replay" and next_seq > 1:
            back = data.draw(st.integers(min_value=1, max_value=next_seq - 1))
            assert not t.event(back)
        else:
            assert t.event(next_seq)
            next_seq += 1
    c = t.finish(n)
    assert c.delivered + c.gap_lost == n
    assert c.missing == 0
    assert c.out_of_order == 0
