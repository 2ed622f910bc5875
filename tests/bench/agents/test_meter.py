"""bench.agents.meter: the fleet's byte meter agrees with a packet capture on ``lo``, to the byte.

A real server, a lean WebSocket subscriber and a long-poll subscriber with the bare poller (both counting into
one :class:`WireMeter`), and ``tcpdump`` capturing the server's port. The publisher connects from 127.0.0.2, so
the capture can leave its traffic out. Once every event is delivered and nothing is in flight (a poll held, the
WebSocket idle, server pings off), the meter's totals are compared with the TCP payload the capture saw in each
direction. Needs root and tcpdump (``.ci/system-packages`` installs it; CI runs as root).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bench.agents.http import BarePoller
from bench.agents.meter import WireMeter
from bench.agents.websocket import LeanWebSocketSubscriber
from clients import LongPollSubscriber
from tests.support import UNIT, run_server, wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("tcpdump") is None, reason="needs root and tcpdump to capture on lo"
)

LINE = re.compile(r"\S+ IP (?P<src>[\d.]+)\.(?P<sport>\d+) > (?P<dst>[\d.]+)\.(?P<dport>\d+): .* length (?P<n>\d+)")


def payload_bytes(pcap: Path, port: int) -> tuple[int, int]:
    """TCP payload bytes to and from ``port`` in a capture: (up, down)."""
    text = subprocess.run(
        ["tcpdump", "-r", str(pcap), "-nn", "-tt"], capture_output=True, text=True, check=True, timeout=30 * UNIT
    ).stdout
    up = down = 0
    for line in text.splitlines():
        match = LINE.match(line)
        if match is None:
            continue
        if int(match["dport"]) == port:
            up += int(match["n"])
        elif int(match["sport"]) == port:
            down += int(match["n"])
    return up, down


def test_the_meter_counts_what_the_wire_carried(tmp_path: Path) -> None:
    with run_server("gevent", "--ws-ping-interval", "0") as server:
        pcap = tmp_path / "lo.pcap"
        capture = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "-w", str(pcap), f"tcp port {server.port} and not host 127.0.0.2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert capture.stderr is not None
            assert "listening on" in capture.stderr.readline()
            meter = WireMeter()

            async def main() -> None:
                ws = LeanWebSocketSubscriber(server.url, "meter", meter=meter)
                lp = LongPollSubscriber(server.url, "meter", timeout=20, poller=BarePoller(meter))
                stop = asyncio.Event()
                tasks = [asyncio.create_task(s.run(stop)) for s in (ws, lp)]
                await asyncio.sleep(0.3)
                publisher = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
                async with publisher:
                    for i in range(20):
                        answer = await publisher.post(
                            f"{server.url}/channels/meter/events", json={"i": i, "pad": "x" * i}
                        )
                        assert answer.status_code == 201
                while ws.tracker.cursor < 20 or lp.tracker.cursor < 20:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)  # the next long poll is held: nothing in flight
                snapshot = meter.as_dict()
                time.sleep(0.3)  # the capture's last packets are written (-U)
                capture.send_signal(signal.SIGINT)
                capture.wait(10 * UNIT)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 30 * UNIT)
                meter_totals.update(snapshot)

            meter_totals: dict[str, int] = {}
            asyncio.run(main())
        finally:
            if capture.poll() is None:
                capture.send_signal(signal.SIGINT)
                capture.wait(10 * UNIT)
            if capture.stderr is not None:
                capture.stderr.close()
        assert wait_until(lambda: pcap.stat().st_size > 0, 5 * UNIT)
        up, down = payload_bytes(pcap, server.port)
    assert (meter_totals["up"], meter_totals["down"]) == (up, down)
    assert meter_totals["heads"] == 1  # one WebSocket handshake, counted apart
    assert 0 < meter_totals["head_up"] < meter_totals["up"] and 0 < meter_totals["head_down"] < meter_totals["down"]
