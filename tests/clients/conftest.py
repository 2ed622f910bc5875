"""Servers and helpers shared by the client tests (each server is started once per session), and a fake poller."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator

import pytest

from clients import AsyncPublisher, PollAnswer, Subscriber
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


class ScriptedPoller:
    """A :class:`clients.Poller` that plays a script: each ``get`` returns or raises the next entry.

    With the script played out, ``get`` waits forever (a held poll with no news) until cancelled.
    """

    def __init__(self, *script: PollAnswer | BaseException) -> None:
        self.script = list(script)
        self.urls: list[str] = []
        self.timeouts: list[float] = []
        self.closed = 0

    async def get(self, url: str, timeout: float) -> PollAnswer:
        self.urls.append(url)
        self.timeouts.append(timeout)
        if not self.script:
            await asyncio.Event().wait()
        entry = self.script.pop(0)
        if isinstance(entry, BaseException):
            raise entry
        return entry

    async def aclose(self) -> None:
        self.closed += 1

    def params(self, name: str) -> list[str]:
        """The value of query parameter ``name`` in each request made."""
        return [dict(p.split("=") for p in url.partition("?")[2].split("&"))[name] for url in self.urls]


def answer(
    events: tuple[int, ...] = (),
    *,
    gap: dict[str, int] | None = None,
    reset: dict[str, int] | None = None,
    more: bool = False,
    after: int = 0,
    new_connection: bool = False,
) -> PollAnswer:
    """A 200 long-poll answer carrying events with these seqs (docs/protocol.md)."""
    body = {
        "channel": "c",
        "events": [{"channel": "c", "seq": s, "ts": 1, "data": s} for s in events],
        "next": events[-1] if events else after,
        "more": more,
        "gap": gap,
        "reset": reset,
    }
    return PollAnswer(200, json.dumps(body).encode(), new_connection)
