"""bench.agents.socketio: the fleet's Engine.IO v4 / Socket.IO v5 subscriber.

Pure: the open packet, long-polling bodies and EVENT packets, read as python-engineio and python-socketio
(the official Python implementations) write them; each packet's decision (pong, upgrade, refusal, close).
Against the Flask-SocketIO peer: pings answered in every mode (a session whose pongs did not come back
would be closed within the ping timeout); a dropped connection opens a new session, and what was
published meanwhile is counted missing, not hidden; the official ``socketio.AsyncClient`` gets the same
events as the adapter, over both transports.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from socketio import packet as sio_packet

from bench.agents.meter import WireMeter
from bench.agents.socketio import MODES, EngineOpen, SocketIOSubscriber, event_args, parse_open, split_payload
from clients import Received, SubscriberError
from tests.peers import PeerProcess, publish, run_peer, until
from tests.support import UNIT

# --- pure -----------------------------------------------------------------------------------------------------


def test_the_open_packet() -> None:
    text = '0{"sid":"abc","upgrades":["websocket"],"pingTimeout":20000,"pingInterval":25000,"maxPayload":1000000}'
    assert parse_open(text) == EngineOpen("abc", ("websocket",), 25.0, 20.0, 1_000_000)
    with pytest.raises(ConnectionResetError):
        parse_open('40{"sid":"x"}')


def test_polling_bodies_as_python_engineio_writes_them() -> None:
    packets = [
        eio_packet.Packet(eio_packet.MESSAGE, data='0{"sid":"s"}'),
        eio_packet.Packet(eio_packet.MESSAGE, data='2["e",[1,2,0,1,"x\\u001ey"]]'),
        eio_packet.Packet(eio_packet.PING),
        eio_packet.Packet(eio_packet.NOOP),
    ]
    body = eio_payload.Payload(packets=packets).encode()
    assert split_payload(body) == [p.encode() for p in packets]
    assert split_payload(body)[::3] == ['40{"sid":"s"}', "6"]
    assert split_payload("") == []
    # and back: python-engineio reads what the adapter sends (a pong, "40", several at once)
    sent = "\x1e".join(["3", "40"])
    decoded = eio_payload.Payload(encoded_payload=sent).packets
    assert [(p.packet_type, p.data) for p in decoded] == [(eio_packet.PONG, ""), (eio_packet.MESSAGE, "0")]


@pytest.mark.parametrize(
    ("namespace", "ack"),
    [("/", None), ("/", 12), ("/payments", None), ("/payments", 7)],
)
def test_event_packets_as_python_socketio_writes_them(namespace: str, ack: int | None) -> None:
    payload = [3, 123456789, 1, 3, "é\u2028"]
    text = sio_packet.Packet(sio_packet.EVENT, ["e", payload], namespace=namespace, id=ack).encode()
    assert event_args("4" + text) == ["e", payload]


def test_an_event_packet_that_is_not_one() -> None:
    with pytest.raises(ValueError, match=r"not a Socket\.IO event"):
        event_args('42{"a":1}')


class Probe(SocketIOSubscriber):
    """The adapter with its replies recorded instead of sent."""

    def __init__(self, mode: str = "websocket") -> None:
        self.got: list[Received] = []
        super().__init__("http://127.0.0.1:9", "c", mode=mode, on_event=self.got.append)
        self.sent: list[str] = []
        self._send = self.sent.append


def test_each_packet_decides_what_it_should() -> None:
    probe = Probe("upgrade")
    assert probe._packet('42["e",[0,5,0,1,"x"]]', 10, 20) is True
    assert probe._packet('42["other",[0,5,0,2,"x"]]', 10, 20) is False  # another event: not the channel's
    assert probe._packet("2", 10, 20) is False and probe._packet("3probe", 10, 20) is False
    assert probe._packet("6", 10, 20) is False and probe._packet('40{"sid":"s"}', 10, 20) is False
    assert probe.sent == ["3", "5"] and probe.connected
    assert [(r.seq, r.ts, r.data, r.recv_ns, r.recv_mono_ns) for r in probe.got] == [
        (1, None, [0, 5, 0, 1, "x"], 10, 20)
    ]
    opening = Probe("websocket")
    opening._packet('0{"sid":"s","upgrades":[],"pingInterval":300,"pingTimeout":200}', 1, 1)
    assert opening.sent == ["40"] and opening.opened == EngineOpen("s", (), 0.3, 0.2, 1_000_000)
    assert Probe("websocket")._packet("3probe", 1, 1) is False  # a probe's answer outside an upgrade: ignored
    with pytest.raises(SubscriberError, match="bad_channel"):
        Probe()._packet('44{"message":"bad_channel"}', 1, 1)
    for packet in ("41", "1", "9"):
        with pytest.raises(ConnectionResetError):
            Probe()._packet(packet, 1, 1)


def test_modes_and_transport_names() -> None:
    assert [SocketIOSubscriber("http://h:1", "c", mode=m).transport for m in MODES] == [
        "websocket",
        "longpoll",
        "websocket",
    ]
    with pytest.raises(ValueError, match="mode"):
        SocketIOSubscriber("http://h:1", "c", mode="sse")


# --- against the Flask-SocketIO peer --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer() -> Iterator[PeerProcess]:
    with run_peer("flask_socketio", "--async-mode", "gevent", "--nodelay", "on") as p:
        yield p


def test_pings_are_answered_in_every_mode() -> None:
    """Pings every 1 s, a timeout of 0.5 s: 3 s later every session is the first one, and events still flow.

    (A client that did not answer would be closed at the second ping, and its subscriber would reconnect.)
    """
    with run_peer("flask_socketio", "--ping-interval", "1", "--ping-timeout", "0.5") as peer:
        meters = {mode: WireMeter() for mode in MODES}
        subs = {mode: SocketIOSubscriber(peer.url, "pings", mode=mode, meter=meters[mode]) for mode in MODES}

        async def main() -> dict[str, int]:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in subs.values()]
            try:
                await until(lambda: all(s.connected for s in subs.values()), tasks)
                before = {mode: meters[mode].up for mode in MODES}
                await asyncio.sleep(3.0)
                await publish(peer.url, "pings", range(1, 6))
                await until(lambda: all(s.tracker.cursor >= 5 for s in subs.values()), tasks)
                return {mode: meters[mode].up - before[mode] for mode in MODES}
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)

        sent = asyncio.run(main())
    for mode, sub in subs.items():
        assert sub.opened is not None and (sub.opened.ping_interval, sub.opened.ping_timeout) == (1.0, 0.5)
        assert sub.stats.reconnects == 0, (mode, sub.last_error)
        assert sub.tracker.finish(5).as_dict()["delivered"] == 5
        assert sent[mode] >= 2 * (7 if mode != "polling" else 100), mode  # pongs: masked frames, or POSTs


@pytest.mark.parametrize("mode", MODES)
def test_a_drop_opens_a_new_session_and_the_loss_is_counted(peer: PeerProcess, mode: str) -> None:
    """Drop, publish 10 while it waits to reconnect, publish 10 more: 20 delivered, 10 missing, counted."""
    channel = f"drop-{mode}"
    got: list[Received] = []
    sub = SocketIOSubscriber(peer.url, channel, mode=mode, on_event=got.append, backoff_min=1.0)
    sids: list[str] = []

    async def main() -> bool:
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        try:
            await until(lambda: sub.connected, [task])
            await publish(peer.url, channel, range(1, 11))
            await until(lambda: sub.tracker.cursor >= 10, [task])
            assert sub.opened is not None
            sids.append(sub.opened.sid)
            await asyncio.sleep(0.05)  # the polling subscriber's next GET is held
            dropped = sub.drop()
            await until(lambda: not sub.connected, [task])
            await publish(peer.url, channel, range(11, 21))  # while it waits 1 s to reconnect
            await until(lambda: sub.connected and sub.stats.reconnects == 1, [task])
            assert sub.opened is not None
            sids.append(sub.opened.sid)
            await publish(peer.url, channel, range(21, 31))
            await until(lambda: sub.tracker.cursor >= 30, [task])
            return dropped
        finally:
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)

    assert asyncio.run(main()) is True
    assert sids[0] != sids[1]  # a new Engine.IO session: Socket.IO does not resume
    assert [r.seq for r in got] == [*range(1, 11), *range(21, 31)]
    counters = sub.tracker.finish(30).as_dict()
    assert counters == {
        "delivered": 20,
        "duplicate": 0,
        "out_of_order": 0,  # a jump over lost events is loss (missing), not a reordering
        "missing": 10,
        "gap_lost": 0,
        "gaps": 0,
        "resets": 0,
    }
    assert isinstance(sub.last_error, ConnectionResetError)


def test_a_4xx_to_the_open_request_is_fatal(peer: PeerProcess) -> None:
    """The server answers the Engine.IO open with a 4xx (here a wrong path): no retry, a SubscriberError."""
    sub = SocketIOSubscriber(peer.url, "c", mode="polling", path="/not-socket.io/")

    async def main() -> None:
        await asyncio.wait_for(sub.run(), 10 * UNIT)

    with pytest.raises(SubscriberError, match="404"):
        asyncio.run(main())
    assert sub.stats.reconnects == 0


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_the_official_client_gets_the_same_events(peer: PeerProcess, transport: str) -> None:
    """python-socketio's own AsyncClient (aiohttp) and the adapter, on one channel: the same payloads, in order."""
    pytest.importorskip("aiohttp", reason="python-socketio's asyncio client needs aiohttp")
    import socketio

    channel = f"official-{transport}"
    ours: list[Any] = []
    theirs: list[Any] = []
    sub = SocketIOSubscriber(peer.url, channel, mode=transport, on_event=lambda r: ours.append(r.data))

    async def main() -> list[bytes]:
        client = socketio.AsyncClient(reconnection=False)
        client.on("e", theirs.append)
        await client.connect(f"{peer.url}?channel={channel}", transports=[transport], wait_timeout=10 * UNIT)
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        try:
            await until(lambda: sub.connected, [task])
            assert client.transport() == transport
            bodies = await publish(peer.url, channel, range(1, 31))
            await until(lambda: len(ours) >= 30 and len(theirs) >= 30, [task])
            return bodies
        finally:
            stop.set()
            await client.disconnect()
            await asyncio.wait_for(task, 10 * UNIT)

    bodies = asyncio.run(main())
    assert ours == theirs == [json.loads(b) for b in bodies]
