"""peers.flask_socketio: the Flask-SocketIO peer, started as the runner starts it, read through the fleet's adapter.

On each async mode (gevent, threading) with and without TCP_NODELAY: one channel, one subscriber in each of
the adapter's modes (websocket, polling, upgrade) at once; the publisher numbers its payloads; every event
arrives once, in order, with the payload as it was posted, and the bytes counted agree with the packets read.
Also: the listening socket's TCP_NODELAY is inherited by accepted sockets (the claim the ``--nodelay`` option
rests on), a bad channel is refused on both sides, SIGTERM stops it with nothing left behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench.agents.http import BarePoller
from bench.agents.meter import WireMeter
from bench.agents.socketio import MODES, SocketIOSubscriber
from clients import Received, SubscriberError
from tests.peers import PeerProcess, publish, run_peer, until
from tests.support import UNIT, tagged_processes, wait_until

CONFIGS = [("gevent", "off"), ("gevent", "on"), ("threading", "off"), ("threading", "on")]
CLEAN = {"duplicate": 0, "out_of_order": 0, "missing": 0, "gap_lost": 0, "gaps": 0, "resets": 0}


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"{m}-nodelay-{n}" for m, n in CONFIGS])
def peer(request: pytest.FixtureRequest) -> Iterator[PeerProcess]:
    mode, nodelay = request.param
    with run_peer("flask_socketio", "--async-mode", mode, "--nodelay", nodelay) as p:
        yield p


class Recording(SocketIOSubscriber):
    """The adapter, keeping every Engine.IO packet it read (to check the bytes it counted against them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packets: list[str] = []

    def _packet(self, packet: str, recv_ns: int, recv_mono_ns: int) -> bool:
        self.packets.append(packet)
        return super()._packet(packet, recv_ns, recv_mono_ns)


def ws_frame_bytes(text: str) -> int:
    """Bytes of one unmasked server text frame carrying ``text``."""
    n = len(text.encode())
    return n + (2 if n < 126 else 4 if n < 1 << 16 else 10)


def test_every_mode_gets_every_event_once_in_order(peer: PeerProcess) -> None:
    """Three subscribers on one room (websocket, polling, upgrade): 1..N once each, bytes as read."""
    channel = f"pay-{uuid.uuid4().hex[:8]}"
    n = 40
    meters = {mode: WireMeter() for mode in MODES}
    got: dict[str, list[Received]] = {mode: [] for mode in MODES}
    subs = {
        mode: Recording(peer.url, channel, mode=mode, meter=meters[mode], on_event=got[mode].append) for mode in MODES
    }
    bodies: list[bytes] = []

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in subs.values()]
        try:
            await until(lambda: all(s.connected for s in subs.values()), tasks)
            bodies.extend(await publish(peer.publish_url, channel, range(1, n // 2 + 1)))
            await asyncio.sleep(0.05)
            bodies.extend(await publish(peer.publish_url, channel, range(n // 2 + 1, n + 1)))
            await until(lambda: all(s.tracker.cursor >= n for s in subs.values()), tasks)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)

    asyncio.run(main())
    posted = [json.loads(b) for b in bodies]
    for mode, sub in subs.items():
        assert [r.seq for r in got[mode]] == list(range(1, n + 1)), mode
        assert [r.data for r in got[mode]] == posted, mode
        assert all(r.ts is None and r.recv_mono_ns > 0 for r in got[mode])
        assert sub.tracker.finish(n).as_dict() == {"delivered": n, **CLEAN}, mode
        assert sub.stats.reconnects == 0
        events = [p for p in sub.packets if p.startswith('42["e",')]
        assert events == [b'42["e",%s]'.decode() % b.decode() for b in bodies], mode  # the payload verbatim
        meter = meters[mode]
        assert meter.up > 0 and meter.down > sub.stats.payload_bytes > 0
        if mode == "polling":  # its bodies: test_polling_bytes_are_the_bodies_read
            assert sub.transport == "longpoll" and sub.stats.frames == 0 and meter.heads == 0
            assert sub.stats.requests >= 3 and sub.stats.empty_responses < sub.stats.requests
        else:
            assert sub.transport == "websocket" and meter.heads == 1
            ws_packets = sub.packets if mode == "websocket" else sub.packets[sub.packets.index("3probe") :]
            assert sub.stats.frames == len(ws_packets)
            http = meter.down - meter.head_down - sum(ws_frame_bytes(p) for p in ws_packets)
            assert http == 0 if mode == "websocket" else http > 0  # upgrade: its polling answers before


def test_polling_bytes_are_the_bodies_read() -> None:
    """Engine.IO long polling: the bodies counted are the packets read, joined by \\x1e, plus the POST's "OK"."""
    with run_peer("flask_socketio", "--async-mode", "gevent") as peer:
        sub = Recording(peer.url, "bytes", mode="polling")
        answers: list[str] = []

        async def main() -> None:
            stop = asyncio.Event()
            original = sub._exchange

            async def exchange(*args: Any, **kwargs: Any) -> tuple[str, int, int]:
                out = await original(*args, **kwargs)
                answers.append(out[0])
                return out

            sub._exchange = exchange  # type: ignore[method-assign]
            task = asyncio.create_task(sub.run(stop))
            await until(lambda: sub.connected, [task])
            await publish(peer.publish_url, "bytes", range(1, 11))
            await until(lambda: sub.tracker.cursor >= 10, [task])
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)

        asyncio.run(main())
    assert sub.stats.requests == len(answers) and answers.count("OK") == 1  # the POST of "40"
    assert sub.stats.payload_bytes == sum(len(a.encode()) for a in answers)
    assert answers[0].startswith('0{"sid":')  # the open packet, read by the session itself
    assert "\x1e".join(a for a in answers[1:] if a != "OK") == "\x1e".join(sub.packets)
    assert sub.stats.empty_responses == sum(1 for a in answers[1:] if a != "OK" and '42["e"' not in a)


@pytest.mark.parametrize("nodelay", [True, False])
def test_accepted_sockets_inherit_the_listeners_nodelay(nodelay: bool) -> None:
    """What ``--nodelay on`` rests on: Linux copies TCP_NODELAY from the listening socket to accepted ones."""
    from peers.flask_socketio.app import listener

    with listener("127.0.0.1", 0, nodelay) as server, socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        with accepted:
            assert bool(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) is nodelay
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0


def test_the_ready_line_names_versions_and_options() -> None:
    with run_peer("flask_socketio", "--async-mode", "threading", "--nodelay", "on", "--ping-interval", "7") as peer:
        ready = peer.ready
    assert ready["peer"] == "flask_socketio" and ready["port"] > 0 and "publish_port" not in ready
    assert ready["listening"] == f"http://127.0.0.1:{ready['port']}"
    assert ready["options"]["async_mode"] == "threading" and ready["options"]["nodelay"] is True
    assert ready["options"]["ping_interval"] == 7.0
    assert {"flask-socketio", "python-socketio", "python-engineio", "flask"} <= set(ready["versions"])
    assert ready["versions"]["flask-socketio"] == "5.7.0"


def test_a_bad_channel_is_refused_on_both_sides(peer: PeerProcess) -> None:
    async def main() -> tuple[list[tuple[int, bytes]], list[BaseException]]:
        poller = BarePoller()
        answers = []
        try:
            for path, body in (
                ("/channels/bad%20name/events", b"[1]"),
                ("/channels/ok/events", b"[1,"),
                ("/channels/ok/events", b"\xff"),
            ):
                answer, *_ = await poller.request("POST", peer.url + path, 10 * UNIT, None, body)
                answers.append((answer.status, answer.body))
        finally:
            await poller.aclose()
        errors = []
        for mode in MODES:
            sub = SocketIOSubscriber(peer.url, "bad name", mode=mode)
            with pytest.raises(SubscriberError) as info:
                await asyncio.wait_for(sub.run(), 10 * UNIT)
            assert sub.stats.reconnects == 0
            errors.append(info.value)
        return answers, errors

    answers, errors = asyncio.run(main())
    assert [(s, json.loads(b)["error"]) for s, b in answers] == [
        (400, "bad_channel"),
        (400, "bad_json"),
        (400, "bad_json"),
    ]
    assert all("bad_channel" in str(e) for e in errors)


@pytest.mark.parametrize("async_mode", ["gevent", "threading"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_with_subscribers_connected_and_nothing_left(async_mode: str, signum: int) -> None:
    tag = f"sio-stop-{uuid.uuid4().hex}"
    with run_peer("flask_socketio", "--async-mode", async_mode, tag=tag) as peer:
        subs = [SocketIOSubscriber(peer.url, "held", mode=mode) for mode in MODES]

        async def main() -> int | None:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in subs]
            try:
                await until(lambda: all(s.connected for s in subs), tasks)
                await asyncio.sleep(0.1)  # the polling subscriber's GET is held now
                peer.child.proc.send_signal(signum)
                loop = asyncio.get_running_loop()
                code = await loop.run_in_executor(None, peer.child.proc.wait, 10 * UNIT)
                return code
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)

        code = asyncio.run(main())
    assert code == 0  # it stopped by itself, not by the SIGKILL of Child.stop
    assert wait_until(lambda: not tagged_processes(tag), 5 * UNIT), tagged_processes(tag)
