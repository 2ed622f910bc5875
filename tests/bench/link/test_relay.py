"""bench.link.relay: the asyncio relay in process, and ``python -m bench.link.relay``'s command line.

Timing assertions are one-sided lower bounds that follow from the model (a relay never delivers early) plus
upper bounds many UNITs wide, so a slow machine cannot make them fail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import subprocess
import sys
import time
from typing import Any

import pytest

from bench.contract.scenarios import Link
from bench.link import Relay
from tests.bench.link.support import close, echo, read_exactly, run, upstream
from tests.support import ROOT, UNIT, free_port


def test_round_trip_takes_at_least_twice_the_one_way_delay() -> None:
    async def scenario() -> list[float]:
        async with upstream(echo) as addr, Relay(addr, Link(one_way_ms=100)) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            elapsed = []
            for i in range(3):
                start = time.perf_counter()
                writer.write(b"ping %d" % i)
                assert await read_exactly(reader, 6) == b"ping %d" % i
                elapsed.append(time.perf_counter() - start)
            await close(writer)
            return elapsed

    for seconds in run(scenario()):
        assert 0.2 <= seconds < 0.2 + 5 * UNIT


def test_relay_carries_megabytes_both_ways_in_order_and_counts_them_exactly() -> None:
    rng = random.Random(20261127)
    up_data, down_data = rng.randbytes(3 * 1024 * 1024 + 17), rng.randbytes(2 * 1024 * 1024 + 5)
    received_upstream = bytearray()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def receive() -> None:
            while data := await reader.read(65536):
                received_upstream.extend(data)

        receiving = asyncio.create_task(receive())
        await send_in_pieces(writer, down_data, random.Random(1))
        writer.write_eof()
        await receiving

    async def send_in_pieces(writer: asyncio.StreamWriter, data: bytes, rng: random.Random) -> None:
        i = 0
        while i < len(data):
            n = rng.randint(1, 100_000)
            writer.write(data[i : i + n])
            await writer.drain()
            i += n

    async def scenario() -> dict[str, Any]:
        # Jitter as large as the delay: order must survive it.
        async with upstream(server) as addr, Relay(addr, Link(one_way_ms=2, jitter_ms=2, seed=3)) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            sending = asyncio.create_task(send_in_pieces(writer, up_data, random.Random(2)))
            got = await asyncio.wait_for(reader.read(-1), 30 * UNIT)  # until the server's EOF
            await sending
            writer.write_eof()
            await close(writer)  # the relay passed the server's close on as a half-close: the client closes too
            assert await relay.wait_idle(20 * UNIT)
            assert got == down_data
            return relay.snapshot(rows=True)

    snap = run(scenario())
    assert bytes(received_upstream) == up_data
    assert snap["up"]["bytes"] == snap["up"]["delivered"] == len(up_data)
    assert snap["down"]["bytes"] == snap["down"]["delivered"] == len(down_data)
    assert snap["connections"] == {"opened": 1, "open": 0, "closed": 1, "upstream_errors": 0, "resets": 0}
    (row,) = snap["rows"]
    assert row["up"]["bytes"] == len(up_data) and row["down"]["bytes"] == len(down_data)
    assert row["opened"] <= row["closed"]
    assert snap["up"]["heads"] == 0  # random bytes hold no header block in their first HEAD_LIMIT bytes...
    assert row["up"]["head"] in ("none", "complete")  # ...unless a seed happens to contain one


def test_relay_separates_the_handshake_header_blocks() -> None:
    request = b"GET /channels/c/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n"
    response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    frames_up, frames_down = b"\x81\x84abcd" + b"x" * 4, b"\x81\x05hello" * 3

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readuntil(b"\r\n\r\n") == request
        writer.write(response[:-2])  # the terminator split across two writes
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(response[-2:] + frames_down)
        assert await reader.readexactly(len(frames_up)) == frames_up

    async def scenario() -> dict[str, Any]:
        async with upstream(server) as addr, Relay(addr) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            for i in range(0, len(request), 7):  # small pieces, so the head spans many chunks
                writer.write(request[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0.001)
            assert await read_exactly(reader, len(response) + len(frames_down)) == response + frames_down
            writer.write(frames_up)
            assert await asyncio.wait_for(reader.read(), 20 * UNIT) == b""  # the server closed
            await close(writer)  # the relay passed the server's close on as a half-close: the client closes too
            assert await relay.wait_idle(20 * UNIT)
            return relay.snapshot(rows=True)

    snap = run(scenario())
    assert snap["up"]["head_bytes"] == len(request) and snap["up"]["heads"] == 1
    assert snap["down"]["head_bytes"] == len(response) and snap["down"]["heads"] == 1
    assert snap["up"]["bytes"] == len(request) + len(frames_up)
    assert snap["down"]["bytes"] == len(response) + len(frames_down)
    assert snap["up"]["chunks"] > 1


def test_client_close_reaches_upstream_after_the_data_in_flight() -> None:
    seen: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await asyncio.wait_for(reader.read(-1), 20 * UNIT))  # everything, then EOF

    async def scenario() -> dict[str, Any]:
        async with upstream(server) as addr, Relay(addr, Link(one_way_ms=50)) as relay:
            _, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(b"last words")
            await close(writer)  # a full close, straight after the write
            assert await relay.wait_idle(20 * UNIT)
            return relay.snapshot()

    snap = run(scenario())
    assert seen == [b"last words"]
    assert snap["connections"]["closed"] == 1 and snap["connections"]["open"] == 0


def test_upstream_close_reaches_the_client_after_the_data_in_flight() -> None:
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()  # then the upstream helper closes the socket

    async def scenario() -> bytes:
        async with upstream(server) as addr, Relay(addr, Link(one_way_ms=50)) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            got = await asyncio.wait_for(reader.read(-1), 20 * UNIT)
            await close(writer)  # the relay passed the server's close on as a half-close: the client closes too
            assert await relay.wait_idle(20 * UNIT)
            return got

    assert run(scenario()) == b"bye"


def test_upstream_reset_closes_the_client() -> None:
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        writer.transport.abort()

    async def scenario() -> dict[str, Any]:
        async with upstream(server) as addr, Relay(addr) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(b"hello")
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(-1), 20 * UNIT) == b""
            await close(writer)  # the relay passed the server's close on as a half-close: the client closes too
            assert await relay.wait_idle(20 * UNIT)
            return relay.snapshot()

    snap = run(scenario())
    assert snap["connections"]["resets"] == 1 and snap["connections"]["closed"] == 1


def test_unreachable_upstream_closes_the_client_and_is_counted() -> None:
    async def scenario() -> dict[str, Any]:
        async with Relay(("127.0.0.1", free_port())) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(-1), 20 * UNIT) == b""
            await close(writer)  # the relay passed the server's close on as a half-close: the client closes too
            assert await relay.wait_idle(20 * UNIT)
            return relay.snapshot()

    snap = run(scenario())
    assert snap["connections"]["upstream_errors"] == 1 and snap["connections"]["opened"] == 1


def test_closing_the_relay_leaves_no_task_and_no_open_connection() -> None:
    async def scenario() -> tuple[set[asyncio.Task[Any]], dict[str, Any]]:
        async with upstream(echo) as addr:
            relay = await Relay(addr, Link(one_way_ms=1000)).start()
            clients = [await asyncio.open_connection("127.0.0.1", relay.port) for _ in range(5)]
            for _, writer in clients:
                writer.write(b"in flight")  # still in the delay line when the relay closes
            await asyncio.sleep(0.05)
            await relay.close()
            for reader, writer in clients:
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(reader.read(-1), 20 * UNIT)
                await close(writer)
            return asyncio.all_tasks() - {asyncio.current_task()}, relay.snapshot()  # type: ignore[operator]

    left, snap = run(scenario())
    assert {t.get_coro().__qualname__ for t in left} <= {"run.<locals>.bounded"}  # type: ignore[union-attr]
    assert snap["connections"]["opened"] == 5 and snap["connections"]["open"] == 0


@pytest.mark.parametrize("one_way_ms", [0, 5])
def test_a_receiver_that_does_not_read_holds_the_sender_back(one_way_ms: float) -> None:
    total = 128 * 1024 * 1024
    block = bytes(range(256)) * 256
    written: list[int] = [0]

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        while written[0] < total:
            writer.write(block)
            await writer.drain()  # blocks once the relay stops reading us
            written[0] += len(block)
        writer.write_eof()

    async def scenario() -> tuple[int, int, dict[str, Any]]:
        async with upstream(flood) as addr, Relay(addr, Link(one_way_ms=one_way_ms)) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port, limit=65536)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            await reader.readexactly(len(block))
            # The client stops reading until the server stops making progress (or has sent everything).
            deadline, last = time.monotonic() + 20 * UNIT, -1
            while written[0] != last and written[0] < total and time.monotonic() < deadline:
                last = written[0]
                await asyncio.sleep(0.5)
            stalled = written[0]
            got = len(block)
            while data := await asyncio.wait_for(reader.read(1 << 20), 30 * UNIT):
                got += len(data)
            await close(writer)
            assert await relay.wait_idle(20 * UNIT)
            return stalled, got, relay.snapshot()

    stalled, got, snap = run(scenario())
    # Held back by the socket buffers (the relay's two may autotune up to tcp_rmem + tcp_wmem maxima, 32 + 4 MiB
    # here; the test's two are pinned small), the relay's delay line (<= MAX_QUEUED_BYTES, 8 MiB) and transport
    # buffer: megabytes, not the whole flood.
    assert stalled < total // 2
    assert got == total == snap["down"]["bytes"] == snap["down"]["delivered"]


def test_many_connections_are_counted_apart() -> None:
    async def scenario() -> dict[str, Any]:
        async with upstream(echo) as addr, Relay(addr, Link(one_way_ms=2, jitter_ms=1)) as relay:

            async def client(i: int) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
                writer.write(b"%d," % i * (i + 1))
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(-1), 20 * UNIT) == b"%d," % i * (i + 1)
                await close(writer)

            await asyncio.gather(*(client(i) for i in range(40)))
            assert await relay.wait_idle(20 * UNIT)
            return relay.snapshot(rows=True)

    snap = run(scenario())
    assert snap["connections"]["opened"] == snap["connections"]["closed"] == 40
    expected = sorted(len(b"%d," % i) * (i + 1) for i in range(40))
    assert sorted(r["up"]["bytes"] for r in snap["rows"]) == expected
    assert sorted(r["down"]["bytes"] for r in snap["rows"]) == expected
    assert snap["up"]["bytes"] == snap["down"]["bytes"] == sum(expected)


def test_bandwidth_cap_takes_at_least_the_serialization_time() -> None:
    n, kbps = 48 * 1024, 2000  # 196.6 ms at 2000 kbit/s
    arrived: list[float] = []

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(n)
        arrived.append(time.perf_counter())
        writer.write(b"k")

    async def scenario() -> float:
        async with upstream(sink) as addr, Relay(addr, Link(bandwidth_kbps=kbps)) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            start = time.perf_counter()
            writer.write(b"\xaa" * n)  # one write: the link, not the client, paces it
            assert await read_exactly(reader, 1) == b"k"
            await close(writer)
            return start

    start = run(scenario())
    seconds = arrived[0] - start
    assert n * 8 / kbps / 1000 <= seconds < n * 8 / kbps / 1000 + 5 * UNIT


def test_cli_refuses_bad_arguments() -> None:
    for args in (["--upstream", "nohostport"], ["--upstream", "127.0.0.1:1", "--one-way-ms", "-5"]):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.link.relay", *args],
            cwd=ROOT,
            capture_output=True,
            timeout=20 * UNIT,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr


def test_cli_answers_commands_on_stdin() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.link.relay", "--upstream", f"127.0.0.1:{free_port()}", "--one-way-ms", "5"],
        cwd=ROOT,
        input='{"cmd": "snapshot"}\n{"cmd": "nonsense"}\nnot json\n{"cmd": "quit"}\n',
        capture_output=True,
        text=True,
        timeout=20 * UNIT,
        check=True,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e.get("event", "error" if "error" in e else None) for e in events] == [
        "ready",
        "snapshot",
        "error",
        "error",
        "bye",
    ]
    assert events[0]["port"] > 0 and events[0]["link"]["one_way_ms"] == 5
    assert events[1]["connections"]["opened"] == 0
