"""Tests of clients.publisher: sync and asyncio publishers against a real server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from clients import Ack, AsyncPublisher, Publisher, PublishError
from clients.publisher import encode_payload


def test_sync_publish_assigns_contiguous_seqs(server, channel):
    with Publisher(server.url) as pub:
        acks = [pub.publish(channel, {"n": n}) for n in range(3)]
    assert [a.seq for a in acks] == [1, 2, 3]
    assert all(isinstance(a, Ack) and a.ts > 0 for a in acks)
    body = httpx.get(f"{server.url}/channels/{channel}/poll", params={"after": 0, "timeout": 0}).json()
    assert [e["data"] for e in body["events"]] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_async_publish(server, channel):
    async def main():
        async with AsyncPublisher(server.url) as pub:
            return [await pub.publish(channel, v) for v in ("a", 1, None, [1, 2])]

    acks = asyncio.run(main())
    assert [a.seq for a in acks] == [1, 2, 3, 4]


def test_refusal_carries_the_server_error(server):
    with Publisher(server.url) as pub, pytest.raises(PublishError) as info:
        pub.publish("bad channel!", "x")
    assert info.value.status == 400
    assert info.value.error == "bad_channel"
    assert "bad_channel" in str(info.value)


def test_too_large_is_refused(server, channel):
    with Publisher(server.url) as pub, pytest.raises(PublishError) as info:
        pub.publish(channel, "x" * (2 << 20))
    assert (info.value.status, info.value.error) == (413, "too_large")


def test_encode_payload():
    assert encode_payload({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    with pytest.raises(ValueError):
        encode_payload(float("inf"))
