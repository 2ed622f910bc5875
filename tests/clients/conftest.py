"""Servers and helpers shared by the transport tests (each server is started once per session)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator

import pytest

from clients import AsyncPublisher, Subscriber
from tests.support import UNIT, ServerProcess, run_server

_names = itertools.count()


@pytest.fixture(scope="session", params=["werkzeug", "gevent"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A default server, once per runtime."""
    with run_server(request.param) as srv:
        yield srv


@pytest.fixture(scope="session")
def small_server() -> Iterator[ServerProcess]:
    """A server that keeps only 10 events per channel (for gap notices)."""
    with run_server("werkzeug", "--history", "10") as srv:
        yield srv


@pytest.fixture
def channel(request: pytest.FixtureRequest) -> str:
    """A channel name no other test uses."""
    return f"t{next(_names)}-{request.node.name[:30]}".replace("[", "-").replace("]", "")


async def publish_many(url: str, channel: str, n: int, pause: float = 0.0) -> list[int]:
    """Publish ``{"i": k}`` for k in 0..n-1 over HTTP; returns the seqs."""
    seqs = []
    async with AsyncPublisher(url) as pub:
        for k in range(n):
            seqs.append((await pub.publish(channel, {"i": k})).seq)
            if pause:
                await asyncio.sleep(pause)
    return seqs


async def run_until(sub: Subscriber, predicate: Callable[[], bool], timeout: float = 20 * UNIT) -> None:
    """Run ``sub`` until ``predicate()`` holds, then stop it; fail after ``timeout`` seconds."""
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not predicate():
            if task.done():
                task.result()
                raise AssertionError("subscriber stopped before the condition held")
            if loop.time() > deadline:
                raise AssertionError(f"condition not reached in {timeout} s: {sub.tracker.counters} {sub.stats}")
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10 * UNIT)
