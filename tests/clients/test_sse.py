"""Tests of clients.sse: what only the SSE subscriber does (the shared contract is in test_subscriber_contract.py).

Scripted answers through httpx's ``MockTransport`` pin the requests it makes
(``Last-Event-ID`` from the tracker's cursor on every stream) and how it
treats what comes back; a real server pins the resume after the server ends
its streams (a restart), and the notices.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from clients import Received, SSESubscriber, SubscriberError
from tests.clients.conftest import publish_many, run_until
from tests.support import UNIT, ServerProcess, run_server

SSE = {"Content-Type": "text/event-stream; charset=utf-8"}


def event(seq: int, data: object = None) -> bytes:
    wire = json.dumps({"channel": "c", "seq": seq, "ts": 1, "data": data}, separators=(",", ":"))
    return b"id: %d\ndata: %s\n\n" % (seq, wire.encode())


class Script:
    """A MockTransport handler that answers each request with the next scripted response, and records them."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.responses:
            raise httpx.ConnectError("script played out", request=request)
        return self.responses.pop(0)

    def last_event_ids(self) -> list[str | None]:
        return [r.headers.get("Last-Event-ID") for r in self.requests]


def subscriber(script: Script, got: list[Received], **kwargs: object) -> SSESubscriber:
    return SSESubscriber(
        "http://lab",
        "c",
        transport=httpx.MockTransport(script),
        on_event=got.append,
        backoff_min=0.001,
        backoff_max=0.002,
        **kwargs,  # type: ignore[arg-type]
    )


def test_each_stream_resumes_from_the_cursor_with_last_event_id() -> None:
    script = Script(
        httpx.Response(200, headers=SSE, content=b"retry: 1000\n\n" + event(1) + event(2)),
        httpx.Response(503, json={"error": "shutting_down", "detail": "stopping"}),
        httpx.Response(200, headers=SSE, content=event(2) + event(3)),
    )
    got: list[Received] = []
    sub = subscriber(script, got, after=0)
    asyncio.run(run_until(sub, lambda: len(script.requests) >= 4))
    assert script.last_event_ids()[:4] == ["0", "2", "2", "3"]
    assert all(r.url.path == "/channels/c/sse" and r.headers["Accept"] == "text/event-stream" for r in script.requests)
    assert [r.seq for r in got] == [1, 2, 3]
    assert sub.tracker.counters.duplicate == 1  # seq 2 came twice: counted, not delivered twice
    assert sub.retry_ms is None  # the last stream sent no retry field
    # Three answers (two streams and the 503); the fourth request found nothing listening.
    assert (sub.stats.connections, sub.stats.requests, sub.stats.frames) == (2, 3, 4)


def test_notices_go_through_the_shared_path_and_other_event_names_are_ignored() -> None:
    body = (
        b'event: reset\nid: 0\ndata: {"type":"reset","after":9,"last_seq":30}\n\n'
        b'event: gap\nid: 20\ndata: {"type":"gap","first":1,"last":20}\n\n'
        b"event: something-else\ndata: not json\n\n: a comment\n\n" + event(21) + event(22)
    )
    got: list[Received] = []
    sub = subscriber(Script(httpx.Response(200, headers=SSE, content=body)), got, after=9)
    asyncio.run(run_until(sub, lambda: sub.tracker.cursor >= 22))
    c = sub.tracker.finish(22)
    assert (c.resets, c.gaps, c.gap_lost, c.delivered) == (1, 1, 20, 2)
    assert [r.seq for r in got] == [21, 22]
    assert sub.stats.frames == 4


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(400, json={"error": "bad_cursor", "detail": "no"}), "400 bad_cursor"),
        (httpx.Response(401, json={"error": "unauthorized", "detail": "token"}), "401 unauthorized"),
        (httpx.Response(200, headers={"Content-Type": "application/json"}, content=b"{}"), "not text/event-stream"),
    ],
)
def test_a_refusal_is_fatal(response: httpx.Response, match: str) -> None:
    script = Script(response)
    sub = subscriber(script, [])
    with pytest.raises(SubscriberError, match=match):
        asyncio.run(asyncio.wait_for(sub.run(), 10 * UNIT))
    assert len(script.requests) == 1


def test_a_real_server_restart_ends_the_stream_and_the_subscriber_resumes(channel: str) -> None:
    """The server ends every stream when it stops; the next one's memory bus is behind the cursor: a reset."""
    got: list[Received] = []

    async def main(first: ServerProcess) -> SSESubscriber:
        sub = SSESubscriber(first.url, channel, on_event=got.append, backoff_min=0.05, backoff_max=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        try:
            await publish_many(first.url, channel, 3)
            while sub.tracker.cursor < 3:
                assert not task.done()
                await asyncio.sleep(0.01)
            await asyncio.to_thread(first.stop)
            with run_server("gthread", port=first.port) as second:
                await publish_many(second.url, channel, 2)
                deadline = asyncio.get_running_loop().time() + 20 * UNIT
                while not (sub.tracker.counters.resets == 1 and sub.tracker.cursor >= 2):
                    assert asyncio.get_running_loop().time() < deadline, sub.tracker.counters
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)
        return sub

    with run_server("gthread") as first:
        sub = asyncio.run(main(first))
    assert [r.seq for r in got] == [1, 2, 3, 1, 2]
    assert isinstance(sub.last_error, OSError)  # the ended stream, or the refused connection while it was down
    assert sub.stats.reconnects >= 1
    assert sub.tracker.counters.resets == 1
