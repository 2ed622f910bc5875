"""Publishers: ``POST /channels/<channel>/events`` over httpx, sync and asyncio.

Thin I/O frontends over two pure helpers (:func:`encode_payload`,
:func:`parse_ack`), so both flavours send the same bytes and fail the same
way: a refused publish raises :class:`PublishError` carrying the server's
JSON error (docs/protocol.md, "Errors").
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

__all__ = ["Ack", "AsyncPublisher", "PublishError", "Publisher", "encode_payload", "parse_ack"]

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a publish answer."""


class Ack(NamedTuple):
    """The server's acknowledgement of a publish."""

    seq: int
    """The ``seq`` the bus assigned."""
    ts: int
    """Server publish time, ns since the epoch."""


class PublishError(Exception):
    """The server refused a publish (``status``, and its JSON ``error`` and ``detail``)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"publish refused: {status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


def encode_payload(data: Any) -> bytes:
    """``data`` as compact JSON bytes (``NaN``/``Infinity`` refused: they are not JSON)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def parse_ack(response: httpx.Response) -> Ack:
    """The :class:`Ack` of a ``201``; :class:`PublishError` for anything else."""
    if response.status_code == 201:
        body = response.json()
        return Ack(body["seq"], body["ts"])
    try:
        err = response.json()
        error, detail = str(err.get("error")), str(err.get("detail"))
    except ValueError:
        error, detail = "http_error", response.text[:200]
    raise PublishError(response.status_code, error, detail)


def _events_url(base_url: str, channel: str) -> str:
    return f"{base_url.rstrip('/')}/channels/{quote(channel, safe='')}/events"


class Publisher:
    """Synchronous publisher (httpx.Client, keep-alive). Use as a context manager or :meth:`close`."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None) -> None:
        self.base_url = base_url
        self._own = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    def publish(self, channel: str, data: Any) -> Ack:
        """Publish ``data`` (any JSON value) to ``channel``."""
        return parse_ack(self._client.post(_events_url(self.base_url, channel), content=encode_payload(data)))

    def close(self) -> None:
        """Close the HTTP client if this publisher made it."""
        if self._own:
            self._client.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncPublisher:
    """Asyncio publisher (httpx.AsyncClient, keep-alive). Use ``async with`` or :meth:`aclose`."""

    def __init__(
        self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None
    ) -> None:
        self.base_url = base_url
        self._own = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def publish(self, channel: str, data: Any) -> Ack:
        """Publish ``data`` (any JSON value) to ``channel``."""
        response = await self._client.post(_events_url(self.base_url, channel), content=encode_payload(data))
        return parse_ack(response)

    async def aclose(self) -> None:
        """Close the HTTP client if this publisher made it."""
        if self._own:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
