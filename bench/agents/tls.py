"""TLS for the fleet's subscribers, done in memory so the bytes on the wire can be counted.

Agent layer of the benchmark. asyncio's own TLS (``create_connection(ssl=...)``) hides the socket's bytes:
a subscriber's protocol only sees the decrypted stream. Here the TCP connection stays a plain one and
:class:`MeteredTLS`, its protocol, runs an :class:`ssl.SSLObject` over two :class:`ssl.MemoryBIO`: every
ciphertext byte read from or written to the socket is counted in a :class:`TLSMeter` (the TCP payload, as
:class:`bench.agents.meter.WireMeter` counts it without TLS), and the application protocol (the SSE or
WebSocket connection, asyncio's stream reader for the HTTP/1.1 poller, the HTTP/2 connection) is given the
decrypted bytes through a small :class:`asyncio.Transport`, once the handshake is done. The application's
own meter then counts what it writes and reads in the clear (HTTP/1.1 bytes, or HTTP/2 frame bytes).

The context trusts one certificate only: the run's throwaway one (:func:`client_context`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["MeteredTLS", "TLSMeter", "client_context", "open_tls"]

READ_CHUNK = 1 << 16
"""Most decrypted bytes taken from the TLS object per read."""


@dataclass(slots=True)
class TLSMeter:
    """TLS bytes on the wire (the TCP payload, both directions), one per fleet process, shared by its connections."""

    up: int = 0
    """Ciphertext bytes written: the handshake, the records carrying requests, alerts."""
    down: int = 0
    """Ciphertext bytes read."""
    handshake_up: int = 0
    """Of ``up``: bytes written until the handshake completed (ClientHello, Finished, ...)."""
    handshake_down: int = 0
    """Of ``down``: bytes read until the handshake completed (ServerHello, certificate, ...)."""
    handshakes: int = 0
    """TLS handshakes completed."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def client_context(cert_path: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context trusting only the certificate at ``cert_path`` (the run's own), offering ``alpn``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert_path)  # with a cafile: only it
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class _AppTransport(asyncio.Transport):
    """What the application protocol writes to: plaintext in, TLS records out through :class:`MeteredTLS`."""

    def __init__(self, tls: MeteredTLS) -> None:
        super().__init__()
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.send(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self._tls.close()

    def abort(self) -> None:
        self._tls.abort()

    def is_closing(self) -> bool:
        raw = self._tls.raw
        return raw is None or raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._tls.sslobj
        if name == "alpn_protocol":
            return self._tls.sslobj.selected_alpn_protocol()
        raw = self._tls.raw
        return raw.get_extra_info(name, default) if raw is not None else default

    def pause_reading(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.pause_reading()

    def resume_reading(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.resume_reading()

    def is_reading(self) -> bool:
        return self._tls.raw is not None and self._tls.raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._tls.raw.get_write_buffer_size() if self._tls.raw is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._tls.raw is not None:
            self._tls.raw.set_write_buffer_limits(high, low)


class MeteredTLS(asyncio.Protocol):
    """The plain TCP connection's protocol: TLS in memory, ciphertext counted, plaintext to ``app``.

    ``app.connection_made`` is called once the handshake is done (so a protocol that writes its request there
    writes it encrypted); a handshake that fails ends the connection and sets :attr:`handshake` with the error,
    and ``app.connection_lost`` is called whether or not the handshake completed.
    """

    def __init__(
        self, app: asyncio.Protocol, context: ssl.SSLContext, server_hostname: str, meter: TLSMeter | None
    ) -> None:
        self.app = app
        self.meter = meter
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self._in, self._out, server_side=False, server_hostname=server_hostname)
        self.raw: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the handshake completed (or with the reason it failed)."""
        self._done = False
        self._app_transport = _AppTransport(self)

    # -- asyncio.Protocol (the TCP side) -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._handshake()

    def data_received(self, data: bytes) -> None:
        if self.meter is not None:
            self.meter.down += len(data)
            if not self._done:
                self.meter.handshake_down += len(data)
        self._in.write(data)
        if not self._done and not self._handshake():
            return
        chunks: list[bytes] = []
        closed = False
        while True:
            try:
                chunk = self.sslobj.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                closed = True
                break
            except ssl.SSLError as exc:
                self._fail(exc)
                return
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
        self._flush()  # a read can produce records to send (a key update, a session ticket's answer)
        if chunks:
            self.app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if closed and self.raw is not None:
            self.raw.close()

    def eof_received(self) -> bool | None:
        return None  # close: TLS has its own end of stream

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("connection closed during the TLS handshake"))
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()

    # -- TLS -------------------------------------------------------------------------------------------

    def _handshake(self) -> bool:
        """Advance the handshake; ``True`` when it is complete (the application has been told)."""
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush(handshake=True)
            return False
        except (ssl.SSLError, OSError) as exc:
            self._flush(handshake=True)
            self._fail(exc)
            return False
        self._flush(handshake=True)
        self._done = True
        if self.meter is not None:
            self.meter.handshakes += 1
        self.handshake.set_result(None)
        self.app.connection_made(self._app_transport)
        return True

    def _flush(self, handshake: bool = False) -> None:
        data = self._out.read()
        if data and self.raw is not None and not self.raw.is_closing():
            if self.meter is not None:
                self.meter.up += len(data)
                if handshake:
                    self.meter.handshake_up += len(data)
            self.raw.write(data)

    def _fail(self, exc: BaseException) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        if self.raw is not None:
            self.raw.abort()

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` and write the records."""
        if self.raw is None or self.raw.is_closing():
            return
        self.sslobj.write(data)
        self._flush()

    def close(self) -> None:
        """Send close_notify (best effort), then close the TCP connection."""
        if self.raw is None or self.raw.is_closing():
            return
        if self._done:
            with contextlib.suppress(ssl.SSLError):
                self.sslobj.unwrap()
            self._flush()
        self.raw.close()

    def abort(self) -> None:
        if self.raw is not None:
            self.raw.abort()


async def open_tls(
    app_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    context: ssl.SSLContext,
    meter: TLSMeter | None = None,
    server_hostname: str = "localhost",
) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """Connect to ``host:port``, complete the TLS handshake; returns the application's transport and protocol.

    ``server_hostname`` is the name checked against the certificate (the run's certificate names ``localhost``
    and ``127.0.0.1``). A failed handshake raises its :class:`ssl.SSLError` (an :class:`OSError`).
    """
    loop = asyncio.get_running_loop()
    app = app_factory()
    tls = MeteredTLS(app, context, server_hostname, meter)
    await loop.create_connection(lambda: tls, host, port)
    try:
        await tls.handshake
    except BaseException:
        tls.abort()
        raise
    return tls._app_transport, app
