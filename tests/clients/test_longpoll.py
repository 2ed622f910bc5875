"""Tests of clients.longpoll against a real server (werkzeug and gevent) and httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from clients import LongPollSubscriber, Received
from clients.longpoll import make_http_client
from tests.clients import scenarios


def make(url, channel, **kwargs):
    return LongPollSubscriber(url, channel, timeout=2.0, **kwargs)


def test_all_arrive_in_order(server, channel):
    sub = scenarios.all_arrive_in_order(make, server, channel)
    assert sub.stats.requests >= 2
    assert sub.stats.frames == 0


def test_reconnect_and_resume(server, channel):
    proxy, sub = scenarios.reconnect_and_resume(make, server, channel, rounds=3)
    assert proxy.dropped >= 3  # at least the drops while a poll was held
    assert sub.stats.reconnects >= 3


def test_gap_is_counted(small_server, channel):
    scenarios.gap_is_counted(make, small_server, channel)


def test_reset_is_counted(server, channel):
    scenarios.reset_is_counted(make, server, channel)


def test_bad_channel_is_fatal(server):
    scenarios.bad_channel_is_fatal(make, server)


def test_timeout_answers_are_counted_empty(server, channel):
    sub = LongPollSubscriber(server.url, channel, timeout=0.1)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        while sub.stats.empty_responses < 3:
            await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(asyncio.wait_for(main(), 20))
    assert sub.tracker.cursor == 0
    assert sub.stats.requests >= 3


def test_shared_client_with_many_subscribers(server, channel):
    """More held polls than httpx's default pool of 100, on one shared client."""
    n_subs, n_events = 120, 3

    async def main():
        async with make_http_client() as client:
            subs = [LongPollSubscriber(server.url, channel, timeout=5.0, client=client) for _ in range(n_subs)]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in subs]
            await asyncio.sleep(0.5)
            await scenarios.publish_many(server.url, channel, n_events)
            deadline = asyncio.get_running_loop().time() + 30
            while not all(s.tracker.cursor >= n_events for s in subs):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
            assert not client.is_closed  # a shared client is not closed by its subscribers
            return subs

    subs = asyncio.run(main())
    for s in subs:
        c = s.tracker.finish(n_events)
        assert (c.delivered, c.duplicate, c.missing) == (n_events, 0, 0)


def answer(events=(), *, gap=None, reset=None, more=False, after=0):
    nxt = events[-1]["seq"] if events else after
    body = {"channel": "c", "events": list(events), "next": nxt, "more": more, "gap": gap, "reset": reset}
    return httpx.Response(200, content=json.dumps(body).encode())


def ev(seq):
    return {"channel": "c", "seq": seq, "ts": 1, "data": seq}


def test_503_is_retried_and_more_is_followed_at_once():
    """Seam test with httpx.MockTransport: the exact request sequence the subscriber makes."""
    script = [
        httpx.Response(503, json={"error": "shutting_down", "detail": "the server is stopping; poll again"}),
        answer([ev(1), ev(2)], more=True),
        answer([ev(3)], gap=None),
        answer([], after=3),
    ]
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return script.pop(0) if script else answer([], after=3)

    got: list[Received] = []

    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            sub = LongPollSubscriber(
                "http://lab", "c", timeout=1, client=client, on_event=got.append, backoff_min=0.001
            )
            await scenarios.run_until(sub, lambda: len(seen) >= 4)
            return sub

    sub = asyncio.run(main())
    assert [s["after"] for s in seen[:4]] == ["0", "0", "2", "3"]
    assert seen[0]["timeout"] == "1"
    assert [r.seq for r in got] == [1, 2, 3]
    assert sub.stats.reconnects == 1
    assert isinstance(sub.last_error, Exception)


def test_client_errors_are_fatal():
    def handler(request):
        return httpx.Response(400, json={"error": "bad_cursor", "detail": "nope"})

    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await LongPollSubscriber("http://lab", "c", client=client).run()

    with pytest.raises(scenarios.SubscriberError, match="400 bad_cursor: nope"):
        asyncio.run(main())


def test_timeout_is_checked():
    with pytest.raises(ValueError):
        LongPollSubscriber("http://lab", "c", timeout=31)
