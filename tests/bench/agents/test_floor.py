"""The loopback floor: the lab's event objects, exactly once in order, through the fleet's own client path."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
from wsproto.frame_protocol import FrameProtocol

from bench.agents.floor import FloorProcess, server_frame
from bench.agents.publisher import HttpPublishPool
from bench.agents.websocket import LeanWebSocketSubscriber
from clients import LatencyHistogram
from tests.support import UNIT


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_server_frame_matches_wsproto(size: int) -> None:
    payload = b"x" * size
    expected = bytes(FrameProtocol(client=False, extensions=[]).send_data(payload.decode(), fin=True))
    assert server_frame(payload) == expected


def test_floor_delivers_every_event_once_in_order_as_the_lab_serializes_it() -> None:
    floor = FloorProcess()
    try:
        received: list[tuple[int, object]] = []

        async def main() -> tuple[int, list[int]]:
            histogram = LatencyHistogram()
            subs = [
                LeanWebSocketSubscriber(
                    f"http://127.0.0.1:{floor.port}",
                    "f",
                    histogram=histogram,
                    on_event=lambda r: received.append((r.seq, r.data)),
                )
                for _ in range(3)
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in subs]
            while any(s.stats.connections == 0 for s in subs):
                await asyncio.sleep(0.01)
            pool = HttpPublishPool("127.0.0.1", floor.port, connections=2)
            await pool.connect()
            seqs = [await pool.publish("f", json.dumps({"i": i}).encode()) for i in range(200)]
            await pool.close()

            async def all_in() -> None:
                while any(s.tracker.cursor < 200 for s in subs):
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(all_in(), 10 * UNIT)
            stop.set()
            await asyncio.gather(*tasks)
            for s in subs:
                s.tracker.finish(200)
                c = s.tracker.counters
                assert (c.delivered, c.missing, c.duplicate, c.out_of_order) == (200, 0, 0, 0)
            return histogram.summary()["count"] or 0, seqs

        count, seqs = asyncio.run(main())
        assert seqs == list(range(1, 201))
        assert count == 600
        assert sorted(received) == sorted((i + 1, {"i": i}) for i in range(200) for _ in range(3))
    finally:
        floor.stop()
    assert floor.proc.returncode is not None


def test_a_late_subscriber_catches_up_from_its_cursor_with_the_labs_event_objects() -> None:
    floor = FloorProcess()
    try:

        async def main() -> list[dict[str, object]]:
            pool = HttpPublishPool("127.0.0.1", floor.port, connections=1)
            await pool.connect()
            for _ in range(5):
                await pool.publish("late", b'"x"')
            await pool.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", floor.port)
            writer.write(
                b"GET /channels/late/ws?after=3 HTTP/1.1\r\nHost: floor\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT)
            assert head.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's example
            events = []
            for _ in range(2):
                first, length = struct.unpack("!BB", await reader.readexactly(2))
                assert first == 0x81
                events.append(json.loads(await reader.readexactly(length)))
            writer.close()
            return events

        events = asyncio.run(main())
        assert [(e["channel"], e["seq"], e["data"]) for e in events] == [("late", 4, "x"), ("late", 5, "x")]
        assert list(events[0]) == ["channel", "seq", "ts", "data"]
    finally:
        floor.stop()
