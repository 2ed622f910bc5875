"""Tests of clients.subscriber: the reconnect/resume loop, with a scripted fake transport (no network)."""

from __future__ import annotations

import asyncio
import time

import pytest

from clients import Received, Subscriber, SubscriberError, SubscriberStats
from clients.latency import LatencyHistogram
from tests.support import UNIT


def event(seq: int, ts: int | None = None) -> dict:
    return {"channel": "c", "seq": seq, "ts": time.time_ns() if ts is None else ts, "data": {"n": seq}}


class Scripted(Subscriber):
    """Each session plays the next script entry: messages to deliver, then an outcome."""

    transport = "fake"
    retry_on = (ConnectionResetError,)

    def __init__(self, scripts, **kwargs):
        super().__init__("c", **kwargs)
        self.scripts = list(scripts)
        self.cursors: list[int] = []
        self.sleeps: list[float] = []

    async def _session(self):
        self.cursors.append(self.tracker.cursor)
        if not self.scripts:
            await asyncio.Event().wait()  # idle until cancelled
        messages, outcome = self.scripts.pop(0)
        for m in messages:
            self._on_message(m, time.time_ns(), time.monotonic_ns())
        if isinstance(outcome, BaseException):
            raise outcome
        await asyncio.sleep(0)


async def run_until(sub: Subscriber, predicate, timeout: float = 10 * UNIT) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate() and not task.done():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, timeout)


def test_reconnects_resume_from_the_cursor_and_count():
    got: list[Received] = []
    hist = LatencyHistogram()
    sub = Scripted(
        [
            ([event(1), event(2)], ConnectionResetError()),
            ([event(2), event(3), {"type": "gap", "first": 4, "last": 6}, event(7)], ConnectionResetError()),
            ([event(8)], None),  # a session that ends without error also reconnects
        ],
        on_event=got.append,
        histogram=hist,
        backoff_min=0.001,
        backoff_max=0.004,
    )
    asyncio.run(run_until(sub, lambda: sub.tracker.cursor == 8 and not sub.scripts and len(sub.cursors) == 4))
    assert [r.seq for r in got] == [1, 2, 3, 7, 8]
    assert got[0].data == {"n": 1} and got[0].channel == "c"
    assert sub.cursors == [0, 2, 7, 8]
    c = sub.tracker.finish(8)
    assert (c.delivered, c.duplicate, c.gap_lost, c.gaps, c.missing) == (5, 1, 3, 1, 0)
    assert sub.stats.reconnects == 3
    assert hist.count == 5  # duplicates are not measured twice
    assert sub.last_error is None  # the latest session that ended (the third) ended without an error


def test_reset_message_goes_to_the_tracker():
    sub = Scripted([([event(5), {"type": "reset", "after": 5, "last_seq": 2}, event(1), event(2)], None)], after=4)
    asyncio.run(run_until(sub, lambda: sub.tracker.counters.resets == 1 and sub.tracker.cursor == 2))
    assert sub.tracker.finish(2).delivered == 3


def test_backoff_doubles_up_to_the_cap_and_resets_after_progress():
    delays: list[float] = []

    class Recorded(Scripted):
        async def _pause(self, delay, stopper):
            delays.append(delay)

    fail = ([], ConnectionResetError())
    sub = Recorded(
        [fail, fail, fail, fail, ([event(1)], ConnectionResetError()), fail], backoff_min=0.01, backoff_max=0.03
    )
    asyncio.run(run_until(sub, lambda: not sub.scripts and len(sub.cursors) == 7))
    assert delays[:6] == [0.01, 0.02, 0.03, 0.03, 0.01, 0.02]
    assert isinstance(sub.last_error, ConnectionResetError)  # the sixth session's


def test_fatal_errors_propagate():
    sub = Scripted([([], SubscriberError("400 bad_channel"))])
    with pytest.raises(SubscriberError):
        asyncio.run(sub.run())
    sub = Scripted([([], KeyError("bug"))])
    with pytest.raises(KeyError):
        asyncio.run(sub.run())


def test_stop_ends_a_session_that_never_returns_and_cancel_works():
    sub = Scripted([])
    asyncio.run(run_until(sub, lambda: len(sub.cursors) == 1))
    assert sub.stats.reconnects == 0

    async def cancel() -> None:
        task = asyncio.create_task(Scripted([]).run())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel())


def test_stats_merge_and_dict():
    a = SubscriberStats(connections=1, requests=2, frames=3)
    b = SubscriberStats(connections=2, empty_responses=1, payload_bytes=10, reconnects=1)
    assert a.merge(b).as_dict() == {
        "connections": 3,
        "requests": 2,
        "empty_responses": 1,
        "frames": 3,
        "payload_bytes": 10,
        "reconnects": 1,
    }


class EndsAsItIsCancelled(Subscriber):
    """A session whose connection breaks just as it is cancelled: it raises its own error, not the cancellation
    (what Python 3.11's ``wait_for`` does when the awaited future completes in the same turn)."""

    transport = "test"

    async def _session(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionResetError("connection lost without a close frame") from None


def test_stop_is_clean_when_the_session_breaks_as_it_is_cancelled():
    async def main() -> None:
        stop = asyncio.Event()
        sub = EndsAsItIsCancelled("c")
        task = asyncio.create_task(sub.run(stop))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5 * UNIT)  # returns: the break is a retry-able error, and we are stopping

    asyncio.run(main())
