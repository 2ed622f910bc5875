"""The contract every bus meets: one set of tests, run over the memory and the Redis bus.

Like httpx's ``MockTransport``, :class:`~server.bus.Bus` is the seam the
routes are written against; these tests pin what both engines must do
(docs/protocol.md: seq, ts, bytes, history, gaps, resets, waiting, closing).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from server.bus import Bus, BusClosed, Gap, MemoryBus, Reset
from server.bus.core import encode_event
from tests.support import UNIT, wait_until

MakeBus = Callable[..., Bus]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_bus(request: pytest.FixtureRequest) -> Iterator[MakeBus]:
    """A factory of buses of one engine; every bus is closed after the test."""
    made: list[Bus] = []
    prefix = f"test:{uuid.uuid4().hex}:"  # isolates this test's keys in the shared Redis

    def make(history: int = 10_000) -> Bus:
        if request.param == "memory":
            bus: Bus = MemoryBus(history=history)
        else:
            from server.bus.redis import RedisBus

            bus = RedisBus(request.getfixturevalue("redis_url"), history=history, prefix=prefix)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


@pytest.fixture
def bus(make_bus: MakeBus) -> Bus:
    return make_bus()


def seqs(batch):
    return [e.seq for e in batch.events]


def test_name_is_the_engine(bus, request):
    assert bus.name == request.node.callspec.params["make_bus"]


def test_publish_assigns_contiguous_seq_per_channel(bus):
    assert [bus.publish("a", b"1").seq for _ in range(4)] == [1, 2, 3, 4]
    assert bus.publish("b", b"1").seq == 1
    assert bus.publish("a", b"1").seq == 5


def test_event_bytes_and_ts(bus):
    before = time.time_ns()
    event = bus.publish("pay-1", b'{"amount": 10, "note": "caf\xc3\xa9"}')
    after = time.time_ns()
    assert event.channel == "pay-1"
    assert event.data == b'{"amount": 10, "note": "caf\xc3\xa9"}'
    assert event.wire == encode_event("pay-1", 1, event.ts, event.data)
    # Wall clock in ns (the Redis bus reads Redis's clock at microsecond resolution).
    assert before - before % 1000 <= event.ts <= after
    read = bus.read("pay-1", 0, 10).events
    assert read == (event,)
    assert read[0].wire == event.wire


def test_ts_never_decreases_along_seq(bus):
    for i in range(50):
        bus.publish("c", b"%d" % i)
    ts = [e.ts for e in bus.read("c", 0, 100).events]
    assert ts == sorted(ts)


def test_read_of_an_unknown_channel_is_empty(bus):
    batch = bus.read("nobody", 0, 10)
    assert (batch.events, batch.next, batch.more, batch.gap, batch.reset) == ((), 0, False, None, None)


def test_read_after_cursor_and_batch_cap(bus):
    for i in range(5):
        bus.publish("c", b"%d" % i)
    batch = bus.read("c", 1, 2)
    assert (seqs(batch), batch.next, batch.more) == ([2, 3], 3, True)
    batch = bus.read("c", 3, 2)
    assert (seqs(batch), batch.next, batch.more) == ([4, 5], 5, False)
    assert bus.read("c", 5, 2).events == ()
    assert [e.data for e in bus.read("c", 0, 10).events] == [b"0", b"1", b"2", b"3", b"4"]


def test_history_is_bounded_and_a_gap_names_the_missing(make_bus):
    bus = make_bus(history=3)
    for i in range(7):
        bus.publish("c", b"%d" % i)
    batch = bus.read("c", 0, 10)
    assert batch.gap == Gap(1, 4)
    assert seqs(batch) == [5, 6, 7]
    assert bus.read("c", 2, 10).gap == Gap(3, 4)
    at_oldest = bus.read("c", 4, 10)
    assert (at_oldest.gap, seqs(at_oldest)) == (None, [5, 6, 7])


def test_gap_with_a_capped_batch(make_bus):
    bus = make_bus(history=4)
    for i in range(10):
        bus.publish("c", b"%d" % i)
    batch = bus.read("c", 0, 2)
    assert (batch.gap, seqs(batch), batch.more, batch.next) == (Gap(1, 6), [7, 8], True, 8)


def test_reset_when_the_cursor_is_ahead(bus):
    assert bus.read("c", 3, 10).reset == Reset(3, 0)
    for i in range(3):
        bus.publish("c", b"%d" % i)
    batch = bus.read("c", 10, 10)
    assert batch.reset == Reset(10, 3)
    assert (seqs(batch), batch.next, batch.gap) == ([1, 2, 3], 3, None)


def test_reset_with_trimmed_history_also_names_the_gap(make_bus):
    bus = make_bus(history=2)
    for i in range(5):
        bus.publish("c", b"%d" % i)
    batch = bus.read("c", 9, 10)
    assert (batch.reset, batch.gap, seqs(batch)) == (Reset(9, 5), Gap(1, 3), [4, 5])


def test_wait_returns_at_once_with_news(bus):
    bus.publish("c", b"1")
    assert seqs(bus.wait("c", 0, 10, 600 * UNIT)) == [1]


def test_wait_times_out_empty(bus):
    bus.publish("c", b"1")
    batch = bus.wait("c", 1, 10, 0.2 * UNIT)
    assert (batch.events, batch.next, batch.gap, batch.reset) == ((), 1, None, None)


def test_wait_is_woken_by_a_publish_from_another_thread(bus):
    result = []
    waiting = threading.Thread(target=lambda: result.append(bus.wait("c", 0, 10, 60 * UNIT)))
    waiting.start()
    assert wait_until(lambda: bus._waiters.of("c"), 10 * UNIT)
    bus.publish("c", b'"news"')
    waiting.join(20 * UNIT)
    assert not waiting.is_alive()
    assert [(e.seq, e.data) for e in result[0].events] == [(1, b'"news"')]


def test_watch_is_set_only_for_its_channel(bus):
    on_a, on_b = threading.Event(), threading.Event()
    bus.watch("a", on_a)
    bus.watch("b", on_b)
    bus.publish("a", b"1")
    assert on_a.wait(10 * UNIT)
    bus.publish("z", b"1")  # after this one, anything meant for b would have arrived too
    on_z = threading.Event()
    bus.watch("z", on_z)
    bus.publish("z", b"2")
    assert on_z.wait(10 * UNIT)
    assert not on_b.is_set()
    bus.unwatch("a", on_a)
    bus.unwatch("b", on_b)


def test_close_ends_waits_with_bus_closed(bus):
    errors = []

    def wait() -> None:
        try:
            bus.wait("c", 0, 10, 60 * UNIT)
        except BusClosed as exc:
            errors.append(exc)

    waiting = threading.Thread(target=wait)
    waiting.start()
    assert wait_until(lambda: bus._waiters.of("c"), 10 * UNIT)
    bus.close()
    waiting.join(20 * UNIT)
    assert not waiting.is_alive()
    assert len(errors) == 1
    with pytest.raises(BusClosed):
        bus.wait("c", 0, 10, 1)
    late = threading.Event()
    bus.watch("c", late)
    assert late.is_set()
