"""bench.agents.http: the benchmark's minimal HTTP/1.1 response reader, and the fleet's BarePoller."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bench.agents.http import (
    BROWSER_HEADERS_FILE,
    Answer,
    BarePoller,
    StampedReader,
    browser_headers,
    read_response,
)
from clients import PollAnswer
from tests.support import UNIT


def read(data: bytes) -> tuple[int, bytes, bool]:
    async def main() -> tuple[int, bytes, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_response(reader)

    return asyncio.run(main())


def test_keep_alive_response_with_body_and_the_next_one_left_in_place() -> None:
    async def main() -> list[tuple[int, bytes, bool]]:
        reader = asyncio.StreamReader()
        reader.feed_data(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 201 CREATED\r\ncontent-length: 1\r\n\r\n7"
        )
        reader.feed_eof()
        return [await read_response(reader), await read_response(reader)]

    assert asyncio.run(main()) == [(200, b"{}", False), (201, b"7", False)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye", (503, b"bye", True)),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", (200, b"", True)),
        (b"HTTP/1.1 204 No Content\r\n\r\n", (204, b"", False)),
    ],
)
def test_status_body_and_close(raw: bytes, expected: tuple[int, bytes, bool]) -> None:
    assert read(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_what_the_lab_server_never_sends_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        read(raw)


def test_a_truncated_body_raises() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")


# --- BarePoller: clients' Poller contract (docs/clients.md, "The poller seam") over one bare connection ---


async def serve_once(answers: list[bytes | None]) -> tuple[asyncio.Server, int, list[bytes]]:
    """A server that reads a request head and writes the next answer, then closes; ``None``: never answers.

    Returns the server, its port and the request heads it read.
    """
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for answer in answers:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                if answer is None:
                    await asyncio.Event().wait()
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], heads


def test_keep_alive_answers_reuse_the_connection_and_any_status_is_returned() -> None:
    async def main() -> tuple[list[PollAnswer], list[bytes]]:
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        refused = b"HTTP/1.1 400 BAD REQUEST\r\nContent-Length: 3\r\n\r\nbad"
        server, port, heads = await serve_once([ok, refused])
        poller = BarePoller()
        try:
            url = f"http://127.0.0.1:{port}/channels/c/poll?after=1&timeout=0"
            return [await poller.get(url, 5 * UNIT), await poller.get(url, 5 * UNIT)], heads
        finally:
            await poller.aclose()
            server.close()

    answers, heads = asyncio.run(main())
    assert answers == [PollAnswer(200, b"{}", True), PollAnswer(400, b"bad", False)]
    assert heads[0].startswith(b"GET /channels/c/poll?after=1&timeout=0 HTTP/1.1\r\nHost: 127.0.0.1:")


def test_a_request_sends_its_headers_and_body_and_returns_the_answer_headers() -> None:
    """What peers' adapters need: Nchan's cursor headers both ways, Engine.IO's POST with a body."""

    async def main() -> tuple[Answer, bool, list[bytes]]:
        ok = (
            b"HTTP/1.1 200 OK\r\nEtag: 0\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\nok"
        )
        server, port, heads = await serve_once([ok])
        poller = BarePoller()
        try:
            headers = {"If-None-Match": "0"}
            answer, new, _, _ = await poller.request("POST", f"http://127.0.0.1:{port}/x", 5 * UNIT, headers, b"40")
            return answer, new, heads
        finally:
            await poller.aclose()
            server.close()

    answer, new, heads = asyncio.run(main())
    assert (answer.status, answer.body, new) == (200, b"ok", True)
    assert answer.headers[b"etag"] == b"0"
    assert answer.headers[b"last-modified"] == b"Tue, 01 Dec 2026 10:00:00 GMT"
    assert heads[0].startswith(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert heads[0].endswith(b"\r\nIf-None-Match: 0\r\nContent-Length: 2\r\n\r\n")


def test_a_closed_connection_is_a_connection_error_and_the_next_get_reconnects() -> None:
    async def main() -> tuple[type[BaseException], PollAnswer]:
        server, port, _ = await serve_once([b"HTTP/1.1 200 OK\r\nContent-Le"])  # cut in the middle
        poller = BarePoller()
        url = f"http://127.0.0.1:{port}/p"
        try:
            with pytest.raises(ConnectionError) as caught:
                await poller.get(url, 5 * UNIT)
            server.close()
            server, port, _ = await serve_once([b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"])
            return caught.type, await poller.get(f"http://127.0.0.1:{port}/p", 5 * UNIT)
        finally:
            await poller.aclose()
            server.close()

    raised, answer = asyncio.run(main())
    assert raised is ConnectionResetError
    assert answer == PollAnswer(200, b"x", True)


def test_a_late_answer_is_a_timeout_error() -> None:
    async def main() -> None:
        server, port, _ = await serve_once([None])
        poller = BarePoller()
        try:
            await poller.get(f"http://127.0.0.1:{port}/p", 0.05)
        finally:
            await poller.aclose()
            server.close()

    with pytest.raises(TimeoutError):
        asyncio.run(main())


def test_an_answer_carries_the_time_its_last_byte_was_fed() -> None:
    """The stamp is taken where the bytes are read (``feed_data``), not when the awaiting task resumes."""

    async def main() -> tuple[int, int, int]:
        reader = StampedReader()
        reader.feed_data(b"HTTP/1.1 200 OK\r\nContent-Le")
        reader.feed_data(b"ngth: 2\r\n\r\n{}")
        fed = reader.fed_mono_ns
        time.sleep(0.02)  # the loop is busy elsewhere before the reading task runs
        await read_response(reader)
        return fed, reader.fed_mono_ns, time.monotonic_ns()

    fed, stamp, read = asyncio.run(main())
    assert stamp == fed
    assert read - stamp >= 20_000_000


def test_bare_poller_answers_carry_the_read_time() -> None:
    async def main() -> tuple[int, PollAnswer, int]:
        server, port, _ = await serve_once([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"])
        poller = BarePoller()
        try:
            before = time.monotonic_ns()
            got = await poller.get(f"http://127.0.0.1:{port}/p", 5 * UNIT)
            return before, got, time.monotonic_ns()
        finally:
            await poller.aclose()
            server.close()

    before, got, after = asyncio.run(main())
    assert before < got.recv_mono_ns <= after
    assert abs(got.recv_ns - time.time_ns()) < 60 * 10**9  # a wall-clock time, in ns


# --- browser-like request headers (request_headers = "browser") ---------------------------------


def test_browser_headers_are_chromiums_recorded_set_with_this_origin() -> None:
    data = json.loads(BROWSER_HEADERS_FILE.read_text(encoding="utf-8"))
    assert data["chromium"] and "Playwright" in data["about"]
    fetch = browser_headers("fetch", "http://127.0.0.1:8123")
    names = [name for name, _ in fetch]
    assert names == [name for name, _ in data["fetch"]]  # Chromium's order, kept
    assert "Host" not in names and len(names) == len(set(names))
    assert ("Referer", "http://127.0.0.1:8123/") in fetch
    assert {"User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "sec-ch-ua", "Sec-Fetch-Mode"} <= set(names)
    events = dict(browser_headers("eventsource", "https://example.test"))
    assert events["Accept"] == "text/event-stream" and events["Referer"] == "https://example.test/"
    ws = dict(browser_headers("websocket", "ws://127.0.0.1:9/"))
    assert ws["Origin"] == "http://127.0.0.1:9"
    assert not {"Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Extensions"} & set(ws)
    # a browser's request head is several times the bare one (Host alone)
    assert sum(len(f"{n}: {v}\r\n") for n, v in fetch) > 400


def test_bare_poller_sends_the_headers_it_was_given_after_host_on_every_get() -> None:
    async def main() -> tuple[list[bytes], int]:
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        server, port, heads = await serve_once([ok, ok])
        headers = browser_headers("fetch", f"http://127.0.0.1:{port}")
        poller = BarePoller(headers=headers)
        try:
            url = f"http://127.0.0.1:{port}/channels/c/poll?after=0&timeout=0"
            await poller.get(url, 5 * UNIT)
            await poller.get(url, 5 * UNIT)
            return heads, port
        finally:
            await poller.aclose()
            server.close()

    heads, port = asyncio.run(main())
    expected = "".join(f"{n}: {v}\r\n" for n, v in browser_headers("fetch", f"http://127.0.0.1:{port}"))
    for head in heads:
        assert head == (
            f"GET /channels/c/poll?after=0&timeout=0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{expected}\r\n"
        ).encode("latin-1")
