"""Helpers shared by the link emulator's tests: a bounded asyncio run and throwaway upstream servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tests.support import UNIT

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60 * UNIT)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[tuple[str, int]]:
    """An asyncio TCP server on a free port running ``handler`` per connection; its handler tasks are awaited."""
    tasks: set[asyncio.Task[None]] = set()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def serve() -> None:
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        tasks.add(asyncio.get_running_loop().create_task(serve()))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield ("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.gather(*tasks, return_exceptions=True)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), 20 * UNIT)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
