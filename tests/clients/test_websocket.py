"""Tests of clients.websocket: what only the WebSocket subscriber does (publish, compression), against a real server.

What every transport must do is in test_subscriber_contract.py.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.run.proxy import Nginx, find_nginx
from clients import NotConnected, Received, WebSocketSubscriber
from clients.websocket import LabAioClient, ws_url
from tests.clients.conftest import publish_many, run_until
from tests.support import UNIT, run_server

needs_nginx = pytest.mark.skipif(find_nginx() is None, reason="needs nginx (apt-get install nginx-light)")


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
            await publish_many(srv.url, channel, 20)
            await run_until(sub, lambda: sub.tracker.cursor >= 20)

        asyncio.run(main())
    assert sub.negotiated == (["permessage-deflate"] if server_compression == "on" else [])
    assert [r.data for r in got] == [{"i": k} for k in range(20)]


def test_no_offer_without_compression(channel):
    with run_server("werkzeug", "--ws-compression", "on") as srv:
        sub = WebSocketSubscriber(srv.url, channel)

        async def main():
            await publish_many(srv.url, channel, 1)
            await run_until(sub, lambda: sub.tracker.cursor >= 1)

        asyncio.run(main())
    assert sub.negotiated == []


def test_ws_url():
    assert ws_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000"
    assert ws_url("https://lab.example/base") == "wss://lab.example/base"
    assert ws_url("ws://h:1") == "ws://h:1"
    with pytest.raises(ValueError):
        ws_url("ftp://h")


@needs_nginx
def test_wss_through_a_tls_proxy_with_its_own_certificate(channel):
    """``ssl_context`` trusts the proxy's throwaway certificate (and only it): events arrive over ``wss://``."""
    import ssl

    got: list[Received] = []
    with run_server("gevent") as srv, Nginx(("127.0.0.1", srv.port)) as nginx:
        base = f"https://127.0.0.1:{nginx.tls_port}"
        sub = WebSocketSubscriber(base, channel, on_event=got.append, ssl_context=nginx.ssl_context())

        async def main() -> None:
            await asyncio.gather(run_until(sub, lambda: len(got) == 5), publish_after_connect(sub, srv.url, channel, 5))

        asyncio.run(asyncio.wait_for(main(), 30 * UNIT))
        untrusting = LabAioClient(
            f"wss://127.0.0.1:{nginx.tls_port}/channels/x/ws", ssl_context=ssl.create_default_context()
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(asyncio.wait_for(untrusting.open(), 20 * UNIT))
    assert [r.seq for r in got] == [1, 2, 3, 4, 5]


async def publish_after_connect(sub: WebSocketSubscriber, url: str, channel: str, n: int) -> None:
    await asyncio.wait_for(sub.connected.wait(), 20 * UNIT)
    await publish_many(url, channel, n)
