"""bench.agents.nchan: the adapters' cursor and message logic (pure), and the long poll against a scripted server.

The scripted server (asyncio, written here) answers each request with a chosen response and records the
request, so the cursor headers can be checked byte for byte without nginx: Nchan's own behaviour is tested
against the real peer in tests/peers/test_nchan.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bench.agents.meter import WireMeter
from bench.agents.nchan import (
    NchanCursor,
    NchanIntervalPollSubscriber,
    NchanLongPollSubscriber,
    NchanWebSocketSubscriber,
    nchan_sse_event,
    next_slot,
    parse_meta_message,
)
from bench.contract.payload import encode_payload
from clients import Received, ServerUnavailable, SubscriberError
from tests.support import UNIT

DATE = "Tue, 01 Dec 2026 23:45:25 GMT"


def payload(number: int) -> bytes:
    return encode_payload(number - 1, 123, False, 32, number=number)


# --- the cursor ---------------------------------------------------------------------------------------------


def test_the_cursor_starts_empty_and_echoes_the_last_message_verbatim() -> None:
    cursor = NchanCursor()
    assert cursor.headers() == {}
    cursor.advance(200, {b"last-modified": b"tUE, 01 dEC 2026 23:45:25 gmt", b"etag": b'W/"3"'})
    assert cursor.headers() == {"If-Modified-Since": "tUE, 01 dEC 2026 23:45:25 gmt", "If-None-Match": 'W/"3"'}


@pytest.mark.parametrize("status", [304, 408, 404, 500])
def test_only_a_message_moves_the_cursor(status: int) -> None:
    cursor = NchanCursor()
    cursor.advance(200, {b"last-modified": DATE.encode(), b"etag": b"1"})
    cursor.advance(status, {b"last-modified": b"Thu, 01 Jan 1970 00:00:00 GMT", b"etag": b"9"})
    assert cursor.headers() == {"If-Modified-Since": DATE, "If-None-Match": "1"}


def test_a_message_without_a_cursor_is_refused() -> None:
    with pytest.raises(SubscriberError):
        NchanCursor().advance(200, {b"etag": b"1"})


# --- ws+meta.nchan, EventSource, the interval's slots -----------------------------------------------------


def test_a_meta_message_gives_its_id_and_its_payload_untouched() -> None:
    assert parse_meta_message('id: 1796168725:3\ncontent-type: application/json\n\n[1,"a\\n\\nb"]') == (
        "1796168725:3",
        '[1,"a\\n\\nb"]',
    )
    assert parse_meta_message("id: 5:0\n\ntext\n\nwith blank lines") == ("5:0", "text\n\nwith blank lines")
    assert parse_meta_message("content-type: text/plain\n\nx") == (None, "x")
    with pytest.raises(SubscriberError):
        parse_meta_message("[1,2,3]")  # not ws+meta.nchan: the subprotocol was not agreed


def test_the_websocket_adapter_decodes_and_resumes_from_the_last_id() -> None:
    sub = NchanWebSocketSubscriber("http://127.0.0.1:9", "a.b-c")
    assert sub._target() == "/channels/a.b-c/ws"
    text = "id: 1796168725:12\ncontent-type: application/json\n\n" + payload(7).decode()
    obj = sub.decode("a.b-c", text)
    assert obj["seq"] == 7 and obj["ts"] is None and obj["channel"] == "a.b-c" and obj["data"][3] == 7
    assert sub.last_id == "1796168725:12"
    assert sub._target() == "/channels/a.b-c/ws?last_event_id=1796168725%3A12"


def test_eventsource_events_are_payloads_and_pings_are_skipped() -> None:
    obj = nchan_sse_event("c", "message", payload(3).decode())
    assert obj is not None and obj["seq"] == 3 and obj["ts"] is None
    assert nchan_sse_event("c", "ping", "") is None


def test_interval_slots_never_bunch() -> None:
    assert next_slot(10.0, 1.0, 10.5) == 11.0
    assert next_slot(10.0, 1.0, 11.0) == 11.0
    assert next_slot(10.0, 1.0, 13.4) == 14.0  # late: the missed slots are skipped
    with pytest.raises(ValueError):
        NchanIntervalPollSubscriber("http://127.0.0.1:9", "c", interval=0)
    with pytest.raises(ValueError):
        NchanIntervalPollSubscriber("http://127.0.0.1:9", "c", interval=1.0, phase=1.0)


# --- the long-poll adapter against a scripted server -----------------------------------------------------


def response(status: str, body: bytes = b"", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def message(number: int, etag: int) -> bytes:
    return response("200 OK", payload(number), f"Last-Modified: {DATE}\r\nEtag: {etag}\r\n")


@contextlib.asynccontextmanager
async def scripted(answers: list[bytes], requests: list[bytes]) -> AsyncIterator[str]:
    """A server that answers the n-th request on any connection with ``answers[n]``, then holds the rest."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                requests.append(await reader.readuntil(b"\r\n\r\n"))
                n = len(requests) - 1
                if n >= len(answers):
                    await asyncio.sleep(3600)
                writer.write(answers[n])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


def run_until(sub: NchanLongPollSubscriber, done: object, answers: list[bytes], requests: list[bytes]) -> None:
    async def main() -> None:
        async with scripted(answers, requests) as url:
            sub._url = url + sub._path
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            deadline = asyncio.get_running_loop().time() + 10 * UNIT
            while not done():  # type: ignore[operator]
                if task.done():
                    task.result()
                assert asyncio.get_running_loop().time() < deadline, "not reached"
                await asyncio.sleep(0.005)
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)

    asyncio.run(main())


def test_the_long_poll_sends_the_cursor_back_and_counts_every_answer() -> None:
    got: list[Received] = []
    meter = WireMeter()
    sub = NchanLongPollSubscriber("http://unused", "ch", meter=meter, on_event=got.append)
    answers = [message(1, 0), response("408 Request Timeout"), message(2, 1), message(3, 2)]
    requests: list[bytes] = []
    run_until(sub, lambda: len(requests) == 5, answers, requests)
    assert [r.seq for r in got] == [1, 2, 3]
    assert b"If-Modified-Since" not in requests[0] and b"If-None-Match" not in requests[0]
    for request, etag in zip(requests[1:], [0, 0, 1, 2], strict=True):  # a 408 leaves the cursor where it was
        assert request.startswith(b"GET /channels/ch/poll HTTP/1.1\r\n")
        assert f"If-Modified-Since: {DATE}\r\nIf-None-Match: {etag}\r\n".encode() in request
    stats = sub.stats
    assert (stats.requests, stats.empty_responses, stats.connections, stats.reconnects) == (4, 1, 1, 0)
    assert stats.payload_bytes == 3 * len(payload(1))
    assert meter.up == sum(len(r) for r in requests)
    assert meter.down == sum(len(a) for a in answers)
    assert sub.tracker.finish(3).as_dict()["missing"] == 0


def test_a_5xx_is_retried_and_a_4xx_is_not() -> None:
    sub = NchanLongPollSubscriber("http://unused", "ch", backoff_min=0.01)
    requests: list[bytes] = []
    answers = [response("503 Service Unavailable", b"busy"), message(1, 0)]
    got: list[int] = []
    sub.on_event = lambda r: got.append(r.seq)
    run_until(sub, lambda: got == [1], answers, requests)
    assert isinstance(sub.last_error, ServerUnavailable) and sub.stats.reconnects == 1
    refused = NchanLongPollSubscriber("http://unused", "ch")
    with pytest.raises(SubscriberError, match="403"):
        run_until(refused, lambda: False, [response("403 Forbidden")], [])


def test_a_drop_aborts_the_held_poll_and_the_next_one_resumes() -> None:
    got: list[Received] = []
    sub = NchanLongPollSubscriber("http://unused", "ch", on_event=got.append, backoff_min=0.01)
    requests: list[bytes] = []
    dropped: list[bool] = []

    def done() -> bool:
        if len(requests) == 2 and not dropped:  # the second poll is held: drop it
            dropped.append(sub.drop())
        return len(got) == 2

    # The held second request gets no answer; after the drop the third (on a new connection) gets message 2.
    answers = [message(1, 0), b"", message(2, 1)]
    run_until(sub, done, answers, requests)
    assert dropped == [True]
    assert [r.seq for r in got] == [1, 2]
    assert b"If-None-Match: 0\r\n" in requests[2]
    assert (sub.stats.connections, sub.stats.reconnects) == (2, 1)
    assert sub.drop() is False  # after run() the connection is closed: nothing to drop
