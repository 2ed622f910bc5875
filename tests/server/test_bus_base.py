"""Tests of the shared waiting logic of every bus (WaiterSet, Bus.wait/watch/close).

Exercised through :class:`MemoryBus`, the simplest concrete bus; the same
behaviour over Redis is covered by test_bus_contract.py.
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import pytest

from server.bus import BusClosed, MemoryBus, base
from server.bus.base import WaiterSet, notify
from tests.support import UNIT, wait_until


class Waiting(threading.Thread):
    """Runs ``bus.wait`` in a thread and keeps its outcome."""

    def __init__(self, bus, channel, after, timeout):
        super().__init__(daemon=True)
        self.args_ = (bus, channel, after, timeout)
        self.result = None
        self.error = None

    def run(self):
        bus, channel, after, timeout = self.args_
        try:
            self.result = bus.wait(channel, after, 100, timeout)
        except BaseException as exc:
            self.error = exc


def start_waiting(bus, channel, after=0, timeout=60 * UNIT):
    """Start a waiter and return once it is registered on the channel."""
    waiting = Waiting(bus, channel, after, timeout)
    waiting.start()
    assert wait_until(lambda: bus._waiters.of(channel), 10 * UNIT)
    return waiting


def test_waiter_set_groups_by_channel():
    ws = WaiterSet()
    a1, a2, b1 = threading.Event(), threading.Event(), threading.Event()
    ws.add("a", a1)
    ws.add("a", a2)
    ws.add("b", b1)
    assert set(ws.of("a")) == {a1, a2}
    assert ws.of("b") == (b1,)
    assert ws.of("nobody") == ()
    assert set(ws.everyone()) == {a1, a2, b1}
    ws.discard("a", a1)
    ws.discard("a", a1)  # twice is harmless
    ws.discard("zzz", a1)
    assert ws.of("a") == (a2,)
    ws.discard("a", a2)
    assert ws.of("a") == ()
    assert "a" not in ws._by_channel  # empty channels are dropped, not leaked
    assert ws.everyone() == (b1,)


class Broadcaster:
    """A waiter whose class broadcasts: takes the events of even ids, leaves the others to be woken."""

    calls: ClassVar[list[tuple[tuple[int, ...], int]]] = []
    """(the ids of one broadcast call's waiters, the event's seq), per call, for every instance."""

    def __init__(self, ident):
        self.ident = ident
        self.woken = 0

    def set(self):
        self.woken += 1

    @staticmethod
    def broadcast(waiters, event):
        Broadcaster.calls.append((tuple(sorted(w.ident for w in waiters)), event.seq))
        return [w for w in waiters if w.ident % 2]


@pytest.fixture
def broadcasters():
    Broadcaster.calls = []
    return [Broadcaster(i) for i in range(4)]


def test_a_publish_calls_a_class_broadcast_once_and_wakes_only_what_it_returns(broadcasters):
    bus = MemoryBus()
    plain = threading.Event()
    for waiter in [*broadcasters, plain]:
        bus.watch("c", waiter)
    bus.watch("other", Broadcaster(9))
    bus.publish("c", b"1")
    assert Broadcaster.calls == [((0, 1, 2, 3), 1)]  # one call with the channel's four, not one per waiter
    assert [w.woken for w in broadcasters] == [0, 1, 0, 1]
    assert plain.is_set()


def test_a_wake_without_an_event_sets_every_waiter_without_broadcasting(broadcasters):
    ws = WaiterSet()
    for waiter in broadcasters:
        ws.add("c", waiter)
    notify(ws.fanout("c"), None)
    notify(broadcasters, None)  # a bare iterable works too
    assert Broadcaster.calls == []
    assert [w.woken for w in broadcasters] == [2, 2, 2, 2]


def test_the_fanout_is_kept_until_the_channel_waiters_change(broadcasters):
    ws = WaiterSet()
    a, b, c, _ = broadcasters
    plain = threading.Event()
    ws.add("c", a)
    ws.add("c", plain)
    first = ws.fanout("c")
    assert ws.fanout("c") is first  # no regrouping per publish
    assert first.plain == (plain,) and len(first) == 2
    ws.add("c", b)
    second = ws.fanout("c")
    assert second is not first and len(second) == 3
    ws.add("d", c)  # another channel's change keeps this one's
    assert ws.fanout("c") is second
    ws.discard("c", a)
    third = ws.fanout("c")
    assert third is not second
    assert [set(group) for _, group in third.broadcasts] == [{b}]
    assert len(ws.fanout("nobody")) == 0
    ws.discard("c", b)
    ws.discard("c", b)  # twice is harmless
    ws.discard("c", plain)
    assert "c" not in ws._by_channel  # no empty channel or group is kept
    assert len(ws.fanout("c")) == 0
    assert ws.everyone() == (c,)


def test_wait_returns_at_once_with_news():
    bus = MemoryBus()
    bus.publish("c", b"1")
    waiting = Waiting(bus, "c", 0, 600 * UNIT)
    waiting.start()
    waiting.join(10 * UNIT)
    assert not waiting.is_alive()
    assert [e.seq for e in waiting.result.events] == [1]


def test_wait_returns_at_once_with_a_reset_notice():
    bus = MemoryBus()
    batch = bus.wait("c", 5, 10, 600 * UNIT)
    assert batch.reset is not None
    assert (batch.reset.after, batch.reset.last_seq, batch.next) == (5, 0, 0)


def test_wait_times_out_empty():
    bus = MemoryBus()
    bus.publish("c", b"1")
    batch = bus.wait("c", 1, 10, 0.2 * UNIT)
    assert batch.events == ()
    assert batch.next == 1
    assert (batch.gap, batch.reset, batch.more) == (None, None, False)
    assert bus._waiters.of("c") == ()  # the waiter was removed


def test_wait_with_zero_timeout_does_not_register():
    bus = MemoryBus()
    assert bus.wait("c", 0, 10, 0).events == ()
    assert bus._waiters.everyone() == ()


def test_wait_is_woken_by_a_publish_from_another_thread():
    bus = MemoryBus()
    waiting = start_waiting(bus, "c")
    threading.Thread(target=bus.publish, args=("c", b'"hi"')).start()
    waiting.join(10 * UNIT)
    assert not waiting.is_alive()
    assert waiting.error is None
    assert [(e.seq, e.data) for e in waiting.result.events] == [(1, b'"hi"')]


def test_publish_wakes_only_the_waiters_of_its_channel():
    bus = MemoryBus()
    on_a, on_b = threading.Event(), threading.Event()
    bus.watch("a", on_a)
    bus.watch("b", on_b)
    bus.publish("a", b"1")
    assert on_a.is_set()
    assert not on_b.is_set()
    bus.unwatch("a", on_a)
    on_a.clear()
    bus.publish("a", b"2")
    assert not on_a.is_set()


def test_a_waiter_on_another_channel_keeps_waiting():
    bus = MemoryBus()
    waiting_b = start_waiting(bus, "b", timeout=60 * UNIT)
    waiting_a = start_waiting(bus, "a")
    bus.publish("a", b"1")
    waiting_a.join(10 * UNIT)
    assert not waiting_a.is_alive()
    assert waiting_b.is_alive()
    bus.publish("b", b"1")
    waiting_b.join(10 * UNIT)
    assert [e.channel for e in waiting_b.result.events] == ["b"]


def test_close_raises_bus_closed_in_waiters():
    bus = MemoryBus()
    waiting = start_waiting(bus, "c")
    bus.close()
    waiting.join(10 * UNIT)
    assert not waiting.is_alive()
    assert isinstance(waiting.error, BusClosed)
    with pytest.raises(BusClosed):
        bus.wait("c", 0, 10, 600 * UNIT)


def test_watch_after_close_is_woken_at_once():
    bus = MemoryBus()
    bus.close()
    waiter = threading.Event()
    bus.watch("c", waiter)
    assert waiter.is_set()


# -- the hold under gevent: the hub's timer ends it, not a gevent.Timeout ----------------------------------


def hold_on_hub(timeout: float, gone=None, set_after: float | None = None) -> tuple[float, bool]:
    """Run ``_hold_on_hub`` in a greenlet with gevent's own event: (seconds it held, whether the event is set)."""
    import gevent
    from gevent.event import Event

    woken = Event()
    if set_after is not None:
        gevent.spawn_later(set_after, woken.set)
    started = time.monotonic()
    gevent.spawn(base._hold_on_hub, woken, timeout, gone).join(20 * UNIT)
    return time.monotonic() - started, woken.is_set()


def test_a_hold_on_the_hub_ends_at_its_timeout() -> None:
    held, _ = hold_on_hub(0.3 * UNIT)
    assert 0.3 * UNIT - 0.01 <= held < 0.3 * UNIT + 2 * UNIT


def test_a_hold_on_the_hub_ends_when_the_event_is_set() -> None:
    held, woken = hold_on_hub(10 * UNIT, set_after=0.1 * UNIT)
    assert woken
    assert held < 5 * UNIT


def test_a_hold_on_the_hub_asks_gone_and_ends_when_the_client_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "GONE_CHECK", 0.05 * UNIT)
    asked: list[float] = []

    def gone() -> bool:
        asked.append(time.monotonic())
        return len(asked) >= 3

    held, _ = hold_on_hub(10 * UNIT, gone=gone)
    assert len(asked) == 3
    assert held < 5 * UNIT


def test_a_hold_on_the_hub_leaves_no_timer_running() -> None:
    import gevent

    loop = gevent.get_hub().loop
    before = loop.activecnt
    hold_on_hub(10 * UNIT, set_after=0.05 * UNIT)
    hold_on_hub(0.05 * UNIT)
    gevent.sleep(0)
    assert loop.activecnt == before
