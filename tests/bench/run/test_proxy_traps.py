"""The proxy's traps, each shown failing with the wrong configuration and passing with docs/nginx/lab.conf.

- A held long poll longer than nginx's ``proxy_read_timeout``: nginx answers ``504`` in the server's place.
  The lab's long-poll subscriber (with the fleet's poller and with httpx) takes a 5xx for "poll again from
  the same cursor": every event published during and after the 504s arrives exactly once, in order. With
  the shipped file, the server's longest hold (30 s) comes back as the server's own ``200``.
- SSE through a buffering proxy: with ``proxy_buffering on``, the lab's ``X-Accel-Buffering: no`` ignored, and
  ``text/event-stream`` compressed (what a generic ``gzip_types`` list does), nothing of the stream reaches
  the client, not even the response head, until tens of kilobytes of events have been written, and then
  many events come in one read. With the shipped file each event arrives on its own, before the next one is
  published; so it does with compression alone (nginx flushes the compressor at every read when buffering
  is off) and with buffering alone (nginx passes on what it has read when the client keeps up).
- Seven long-polling tabs of one browser over HTTP/1.1: Chromium opens at most six connections to one host
  (RFC 6202 section 5.1), so the seventh tab's poll is not even sent while six are held; over HTTP/2 (one
  connection, one stream each) all seven are held at once.

Nothing here asserts a timing: the assertions are counts, statuses, orders and bytes. Where a test waits to
show that something does *not* happen, nothing but the configuration could make it happen.
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.agents.http import BarePoller
from bench.run.proxy import Nginx, find_nginx
from clients import HttpxPoller, LongPollSubscriber, PollAnswer, Poller, Received
from tests.support import UNIT, ServerProcess, run_server, wait_until

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="needs nginx (apt-get install nginx-light)")


# --- 1. a long poll held longer than the proxy's read timeout -------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server for the traps; a long SSE heartbeat, so no heartbeat flushes a held stream during a test."""
    with run_server("gevent", env={"LAB_SSE_HEARTBEAT": "300"}) as srv:
        yield srv


class CountingPoller:
    """A :class:`clients.Poller` that records the status of every answer of the poller it wraps."""

    def __init__(self, inner: Poller, client: httpx.AsyncClient | None = None) -> None:
        self.inner = inner
        self.client = client
        """A shared client the inner poller does not close."""
        self.statuses: list[int] = []

    async def get(self, url: str, timeout: float) -> PollAnswer:
        answer = await self.inner.get(url, timeout)
        self.statuses.append(answer.status)
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()
        if self.client is not None:
            await self.client.aclose()


def _poller(kind: str, proxy: Nginx) -> tuple[str, CountingPoller]:
    """The base URL and poller: the fleet's bare poller over plain HTTP/1.1, or httpx over HTTP/2."""
    if kind == "bare":
        return f"http://127.0.0.1:{proxy.plain_port}", CountingPoller(BarePoller())
    client = httpx.AsyncClient(verify=proxy.ssl_context(), http2=True)
    return f"https://localhost:{proxy.tls_port}", CountingPoller(HttpxPoller(client), client)


async def _publish(base: str, channel: str, i: int) -> int:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{base}/channels/{channel}/events", json={"i": i})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["seq"])


async def _until(predicate: Any, task: asyncio.Task[None], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if task.done():
            task.result()
            raise AssertionError("the subscriber stopped")
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", ["bare", "httpx-h2"])
def test_long_poll_held_past_the_read_timeout_gets_504_and_loses_nothing(server: ServerProcess, kind: str) -> None:
    with Nginx(("127.0.0.1", server.port), read_timeout_s=1.0) as proxy:
        base, poller = _poller(kind, proxy)
        channel = f"trap504-{kind}-{uuid.uuid4().hex[:6]}"
        seen: list[Received] = []
        sub = LongPollSubscriber(
            base, channel, timeout=3, poller=poller, on_event=seen.append, backoff_min=0.05, backoff_max=0.2
        )

        async def main() -> list[int]:
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            seqs: list[int] = []
            try:
                for i in range(10):
                    if i in (0, 5):  # a quiet moment first: the held poll outlives nginx's 1 s read timeout
                        count = poller.statuses.count(504)
                        await _until(lambda c=count: poller.statuses.count(504) > c, task, 20 * UNIT)
                    seqs.append(await _publish(server.url, channel, i))
                    await asyncio.sleep(0.3)  # some land while a poll is held, some between a 504 and the retry
                await _until(lambda: len(seen) >= 10, task, 20 * UNIT)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10 * UNIT)
            return seqs

        seqs = asyncio.run(main())
    counters = sub.tracker.finish(seqs[-1])
    assert [r.seq for r in seen] == seqs and [r.data["i"] for r in seen] == list(range(10))
    assert (counters.duplicate, counters.out_of_order, counters.missing, counters.gap_lost) == (0, 0, 0, 0)
    print(f"\n{kind}: {poller.statuses.count(504)} answers 504 of {len(poller.statuses)}, 0 lost")
    assert poller.statuses.count(504) >= 2
    assert set(poller.statuses) == {200, 504}
    assert sub.stats.reconnects >= 2  # each 504 ended a session: the subscriber polled again from its cursor


def test_the_longest_hold_passes_through_the_shipped_config(server: ServerProcess) -> None:
    """The server's longest hold (``poll_timeout_max``, 30 s) comes back as its own ``200``, not nginx's 504."""
    with Nginx(("127.0.0.1", server.port)) as proxy:
        base, poller = _poller("bare", proxy)
        channel = f"trap504-shipped-{uuid.uuid4().hex[:6]}"
        seen: list[Received] = []
        sub = LongPollSubscriber(base, channel, timeout=30, poller=poller, on_event=seen.append)

        async def main() -> int:
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            try:
                await _until(lambda: len(poller.statuses) >= 1, task, 40 * UNIT)  # one whole quiet hold
                seq = await _publish(server.url, channel, 0)
                await _until(lambda: len(seen) >= 1, task, 20 * UNIT)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10 * UNIT)
            return seq

        seq = asyncio.run(main())
    assert [r.seq for r in seen] == [seq]
    assert poller.statuses == [200, 200]  # the empty answer after 30 s, then the event
    assert sub.stats.empty_responses == 1 and sub.stats.reconnects == 0


# --- 2. SSE through a buffering proxy ------------------------------------------------------------------


class RawStream:
    """A raw ``GET /channels/<c>/sse`` through nginx's plain listener: what each ``recv`` brought, decoded.

    It asks for gzip (``Accept-Encoding: gzip``), as every browser does, and undoes the chunked framing and
    any compression itself, so the test sees exactly when bytes arrive and how many events each read holds.
    """

    def __init__(self, port: int, channel: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT)
        self.sock.sendall(
            f"GET /channels/{channel}/sse?after=0 HTTP/1.1\r\nHost: localhost\r\n"
            "Accept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n".encode()
        )
        self.head: bytes | None = None
        self.raw = b""
        self.wire_bytes = 0
        """Bytes received so far (head, framing and body)."""
        self.gzip: Any = None
        self.reads: list[list[int]] = []
        """The event ids each read that carried any brought."""
        self.body_bytes = 0
        """Bytes of the event stream itself (framing and compression undone)."""

    def drain(self, wait: float) -> list[int]:
        """Read what comes within ``wait`` seconds of silence; the event ids it carried."""
        self.sock.settimeout(wait)
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                raise AssertionError("nginx closed the stream")
            self.wire_bytes += len(data)
            self.raw += data
        if self.head is None and b"\r\n\r\n" in self.raw:
            self.head, _, self.raw = self.raw.partition(b"\r\n\r\n")
            assert self.head.startswith(b"HTTP/1.1 200"), self.head
            if re.search(rb"(?im)^content-encoding: gzip", self.head):
                self.gzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = b""
        while self.head is not None:
            size, sep, rest = self.raw.partition(b"\r\n")
            if not sep or len(rest) < int(size, 16) + 2:
                break
            n = int(size, 16)
            body, self.raw = body + rest[:n], rest[n + 2 :]
        if self.gzip is not None:
            body = self.gzip.decompress(body)
        self.body_bytes += len(body)
        ids = [int(i) for i in re.findall(rb"(?m)^id: (\d+)$", body)]
        if ids:
            self.reads.append(ids)
        return ids

    def arrived(self, seq: int) -> bool:
        """Whether event ``seq`` has come (after reading what is there)."""
        self.drain(0.05)
        return any(seq in read for read in self.reads)

    def close(self) -> None:
        self.sock.close()


def _payload(i: int) -> dict[str, Any]:
    return {"i": i, "pad": uuid.uuid4().hex * 4}  # about 270 bytes on the stream, little of it compressible


def test_sse_through_a_buffering_compressing_proxy_arrives_late_and_in_lumps(server: ServerProcess) -> None:
    with Nginx(("127.0.0.1", server.port), sse_buffering=True, sse_gzip=True) as proxy, httpx.Client() as http:
        stream = RawStream(proxy.plain_port, channel := f"lumps-{uuid.uuid4().hex[:6]}")
        try:
            published = 0
            for _ in range(50):
                assert http.post(f"{server.url}/channels/{channel}/events", json=_payload(published)).is_success
                published += 1
            assert stream.drain(1 * UNIT) == [] and stream.wire_bytes == 0  # not even the response head
            while not stream.reads and published < 4000:
                for _ in range(50):
                    assert http.post(f"{server.url}/channels/{channel}/events", json=_payload(published)).is_success
                    published += 1
                stream.drain(0.2 * UNIT)
            first_at = published
            stream.drain(1 * UNIT)
        finally:
            stream.close()
    assert stream.reads, f"no event came through in {published} published"
    got = [i for read in stream.reads for i in read]
    per_event = stream.body_bytes / len(got)
    print(
        f"\nbuffering + gzip: the first byte came after {first_at} events published (about "
        f"{first_at * per_event / 1000:.0f} kB of stream); events per read that carried any: "
        f"{[len(r) for r in stream.reads]}"
    )
    assert first_at > 50
    assert len(stream.reads[0]) >= 10  # a lump: many events in the first read that carried any
    assert got == list(range(1, len(got) + 1))  # late, but in order and whole


@pytest.mark.parametrize(
    ("buffering", "gzip"),
    [(False, False), (False, True), (True, False)],
    ids=["shipped", "gzip-only", "buffering-only"],
)
def test_sse_arrives_event_by_event_unless_buffered_and_compressed(
    server: ServerProcess, buffering: bool, gzip: bool
) -> None:
    """The shipped file; compression alone (flushed at every read); buffering alone (gunicorn writes each
    event whole, and nginx passes on what it has read at once when the client keeps up)."""
    with Nginx(("127.0.0.1", server.port), sse_buffering=buffering, sse_gzip=gzip) as proxy, httpx.Client() as http:
        stream = RawStream(proxy.plain_port, channel := f"steady-{uuid.uuid4().hex[:6]}")
        try:
            if not buffering:  # the head and the retry field come at once; buffered, with the first event
                assert wait_until(lambda: stream.drain(0.1) == [] and stream.head is not None, 10 * UNIT)
                assert stream.head is not None and (b"gzip" in stream.head.lower()) == gzip
            for i in range(10):
                seq = http.post(f"{server.url}/channels/{channel}/events", json=_payload(i)).json()["seq"]
                assert wait_until(lambda s=seq: stream.arrived(s), 10 * UNIT)
        finally:
            stream.close()
    assert stream.reads == [[i] for i in range(1, 11)]  # one by one: each before the next was published


# --- 3. seven long-polling tabs over HTTP/1.1 and over HTTP/2 ------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TABS = 7


@pytest.fixture(scope="module")
def tabs_proxy(server: ServerProcess) -> Iterator[Nginx]:
    with Nginx(("127.0.0.1", server.port)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def chromium(tabs_proxy: Nginx) -> Iterator[Any]:
    """Debian's Chromium, trusting the throwaway certificate's key and no other unknown one."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    spki = f"--ignore-certificate-errors-spki-list={tabs_proxy.spki_sha256}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, spki])
        try:
            yield browser
        finally:
            browser.close()


def _held_polls(server: ServerProcess) -> int:
    stats = httpx.get(f"{server.url}/stats", timeout=5 * UNIT).json()
    return int(stats["connections"]["longpoll"])


START_POLL = """([channel]) => {
    window.poll = {done: false, events: null, protocol: null};
    // no-store, as the demo page does: Chromium's HTTP cache lets one request for a URL through at a time
    // and holds identical ones behind it (its cache lock, up to 20 s), whatever the protocol.
    fetch(`/channels/${channel}/poll?after=0&timeout=25`, {cache: "no-store"}).then(r => r.json()).then(body => {
        const entries = performance.getEntriesByType("resource").filter(e => e.name.includes("/poll"));
        window.poll = {done: true, events: body.events.map(e => e.seq),
                       protocol: entries.length ? entries[entries.length - 1].nextHopProtocol : null};
    });
}"""


@pytest.mark.browser
@pytest.mark.parametrize("listener", ["http/1.1", "h2"])
def test_seven_long_polling_tabs(chromium: Any, tabs_proxy: Nginx, server: ServerProcess, listener: str) -> None:
    port = tabs_proxy.tls_h1_port if listener == "http/1.1" else tabs_proxy.tls_port
    origin = f"https://localhost:{port}"
    channel = f"tabs-{uuid.uuid4().hex[:6]}"
    context = chromium.new_context()
    try:
        pages = []
        for _ in range(TABS):  # every tab loaded first: a seventh page's own load would queue too
            page = context.new_page()
            page.set_default_timeout(30 * UNIT * 1000)
            page.goto(f"{origin}/healthz")
            pages.append(page)
        assert _held_polls(server) == 0
        for page in pages:
            page.evaluate(START_POLL, [channel])
        if listener == "http/1.1":
            assert wait_until(lambda: _held_polls(server) == TABS - 1, 20 * UNIT)
            # Six held, and the seventh not sent: it waits for one of the six connections to come free.
            assert not wait_until(lambda: _held_polls(server) >= TABS, 2 * UNIT)
            print(f"\n{listener}: {_held_polls(server)} polls held at the server, 7 sent by the pages")
            assert sum(p.evaluate("window.poll.done") for p in pages) == 0
        else:
            assert wait_until(lambda: _held_polls(server) == TABS, 20 * UNIT)  # one connection, seven streams
            print(f"\n{listener}: {_held_polls(server)} polls held at the server, 7 sent by the pages")
        seq = httpx.post(f"{server.url}/channels/{channel}/events", json={"tab": True}).json()["seq"]
        for page in pages:  # the six answer at once; the seventh is sent then and finds the event at once
            page.wait_for_function("window.poll.done")
        polls = [page.evaluate("window.poll") for page in pages]
    finally:
        context.close()
    assert [p["events"] for p in polls] == [[seq]] * TABS
    assert {p["protocol"] for p in polls} == {listener}
