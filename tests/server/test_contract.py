"""End-to-end contract of docs/protocol.md on every runtime, over the three transports.

For each runtime a real server runs in a subprocess. On one channel, 20
long-poll, 20 WebSocket and 20 SSE subscribers (asyncio: httpx, httpx
streaming and simple-websocket's AioClient, not the lab's ``clients/``)
receive 1,000 published events. Each must get seq 1..1000 exactly once, in
order, and the three transports must carry the same bytes for every event.
One more subscriber per transport drops its connection mid-stream and
resumes from its cursor (the SSE one with ``Last-Event-ID``, as a browser does).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import simple_websocket

from server.runtimes import RUNTIMES
from tests.support import UNIT, ServerProcess, run_server

SUBSCRIBERS = 20
EVENTS = 1000
RESUME_AT = 300
"""The resuming subscribers drop their connection once they have this seq."""
CHANNEL = "contract"
PIPELINE = 50
"""Publishes in flight before the publisher waits for their acks."""
PATIENCE = 120 * UNIT
"""The whole run's bound: a hang fails the test instead of blocking the suite."""


class AioWsClient(simple_websocket.AioClient):  # type: ignore[misc]
    """AioClient that parses frames which arrived with the 101 answer (see test_websocket.WsClient)."""

    async def handshake(self) -> None:
        await super().handshake()
        await self._handle_events()


@dataclass
class Received:
    """What one subscriber got: the seqs in arrival order and each event's exact text."""

    name: str
    seqs: list[int] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    connections: int = 0

    def add(self, text: str) -> None:
        obj = json.loads(text)
        if "type" in obj:
            self.notices.append(text)
            return
        self.seqs.append(obj["seq"])
        self.texts.setdefault(obj["seq"], text)

    @property
    def cursor(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def accounting(self) -> dict[str, int]:
        """Missing, duplicate and out-of-order counts against 1..EVENTS."""
        seen = set(self.seqs)
        return {
            "missing": len(set(range(1, EVENTS + 1)) - seen),
            "duplicate": len(self.seqs) - len(seen),
            "out_of_order": sum(1 for a, b in zip(self.seqs, self.seqs[1:], strict=False) if b <= a),
        }


def split_events(body: str) -> list[str]:
    """The exact text of each event object in a long-poll answer's ``events`` array."""
    decoder = json.JSONDecoder()
    start = body.index('"events":[') + len('"events":[')
    texts = []
    pos = start
    while body[pos] != "]":
        _, end = decoder.raw_decode(body, pos)
        texts.append(body[pos:end])
        pos = end + 1 if body[end] == "," else end
    return texts


async def longpoll_subscriber(url: str, got: Received, drop_at: int | None = None) -> None:
    while got.cursor < EVENTS:
        got.connections += 1
        async with httpx.AsyncClient(base_url=url, timeout=30 * UNIT) as http:
            while got.cursor < EVENTS:
                resp = await http.get(f"/channels/{CHANNEL}/poll", params={"after": got.cursor, "timeout": 5 * UNIT})
                assert resp.status_code == 200, resp.text
                body = resp.json()
                if body["gap"] or body["reset"]:
                    got.notices.append(json.dumps({"gap": body["gap"], "reset": body["reset"]}))
                for text in split_events(resp.text):
                    got.add(text)
                assert body["next"] == got.cursor
                if drop_at is not None and got.cursor >= drop_at:
                    drop_at = None
                    break  # leave this connection; the next one resumes from the cursor


async def websocket_subscriber(ws_url: str, got: Received, drop_at: int | None = None) -> None:
    while got.cursor < EVENTS:
        got.connections += 1
        ws = await AioWsClient.connect(f"{ws_url}/channels/{CHANNEL}/ws?after={got.cursor}")
        try:
            while got.cursor < EVENTS:
                text = await ws.receive(timeout=30 * UNIT)
                assert text is not None, f"{got.name}: nothing for {30 * UNIT} s at cursor {got.cursor}"
                got.add(text)
                if drop_at is not None and got.cursor >= drop_at:
                    drop_at = None
                    break
        finally:
            await ws.close()


def sse_blocks(buffer: str) -> tuple[list[dict[str, str]], str]:
    """The complete events in ``buffer`` (the lab writes LF line ends) as field dicts, and the rest.

    Written here, not taken from ``clients/``: ``data`` lines joined with LF, comments skipped.
    """
    *blocks, rest = buffer.split("\n\n")
    events = []
    for block in blocks:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
        if "data" in fields:
            events.append(fields)
    return events, rest


async def sse_subscriber(url: str, got: Received, drop_at: int | None = None) -> None:
    last_id: str | None = None
    while got.cursor < EVENTS:
        got.connections += 1
        headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": last_id} if last_id is not None else {})
        async with (
            httpx.AsyncClient(base_url=url, timeout=30 * UNIT) as http,
            http.stream("GET", f"/channels/{CHANNEL}/sse", params={"after": 0}, headers=headers) as resp,
        ):
            assert resp.status_code == 200, await resp.aread()
            assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            assert resp.headers["Cache-Control"] == "no-store"
            buffer = ""
            async for text in resp.aiter_text():
                events, buffer = sse_blocks(buffer + text)
                for fields in events:
                    got.add(fields["data"])
                    last_id = fields["id"]
                    if "event" not in fields:
                        assert fields["id"] == str(got.cursor)
                if got.cursor >= EVENTS or (drop_at is not None and got.cursor >= drop_at):
                    drop_at = None
                    break  # leave this connection; the next one resumes from the last event ID


async def publisher(ws_url: str) -> list[int]:
    """Publish EVENTS events over one WebSocket, pipelined; return the acked seqs.

    Over a WebSocket rather than 1,000 HTTP requests: on a loaded 2-core
    machine that keeps the publisher from being the slowest part of the run.
    """
    seqs: list[int] = []
    ws = await AioWsClient.connect(f"{ws_url}/channels/{CHANNEL}-publisher/ws")
    try:
        for start in range(0, EVENTS, PIPELINE):
            for i in range(start, min(start + PIPELINE, EVENTS)):
                # Not ASCII: UTF-8 must travel untouched on both transports.
                await ws.send(
                    json.dumps(
                        {"type": "publish", "id": i, "channel": CHANNEL, "data": {"i": i, "s": "\u00e9 \u2603"}},
                        ensure_ascii=False,
                        separators=(", ", ": "),
                    )
                )
            while len(seqs) < min(start + PIPELINE, EVENTS):
                text = await ws.receive(timeout=30 * UNIT)
                assert text is not None, f"no ack after {len(seqs)} publishes"
                ack = json.loads(text)
                assert (ack["type"], ack["id"]) == ("ack", len(seqs)), ack
                seqs.append(ack["seq"])
    finally:
        await ws.close()
    return seqs


async def run_contract(server: ServerProcess) -> tuple[dict[str, list[Received]], list[int]]:
    longpolls = [Received(f"longpoll-{i}") for i in range(SUBSCRIBERS)]
    websockets = [Received(f"websocket-{i}") for i in range(SUBSCRIBERS)]
    sses = [Received(f"sse-{i}") for i in range(SUBSCRIBERS)]
    resumers = {t: Received(f"{t}-resume") for t in ("longpoll", "websocket", "sse")}
    tasks = [asyncio.create_task(longpoll_subscriber(server.url, got)) for got in longpolls]
    tasks += [asyncio.create_task(websocket_subscriber(server.ws_url, got)) for got in websockets]
    tasks += [asyncio.create_task(sse_subscriber(server.url, got)) for got in sses]
    tasks.append(asyncio.create_task(longpoll_subscriber(server.url, resumers["longpoll"], RESUME_AT)))
    tasks.append(asyncio.create_task(websocket_subscriber(server.ws_url, resumers["websocket"], RESUME_AT)))
    tasks.append(asyncio.create_task(sse_subscriber(server.url, resumers["sse"], RESUME_AT)))
    published = await publisher(server.ws_url)
    await asyncio.gather(*tasks)
    return {
        "longpoll": longpolls,
        "websocket": websockets,
        "sse": sses,
        "resume": list(resumers.values()),
    }, published


PATHS = [(runtime, fast) for runtime in RUNTIMES for fast in ("off", "on")]
"""Every runtime, with the Flask routes and with the fast path (server/fastpath.py)."""


@pytest.fixture(scope="module", params=PATHS, ids=[f"{r}-fast-{f}" for r, f in PATHS])
def outcome(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, list[Received]], list[int]]]:
    runtime, fast = request.param
    # gthread: 63 streams held at once (and the publisher's WebSocket) need more than 54 slots (60 threads).
    with run_server(runtime, "--threads", "100", "--fast-path", fast) as server:
        yield asyncio.run(asyncio.wait_for(run_contract(server), PATIENCE))


def test_publishes_get_contiguous_seqs(outcome: tuple[dict[str, list[Received]], list[int]]) -> None:
    _, published = outcome
    assert published == list(range(1, EVENTS + 1))


@pytest.mark.parametrize("transport", ["longpoll", "websocket", "sse"])
def test_every_subscriber_gets_every_event_once_in_order(
    outcome: tuple[dict[str, list[Received]], list[int]], transport: str
) -> None:
    received, _ = outcome
    subscribers = received[transport]
    assert len(subscribers) == SUBSCRIBERS
    for got in subscribers:
        assert got.accounting() == {"missing": 0, "duplicate": 0, "out_of_order": 0}, got.name
        assert got.seqs == list(range(1, EVENTS + 1)), got.name
        assert got.notices == [], got.name


def test_all_transports_deliver_byte_identical_events(outcome: tuple[dict[str, list[Received]], list[int]]) -> None:
    received, _ = outcome
    everyone = [got for subscribers in received.values() for got in subscribers]
    for seq in range(1, EVENTS + 1):
        texts = {got.texts[seq] for got in everyone}
        assert len(texts) == 1, (seq, texts)
    sample = json.loads(everyone[0].texts[7])
    assert (sample["channel"], sample["seq"], sample["data"]) == (CHANNEL, 7, {"i": 6, "s": "\u00e9 \u2603"})


def test_a_subscriber_that_reconnects_with_its_cursor_gets_every_event_once(
    outcome: tuple[dict[str, list[Received]], list[int]],
) -> None:
    received, _ = outcome
    for got in received["resume"]:
        assert got.connections == 2, got.name
        assert got.accounting() == {"missing": 0, "duplicate": 0, "out_of_order": 0}, got.name
        assert got.seqs == list(range(1, EVENTS + 1)), got.name
        assert got.notices == [], got.name
