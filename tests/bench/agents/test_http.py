"""bench.agents.http: the benchmark's minimal HTTP/1.1 response reader."""

from __future__ import annotations

import asyncio

import pytest

from bench.agents.http import read_response


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
