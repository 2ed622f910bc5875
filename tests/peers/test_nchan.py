"""peers/nchan against the fleet's adapters (bench/agents/nchan.py): the real nginx + Nchan, started on port 0.

Events are published as the bench publishes them (:class:`bench.agents.publisher.HttpPublishPool`, payloads
numbered by the publisher) and received through each of the four adapters: every event exactly once, in
order, bytes counted; a subscriber dropped again and again resumes without loss; a held long poll that
runs out (``408``) keeps its place; SIGTERM and SIGINT leave no nginx process and no directory behind.

Without nginx and the Nchan module the module is skipped, and fails when ``CI`` is set (CI installs them:
``.ci/system-packages``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.agents.meter import WireMeter
from bench.agents.nchan import (
    NchanEventSourceSubscriber,
    NchanIntervalPollSubscriber,
    NchanLongPollSubscriber,
    NchanWebSocketSubscriber,
)
from bench.agents.publisher import HttpPublishPool
from bench.contract.payload import encode_payload
from bench.process import Child, ChildError, wait_http_ok
from clients import Received, Subscriber
from peers.nchan.__main__ import INSTALL, find_nginx
from peers.nchan.config import MODULE_PATH
from tests.support import UNIT, wait_until

MISSING = [
    what for what, ok in (("nginx", find_nginx() is not None), ("the Nchan module", MODULE_PATH.exists())) if not ok
]
if MISSING:
    reason = f"needs {' and '.join(MISSING)} ({INSTALL})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must install them (.ci/system-packages)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@dataclass
class Peer:
    child: Child
    port: int
    ready: dict[str, Any]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def run_peer(*args: str) -> Iterator[Peer]:
    """``python -m peers.nchan --port 0 ...``: its ready line, ``/healthz`` answered; stopped in ``finally``."""
    child = Child(["-m", "peers.nchan", "--port", "0", *args], name="the nchan peer")
    try:
        ready = child.expect("port", 20 * UNIT)
        peer = Peer(child, int(ready["port"]), ready)
        wait_http_ok(f"{peer.url}/healthz", 20 * UNIT, alive=lambda: not child.exited())
        yield peer
    finally:
        child.stop(10 * UNIT)


@pytest.fixture(scope="module", params=["1", "auto"])
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    """The peer with one nginx worker, and with one per core (a channel's subscribers spread over workers)."""
    with run_peer("--poll-timeout", "2", "--workers", request.param) as p:
        yield p


async def publish(peer: Peer, channel: str, numbers: range, pause: float = 0.0) -> None:
    """Publish the payloads numbered ``numbers`` on ``channel`` as the bench's publisher does."""
    pool = HttpPublishPool("127.0.0.1", peer.port, connections=1, expect_seq=False)
    await pool.connect()
    try:
        for k in numbers:
            body = encode_payload(k - 1, time.monotonic_ns(), False, 64, number=k)
            assert await pool.publish(channel, body) == 0
            if pause:
                await asyncio.sleep(pause)
    finally:
        await pool.close()


async def until(predicate: Callable[[], bool], tasks: list[asyncio.Task[None]], timeout: float = 20 * UNIT) -> None:
    """Wait until ``predicate()`` holds; fail if a subscriber's run ends or the time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        for task in tasks:
            if task.done():
                task.result()
                raise AssertionError("a subscriber stopped")
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def run_all(subs: list[Subscriber], body: Callable[[list[asyncio.Task[None]]], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in subs]
    try:
        await body(tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10 * UNIT)


CLEAN = {"duplicate": 0, "out_of_order": 0, "missing": 0, "gap_lost": 0, "gaps": 0, "resets": 0}

ADAPTERS: dict[str, Callable[..., Subscriber]] = {
    "longpoll": NchanLongPollSubscriber,
    "polling": lambda url, channel, **kw: NchanIntervalPollSubscriber(url, channel, interval=0.05, **kw),
    "websocket": NchanWebSocketSubscriber,
    "sse": NchanEventSourceSubscriber,
}


def make(transport: str, peer: Peer, channel: str, got: list[Received], meter: WireMeter, **kw: Any) -> Subscriber:
    sub = ADAPTERS[transport](peer.url, channel, meter=meter, on_event=got.append, **kw)
    assert sub.transport == transport
    return sub


def test_the_ready_line_names_what_runs(peer: Peer) -> None:
    ready = peer.ready
    assert ready["peer"] == "nchan"
    assert ready["listening"] == f"http://127.0.0.1:{peer.port}"
    assert ready["versions"]["nginx"].count(".") == 2
    workers = ready["options"]["workers"]
    assert ready["options"] == {
        "workers": workers,
        "worker_processes": 1 if workers == "1" else os.cpu_count(),
        "history": 10_000,
        "poll_timeout": 2,
        "message_timeout": 3600,
    }
    with urllib.request.urlopen(f"{peer.url}/nchan_status", timeout=5 * UNIT) as answer:
        assert b"subscribers:" in answer.read()


@pytest.mark.parametrize("transport", list(ADAPTERS))
def test_every_event_once_in_order(peer: Peer, transport: str) -> None:
    """Two subscribers: history first (published before they connect), then live events; bytes counted."""
    channel = f"once-{transport}"
    n = 40
    got: list[list[Received]] = [[], []]
    meter = WireMeter()
    subs = [make(transport, peer, channel, g, meter) for g in got]

    async def body(tasks: list[asyncio.Task[None]]) -> None:
        await publish(peer, channel, range(1, n // 2 + 1))
        await until(lambda: all(s.tracker.cursor >= n // 2 for s in subs), tasks)
        await publish(peer, channel, range(n // 2 + 1, n + 1), 0.002)
        await until(lambda: all(s.tracker.cursor >= n for s in subs), tasks)

    asyncio.run(run_all(subs, body))
    for sub, events in zip(subs, got, strict=True):
        assert [r.seq for r in events] == list(range(1, n + 1))
        assert [r.data[3] for r in events] == list(range(1, n + 1))
        assert all(r.ts is None and r.channel == channel for r in events)
        assert sub.tracker.finish(n).as_dict() == {"delivered": n, **CLEAN}
        assert sub.stats.connections == 1 and sub.stats.reconnects == 0
        assert sub.stats.payload_bytes >= n * 64
    stats = [s.stats for s in subs]
    assert meter.down > sum(s.payload_bytes for s in stats) > 0
    assert meter.up > 0
    if transport in ("longpoll", "polling"):
        assert all(s.requests >= n for s in stats)  # one message per answer
        assert meter.heads == 0
    else:
        assert meter.heads == 2 and 0 < meter.head_up <= meter.up and 0 < meter.head_down < meter.down
    if transport == "websocket":
        assert all(s.frames == n for s in stats)


@pytest.mark.parametrize("transport", list(ADAPTERS))
def test_a_dropped_subscriber_resumes_without_loss(peer: Peer, transport: str) -> None:
    """Dropped four times while events arrive: every event once, in order, one new connection per drop."""
    channel = f"drop-{transport}"
    n, drops = 120, 4
    got: list[Received] = []
    sub = make(transport, peer, channel, got, WireMeter(), backoff_min=0.01, backoff_max=0.05)
    dropped = 0

    async def body(tasks: list[asyncio.Task[None]]) -> None:
        nonlocal dropped
        publisher = asyncio.create_task(publish(peer, channel, range(1, n + 1), 0.004))
        for k in range(drops):
            await until(
                lambda k=k: sub.tracker.cursor >= (k + 1) * n // (drops + 2) and sub.stats.connections > k, tasks
            )
            assert sub.drop()  # type: ignore[attr-defined]
            dropped += 1
        await publisher
        await until(lambda: sub.tracker.cursor >= n, tasks)

    asyncio.run(run_all([sub], body))
    assert [r.seq for r in got] == list(range(1, n + 1))
    assert sub.tracker.finish(n).as_dict() == {"delivered": n, **CLEAN}
    assert sub.stats.reconnects == dropped == drops
    assert sub.stats.connections == drops + 1
    assert isinstance(sub.last_error, OSError)


def test_a_held_poll_that_runs_out_keeps_its_place(peer: Peer) -> None:
    """The peer holds a poll 2 s and answers 408; the subscriber asks again with the same cursor."""
    channel = "held"
    got: list[Received] = []
    sub = NchanLongPollSubscriber(peer.url, channel, timeout=2, on_event=got.append)

    async def body(tasks: list[asyncio.Task[None]]) -> None:
        await publish(peer, channel, range(1, 3))
        await until(lambda: sub.tracker.cursor == 2, tasks)
        await until(lambda: sub.stats.empty_responses >= 1, tasks)  # a 408 after the hold
        await publish(peer, channel, range(3, 5))
        await until(lambda: sub.tracker.cursor == 4, tasks)

    asyncio.run(run_all([sub], body))
    assert [r.seq for r in got] == [1, 2, 3, 4]
    assert sub.tracker.finish(4).as_dict() == {"delivered": 4, **CLEAN}
    assert sub.stats.reconnects == 0


def _family(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_nginx_and_leaves_nothing(signum: signal.Signals) -> None:
    """The signal to the peer's process alone (not its group): nginx's master and workers go, and its directory."""
    with run_peer() as p:
        family = _family(p.child.proc.pid)
        nginx = [proc for proc in family if proc.name() == "nginx"]
        assert len(nginx) == 2  # the master and one worker
        prefix = Path(nginx[0].cmdline()[nginx[0].cmdline().index("-p") + 1])
        assert prefix.is_dir()
        os.kill(p.child.proc.pid, signum)
        assert p.child.proc.wait(10 * UNIT) == 0
        assert wait_until(lambda: not any(proc.is_running() and proc.status() != "zombie" for proc in nginx), 5 * UNIT)
        assert not prefix.exists()


def test_nginx_dying_ends_the_peer_with_its_log() -> None:
    with run_peer() as p:
        master = next(proc for proc in _family(p.child.proc.pid) if proc.name() == "nginx")
        master.kill()
        assert p.child.proc.wait(10 * UNIT) == 1
        with pytest.raises(ChildError):
            p.child.recv(1)
        p.child.log.seek(0)
        assert "nginx exited on its own" in p.child.log.read().decode()


def test_a_missing_nginx_names_the_install_command() -> None:
    code = "import peers.nchan.__main__ as m; m.find_nginx = lambda: None; m.main(['--port', '0'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30 * UNIT, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "apt-get install nginx-light libnginx-mod-nchan" in done.stderr
