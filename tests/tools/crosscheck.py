"""An independent minimal client of the lab's server, and the driver that compares it with the lab's figures.

Test tool, outside the lab's layers (docs/crosscheck.md). It exists to check the benchmark from outside: it
starts ``python -m server`` itself and measures one point (transport x subscribers x rate) with its own,
deliberately small apparatus, so the lab's numbers at the same point can be compared with numbers that no
code of the lab produced. It therefore imports nothing from ``bench``, ``clients`` or ``server``: only the
standard library, ``hdrh`` and ``psutil``. The wire protocol it speaks is docs/protocol.md's, written again.

Processes (spawned with :mod:`multiprocessing`, each with a pipe to the driver):

- **subscriber shards** (``--shards``, default 2: on 2 cores one asyncio loop is not enough for 1,000
  subscribers): one :class:`asyncio.Protocol` connection per subscriber, responses and frames parsed by hand
  (:class:`ResponseReader`, :class:`FrameReader`); the receive time is ``time.monotonic_ns()`` taken at the top
  of ``data_received``, once per read, for every message completed by that read;
- **the publisher**: open loop on a fixed schedule computed before the start (periodic, or Poisson with
  ``--seed``); a plain thread sleeps until each event is due (``time.sleep``: nanosecond timers, where an
  event loop's epoll wakes with millisecond resolution) and writes the request on an idle keep-alive
  connection, opening one more if none is idle, so a send never waits for an answer; one reader thread per
  connection takes the answers;
- **the driver** (this process): starts the server in its own session, waits for ``GET /healthz``, connects
  the subscribers, publishes, opens the measurement window at the end of the warm-up, drains, closes the
  window, stops everything and prints one JSON object (stdout) and a summary (stderr).

Definitions (the same as docs/metrics.md's, measured independently):

- **latency** = receive monotonic time minus the event's intended send time, which the publisher writes in the
  payload ``[index, intended_monotonic_ns, "xx..."]`` (padded to ``--payload-bytes``). Only events whose index
  is past the warm-up count; recorded in microseconds in an HdrHistogram (1 us to 1 h, 3 digits) per shard
  and merged exactly.
- **missing / duplicate / out of order**, per subscriber, by ``seq``: a seq seen twice, a seq below one already
  seen, and every seq from 1 to the last published never seen by the end of the drain.
- **CPU** of the server's whole process tree (gunicorn arbiter and worker), of each shard and of the
  publisher: the first field of ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on CPU) of every thread,
  at the window's two edges. Server CPU per event = server CPU in the window / delivered measured events.

The readers are hand-written for independence, and they are cheap: per WebSocket event, measured over 20,000
frames written by wsproto on this 2-core machine while other jobs kept it busy (load average 4.6), the frame
reader takes 1.7 us, ``json.loads`` 5.6 us, ``HdrHistogram.record_value`` 2.2 us, and the whole path from
bytes to a recorded latency 12.9 us. ``tests/tools/test_crosscheck.py`` checks them against wsproto.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import math
import multiprocessing
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

ROOT = Path(__file__).resolve().parents[2]
"""The lab's checkout: ``python -m server`` is started from here."""

HIST_MAX_US = 3_600_000_000
"""Highest latency the histograms hold: one hour, in microseconds."""

DRAIN_S = 15.0
"""How long the subscribers may take after the last publish was answered (docs/metrics.md's drain)."""

LAB_TOLERANCE = {"p50_us": 0.20, "p99_us": 0.30, "cpu_us_per_event": 0.20}
"""Issue 9's "Done when": how far the lab's own figure may be from this tool's, relative to this tool's."""

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProtocolError(Exception):
    """The server sent something docs/protocol.md does not allow."""


# --- sans-I/O readers ------------------------------------------------------------------------------------


class FrameReader:
    """Sans-I/O reader of the frames a WebSocket server sends (RFC 6455 section 5; unmasked, as servers send).

    :meth:`feed` takes bytes as they arrive, split anywhere, and returns the complete messages as ``(opcode,
    payload)``: fragmented messages are reassembled (continuation frames), control frames are returned as
    they come, also between the fragments of a message.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b1 & 0x80:
                raise ProtocolError("the server masked a frame")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > n:
                break
            payload = bytes(buf[pos + head : end])
            pos = end
            fin = b0 & 0x80
            opcode = b0 & 0x0F
            if opcode == 0x0:
                if not self._fragment_opcode:
                    raise ProtocolError("a continuation frame without a message to continue")
                self._fragments.append(payload)
                if fin:
                    out.append((self._fragment_opcode, b"".join(self._fragments)))
                    self._fragments = []
                    self._fragment_opcode = 0
            elif opcode in (0x1, 0x2) and not fin:
                if self._fragment_opcode:
                    raise ProtocolError("a new message inside a fragmented one")
                self._fragment_opcode = opcode
                self._fragments = [payload]
            else:
                out.append((opcode, payload))
        del buf[:pos]
        return out


def client_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One masked client frame (FIN set): what a client must send (RFC 6455 section 5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


@dataclass
class Response:
    """One HTTP/1.1 response: status, headers (names in lower case) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class ResponseReader:
    """Sans-I/O reader of HTTP/1.1 responses on a keep-alive connection (RFC 9112).

    :meth:`feed` takes bytes split anywhere and returns the responses they complete, in order. Bodies are
    delimited by ``Content-Length`` or chunked transfer coding; a ``101`` ends the HTTP part of a connection
    (what follows it is left in :attr:`rest`). Responses to ``HEAD`` and ``1xx`` other than 101 are not
    expected from the lab's server and not handled.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: tuple[int, dict[str, str]] | None = None
        self.rest = b""
        """After a ``101``: the bytes that followed its header block (the first frames)."""
        self.upgraded = False

    def feed(self, data: bytes) -> list[Response]:
        if self.upgraded:
            raise ProtocolError("HTTP bytes after a 101")
        buf = self._buf
        buf += data
        out: list[Response] = []
        while True:
            if self._head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return out
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                    raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0]!r:.80}")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self._head = (int(parts[1]), headers)
                if self._head[0] == 101:
                    self.upgraded = True
                    self.rest = bytes(buf)
                    buf.clear()
                    out.append(Response(101, headers, b""))
                    self._head = None
                    return out
            status, headers = self._head
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = _dechunk(buf)
                if body is None:
                    return out
                payload, used = body
                del buf[:used]
            else:
                length = int(headers.get("content-length", "0"))
                if len(buf) < length:
                    return out
                payload = bytes(buf[:length])
                del buf[:length]
            out.append(Response(status, headers, payload))
            self._head = None


def _dechunk(buf: bytearray) -> tuple[bytes, int] | None:
    """A complete chunked body at the start of ``buf`` and the bytes it used, or ``None`` if incomplete."""
    pos = 0
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # no trailers: the last chunk's CRLF is followed by CRLF
            if end < 0:
                return None
            return b"".join(parts), end + 4
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


# --- accounting -----------------------------------------------------------------------------------------


class Tally:
    """One subscriber's accounting by ``seq``, and the latency of its measured events (sans-I/O)."""

    def __init__(self, n_warm: int, hist: HdrHistogram) -> None:
        self.n_warm = n_warm
        """Events with a payload index below this are warm-up: counted for loss, not measured."""
        self.hist = hist
        self.seen = bytearray(1024)
        """``seen[seq]`` is 1 once ``seq`` arrived."""
        self.max_seq = 0
        self.duplicate = 0
        self.out_of_order = 0
        self.measured = 0
        self.notices = 0
        self.events = 0

    def event(self, seq: int, data: Any, recv_ns: int) -> None:
        if seq >= len(self.seen):
            self.seen += bytes(max(seq + 1 - len(self.seen), len(self.seen)))
        if self.seen[seq]:
            self.duplicate += 1
            return
        self.seen[seq] = 1
        self.events += 1
        if seq < self.max_seq:
            self.out_of_order += 1
        else:
            self.max_seq = seq
        index, intended_ns = int(data[0]), int(data[1])
        if index >= self.n_warm:
            self.measured += 1
            self.hist.record_value(min(HIST_MAX_US, max(1, (recv_ns - intended_ns) // 1000)))

    def message(self, obj: Any, recv_ns: int) -> None:
        """One event object or notice, as docs/protocol.md defines them."""
        if "type" in obj:
            self.notices += 1
        else:
            self.event(int(obj["seq"]), obj["data"], recv_ns)

    def missing(self, last_seq: int) -> int:
        if last_seq >= len(self.seen):
            self.seen += bytes(last_seq + 1 - len(self.seen))
        return self.seen[1 : last_seq + 1].count(0)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, 3)


# --- subscribers (one shard process) -----------------------------------------------------------------------


class Subscriber(asyncio.Protocol):
    """One subscriber's connection; :class:`WsSubscriber` and :class:`LongPollSubscriber` speak the transport."""

    def __init__(self, shard: Shard, tally: Tally) -> None:
        self.shard = shard
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        """Done when subscribed: the 101 read (WebSocket), the first poll written (long poll)."""
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before subscribing: {exc!r}"))
        if not self.shard.closing:
            self.shard.lost += 1

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class WsSubscriber(Subscriber):
    """``GET /channels/<c>/ws?after=<cursor>`` with an Upgrade; then one event or notice per text frame."""

    def start(self) -> None:
        assert self.transport is not None
        self.key = base64.b64encode(self.shard.rng.randbytes(16))
        self.http = ResponseReader()
        self.frames = FrameReader()
        self.transport.write(
            b"GET /channels/%s/ws?after=%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self.shard.channel, self.tally.max_seq, self.shard.port, self.key)
        )

    def data_received(self, data: bytes) -> None:
        recv_ns = time.monotonic_ns()
        if not self.http.upgraded:
            answers = self.http.feed(data)
            if not answers:
                return
            answer = answers[0]
            accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest()).decode()
            if answer.status != 101 or answer.headers.get("sec-websocket-accept") != accept:
                self.ready.set_exception(ProtocolError(f"no WebSocket: {answer.status} {answer.body!r:.200}"))
                self.close()
                return
            self.ready.set_result(None)
            data = self.http.rest
        tally = self.tally
        loads = json.loads
        for opcode, payload in self.frames.feed(data):
            if opcode == 0x1:
                self.shard.messages += 1
                tally.message(loads(payload), recv_ns)
            elif opcode == 0x9:  # the server's ping: answer it, or it closes the connection
                assert self.transport is not None
                self.transport.write(client_frame(0xA, payload, self.shard.rng.randbytes(4)))
            elif opcode == 0x8:
                self.shard.closes += 1
                self.close()
            else:
                self.shard.other_frames += 1


class LongPollSubscriber(Subscriber):
    """``GET /channels/<c>/poll?after=<cursor>&timeout=25`` on one keep-alive connection, again at each answer."""

    def start(self) -> None:
        self.http = ResponseReader()
        self.cursor = self.tally.max_seq
        self.poll()
        if not self.ready.done():
            self.ready.set_result(None)

    def poll(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"GET /channels/%s/poll?after=%d&timeout=25 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
            % (self.shard.channel, self.cursor, self.shard.port)
        )

    def data_received(self, data: bytes) -> None:
        recv_ns = time.monotonic_ns()
        tally = self.tally
        for answer in self.http.feed(data):
            self.shard.messages += 1
            if answer.status != 200:
                raise ProtocolError(f"poll answered {answer.status}: {answer.body!r:.200}")
            body = json.loads(answer.body)
            if body["reset"] is not None:
                tally.notices += 1
            if body["gap"] is not None:
                tally.notices += 1
            events = body["events"]
            if not events:
                self.shard.empty += 1
            for event in events:
                tally.event(int(event["seq"]), event["data"], recv_ns)
            self.cursor = int(body["next"])
            if answer.headers.get("connection", "").lower() == "close":
                self.close()  # the shard reconnects it
            else:
                self.poll()


@dataclass
class Shard:
    """One subscriber shard: its subscribers, their histogram, and its own counters (an asyncio process)."""

    port: int
    channel: bytes
    transport: str
    n_warm: int
    count: int
    seed: int
    hist: HdrHistogram = field(default_factory=new_histogram)
    subscribers: list[Subscriber] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    closing: bool = False
    lost: int = 0
    """Connections the server closed while the shard was not closing (each one reconnected)."""
    reconnects: int = 0
    messages: int = 0
    """Text frames (WebSocket) or answers (long poll) read."""
    empty: int = 0
    closes: int = 0
    other_frames: int = 0
    lag_us: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)

    async def open(self, tally: Tally | None = None) -> Subscriber:
        loop = asyncio.get_running_loop()
        kind = WsSubscriber if self.transport == "websocket" else LongPollSubscriber
        tally = tally or Tally(self.n_warm, self.hist)
        _, sub = await loop.create_connection(lambda: kind(self, tally), "127.0.0.1", self.port)
        await sub.ready
        return sub

    async def connect(self) -> None:
        gate = asyncio.Semaphore(50)  # at most 50 handshakes at once: no burst of 500 SYNs

        async def one() -> Subscriber:
            async with gate:
                return await self.open()

        self.subscribers = list(await asyncio.gather(*(one() for _ in range(self.count))))

    async def keep_connected(self) -> None:
        """Reopen, with the same tally (``after`` = its cursor), any connection that closed (counted)."""
        while not self.closing:
            await asyncio.sleep(0.05)
            for i, sub in enumerate(self.subscribers):
                if sub.lost and not self.closing:
                    self.reconnects += 1
                    self.subscribers[i] = await self.open(sub.tally)

    async def watch_lag(self) -> None:
        """The loop's lateness on a 10 ms timer: a shard that cannot keep up shows here."""
        loop = asyncio.get_running_loop()
        while not self.closing:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.lag_us.append(int((loop.time() - due) * 1e6))

    def drained(self, last_seq: int) -> bool:
        return all(sub.tally.max_seq >= last_seq for sub in self.subscribers)

    def report(self, last_seq: int) -> dict[str, Any]:
        tallies = [sub.tally for sub in self.subscribers]
        lag = sorted(self.lag_us) or [0]
        return {
            "subscribers": len(tallies),
            "measured": sum(t.measured for t in tallies),
            "events": sum(t.events for t in tallies),
            "missing": sum(t.missing(last_seq) for t in tallies),
            "duplicate": sum(t.duplicate for t in tallies),
            "out_of_order": sum(t.out_of_order for t in tallies),
            "notices": sum(t.notices for t in tallies),
            "unfinished": sum(1 for t in tallies if t.max_seq < last_seq),
            "lost": self.lost,
            "reconnects": self.reconnects,
            "messages": self.messages,
            "empty_answers": self.empty,
            "close_frames": self.closes,
            "other_frames": self.other_frames,
            "loop_lag_us": {"p99": lag[min(len(lag) - 1, int(0.99 * len(lag)))], "max": lag[-1]},
            "hdr": self.hist.encode().decode("ascii"),
        }


def shard_main(pipe: Connection, config: dict[str, Any]) -> None:
    """Entry point of a shard process: connect, say so, receive until told the last seq, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops its children; Ctrl-C is for the driver
    asyncio.run(_shard(pipe, config))


async def _shard(pipe: Connection, config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    shard = Shard(
        config["port"], config["channel"].encode(), config["transport"], config["n_warm"], config["count"],
        config["seed"],
    )  # fmt: skip
    commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(pipe.recv())
        except EOFError:
            loop.remove_reader(pipe.fileno())
            commands.put_nowait({"cmd": "stop"})

    loop.add_reader(pipe.fileno(), readable)
    await shard.connect()
    helpers = [asyncio.create_task(shard.keep_connected()), asyncio.create_task(shard.watch_lag())]
    pipe.send({"connected": len(shard.subscribers)})
    last_seq = 0
    while True:
        command = await commands.get()
        if command["cmd"] == "drain":
            last_seq = int(command["last_seq"])
            deadline = loop.time() + float(command["timeout_s"])
            while not shard.drained(last_seq) and loop.time() < deadline:
                await asyncio.sleep(0.005)
            pipe.send({"drained": shard.drained(last_seq)})
        elif command["cmd"] == "report":
            shard.closing = True
            pipe.send(shard.report(last_seq))
        else:
            break
    shard.closing = True
    for task in helpers:
        task.cancel()
    for sub in shard.subscribers:
        sub.close()
    await asyncio.sleep(0)


# --- publisher (its own process) -----------------------------------------------------------------------------


def schedule(rate: float, warmup_s: float, duration_s: float, arrivals: str, seed: int) -> tuple[list[int], int]:
    """Every event's intended offset from T0 (ns), warm-up first, and how many are warm-up.

    ``periodic``: event k at k / rate. ``poisson``: exponential gaps of mean 1 / rate drawn from ``seed``.
    Warm-up events are those due before ``warmup_s``; the schedule ends at ``warmup_s + duration_s``.
    """
    end_ns = int((warmup_s + duration_s) * 1e9)
    warm_ns = int(warmup_s * 1e9)
    rng = random.Random(seed)
    offsets: list[int] = []
    t = 0.0
    while True:
        if arrivals == "periodic":
            offset = round(len(offsets) * 1e9 / rate)
        else:
            offset = round(t * 1e9)
            t += rng.expovariate(rate)
        if offset >= end_ns:
            break
        offsets.append(offset)
    return offsets, sum(1 for o in offsets if o < warm_ns)


class PublishConnection:
    """One keep-alive connection of the publisher: the scheduler writes, a reader thread takes the answers."""

    def __init__(self, port: int, idle: deque[PublishConnection], results: PublishResults) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.idle = idle
        self.results = results
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        reader = ResponseReader()
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self.results.lock:
                    self.results.closed += 1
                return
            for answer in reader.feed(data):
                self.results.answer(answer)
                if answer.headers.get("connection", "").lower() == "close":
                    self.sock.close()
                    with self.results.lock:
                        self.results.closed += 1
                    return
                self.idle.append(self)


@dataclass
class PublishResults:
    """What the publisher's reader threads saw (each field written by one thread at a time under the GIL)."""

    answered: int = 0
    errors: int = 0
    last_seq: int = 0
    closed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, response: Response) -> None:
        with self.lock:
            self.answered += 1
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            if response.status == 201:
                self.last_seq = max(self.last_seq, int(json.loads(response.body)["seq"]))
            else:
                self.errors += 1


def publisher_main(pipe: Connection, config: dict[str, Any]) -> None:
    """Entry point of the publisher process: open the connections, say ready, publish from T0, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    port = int(config["port"])
    offsets: list[int] = config["offsets"]
    pad = int(config["payload_bytes"])
    idle: deque[PublishConnection] = deque()
    results = PublishResults()
    conns = [PublishConnection(port, idle, results) for _ in range(int(config["connections"]))]
    idle.extend(conns)
    pipe.send({"ready": len(conns)})
    t0 = int(pipe.recv()["t0_ns"])
    head = b"POST /channels/%s/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n" % (
        config["channel"].encode(),
        port,
    )
    lags: list[int] = []
    extra = 0
    for index, offset in enumerate(offsets):
        due = t0 + offset
        wait = due - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        if idle:
            conn = idle.popleft()
        else:
            conn = PublishConnection(port, idle, results)
            conns.append(conn)
            extra += 1
        body = b'[%d,%d,"' % (index, due)
        body += b"x" * max(0, pad - len(body) - 2) + b'"]'
        lags.append(time.monotonic_ns() - due)  # at the write: a send that waited for a connection shows here
        try:
            conn.sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            with results.lock:
                results.errors += 1
    deadline = time.monotonic() + 30
    while results.answered + results.errors < len(offsets) and time.monotonic() < deadline:
        time.sleep(0.002)
    lags.sort()
    pipe.send(
        {
            "intended": len(offsets),
            "sent": len(lags),
            "answered": results.answered,
            "errors": results.errors,
            "statuses": {str(k): v for k, v in results.statuses.items()},
            "last_seq": results.last_seq,
            "connections": len(conns),
            "extra_connections": extra,
            "closed_by_server": results.closed,
            "lag_us": {
                "p50": lags[len(lags) // 2] // 1000 if lags else None,
                "p99": lags[min(len(lags) - 1, int(0.99 * len(lags)))] // 1000 if lags else None,
                "max": lags[-1] // 1000 if lags else None,
            },
        }
    )
    for conn in conns:
        conn.sock.close()


# --- the server and CPU ----------------------------------------------------------------------------------


class Server:
    """``python -m server`` in its own session on a port it picks (its JSON ready line names it)."""

    def __init__(self, runtime: str, history: int, extra: list[str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="crosscheck-server-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [sys.executable, "-m", "server", "--runtime", runtime, "--port", "0", "--history", str(history), *extra]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(30):
                self.stop()
                raise RuntimeError(f"the server announced no port in 30 s: {self.log_tail()}")
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the server exited at start: {self.log_tail()}")
        self.port = int(json.loads(line)["port"])
        self.wait_healthy(30)

    def log_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def get(self, path: str, timeout: float = 5) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            return answer.status, json.loads(answer.read() or b"null")
        finally:
            conn.close()

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited at start: {self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if self.get("/healthz", 1)[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"GET /healthz did not answer 200 in {timeout} s: {self.log_tail()}")

    def tree(self) -> list[int]:
        """The server process and every descendant (gunicorn's arbiter and its workers)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """SIGTERM to the whole group, a wait, SIGKILL to what is left of it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def thread_cpu_ns(pids: list[int]) -> dict[tuple[int, int], int]:
    """Nanoseconds on CPU of every thread of ``pids`` (first field of each task's ``schedstat``).

    Kept per thread so that a window's difference counts a thread born inside it whole and is never
    negative; a thread that ends inside the window loses its share (none of the lab's processes does that).
    """
    out: dict[tuple[int, int], int] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    out[pid, int(tid)] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return out


def cpu_delta_ns(start: dict[tuple[int, int], int], end: dict[tuple[int, int], int]) -> int:
    return sum(ns - start.get(key, 0) for key, ns in end.items())


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of every core, from ``/proc/stat``: how loaded the machine was."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


# --- the driver ----------------------------------------------------------------------------------------------


def _receive(pipe: Connection, timeout: float, what: str) -> dict[str, Any]:
    if not pipe.poll(timeout):
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
    try:
        message: dict[str, Any] = pipe.recv()
    except EOFError:
        raise RuntimeError(f"{what}: the process exited") from None
    return message


def percentiles(hist: HdrHistogram) -> dict[str, Any]:
    """Count, min, mean, max and the percentiles the count supports (p q only when count >= 1 / (1 - q))."""
    n = hist.get_total_count()
    out: dict[str, Any] = {"count": n}
    if not n:
        return out
    out["min_us"] = hist.get_min_value()
    out["mean_us"] = round(hist.get_mean_value(), 1)
    for name, q, least in (("p50_us", 50.0, 2), ("p90_us", 90.0, 10), ("p99_us", 99.0, 100), ("p999_us", 99.9, 1000)):
        out[name] = hist.get_value_at_percentile(q) if n >= least else None
    out["max_us"] = hist.get_max_value()
    out["hdr"] = hist.encode().decode("ascii")
    return out


@contextlib.contextmanager
def children(ctx: Any, target: Any, configs: list[dict[str, Any]]) -> Iterator[list[tuple[Any, Connection]]]:
    """Processes running ``target(pipe, config)``, terminated (then killed) in ``finally``."""
    started: list[tuple[Any, Connection]] = []
    try:
        for config in configs:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=target, args=(theirs, config), daemon=True)
            proc.start()
            theirs.close()
            started.append((proc, mine))
        yield started
    finally:
        for proc, _ in started:
            if proc.is_alive():
                proc.terminate()
        for proc, pipe in started:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            pipe.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement at one point; the JSON object the command prints."""
    offsets, n_warm = schedule(args.rate, args.warmup, args.duration, args.arrivals, args.seed)
    n_measured = len(offsets) - n_warm
    if n_measured < 1:
        raise SystemExit("the schedule has no measured event: raise --rate or --duration")
    ctx = multiprocessing.get_context("spawn")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()
    extra = ["--connections", str(max(2000, args.subscribers + 100))]
    if args.transport == "longpoll":
        extra += ["--poll-timeout", "25"]
    server = Server(args.runtime, args.history, extra)
    try:
        per_shard = [len(range(i, args.subscribers, args.shards)) for i in range(args.shards)]
        shard_configs = [
            {
                "port": server.port, "channel": args.channel, "transport": args.transport, "n_warm": n_warm,
                "count": count, "seed": args.seed * 1000 + i,
            }
            for i, count in enumerate(per_shard) if count
        ]  # fmt: skip
        publisher_config = {
            "port": server.port, "channel": args.channel, "offsets": offsets, "payload_bytes": args.payload_bytes,
            "connections": args.publisher_connections,
        }  # fmt: skip
        with (
            children(ctx, shard_main, shard_configs) as shards,
            children(ctx, publisher_main, [publisher_config]) as pubs,
        ):
            connected = sum(int(_receive(pipe, 120, "a shard's subscribers")["connected"]) for _, pipe in shards)
            if connected != args.subscribers:
                raise RuntimeError(f"{connected} of {args.subscribers} subscribers connected")
            kind = "websocket" if args.transport == "websocket" else "longpoll"
            deadline = time.monotonic() + 30
            while server.get("/stats")[1]["connections"][kind] < args.subscribers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"/stats never showed {args.subscribers} {kind} connections")
                time.sleep(0.05)
            (pub, pub_pipe) = pubs[0]
            _receive(pub_pipe, 60, "the publisher's connections")
            client_pids = [proc.pid for proc, _ in shards]
            t0 = time.monotonic_ns() + 200_000_000
            pub_pipe.send({"t0_ns": t0})
            time.sleep(max(0.0, (t0 + round(args.warmup * 1e9) - time.monotonic_ns()) / 1e9))
            tree = server.tree()
            open_ns = time.monotonic_ns()
            server0 = thread_cpu_ns(tree)
            clients0 = [thread_cpu_ns([pid]) for pid in [*client_pids, pub.pid]]
            machine0 = machine_jiffies()
            stats0 = server.get("/stats")[1]
            publisher = _receive(pub_pipe, args.warmup + args.duration + 60, "the publisher's report")
            for _, pipe in shards:
                pipe.send({"cmd": "drain", "last_seq": publisher["last_seq"], "timeout_s": DRAIN_S})
            drained = all(_receive(pipe, DRAIN_S + 30, "a shard's drain")["drained"] for _, pipe in shards)
            close_ns = time.monotonic_ns()
            server1 = thread_cpu_ns(tree + [p for p in server.tree() if p not in tree])
            clients1 = [thread_cpu_ns([pid]) for pid in [*client_pids, pub.pid]]
            machine1 = machine_jiffies()
            stats1 = server.get("/stats")[1]
            for _, pipe in shards:
                pipe.send({"cmd": "report"})
            reports = [_receive(pipe, 60, "a shard's report") for _, pipe in shards]
            for _, pipe in shards:
                pipe.send({"cmd": "stop"})
    finally:
        server.stop()
    load_after = os.getloadavg()

    merged = new_histogram()
    for report in reports:
        merged.decode_and_add(report.pop("hdr"))
    window_s = (close_ns - open_ns) / 1e9
    delivered = sum(r["measured"] for r in reports)
    server_ns = cpu_delta_ns(server0, server1)
    client_ns = [cpu_delta_ns(a, b) for a, b in zip(clients0, clients1, strict=True)]
    busy = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
    cores = os.cpu_count() or 1

    def total(key: str) -> int:
        return sum(int(r[key]) for r in reports)

    return {
        "tool": "tests.tools.crosscheck",
        "point": {
            "transport": args.transport,
            "runtime": args.runtime,
            "subscribers": args.subscribers,
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "arrivals": args.arrivals,
            "seed": args.seed,
            "payload_bytes": args.payload_bytes,
            "shards": len(shard_configs),
            "channel": args.channel,
            "layout": "broadcast",
        },
        "started_utc": started,
        "publisher": publisher,
        "counters": {
            "expected": args.subscribers * n_measured,
            "delivered": delivered,
            "missing": total("missing"),
            "duplicate": total("duplicate"),
            "out_of_order": total("out_of_order"),
            "notices": total("notices"),
            "unfinished_subscribers": total("unfinished"),
            "drained": drained,
            "connections_lost": total("lost"),
            "reconnects": total("reconnects"),
            "messages": total("messages"),
            "empty_answers": total("empty_answers"),
        },
        "latency": percentiles(merged),
        "window_s": round(window_s, 3),
        "server": {
            "pids": tree,
            "cpu_ms": round(server_ns / 1e6, 3),
            "cpu_us_per_event": round(server_ns / 1e3 / delivered, 3) if delivered else None,
            "cpu_percent": round(100 * server_ns / 1e9 / window_s, 1),
            "longpoll_requests": stats1["requests"]["longpoll"] - stats0["requests"]["longpoll"],
            "published": stats1["events_published"] - stats0["events_published"],
        },
        "clients": {
            "shards": [
                {
                    "pid": pid,
                    "subscribers": r["subscribers"],
                    "cpu_ms": round(ns / 1e6, 3),
                    "cpu_percent": round(100 * ns / 1e9 / window_s, 1),
                    "loop_lag_us": r["loop_lag_us"],
                }
                for pid, ns, r in zip(client_pids, client_ns, reports, strict=False)
            ],
            "publisher": {
                "pid": pub.pid,
                "cpu_ms": round(client_ns[-1] / 1e6, 3),
                "cpu_percent": round(100 * client_ns[-1] / 1e9 / window_s, 1),
            },
        },
        "machine": {
            "cores": cores,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "busy_percent": round(100 * busy, 1),
            "others_percent_of_machine": round(
                max(0.0, 100 * busy - 100 * (server_ns + sum(client_ns)) / 1e9 / window_s / cores), 1
            ),
        },
    }


def compare(ours: dict[str, Any], lab: dict[str, Any]) -> dict[str, Any]:
    """The lab's raw result (docs/results.md) beside this tool's, against issue 9's tolerances.

    Reads the lab's file as plain JSON (``latency.end_to_end`` and ``server.cpu_us_per_event``); nothing of the
    lab's code is involved. ``within`` is ``|lab - ours| / ours <= tolerance``.
    """
    lab_latency = lab["latency"]["end_to_end"]
    pairs = {
        "p50_us": (lab_latency.get("p50_us"), ours["latency"].get("p50_us")),
        "p99_us": (lab_latency.get("p99_us"), ours["latency"].get("p99_us")),
        "cpu_us_per_event": (lab["server"].get("cpu_us_per_event"), ours["server"].get("cpu_us_per_event")),
    }
    out: dict[str, Any] = {"lab_scenario": lab.get("scenario", {}), "lab_count": lab_latency.get("count")}
    for name, (theirs, mine) in pairs.items():
        if theirs is None or not mine:
            out[name] = {"lab": theirs, "crosscheck": mine, "difference": None, "within": None}
            continue
        difference = (theirs - mine) / mine
        out[name] = {
            "lab": theirs,
            "crosscheck": mine,
            "difference": round(difference, 3),
            "tolerance": LAB_TOLERANCE[name],
            "within": abs(difference) <= LAB_TOLERANCE[name],
        }
    return out


def summary(result: dict[str, Any]) -> str:
    p, c, lat, srv = result["point"], result["counters"], result["latency"], result["server"]
    shards = ", ".join(f"{s['cpu_percent']}%" for s in result["clients"]["shards"])

    def ms(key: str) -> str:
        value = lat.get(key)
        return "-" if value is None else f"{value / 1000:.2f}"

    lines = [
        f"{p['transport']} {p['subscribers']} x {p['rate']:g} ev/s ({p['runtime']}, {p['arrivals']}), "
        f"window {result['window_s']} s",
        f"  latency n={lat['count']}: p50 {ms('p50_us')} ms, p90 {ms('p90_us')}, p99 {ms('p99_us')}, "
        f"max {ms('max_us')} ms",
        f"  delivered {c['delivered']}/{c['expected']}, missing {c['missing']}, duplicate {c['duplicate']}, "
        f"out of order {c['out_of_order']}, drained {c['drained']}",
        f"  server CPU {srv['cpu_ms']} ms = {srv['cpu_us_per_event']} us/event ({srv['cpu_percent']}% of a core); "
        f"shards {shards}; publisher {result['clients']['publisher']['cpu_percent']}%, "
        f"lag p99 {result['publisher']['lag_us']['p99']} us",
        f"  machine busy {result['machine']['busy_percent']}% of {result['machine']['cores']} cores "
        f"(others {result['machine']['others_percent_of_machine']}%), "
        f"load {result['machine']['loadavg_before'][0]} -> {result['machine']['loadavg_after'][0]}",
    ]
    for name, row in result.get("compare", {}).items():
        if isinstance(row, dict) and "within" in row:
            lines.append(
                f"  lab {name}: {row['lab']} vs {row['crosscheck']} ({row['difference']}) within={row['within']}"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.tools.crosscheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--transport", choices=("websocket", "longpoll"), required=True)
    p.add_argument("--subscribers", type=int, required=True, help="subscribers on one broadcast channel")
    p.add_argument("--rate", type=float, required=True, help="events per second in total")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds (default %(default)s)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before the window (%(default)s)")
    p.add_argument("--runtime", default="gevent", help="python -m server --runtime (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="WebSocket keys, masks and Poisson gaps (%(default)s)")
    p.add_argument("--arrivals", choices=("periodic", "poisson"), default="periodic")
    p.add_argument("--shards", type=int, default=2, help="subscriber processes (default %(default)s)")
    p.add_argument("--publisher-connections", type=int, default=4, help="keep-alive connections (%(default)s)")
    p.add_argument("--payload-bytes", type=int, default=32, help="payload JSON size, as the lab's (%(default)s)")
    p.add_argument("--history", type=int, default=100_000, help="python -m server --history (%(default)s)")
    p.add_argument("--channel", default="bench")
    p.add_argument("--compare", type=Path, metavar="LAB_RAW_JSON", help="a lab raw result at the same point")
    p.add_argument("--out", type=Path, help="also write the JSON object to this file")
    args = p.parse_args(argv)
    if args.subscribers < 1 or args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.shards < 1:
        p.error("--subscribers and --shards must be >= 1, --rate and --duration > 0, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.compare is not None:
        result["compare"] = compare(result, json.loads(args.compare.read_text()))
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    print(summary(result), file=sys.stderr)
    c = result["counters"]
    return 0 if not (c["missing"] or c["duplicate"] or c["out_of_order"]) and math.isfinite(result["window_s"]) else 1


if __name__ == "__main__":
    sys.exit(main())
