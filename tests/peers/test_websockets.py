"""peers.websockets: the lab's WebSocket protocol on asyncio ``websockets``, read by the fleet's unchanged subscriber.

Started as the runner starts it. Every event once, in order, ``seq`` contiguous, for several subscribers; the
frames, events and notices alike, are byte for byte the lab server's for the same bodies (``ts`` apart);
a dropped subscriber resumes from its cursor with nothing lost; the lab's refusals; the publish port's
keep-alive HTTP/1.1; SIGTERM and SIGINT stop it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from typing import Any

import pytest

from bench.agents.http import BarePoller
from bench.agents.messages import lab_message
from bench.agents.meter import WireMeter
from bench.agents.websocket import LeanWebSocketSubscriber
from clients import Received, SubscriberError
from tests.peers import PeerProcess, publish, run_peer, until
from tests.support import UNIT, run_server, tagged_processes, wait_until

CLEAN = {"duplicate": 0, "out_of_order": 0, "missing": 0, "gap_lost": 0, "gaps": 0, "resets": 0}


@pytest.fixture(scope="module")
def peer() -> Any:
    with run_peer("websockets") as p:
        yield p


def test_the_ready_line_announces_both_ports(peer: PeerProcess) -> None:
    ready = peer.ready
    assert ready["peer"] == "websockets" and ready["publish_port"] != ready["port"] > 0
    assert ready["versions"]["websockets"] == "17.4"
    assert ready["options"]["history"] == 10_000 and ready["options"]["ping_interval"] is None


def test_subscribers_get_every_event_once_in_order(peer: PeerProcess) -> None:
    """History then live events, three subscribers: 1..N once each, the lab's accounting clean, bytes exact."""
    channel = f"ceil-{uuid.uuid4().hex[:8]}"
    n = 60
    meters = [WireMeter() for _ in range(3)]
    got: list[list[Received]] = [[] for _ in range(3)]
    subs = [
        LeanWebSocketSubscriber(peer.url, channel, meter=m, on_event=g.append) for m, g in zip(meters, got, strict=True)
    ]

    async def main() -> list[bytes]:
        bodies = await publish(peer.publish_url, channel, range(1, 21), status=201)  # history, before anyone
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in subs]
        try:
            await until(lambda: all(s.stats.connections == 1 for s in subs), tasks)
            bodies += await publish(peer.publish_url, channel, range(21, n + 1), status=201)
            await until(lambda: all(s.tracker.cursor >= n for s in subs), tasks)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)
        return bodies

    bodies = asyncio.run(main())
    for sub, events, meter in zip(subs, got, meters, strict=True):
        assert [r.seq for r in events] == list(range(1, n + 1))
        assert [r.data for r in events] == [json.loads(b) for b in bodies]
        assert sub.tracker.finish(n).as_dict() == {"delivered": n, **CLEAN}
        assert (sub.stats.frames, sub.stats.reconnects) == (n, 0)
        texts = [
            b'{"channel":"%s","seq":%d,"ts":%d,"data":%s}' % (channel.encode(), r.seq, r.ts, b)
            for r, b in zip(events, bodies, strict=True)
        ]
        assert sub.stats.payload_bytes == sum(len(t) for t in texts)
        assert meter.down == meter.head_down + sum(len(t) + (2 if len(t) < 126 else 4) for t in texts)  # frame heads
        assert all(r.ts is not None and r.recv_ns >= r.ts for r in events)


def _capture(texts: list[str]) -> Any:
    def decode(channel: str, text: str) -> dict[str, Any]:
        texts.append(text)
        return lab_message(channel, text)

    return decode


def test_frames_are_the_lab_servers_byte_for_byte() -> None:
    """The same bodies to the lab's server and to the peer (history 5): the same frames, notices too, ts apart."""
    bodies = [
        b"[1, 2,\t3]",
        b' {"a": "\xc3\xa9", "b": [true, null]}\n',
        b'"x"',
        b"1e999",
        *[b"[%d]" % k for k in range(9)],
    ]
    frames: dict[str, dict[str, list[str]]] = {}
    with run_server("werkzeug", "--history", "5") as lab, run_peer("websockets", "--history", "5") as peer:
        for name, url, publish_url in (("lab", lab.url, lab.url), ("peer", peer.url, peer.publish_url)):

            async def main(url: str = url, publish_url: str = publish_url) -> dict[str, list[str]]:
                poller = BarePoller()
                for body in bodies:
                    answer, *_ = await poller.request(
                        "POST",
                        f"{publish_url}/channels/same/events",
                        10 * UNIT,
                        {"Content-Type": "application/json"},
                        body,
                    )
                    assert answer.status == 201, answer
                await poller.aclose()
                out: dict[str, list[str]] = {}
                for after, expected in ((0, 6), (10, 3), (100, 7)):  # messages: gap + 5, 3, reset + gap + 5
                    texts: list[str] = []
                    sub = LeanWebSocketSubscriber(url, "same", after=after, decode=_capture(texts))
                    stop = asyncio.Event()
                    task = asyncio.create_task(sub.run(stop))
                    await until(lambda texts=texts, expected=expected: len(texts) >= expected, [task])
                    stop.set()
                    await asyncio.wait_for(task, 10 * UNIT)
                    out[str(after)] = texts
                return out

            frames[name] = asyncio.run(main())
    unstamped = {
        name: {after: [re.sub(r'"ts":\d+', '"ts":0', t) for t in texts] for after, texts in by.items()}
        for name, by in frames.items()
    }
    assert unstamped["peer"] == unstamped["lab"]
    assert unstamped["peer"]["0"][0] == '{"type":"gap","first":1,"last":8}'
    assert unstamped["peer"]["10"] == unstamped["lab"]["0"][1:][2:]
    assert unstamped["peer"]["100"][:2] == [
        '{"type":"reset","after":100,"last_seq":13}',
        '{"type":"gap","first":1,"last":8}',
    ]
    assert unstamped["peer"]["0"][1:4] == [
        '{"channel":"same","seq":9,"ts":0,"data":[4]}',
        '{"channel":"same","seq":10,"ts":0,"data":[5]}',
        '{"channel":"same","seq":11,"ts":0,"data":[6]}',
    ]


def test_bodies_are_kept_as_posted() -> None:
    """White space inside the body is kept, around it stripped, UTF-8 and ``1e999`` as posted (as the lab does)."""
    with run_peer("websockets") as peer:
        texts: list[str] = []

        async def main() -> None:
            poller = BarePoller()
            for body in (b"[1, 2,\t3]", b' {"a": "\xc3\xa9"}\n', b"1e999"):
                answer, *_ = await poller.request(
                    "POST", f"{peer.publish_url}/channels/v/events", 10 * UNIT, None, body
                )
                assert answer.status == 201
            await poller.aclose()
            sub = LeanWebSocketSubscriber(peer.url, "v", decode=_capture(texts))
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            await until(lambda: sub.tracker.cursor >= 3, [task])
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)

        asyncio.run(main())
    data = [re.sub(r'^\{"channel":"v","seq":\d,"ts":\d+,"data":(.*)\}$', r"\1", t) for t in texts]
    assert data == ["[1, 2,\t3]", '{"a": "é"}', "1e999"]


def test_a_dropped_subscriber_resumes_from_its_cursor(peer: PeerProcess) -> None:
    channel = f"drop-{uuid.uuid4().hex[:8]}"
    got: list[Received] = []
    sub = LeanWebSocketSubscriber(peer.url, channel, on_event=got.append, backoff_min=0.01, backoff_max=0.05)
    n, drops = 150, 3

    async def main() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        dropped = 0
        try:
            await until(lambda: sub.stats.connections == 1, [task])

            async def slowly() -> None:
                for k in range(1, n + 1):
                    await publish(peer.publish_url, channel, range(k, k + 1), status=201)
                    await asyncio.sleep(0.002)

            publisher = asyncio.create_task(slowly())
            for k in range(drops):
                await until(
                    lambda k=k: sub.tracker.cursor >= (k + 1) * n // (drops + 2) and sub.stats.connections > k, [task]
                )
                dropped += sub.drop()
            await publisher
            await until(lambda: sub.tracker.cursor >= n, [task])
        finally:
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)
        return dropped

    assert asyncio.run(main()) == drops
    assert [r.seq for r in got] == list(range(1, n + 1))
    assert sub.tracker.finish(n).as_dict() == {"delivered": n, **CLEAN}
    assert sub.stats.connections == sub.stats.reconnects + 1 == drops + 1


def test_refusals_are_the_labs(peer: PeerProcess) -> None:
    async def main() -> list[tuple[int, str]]:
        out = []
        poller = BarePoller()
        try:
            for method, url, body in (
                ("GET", f"{peer.url}/channels/a%20b/ws", b""),
                ("GET", f"{peer.url}/channels/a/ws?after=-1", b""),
                ("GET", f"{peer.url}/elsewhere", b""),
                ("POST", f"{peer.publish_url}/channels/a%20b/events", b"[1]"),
                ("POST", f"{peer.publish_url}/channels/a/events", b"[1,"),
                ("POST", f"{peer.publish_url}/channels/a/events", b"NaN"),
                ("POST", f"{peer.publish_url}/channels/a/events", b"\xff"),
                ("GET", f"{peer.publish_url}/channels/a/events", b""),
                ("POST", f"{peer.publish_url}/nowhere", b"[1]"),
            ):
                answer, *_ = await poller.request(method, url, 10 * UNIT, None, body)
                out.append((answer.status, json.loads(answer.body)["error"]))
        finally:
            await poller.aclose()
        return out

    assert asyncio.run(main()) == [
        (400, "bad_channel"),
        (400, "bad_cursor"),
        (404, "not_found"),
        (400, "bad_channel"),
        (400, "bad_json"),
        (400, "bad_json"),
        (400, "bad_json"),
        (405, "method_not_allowed"),
        (404, "not_found"),
    ]
    sub = LeanWebSocketSubscriber(peer.url, "no spaces")
    with pytest.raises(SubscriberError, match=r"400.*bad_channel"):
        asyncio.run(asyncio.wait_for(sub.run(), 10 * UNIT))


def test_the_publish_port_keeps_its_connection_and_refuses_big_bodies(peer: PeerProcess) -> None:
    async def main() -> tuple[list[bool], int, bool]:
        poller = BarePoller()
        news = []
        try:
            for k in range(3):
                answer, new, *_ = await poller.request(
                    "POST", f"{peer.publish_url}/channels/ka/events", 10 * UNIT, None, b"[%d]" % k
                )
                assert answer.status == 201 and json.loads(answer.body)["seq"] == k + 1 and not answer.close
                news.append(new)
            big, *_ = await poller.request(
                "POST", f"{peer.publish_url}/channels/ka/events", 10 * UNIT, None, b"1" * ((1 << 20) + 1)
            )
            return news, big.status, big.close
        finally:
            await poller.aclose()

    news, status, close = asyncio.run(main())
    assert news == [True, False, False]
    assert (status, close) == (413, True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_with_subscribers_connected(signum: int) -> None:
    tag = f"ws-stop-{uuid.uuid4().hex}"
    with run_peer("websockets", tag=tag) as peer:
        sub = LeanWebSocketSubscriber(peer.url, "held")

        async def main() -> int | None:
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            try:
                await until(lambda: sub.stats.connections == 1, [task])
                peer.child.proc.send_signal(signum)
                return await asyncio.get_running_loop().run_in_executor(None, peer.child.proc.wait, 10 * UNIT)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10 * UNIT)

        code = asyncio.run(main())
    assert code == 0
    assert wait_until(lambda: not tagged_processes(tag), 5 * UNIT), tagged_processes(tag)
