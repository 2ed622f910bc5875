"""Transport-independent scenarios, run by test_longpoll, test_polling and test_websocket.

Each takes ``make(base_url, channel, **kwargs) -> Subscriber`` and checks
correctness only: which events arrive, how often, in which order, and what
the accounting says. Nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from clients import LatencyHistogram, Received, Subscriber, SubscriberError
from tests.clients.conftest import publish_many, run_until

__all__ = ["SubscriberError", "publish_many", "run_until"]
from tests.clients.proxy import DroppingProxy
from tests.support import UNIT, ServerProcess

Make = Callable[..., Subscriber]


def assert_clean(sub: Subscriber, got: list[Received], n: int) -> None:
    assert [r.seq for r in got] == list(range(1, n + 1))
    counters = sub.tracker.finish(n)
    assert counters.as_dict() == {
        "delivered": n,
        "duplicate": 0,
        "out_of_order": 0,
        "missing": 0,
        "gap_lost": 0,
        "gaps": 0,
        "resets": 0,
    }


def all_arrive_in_order(make: Make, server: ServerProcess, channel: str, n: int = 40) -> Subscriber:
    """Events published before and while subscribed arrive once each, in order, with their data."""
    got: list[Received] = []
    hist = LatencyHistogram()
    sub = make(server.url, channel, on_event=got.append, histogram=hist)

    async def main() -> None:
        await publish_many(server.url, channel, n // 2)  # before: caught up from history
        publisher = asyncio.create_task(_later(publish_many(server.url, channel, n - n // 2, pause=0.005)))
        await run_until(sub, lambda: sub.tracker.cursor >= n)
        await publisher

    asyncio.run(main())
    assert_clean(sub, got, n)
    assert [r.data for r in got] == [{"i": k} for k in range(n // 2)] + [{"i": k} for k in range(n - n // 2)]
    assert all(r.channel == channel and r.ts > 0 and r.recv_ns > 0 for r in got)
    assert hist.count == n
    assert sub.stats.connections >= 1
    assert sub.stats.payload_bytes > 0
    return sub


async def _later(coro: Any, delay: float = 0.05) -> Any:
    await asyncio.sleep(delay)
    return await coro


def reconnect_and_resume(
    make: Make, server: ServerProcess, channel: str, *, rounds: int = 3, per_round: int = 10, **kwargs: Any
) -> tuple[DroppingProxy, Subscriber]:
    """Connections dropped between and during bursts: every event still arrives exactly once, in order.

    Returns the proxy (how many connections it dropped) and the subscriber.
    """
    got: list[Received] = []
    n = rounds * per_round * 2

    async def main() -> tuple[DroppingProxy, Subscriber]:
        proxy = DroppingProxy(server.port)
        await proxy.start()
        sub = make(proxy.url, channel, on_event=got.append, backoff_min=0.01, backoff_max=0.05, **kwargs)
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        try:
            target = 0
            for _ in range(rounds):
                # A burst, then a drop while the subscriber waits (held poll / open socket / idle keep-alive).
                target += per_round
                await publish_many(server.url, channel, per_round)
                await _wait(lambda t=target: sub.tracker.cursor >= t and proxy.open_connections > 0, task)
                await asyncio.sleep(0.05)
                proxy.drop()
                # A burst with a drop in the middle of it.
                target += per_round
                burst = asyncio.create_task(publish_many(server.url, channel, per_round, pause=0.003))
                await asyncio.sleep(0.01)
                proxy.drop()
                await burst
            await _wait(lambda: sub.tracker.cursor >= n, task)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)
            await proxy.close()
        return proxy, sub

    proxy, sub = asyncio.run(main())
    assert_clean(sub, got, n)
    assert sub.stats.connections >= 2
    return proxy, sub


async def _wait(predicate: Callable[[], bool], task: asyncio.Task[None], timeout: float = 20 * UNIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if task.done():
            task.result()
            raise AssertionError("subscriber stopped")
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def gap_is_counted(make: Make, small_server: ServerProcess, channel: str) -> None:
    """history 10, 30 events published, subscribe from 0: a gap notice for 1..20, then 21..30."""
    got: list[Received] = []
    sub = make(small_server.url, channel, on_event=got.append)

    async def main() -> None:
        await publish_many(small_server.url, channel, 30)
        await run_until(sub, lambda: sub.tracker.cursor >= 30)

    asyncio.run(main())
    assert [r.seq for r in got] == list(range(21, 31))
    c = sub.tracker.finish(30)
    assert (c.gaps, c.gap_lost, c.delivered, c.missing, c.duplicate, c.out_of_order) == (1, 20, 10, 0, 0, 0)


def reset_is_counted(make: Make, server: ServerProcess, channel: str) -> None:
    """A cursor ahead of the channel (after=100, 5 events): a reset, then 1..5 again."""
    got: list[Received] = []
    sub = make(server.url, channel, after=100, on_event=got.append)

    async def main() -> None:
        await publish_many(server.url, channel, 5)
        await run_until(sub, lambda: sub.tracker.counters.resets == 1 and sub.tracker.cursor >= 5)

    asyncio.run(main())
    assert [r.seq for r in got] == [1, 2, 3, 4, 5]
    c = sub.tracker.finish(5)
    assert (c.resets, c.delivered, c.missing, c.duplicate) == (1, 5, 0, 0)


def bad_channel_is_fatal(make: Make, server: ServerProcess) -> None:
    """A 400 bad_channel is not retried: run() raises SubscriberError naming it."""
    sub = make(server.url, "no spaces allowed")
    with pytest.raises(SubscriberError, match="bad_channel"):
        asyncio.run(asyncio.wait_for(sub.run(), 10 * UNIT))
    assert sub.stats.reconnects == 0
