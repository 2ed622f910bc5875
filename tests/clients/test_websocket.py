"""Tests of clients.websocket against a real server (werkzeug and gevent)."""

from __future__ import annotations

import asyncio

import pytest

from clients import NotConnected, Received, WebSocketSubscriber
from clients.websocket import ws_url
from tests.clients import scenarios
from tests.support import UNIT, run_server


def make(url, channel, **kwargs):
    return WebSocketSubscriber(url, channel, **kwargs)


def test_all_arrive_in_order(server, channel):
    sub = scenarios.all_arrive_in_order(make, server, channel)
    assert sub.stats.connections == 1
    assert sub.stats.frames == 40
    assert sub.stats.requests == 0


def test_reconnect_and_resume(server, channel):
    proxy, sub = scenarios.reconnect_and_resume(make, server, channel, rounds=3)
    assert proxy.dropped >= 3
    assert sub.stats.reconnects >= 3
    assert sub.stats.connections == sub.stats.reconnects + 1


def test_gap_is_counted(small_server, channel):
    scenarios.gap_is_counted(make, small_server, channel)


def test_reset_is_counted(server, channel):
    scenarios.reset_is_counted(make, server, channel)


def test_bad_channel_is_fatal(server):
    scenarios.bad_channel_is_fatal(make, server)


def test_publish_on_the_connection_is_acked_and_delivered(server, channel):
    got: list[Received] = []
    sub = WebSocketSubscriber(server.url, channel, on_event=got.append)

    async def main():
        with pytest.raises(NotConnected):
            await sub.publish("too early")
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        await asyncio.wait_for(sub.connected.wait(), 10 * UNIT)
        seqs = [await sub.publish({"k": k}) for k in range(5)]
        other = await sub.publish("elsewhere", channel=channel + "-other")
        while sub.tracker.cursor < 5:
            await asyncio.sleep(0.01)
        stop.set()
        await task
        return seqs, other

    seqs, other = asyncio.run(asyncio.wait_for(main(), 20 * UNIT))
    assert seqs == [1, 2, 3, 4, 5]
    assert other == 1
    assert [r.data for r in got] == [{"k": k} for k in range(5)]


def test_publish_refuses_what_is_not_json(server, channel):
    sub = WebSocketSubscriber(server.url, channel)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        await asyncio.wait_for(sub.connected.wait(), 10 * UNIT)
        with pytest.raises(ValueError):
            await sub.publish(float("nan"))
        stop.set()
        await task

    asyncio.run(main())


@pytest.mark.parametrize("server_compression", ["on", "off"])
def test_compression_is_offered_and_negotiated_only_when_allowed(server_compression, channel):
    got: list[Received] = []
    with run_server("werkzeug", "--ws-compression", server_compression) as srv:
        sub = WebSocketSubscriber(srv.url, channel, compression=True, on_event=got.append)

        async def main():
            await scenarios.publish_many(srv.url, channel, 20)
            await scenarios.run_until(sub, lambda: sub.tracker.cursor >= 20)

        asyncio.run(main())
    assert sub.negotiated == (["permessage-deflate"] if server_compression == "on" else [])
    assert [r.data for r in got] == [{"i": k} for k in range(20)]


def test_no_offer_without_compression(channel):
    with run_server("werkzeug", "--ws-compression", "on") as srv:
        sub = WebSocketSubscriber(srv.url, channel)

        async def main():
            await scenarios.publish_many(srv.url, channel, 1)
            await scenarios.run_until(sub, lambda: sub.tracker.cursor >= 1)

        asyncio.run(main())
    assert sub.negotiated == []


def test_ws_url():
    assert ws_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000"
    assert ws_url("https://lab.example/base") == "wss://lab.example/base"
    assert ws_url("ws://h:1") == "ws://h:1"
    with pytest.raises(ValueError):
        ws_url("ftp://h")
