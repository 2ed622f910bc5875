"""The WebSocket subscriber: an asyncio I/O frontend over :mod:`clients.subscriber`.

It opens ``GET /channels/<c>/ws?after=<cursor>`` with simple-websocket's
:class:`~simple_websocket.AioClient` (wsproto underneath) and reads one JSON
object per text frame (docs/protocol.md, "WebSocket"): an object without a
``type`` is an event; ``gap``, ``reset``, ``ack`` and ``pong`` are control
messages. The same connection can publish (:meth:`WebSocketSubscriber.publish`).

Two things simple-websocket's client does not do are added by subclassing it
(:class:`LabAioClient`):

- ``permessage-deflate``: its handshake never offers an extension; with
  ``compression=True`` the handshake offers wsproto's
  :class:`~wsproto.extensions.PerMessageDeflate` (the lab server accepts it
  only when started with ``--ws-compression on``).
- frames that arrive in the same read as the ``101`` answer (the server
  sends its catch-up events right after the handshake) are processed at
  once, not left in wsproto's buffer until the next read; and a handshake
  answered with an error status or a closed connection raises instead of
  looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from simple_websocket import AioClient, ConnectionClosed
from simple_websocket import ConnectionError as WsConnectionError
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import PerMessageDeflate

from .subscriber import Subscriber, SubscriberError, now_ns

__all__ = ["HandshakeRejected", "LabAioClient", "NotConnected", "WebSocketSubscriber", "ws_url"]

RECEIVE_BYTES = 65536
"""Bytes asked of the socket per read."""


def ws_url(base_url: str) -> str:
    """``http(s)://host:port`` to ``ws(s)://host:port`` (``ws(s)`` is kept)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an http(s) or ws(s) URL: {base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


class HandshakeRejected(Exception):
    """The server answered the Upgrade with an HTTP error (e.g. ``400 bad_channel``)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"WebSocket handshake refused: {status} {body[:200].decode('utf-8', 'replace')}")
        self.status = status
        self.body = body


class NotConnected(Exception):
    """:meth:`WebSocketSubscriber.publish` was called with no open connection."""


class LabAioClient(AioClient):  # type: ignore[misc]
    """simple-websocket's asyncio client, with an optional deflate offer and a stricter handshake."""

    def __init__(
        self,
        url: str,
        *,
        compression: bool = False,
        receive_bytes: int = RECEIVE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(url, receive_bytes=receive_bytes, ssl_context=ssl_context)
        self.compression = compression
        """Offer permessage-deflate in the handshake."""
        self.negotiated: list[str] = []
        """Names of the extensions the server accepted."""

    async def open(self) -> None:
        """Open the TCP connection and run the handshake (``AioClient.connect`` minus the classmethod)."""
        await self._connect()

    async def handshake(self) -> None:
        extensions = [PerMessageDeflate()] if self.compression else []
        request = Request(host=self.host, target=self.path, extensions=extensions)
        self.wsock.write(self.ws.send(request))
        event = None
        while event is None:
            data = await self.rsock.read(self.receive_bytes)
            if not data:
                raise ConnectionResetError("connection closed during the WebSocket handshake")
            self.ws.receive_data(data)
            event = next(self.ws.events(), None)
        if isinstance(event, RejectConnection):
            raise HandshakeRejected(event.status_code, await self._reject_body(event.has_body))
        if not isinstance(event, AcceptConnection):
            raise ConnectionResetError(f"unexpected handshake event {event!r}")
        self.subprotocol = event.subprotocol
        self.negotiated = [e.name for e in event.extensions]
        self.connected = True
        # Frames that came with the 101 answer are in wsproto's buffer already.
        self.connected = await self._handle_events()

    async def _reject_body(self, has_body: bool) -> bytes:
        body = b""
        while has_body:
            for event in self.ws.events():
                if isinstance(event, RejectData):
                    body += event.data
                    has_body = not event.body_finished
            if has_body:
                data = await self.rsock.read(self.receive_bytes)
                if not data:
                    break
                self.ws.receive_data(data)
        return body

    async def _task(self) -> None:
        try:
            await super()._task()
        finally:  # a reader that dies of anything must still wake receive()
            self.connected = False
            self.event.set()

    async def shutdown(self) -> None:
        """Close politely if still open, stop the reader task, close the socket."""
        if self.connected:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.wsock is not None:
            self.wsock.close()
            with contextlib.suppress(OSError):
                await self.wsock.wait_closed()


class WebSocketSubscriber(Subscriber):
    """Subscribe to ``channel`` of the lab server at ``base_url`` over one WebSocket.

    ``compression=True`` offers permessage-deflate; whether the server took
    it is in :attr:`negotiated`. ``ssl_context`` is for a ``https://`` base URL (``wss://``): the
    certificates to trust, e.g. a proxy's own (docs/deployment.md); ``None`` trusts the system's. Other
    keyword arguments are
    :class:`~clients.subscriber.Subscriber`'s.
    """

    transport = "websocket"
    retry_on = (OSError, ConnectionClosed, WsConnectionError, asyncio.IncompleteReadError)

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        after: int = 0,
        compression: bool = False,
        receive_bytes: int = RECEIVE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(channel, after=after, **kwargs)
        self.ssl_context = ssl_context
        self.url = f"{ws_url(base_url)}/channels/{quote(channel, safe='')}/ws"
        self.compression = compression
        self.receive_bytes = receive_bytes
        self.negotiated: list[str] = []
        """Extensions the server accepted on the latest connection."""
        self.connected = asyncio.Event()
        """Set while a connection is open (after its handshake)."""
        self._ws: LabAioClient | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._next_id = 0

    async def _session(self) -> None:
        ws = LabAioClient(
            f"{self.url}?after={self.tracker.cursor}",
            compression=self.compression,
            receive_bytes=self.receive_bytes,
            ssl_context=self.ssl_context,
        )
        try:
            try:
                await ws.open()
            except HandshakeRejected as exc:
                if exc.status < 500:
                    raise SubscriberError(str(exc)) from exc
                raise ConnectionResetError(str(exc)) from exc
            self.stats.connections += 1
            self.negotiated = ws.negotiated
            self._ws = ws
            self.connected.set()
            stats = self.stats
            while True:
                try:
                    message = await ws.receive()
                except ConnectionClosed as exc:
                    _check_close(exc)
                    raise
                recv_ns, recv_mono_ns = now_ns()
                if not isinstance(message, str):
                    raise SubscriberError("the server sent a binary frame")
                stats.frames += 1
                stats.payload_bytes += len(message) if message.isascii() else len(message.encode())
                self._on_message(json.loads(message), recv_ns, recv_mono_ns)
        finally:
            self.connected.clear()
            self._ws = None
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(ConnectionClosed())
            await ws.shutdown()

    def _on_control(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "ack":
            future = self._pending.pop(obj.get("id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(obj["seq"])

    async def publish(self, data: Any, channel: str | None = None) -> int:
        """Publish ``data`` on this connection (to ``channel``, default its own); returns the ``seq``.

        Raises :class:`NotConnected` with no open connection, and
        ``ConnectionClosed`` if the connection breaks before the ``ack``
        (the event may or may not have been published then).
        """
        ws = self._ws
        if ws is None or not ws.connected:
            raise NotConnected(f"no open WebSocket to {self.url}")
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"type": "publish", "data": data, "id": ident}
        if channel is not None:
            message["channel"] = channel
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            await ws.send(text)
        except BaseException:
            self._pending.pop(ident, None)
            raise
        return await future


def _check_close(exc: ConnectionClosed) -> None:
    """A close that reconnecting cannot fix (our message broke the rules) becomes a SubscriberError."""
    code = int(exc.reason)
    if code in (1003, 1008, 1009) or 4000 <= code < 5000:
        raise SubscriberError(f"server closed the WebSocket: {code} {exc.message or ''}".rstrip()) from exc
