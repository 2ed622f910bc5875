"""bench.agents.h2 and bench.agents.tls: the fleet's HTTP/2 and TLS subscribers, through nginx to the lab's server.

nginx (Debian's) in front of the lab's server, over TLS with ALPN ``h2`` (and a TLS listener speaking HTTP/1.1
only): N events published straight to the server reach every subscriber exactly once and in order (the server's
seq), over one stream per connection and over several streams multiplexed on one, and after the shared connection
is aborted; the bytes: TLS bytes on the wire above the HTTP/2 frame bytes above 0; HPACK: later requests' header
blocks smaller than the first one's. The HTTP/1.1 agents over TLS (the bare poller, the lean SSE and WebSocket
subscribers): exact delivery, TLS bytes above the clear ones by at least a record header. A certificate other
than the run's is refused, and so is a listener that does not agree to HTTP/2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.agents.h2 import H2Group, H2Poller, H2SSESubscriber, HpackStats
from bench.agents.http import BarePoller
from bench.agents.meter import WireMeter
from bench.agents.sse import LeanSSESubscriber
from bench.agents.tls import TLSMeter, client_context
from bench.agents.websocket import LeanWebSocketSubscriber
from bench.process import Child, free_port, wait_http_ok
from clients import AsyncPublisher, LongPollSubscriber, PollingSubscriber, Subscriber
from tests.bench.agents.test_meter import payload_bytes
from tests.support import UNIT, ServerProcess, run_server, wait_until

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(), reason="nginx")

N = 30
"""Events published per test."""


@dataclass
class Proxy:
    tls_port: int
    tls_h1_port: int
    plain_port: int
    cert_path: str


def _nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


@contextlib.contextmanager
def _local_nginx(upstream: int, tmp: Path) -> Iterator[Proxy]:
    """A small nginx of this test's own: TLS + h2, TLS HTTP/1.1 only, plain HTTP/1.1, all to ``upstream``."""
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls, tls_h1, plain = free_port(), free_port(), free_port()
    for sub in ("tmp",):
        (tmp / sub).mkdir(exist_ok=True)
    location = """
        location / {
            proxy_pass http://lab;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $conn;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }"""
    conf = f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/tmp; proxy_temp_path {tmp}/tmp; fastcgi_temp_path {tmp}/tmp;
    uwsgi_temp_path {tmp}/tmp; scgi_temp_path {tmp}/tmp;
    map $http_upgrade $conn {{ default upgrade; "" ""; }}
    upstream lab {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    ssl_certificate {cert}; ssl_certificate_key {key};
    keepalive_requests 100000;
    server {{ listen 127.0.0.1:{tls} ssl http2; {location} }}
    server {{ listen 127.0.0.1:{tls_h1} ssl; {location} }}
    server {{ listen 127.0.0.1:{plain}; {location} }}
}}
"""
    (tmp / "nginx.conf").write_text(conf)
    child = Child(
        [_nginx_binary(), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
        python=False,
        lines=False,
        name="nginx",
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{plain}/healthz", 20 * UNIT, alive=lambda: not child.exited())
        yield Proxy(tls, tls_h1, plain, str(cert))
    finally:
        child.stop(5 * UNIT)


@pytest.fixture(scope="module")
def lab() -> Iterator[ServerProcess]:
    with run_server("gevent") as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(lab: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """nginx through the project's launcher (bench.run.proxy) when it exists, else this test's own."""
    try:
        from bench.run.proxy import Nginx  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        with _local_nginx(lab.port, tmp_path_factory.mktemp("nginx")) as local:
            yield local
        return
    nginx = Nginx(("127.0.0.1", lab.port))
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


async def publish(url: str, channel: str, n: int, pause: float = 0.01) -> None:
    async with AsyncPublisher(url) as pub:
        for k in range(n):
            await pub.publish(channel, {"i": k})
            if pause:
                await asyncio.sleep(pause)


async def run_until_all(
    subs: list[Subscriber], lab: ServerProcess, channel: str, ready: Callable[[], bool] | None = None
) -> None:
    """Run ``subs``; once ``ready`` (or at once), publish N events; wait until each has all N; stop."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in subs]

    async def until(predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30 * UNIT
        while not predicate():
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError("a subscriber stopped")
            assert time.monotonic() < deadline, "condition not reached"
            await asyncio.sleep(0.01)

    try:
        await until(ready or (lambda: True))
        await publish(lab.url, channel, N)
        await until(lambda: all(s.tracker.cursor >= N for s in subs))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)


def assert_exact(subs: list[Subscriber]) -> None:
    for sub in subs:
        counters = sub.tracker.finish(N)
        assert (counters.delivered, counters.missing, counters.duplicate, counters.out_of_order) == (N, 0, 0, 0)


def _channel(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


# --- HTTP/2 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streams", [1, 4])
def test_h2_longpoll_exact_and_bytes(lab: ServerProcess, proxy: Any, streams: int) -> None:
    channel = _channel("h2lp")
    meter, tls_meter, hpack = WireMeter(), TLSMeter(), HpackStats()
    context = client_context(proxy.cert_path, ["h2"])
    url = f"https://127.0.0.1:{proxy.tls_port}"
    seen: list[list[int]] = []

    async def main() -> list[Subscriber]:
        groups = [H2Group(url, context, meter=meter, tls_meter=tls_meter, hpack=hpack) for _ in range(2)]
        subs: list[Subscriber] = []
        for group in groups:
            for _ in range(streams):
                got: list[int] = []
                seen.append(got)
                subs.append(
                    LongPollSubscriber(
                        url, channel, timeout=5, poller=H2Poller(group), on_event=lambda e, got=got: got.append(e.seq)
                    )
                )
        # every long poll held before the first publish (one held request each: the server's /stats says)
        await run_until_all(subs, lab, channel, ready=lambda: _held(lab, "longpoll") >= len(subs))
        return subs

    subs = asyncio.run(main())
    assert_exact(subs)
    assert all(got == list(range(1, N + 1)) for got in seen)
    assert hpack.connections == 2  # one per group, whatever the streams on it
    assert sum(s.stats.connections for s in subs) == 2
    assert tls_meter.handshakes == 2
    assert tls_meter.down > meter.down > 0
    assert tls_meter.up > meter.up > 0
    # HPACK: every later request reuses the dynamic table's :authority and the static table's :method, :scheme
    assert hpack.later_requests >= N
    assert hpack.later_request_bytes / hpack.later_requests < hpack.first_request_bytes / hpack.connections
    assert hpack.first_responses == 2 and hpack.later_responses >= N


def _held(lab: ServerProcess, transport: str) -> int:
    import httpx

    try:
        stats = httpx.get(f"{lab.url}/stats", timeout=2).json()
    except httpx.HTTPError:
        return 0
    return int(stats["connections"].get(transport, 0))


@pytest.mark.parametrize("streams", [1, 3])
def test_h2_sse_exact(lab: ServerProcess, proxy: Any, streams: int) -> None:
    channel = _channel("h2sse")
    meter, tls_meter, hpack = WireMeter(), TLSMeter(), HpackStats()
    context = client_context(proxy.cert_path, ["h2"])
    url = f"https://127.0.0.1:{proxy.tls_port}"

    async def main() -> list[Subscriber]:
        group = H2Group(url, context, meter=meter, tls_meter=tls_meter, hpack=hpack)
        subs: list[Subscriber] = [H2SSESubscriber(group, channel) for _ in range(streams)]
        await run_until_all(subs, lab, channel, ready=lambda: all(s.stats.connections + s.stats.requests for s in subs))
        return subs

    subs = asyncio.run(main())
    assert_exact(subs)
    assert hpack.connections == 1 and tls_meter.handshakes == 1
    assert sum(s.stats.requests for s in subs) == streams  # one stream each, never reopened
    assert meter.heads == streams and 0 < meter.head_up < meter.up and 0 < meter.head_down < meter.down
    assert tls_meter.down > meter.down > 0


def test_h2_polling_exact(lab: ServerProcess, proxy: Any) -> None:
    channel = _channel("h2poll")
    context = client_context(proxy.cert_path, ["h2"])
    url = f"https://127.0.0.1:{proxy.tls_port}"

    async def main() -> list[Subscriber]:
        group = H2Group(url, context)
        subs: list[Subscriber] = [
            PollingSubscriber(url, channel, interval=0.1, phase=0.03 * i, poller=H2Poller(group)) for i in range(3)
        ]
        await run_until_all(subs, lab, channel)
        return subs

    subs = asyncio.run(main())
    assert_exact(subs)


def test_h2_resumes_after_the_connection_drops(lab: ServerProcess, proxy: Any) -> None:
    """The shared connection aborted in the middle: every stream on it reconnects and resumes, nothing lost."""
    channel = _channel("h2drop")
    context = client_context(proxy.cert_path, ["h2"])
    url = f"https://127.0.0.1:{proxy.tls_port}"
    hpack = HpackStats()

    async def main() -> list[Subscriber]:
        group = H2Group(url, context, hpack=hpack)
        subs: list[Subscriber] = [
            LongPollSubscriber(url, channel, timeout=5, poller=H2Poller(group)),
            H2SSESubscriber(group, channel),
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in subs]
        await asyncio.sleep(0.5)
        async with AsyncPublisher(lab.url) as pub:
            for k in range(N):
                await pub.publish(channel, {"i": k})
                if k == N // 2:
                    assert group.abort()
                await asyncio.sleep(0.01)
        deadline = time.monotonic() + 30 * UNIT
        while not all(s.tracker.cursor >= N for s in subs):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*tasks)
        return subs

    subs = asyncio.run(main())
    assert_exact(subs)
    assert hpack.connections == 2


def test_h2_refused_without_alpn_h2(proxy: Any) -> None:
    """The TLS listener that speaks HTTP/1.1 only: no HTTP/2 spoken to it (nginx ends the handshake with an alert
    when ALPN offers only ``h2``; a server that picked nothing would be refused by the group's own check)."""
    context = client_context(proxy.cert_path, ["h2"])

    async def main() -> None:
        group = H2Group(f"https://127.0.0.1:{proxy.tls_h1_port}", context)
        with pytest.raises(OSError, match=r"ALPN|no application protocol"):
            await group.link()

    asyncio.run(main())


def test_tls_trusts_only_the_run_certificate(proxy: Any, tmp_path: Path) -> None:
    """A context made from another certificate refuses the proxy's (the handshake fails, an OSError)."""
    other = tmp_path / "other.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k.pem"),
         "-out", str(other), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip

    async def main() -> None:
        group = H2Group(f"https://127.0.0.1:{proxy.tls_port}", client_context(str(other), ["h2"]))
        with pytest.raises(OSError):
            await group.link()

    asyncio.run(main())


# --- HTTP/1.1 over TLS ------------------------------------------------------------------------------------------


def _h1_subs(kind: str, url: str, channel: str, meter: WireMeter, tls_meter: TLSMeter, cert: str) -> list[Subscriber]:
    context = client_context(cert, ["http/1.1"])
    if kind == "longpoll":
        return [
            LongPollSubscriber(url, channel, timeout=5, poller=BarePoller(meter, context=context, tls_meter=tls_meter))
            for _ in range(2)
        ]
    if kind == "sse":
        return [LeanSSESubscriber(url, channel, meter=meter, context=context, tls_meter=tls_meter) for _ in range(2)]
    return [LeanWebSocketSubscriber(url, channel, meter=meter, context=context, tls_meter=tls_meter) for _ in range(2)]


@pytest.mark.parametrize("kind", ["longpoll", "sse", "websocket"])
def test_h1_over_tls_exact_and_bytes(lab: ServerProcess, proxy: Any, kind: str) -> None:
    channel = _channel(f"tls{kind}")
    meter, tls_meter = WireMeter(), TLSMeter()
    url = f"https://127.0.0.1:{proxy.tls_h1_port}"

    async def main() -> list[Subscriber]:
        subs = _h1_subs(kind, url, channel, meter, tls_meter, proxy.cert_path)
        ready: Callable[[], bool] = lambda: all(s.stats.connections for s in subs)  # noqa: E731
        if kind == "longpoll":
            ready = lambda: _held(lab, "longpoll") >= len(subs)  # noqa: E731
        await run_until_all(subs, lab, channel, ready=ready)
        return subs

    subs = asyncio.run(main())
    assert_exact(subs)
    assert tls_meter.handshakes == 2
    assert tls_meter.down > meter.down > 0 and tls_meter.up > meter.up > 0
    # every record costs at least its 5-byte header (and TLS 1.3's 17 of type and tag): above the clear bytes
    assert tls_meter.down - tls_meter.handshake_down >= meter.down + 5


def _settle(pcap: Path, quiet: float = 0.5) -> None:
    """Wait until the capture file has not grown for ``quiet`` seconds (at most 10 units)."""
    deadline = time.monotonic() + 10 * UNIT
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = pcap.stat().st_size if pcap.exists() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet * UNIT:
            return
        time.sleep(0.05)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("tcpdump") is None, reason="needs root and tcpdump")
def test_the_tls_meter_counts_what_the_wire_carried(lab: ServerProcess, proxy: Any, tmp_path: Path) -> None:
    """The TLS meter against a packet capture of the proxy's TLS port, to the byte (the publisher goes to the
    server's own port, out of the capture): an HTTP/2 connection carrying a long poll and an SSE stream."""
    channel = _channel("h2wire")
    pcap = tmp_path / "lo.pcap"
    capture = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-w", str(pcap), f"tcp port {proxy.tls_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    tls_meter = TLSMeter()
    totals: dict[str, int] = {}
    try:
        assert capture.stderr is not None
        assert "listening on" in capture.stderr.readline()

        async def main() -> None:
            group = H2Group(
                f"https://127.0.0.1:{proxy.tls_port}", client_context(proxy.cert_path, ["h2"]), tls_meter=tls_meter
            )
            subs: list[Subscriber] = [
                LongPollSubscriber(f"https://127.0.0.1:{proxy.tls_port}", channel, timeout=20, poller=H2Poller(group)),
                H2SSESubscriber(group, channel),
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in subs]
            await asyncio.sleep(0.5)
            await publish(lab.url, channel, N)
            deadline = time.monotonic() + 30 * UNIT
            while not all(s.tracker.cursor >= N for s in subs):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            while True:  # the next long poll is held: nothing in flight once the meter stands still
                before = tls_meter.as_dict()
                await asyncio.sleep(0.5 * UNIT)
                if tls_meter.as_dict() == before:
                    break
            totals.update(tls_meter.as_dict())
            _settle(pcap)  # the capture's last packets are written (-U; a loaded machine writes them late)
            capture.send_signal(signal.SIGINT)
            capture.wait(10 * UNIT)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30 * UNIT)

        asyncio.run(main())
    finally:
        if capture.poll() is None:
            capture.send_signal(signal.SIGINT)
            capture.wait(10 * UNIT)
        if capture.stderr is not None:
            capture.stderr.close()
    assert wait_until(lambda: pcap.stat().st_size > 0, 5 * UNIT)
    assert (totals["up"], totals["down"]) == payload_bytes(pcap, proxy.tls_port)
    assert totals["handshakes"] == 1 and 0 < totals["handshake_down"] < totals["down"]
