"""The relay's own cost, measured once per profile: added latency and CPU per KiB at zero delay.

Link layer of the benchmark. An echo server, a ping-pong through the relay process and straight to the echo
server, rounds interleaved so both see the same machine load; then a bulk stream. The runner stores the
result in meta.json (docs/link-emulator.md).
"""

from __future__ import annotations

import contextlib
import random
import socket
import socketserver
import statistics
import threading
import time
from typing import Any

from bench.contract.scenarios import Link

from .process import RelayProcess
from .relay import READ_SIZE

__all__ = ["measure_overhead"]


class _EchoHandler(socketserver.BaseRequestHandler):
    """Echoes every byte back: the upstream of :func:`measure_overhead`."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            while data := sock.recv(READ_SIZE):
                sock.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _round_trip(sock: socket.socket, message: bytes) -> float:
    """Seconds to send ``message`` and read it back whole."""
    view = bytearray(len(message))
    start = time.perf_counter()
    sock.sendall(message)
    got = 0
    while got < len(message):
        n = sock.recv_into(memoryview(view)[got:])
        if not n:
            raise ConnectionError("echo connection closed")
        got += n
    return time.perf_counter() - start


def _bulk(sock: socket.socket, total: int) -> None:
    """Send ``total`` bytes and read them back, concurrently (a sender thread)."""
    block = random.Random(1).randbytes(READ_SIZE)

    def send() -> None:
        left = total
        while left > 0:
            sock.sendall(block[: min(left, len(block))])
            left -= len(block)

    sender = threading.Thread(target=send, name="relay-bulk-sender")
    sender.start()
    got = 0
    while got < total:
        data = sock.recv(READ_SIZE)
        if not data:
            break
        got += len(data)
    sender.join()


def _p50_p99(seconds: list[float]) -> tuple[float, float]:
    """The 50th and 99th percentiles, in microseconds (linear interpolation between samples)."""
    cuts = statistics.quantiles([s * 1e6 for s in seconds], n=100, method="inclusive")
    return cuts[49], cuts[98]


def measure_overhead(
    samples: int = 5000, message_bytes: int = 128, bulk_bytes: int = 32 * 1024 * 1024
) -> dict[str, Any]:
    """Measure the relay's own cost at zero delay, as the benchmark runs it (a separate process).

    ``added_latency_us``: percentiles of a ping-pong of ``message_bytes`` messages to an echo server through
    the relay, minus the same percentiles direct (rounds interleaved, so both see the same machine load).
    ``cpu_us_per_kib``: relay process CPU during the relayed ping-pong rounds per KiB relayed (both
    directions), that is, for small messages (the benchmark's events); ``bulk_cpu_us_per_kib`` the same for
    ``bulk_bytes`` streamed through and back. Percentile differences can be slightly negative on a quiet
    machine: they are reported as measured.
    """
    echo = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    serving = threading.Thread(target=echo.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    try:
        echo_port = int(echo.server_address[1])
        with RelayProcess(("127.0.0.1", echo_port), Link()) as relay:
            message = b"x" * message_bytes
            direct, relayed = _connect(echo_port), _connect(relay.port)
            with direct, relayed:
                for _ in range(min(200, samples)):  # warm-up: caches, allocator, scheduler
                    _round_trip(direct, message)
                    _round_trip(relayed, message)
                before, cpu0 = relay.snapshot(), relay.cpu_seconds()
                direct_s: list[float] = []
                relayed_s: list[float] = []
                for _ in range(samples):
                    direct_s.append(_round_trip(direct, message))
                    relayed_s.append(_round_trip(relayed, message))
                after, cpu1 = relay.snapshot(), relay.cpu_seconds()
            with _connect(relay.port) as bulk:
                _bulk(bulk, bulk_bytes)
            bulk_after, cpu2 = relay.snapshot(), relay.cpu_seconds()
    finally:
        echo.shutdown()
        echo.server_close()

    def relayed_kib(a: dict[str, Any], b: dict[str, Any]) -> float:
        return sum(int(b[d]["bytes"]) - int(a[d]["bytes"]) for d in ("up", "down")) / 1024

    direct_us = _p50_p99(direct_s)
    relayed_us = _p50_p99(relayed_s)
    return {
        "added_latency_us": {
            "p50": round(relayed_us[0] - direct_us[0], 1),
            "p99": round(relayed_us[1] - direct_us[1], 1),
        },
        "cpu_us_per_kib": round((cpu1 - cpu0) * 1e6 / relayed_kib(before, after), 2),
        "bulk_cpu_us_per_kib": round((cpu2 - cpu1) * 1e6 / relayed_kib(after, bulk_after), 3),
        "round_trip_us": {
            "direct": {"p50": round(direct_us[0], 1), "p99": round(direct_us[1], 1)},
            "relayed": {"p50": round(relayed_us[0], 1), "p99": round(relayed_us[1], 1)},
        },
        "samples": samples,
        "message_bytes": message_bytes,
        "bulk_bytes": bulk_bytes,
    }
