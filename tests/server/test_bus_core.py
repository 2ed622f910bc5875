"""Tests of the sans-I/O bus core: cursor rules, batching, serialization, payloads."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.bus.core import (
    Batch,
    ChannelLog,
    Event,
    Gap,
    InvalidPayload,
    Reset,
    Window,
    encode_event,
    event_parts,
    parse_payload,
    valid_channel,
)


def filled(n: int, history: int = 100, name: str = "c") -> ChannelLog:
    log = ChannelLog(name, history)
    for i in range(1, n + 1):
        log.append(b'{"i":%d}' % i, 1000 + i)
    return log


def seqs(batch: Batch) -> list[int]:
    return [e.seq for e in batch.events]


# -- channel names and payloads --------------------------------------------


@pytest.mark.parametrize("name", ["a", "payments", "payment-42", "x.y_z", "A" * 64, "0"])
def test_valid_channel_names(name):
    assert valid_channel(name)


@pytest.mark.parametrize("name", ["", "A" * 65, "a b", "a/b", "é", "a\n", "a:b", '"'])
def test_invalid_channel_names(name):
    assert not valid_channel(name)


def test_parse_payload_keeps_the_publishers_text_stripped():
    assert parse_payload(b'  \n{"amount": 1.50, "x": [1,2]}\t ') == b'{"amount": 1.50, "x": [1,2]}'
    assert parse_payload(b"42") == b"42"
    assert parse_payload(b'"caf\xc3\xa9"') == b'"caf\xc3\xa9"'
    assert parse_payload(b"null") == b"null"


@pytest.mark.parametrize("body", [b"NaN", b"Infinity", b"-Infinity", b'{"x": NaN}', b"[1, Infinity]"])
def test_parse_payload_rejects_non_json_constants(body):
    with pytest.raises(InvalidPayload, match="not JSON"):
        parse_payload(body)


@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t "])
def test_parse_payload_rejects_empty_bodies(body):
    with pytest.raises(InvalidPayload, match="empty"):
        parse_payload(body)


def test_parse_payload_rejects_bad_utf8():
    with pytest.raises(InvalidPayload, match="UTF-8"):
        parse_payload(b'"\xff\xfe"')


@pytest.mark.parametrize("body", [b"{", b"1 2", b"{'a': 1}", b"undefined"])
def test_parse_payload_rejects_malformed_json(body):
    with pytest.raises(InvalidPayload, match="not JSON"):
        parse_payload(body)


# -- events ------------------------------------------------------------------


def test_encode_event_bytes_are_exact():
    wire = encode_event("payments", 42, 1795800000123456789, b'{"amount": 10}')
    assert wire == b'{"channel":"payments","seq":42,"ts":1795800000123456789,"data":{"amount": 10}}'
    assert list(json.loads(wire)) == ["channel", "seq", "ts", "data"]


def test_event_parts_reassemble_to_encode_event():
    head, mid, tail = event_parts("c-1", b'[1,"x"]')
    assert head + b"7" + mid + b"123" + tail == encode_event("c-1", 7, 123, b'[1,"x"]')


@pytest.mark.parametrize(
    "data",
    [b"1", b'{"data":"x","seq":9}', b'"\\"data\\":"', '{"k":"ünï ☃"}'.encode(), b"[ 1 , 2 ]", b"null"],
)
def test_event_from_wire_round_trip(data):
    event = Event.create("ch", 3, 99, data)
    again = Event.from_wire(event.wire)
    assert again == event
    assert again.data == data


# -- the channel log -----------------------------------------------------------


def test_seq_is_contiguous_from_one():
    log = filled(5)
    assert log.last_seq == 5
    batch = log.read(0, 100)
    assert seqs(batch) == [1, 2, 3, 4, 5]
    assert [e.ts for e in batch.events] == [1001, 1002, 1003, 1004, 1005]
    assert batch == Batch(batch.events, 5, False, None, None)


def test_history_is_bounded():
    log = filled(10, history=3)
    assert (log.first_seq, log.last_seq) == (8, 10)
    assert seqs(log.read(7, 100)) == [8, 9, 10]


def test_history_must_be_positive():
    with pytest.raises(ValueError):
        ChannelLog("c", 0)


def test_gap_names_exactly_the_missing_seqs():
    log = filled(10, history=3)
    batch = log.read(1, 100)
    assert batch.gap == Gap(2, 7)
    assert seqs(batch) == [8, 9, 10]
    assert batch.next == 10
    assert batch.reset is None
    assert log.read(0, 100).gap == Gap(1, 7)


def test_no_gap_at_the_oldest_retained_cursor():
    log = filled(10, history=3)
    batch = log.read(7, 100)
    assert batch.gap is None
    assert seqs(batch) == [8, 9, 10]


def test_reset_when_cursor_is_ahead():
    log = filled(3)
    batch = log.read(10, 100)
    assert batch.reset == Reset(10, 3)
    assert batch.gap is None
    assert seqs(batch) == [1, 2, 3]
    assert batch.next == 3


def test_reset_on_an_empty_channel_restarts_at_zero():
    batch = ChannelLog("c", 5).read(4, 100)
    assert batch == Batch((), 0, False, None, Reset(4, 0))


def test_reset_then_gap_when_history_was_trimmed():
    log = filled(10, history=3)
    batch = log.read(20, 100)
    assert batch.reset == Reset(20, 10)
    assert batch.gap == Gap(1, 7)
    assert seqs(batch) == [8, 9, 10]


def test_cursor_at_last_has_nothing():
    log = filled(4)
    assert log.read(4, 100) == Batch((), 4, False, None, None)


def test_negative_cursor_is_refused():
    with pytest.raises(ValueError):
        filled(1).read(-1, 10)
    with pytest.raises(ValueError):
        Window.resolve(-1, 1, 0)


def test_batch_cap_and_more():
    log = filled(5)
    first = log.read(0, 2)
    assert (seqs(first), first.next, first.more) == ([1, 2], 2, True)
    second = log.read(first.next, 2)
    assert (seqs(second), second.next, second.more) == ([3, 4], 4, True)
    third = log.read(second.next, 2)
    assert (seqs(third), third.next, third.more) == ([5], 5, False)


def test_batch_exactly_at_the_cap_has_no_more():
    batch = filled(3).read(0, 3)
    assert seqs(batch) == [1, 2, 3]
    assert batch.more is False


def test_gap_notice_comes_with_a_capped_batch():
    batch = filled(10, history=5).read(0, 2)
    assert batch.gap == Gap(1, 5)
    assert (seqs(batch), batch.more, batch.next) == ([6, 7], True, 7)


def test_add_takes_only_the_next_seq_and_restarts_after_a_hole():
    log = ChannelLog("c", 10)
    for seq in (1, 2, 2, 1, 3):
        log.add(Event.create("c", seq, seq, b"0"))
    assert seqs(log.read(0, 100)) == [1, 2, 3]
    log.add(Event.create("c", 6, 6, b"0"))  # 4 and 5 never arrived
    assert (log.first_seq, log.last_seq) == (6, 6)
    assert log.read(3, 100).gap == Gap(4, 5)


def test_window_resolve_matches_the_table_of_the_protocol():
    # first=5, last=9: history holds 5..=9
    assert Window.resolve(4, 5, 9) == Window(4)
    assert Window.resolve(9, 5, 9) == Window(9)
    assert Window.resolve(2, 5, 9) == Window(4, Gap(3, 4))
    assert Window.resolve(12, 5, 9) == Window(4, Gap(1, 4), Reset(12, 9))
    # nothing retained yet
    assert Window.resolve(0, 1, 0) == Window(0)


# -- the property: exactly once, in order, or an explicit gap ------------------


operations = st.lists(
    st.one_of(st.just(("publish", 0)), st.tuples(st.just("read"), st.integers(min_value=1, max_value=7))),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(history=st.integers(min_value=1, max_value=12), ops=operations)
def test_any_interleaving_delivers_every_event_once_in_order_or_names_the_gap(history, ops):
    log = ChannelLog("c", history)
    cursor = 0
    accounted: list[int] = []  # seqs received or named by a gap, in the order learned
    received: list[bytes] = []

    def take(batch: Batch, limit: int) -> int:
        assert batch.reset is None  # the cursor never gets ahead of the channel
        assert len(batch.events) <= limit
        if batch.gap:
            assert batch.gap.first == cursor + 1
            assert batch.gap.last == log.first_seq - 1  # exactly the ones no longer retained
            accounted.extend(range(batch.gap.first, batch.gap.last + 1))
        accounted.extend(seqs(batch))
        received.extend(e.data for e in batch.events)
        return batch.next

    for op, limit in ops:
        if op == "publish":
            log.append(b"%d" % (log.last_seq + 1), 0)
        else:
            cursor = take(log.read(cursor, limit), limit)
    while True:  # drain
        batch = log.read(cursor, 5)
        cursor = take(batch, 5)
        if not batch.more:
            break
    assert accounted == list(range(1, log.last_seq + 1))
    assert cursor == log.last_seq
    assert all(data == b"%d" % int(data) for data in received)
    assert received == sorted(received, key=int)


def test_history_is_bounded_by_bytes_and_keeps_the_newest_event():
    log = ChannelLog("b", 100, max_bytes=300)
    events = [log.append(b'"%s"' % (b"x" * 40), 0) for _ in range(10)]
    assert log.nbytes <= 300 and log.nbytes == sum(len(e.wire) for e in events[-len(log) :])
    batch = log.read(0, 100)
    assert batch.gap == Gap(1, 10 - len(log)) and [e.seq for e in batch.events] == list(range(11 - len(log), 11))
    huge = log.append(b'"%s"' % (b"y" * 1000), 0)
    assert (len(log), log.nbytes) == (1, len(huge.wire))  # alone, over the bound, still kept
    with pytest.raises(ValueError):
        ChannelLog("b", 1, max_bytes=0)


def test_drop_history_keeps_seq_going_and_owes_a_gap():
    log = ChannelLog("d", 10)
    for _ in range(3):
        log.append(b"1", 0)
    log.drop_history()
    assert (len(log), log.nbytes, log.last_seq, log.first_seq) == (0, 0, 3, 4)
    assert log.read(1, 10) == Batch((), 3, False, Gap(2, 3), None)
    assert log.append(b"2", 0).seq == 4
    assert ChannelLog("e", 5, last_seq=7).read(9, 10).reset == Reset(9, 7)


@settings(max_examples=300)
@given(
    published=st.integers(0, 30),
    history=st.integers(1, 12),
    after=st.integers(0, 40),
    limit=st.integers(1, 15),
)
def test_read_agrees_with_window_resolve_for_every_cursor(published: int, history: int, after: int, limit: int) -> None:
    """ChannelLog.read skips building a Window when no notice is owed; the answer is the rules' own."""
    log = filled(published, history)
    first = log.first_seq
    window = Window.resolve(after, first, log.last_seq)
    retained = [e for e in log._events if e.seq > window.start]
    expected = window.batch(tuple(retained[:limit]), len(retained) > limit)
    assert log.read(after, limit) == expected
