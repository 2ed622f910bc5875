"""bench.link.process: the relay as a process the runner starts, asks and stops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import httpx
import psutil

from bench.contract.scenarios import Link
from bench.link import RelayProcess
from tests.bench.link.support import close, echo, read_exactly, run, upstream
from tests.support import UNIT, free_port, run_server, wait_until


def test_relay_process_end_to_end_with_the_lab_server() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with run_server("werkzeug") as server, RelayProcess(("127.0.0.1", server.port)) as relay:
        assert httpx.get(f"http://127.0.0.1:{relay.port}/healthz", timeout=10 * UNIT).status_code == 200
        request = (
            f"GET /channels/relaytest/ws HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10 * UNIT) as sock:
            sock.sendall(request)
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = sock.recv(4096)
                assert chunk, "server closed during the handshake"
                response += chunk
            head = response[: response.index(b"\r\n\r\n") + 4]
            assert head.startswith(b"HTTP/1.1 101")
            sock.sendall(b"\x88\x82abcd" + bytes(a ^ b for a, b in zip(b"\x03\xe8", b"ab", strict=True)))  # close
            while sock.recv(4096):
                pass
        assert wait_until(lambda: relay.snapshot()["connections"]["open"] == 0, 20 * UNIT)
        snap = relay.snapshot(rows=True)
        cpu = relay.cpu_seconds()
        pid = relay.pid
    after_exit = relay.cpu_seconds()  # the process is gone: the last value read survives
    assert snap["connections"]["opened"] == 2 and snap["connections"]["upstream_errors"] == 0
    ws_row = next(r for r in snap["rows"] if r["up"]["head_bytes"] == len(request))
    assert ws_row["down"]["head_bytes"] == len(head)
    assert snap["up"]["heads"] == 2 and snap["down"]["heads"] == 2
    assert snap["up"]["bytes"] == snap["up"]["delivered"] and snap["down"]["bytes"] == snap["down"]["delivered"]
    assert after_exit >= cpu
    assert relay.bye is not None and relay.bye["up"]["bytes"] == snap["up"]["bytes"]
    assert not psutil.pid_exists(pid)


def test_relay_process_applies_its_link() -> None:
    async def scenario(port: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.perf_counter()
        writer.write(b"ping")
        assert await read_exactly(reader, 4) == b"ping"
        elapsed = time.perf_counter() - start
        await close(writer)
        return elapsed

    async def with_echo() -> float:
        async with upstream(echo) as addr:
            relay = RelayProcess(addr, Link(one_way_ms=100))
            await asyncio.to_thread(relay.start)
            try:
                return await scenario(relay.port)
            finally:
                await asyncio.to_thread(relay.stop)

    assert 0.2 <= run(with_echo()) < 0.2 + 5 * UNIT


def test_relay_process_stop_kills_a_relay_that_does_not_answer() -> None:
    relay = RelayProcess(("127.0.0.1", free_port())).start()
    relay.timeout = 1 * UNIT  # how long stop() waits for each step
    os.kill(relay.pid, signal.SIGSTOP)
    code = relay.stop()
    assert code is not None and code < 0  # killed by a signal
    assert not psutil.pid_exists(relay.pid)
    assert relay.bye is None
