"""The loopback floor: same seq/ts/serialization as the bus, exactly-once delivery."""

from __future__ import annotations

import asyncio
import json

from bench.agents.floor import FloorProcess, FloorPublisher, FloorSubscriber
from clients import LatencyHistogram
from server.bus.core import encode_event
from tests.support import UNIT


def test_floor_delivers_every_event_once_in_order_with_bus_serialization() -> None:
    floor = FloorProcess()
    try:
        received: list[tuple[int, object]] = []

        async def main() -> tuple[int, int]:
            histogram = LatencyHistogram()
            subs = [
                FloorSubscriber(
                    "127.0.0.1",
                    floor.port,
                    "f",
                    histogram=histogram,
                    on_event=lambda r: received.append((r.seq, r.data)),
                )
                for _ in range(3)
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in subs]
            publisher = FloorPublisher("127.0.0.1", floor.port)
            acks = [await publisher.publish("f", json.dumps({"i": i}).encode()) for i in range(200)]
            assert [seq for seq, _ in acks] == list(range(1, 201))

            async def all_in() -> None:
                while any(s.tracker.cursor < 200 for s in subs):
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(all_in(), 10 * UNIT)
            stop.set()
            await asyncio.gather(*tasks)
            await publisher.close()
            for s in subs:
                s.tracker.finish(200)
                c = s.tracker.counters
                assert (c.delivered, c.missing, c.duplicate, c.out_of_order) == (200, 0, 0, 0)
            return histogram.summary()["count"], len(received)

        count, n = asyncio.run(main())
        assert count == 600
        assert n == 600
        assert sorted(received) == sorted((i + 1, {"i": i}) for i in range(200) for _ in range(3))
    finally:
        floor.stop()
    assert floor.proc.returncode is not None


def test_floor_late_subscriber_catches_up_from_its_cursor() -> None:
    floor = FloorProcess()
    try:

        async def main() -> list[bytes]:
            publisher = FloorPublisher("127.0.0.1", floor.port)
            acks = [await publisher.publish("late", b'"x"') for _ in range(5)]
            reader, writer = await asyncio.open_connection("127.0.0.1", floor.port)
            writer.write(b"SUB late 3\n")
            lines = [await asyncio.wait_for(reader.readline(), 5 * UNIT) for _ in range(2)]
            writer.close()
            await publisher.close()
            assert lines == [encode_event("late", seq, ts, b'"x"') + b"\n" for seq, ts in acks[3:]]
            return lines

        assert len(asyncio.run(main())) == 2
    finally:
        floor.stop()
