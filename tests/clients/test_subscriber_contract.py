"""The contract every subscriber meets: one set of tests, run over long polling, interval polling, WebSocket and SSE.

Like ``tests/server/test_bus_contract.py`` for the buses, these tests pin
what each transport frontend of :class:`clients.Subscriber` must do against
a real server (werkzeug and gevent): every event once, in order, with its
data, across dropped connections; gap and reset notices accounted; a
refusal not retried. They check correctness only (which events arrive, how
often, in which order, and what the accounting says), never a timing.
What only one transport does is tested in its own module
(``test_longpoll.py``, ``test_polling.py``, ``test_websocket.py``, ``test_sse.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from clients import (
    LatencyHistogram,
    LongPollSubscriber,
    PollingSubscriber,
    Received,
    SSESubscriber,
    Subscriber,
    SubscriberError,
    WebSocketSubscriber,
)
from tests.clients.conftest import publish_many, run_until
from tests.clients.proxy import DroppingProxy
from tests.support import UNIT, ServerProcess, free_port

Make = Callable[..., Subscriber]

MAKERS: dict[str, Make] = {
    "longpoll": lambda url, channel, **kw: LongPollSubscriber(url, channel, timeout=2.0, **kw),
    "polling": lambda url, channel, **kw: PollingSubscriber(url, channel, interval=0.02, **kw),
    "websocket": lambda url, channel, **kw: WebSocketSubscriber(url, channel, **kw),
    "sse": lambda url, channel, **kw: SSESubscriber(url, channel, **kw),
}
"""How each transport's subscriber is made for these tests (short holds and intervals)."""


@pytest.fixture(params=sorted(MAKERS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(transport: str) -> Make:
    """``make(base_url, channel, **kwargs) -> Subscriber`` of the transport under test."""
    return MAKERS[transport]


def assert_clean(sub: Subscriber, got: list[Received], n: int) -> None:
    """Events 1..n were received once each, in order, and the counters say exactly that."""
    assert [r.seq for r in got] == list(range(1, n + 1))
    assert sub.tracker.finish(n).as_dict() == {
        "delivered": n,
        "duplicate": 0,
        "out_of_order": 0,
        "missing": 0,
        "gap_lost": 0,
        "gaps": 0,
        "resets": 0,
    }


async def _later(coro: Any, delay: float = 0.05) -> Any:
    await asyncio.sleep(delay)
    return await coro


async def _wait(predicate: Callable[[], bool], task: asyncio.Task[None], timeout: float = 20 * UNIT) -> None:
    """Wait until ``predicate()`` holds while ``task`` (a subscriber's run) goes on; fail if it ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if task.done():
            task.result()
            raise AssertionError("subscriber stopped")
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_transport_names_the_class(make: Make, transport: str) -> None:
    assert make("http://lab", "c").transport == transport


def test_all_arrive_in_order(make: Make, transport: str, server: ServerProcess, channel: str) -> None:
    """Events published before (history) and while subscribed arrive once each, in order, with their data."""
    n = 40
    got: list[Received] = []
    hist = LatencyHistogram()
    sub = make(server.url, channel, on_event=got.append, histogram=hist)

    async def main() -> None:
        await publish_many(server.url, channel, n // 2)
        publisher = asyncio.create_task(_later(publish_many(server.url, channel, n - n // 2, pause=0.005)))
        await run_until(sub, lambda: sub.tracker.cursor >= n)
        await publisher

    asyncio.run(main())
    assert_clean(sub, got, n)
    assert [r.data for r in got] == [{"i": k} for k in range(n // 2)] + [{"i": k} for k in range(n - n // 2)]
    assert all(r.channel == channel and r.ts > 0 and r.recv_ns > 0 and r.recv_mono_ns > 0 for r in got)
    assert hist.count == n
    assert sub.stats.connections >= 1
    assert sub.stats.payload_bytes > 0
    assert sub.stats.reconnects == 0
    if transport == "websocket":  # one connection, one frame per event, no HTTP request
        assert (sub.stats.connections, sub.stats.frames, sub.stats.requests) == (1, n, 0)
    elif transport == "sse":  # one stream (one request), one SSE event per event
        assert (sub.stats.connections, sub.stats.frames, sub.stats.requests) == (1, n, 1)
    else:  # HTTP answers
        assert sub.stats.frames == 0
        assert sub.stats.requests >= 2


def test_reconnect_and_resume(make: Make, transport: str, server: ServerProcess, channel: str) -> None:
    """Connections dropped between and during bursts: every event still arrives exactly once, in order."""
    rounds, per_round = 3, 10
    n = rounds * per_round * 2
    got: list[Received] = []

    async def main() -> tuple[DroppingProxy, Subscriber]:
        proxy = DroppingProxy(server.port)
        await proxy.start()
        sub = make(proxy.url, channel, on_event=got.append, backoff_min=0.01, backoff_max=0.05)
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
    if transport != "polling":
        # A held poll or an open WebSocket is always there to be cut: at least one drop a round did cut it.
        # (Idle interval polls may hold no connection open when a drop comes: only exactly-once must hold.)
        assert proxy.dropped >= rounds
        assert sub.stats.reconnects >= rounds
    if transport in ("websocket", "sse"):
        assert sub.stats.connections == sub.stats.reconnects + 1


def test_gap_is_counted(make: Make, small_server: ServerProcess, channel: str) -> None:
    """History 10, 30 events published, subscribe from 0: a gap notice for 1..20, then 21..30."""
    got: list[Received] = []
    sub = make(small_server.url, channel, on_event=got.append)

    async def main() -> None:
        await publish_many(small_server.url, channel, 30)
        await run_until(sub, lambda: sub.tracker.cursor >= 30)

    asyncio.run(main())
    assert [r.seq for r in got] == list(range(21, 31))
    c = sub.tracker.finish(30)
    assert (c.gaps, c.gap_lost, c.delivered, c.missing, c.duplicate, c.out_of_order) == (1, 20, 10, 0, 0, 0)


def test_reset_is_counted(make: Make, server: ServerProcess, channel: str) -> None:
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


def test_bad_channel_is_fatal(make: Make, server: ServerProcess) -> None:
    """A 400 bad_channel is not retried: run() raises SubscriberError naming it."""
    sub = make(server.url, "no spaces allowed")
    with pytest.raises(SubscriberError, match="bad_channel"):
        asyncio.run(asyncio.wait_for(sub.run(), 10 * UNIT))
    assert sub.stats.reconnects == 0


def test_a_server_that_is_gone_is_retried_until_stopped(make: Make, channel: str) -> None:
    """Nothing listens: every session fails to connect, is retried with backoff, and stop ends run()."""
    sub = make(f"http://127.0.0.1:{free_port()}", channel, backoff_min=0.001, backoff_max=0.002)

    async def main() -> None:
        await run_until(sub, lambda: sub.stats.reconnects >= 3)

    asyncio.run(main())
    assert isinstance(sub.last_error, OSError)
    assert sub.tracker.cursor == 0
    assert sub.stats.connections == 0
