"""Sans-I/O WebSocket framing for the fleet's client side: a parser of server frames, an encoder of client frames.

Agent layer of the benchmark (:mod:`bench.agents`), and no I/O at all: bytes go in, messages come out
(:class:`FrameParser`), and the frames a client sends are built as bytes (:func:`encode_frame`,
:func:`pong`, :func:`close`). :mod:`bench.agents.websocket` is the asyncio frontend.

It reads what RFC 6455 lets a server send on a connection with **no extension negotiated**: unmasked
frames, text and binary messages (fragmented or not, with 7, 16 or 64-bit lengths), ping, pong and close.
Anything else is refused with :class:`ProtocolError`, carrying the close code to answer with: a masked
frame, a reserved bit set, an unknown opcode, a control frame that is fragmented or longer than 125 bytes,
a length not in its shortest form (as wsproto refuses it), a continuation out of place (1002); text or a
close reason that is not UTF-8 (1007); a message above ``max_size`` (1009, refused at the frame header,
before its payload is buffered). After a close frame the parser reads nothing more, as wsproto's.

Why not wsproto, which the lab uses everywhere else (and still does here for permessage-deflate): at the
fleet's load its parsing cost about 12 µs per message (issue 9), enough to make the clients, not the
server, set the numbers. This parser's fast path is one unfragmented text frame read from the bytes of a
single ``data_received`` call: a few integer operations, one slice, one UTF-8 decode. Measured one-off
(Python 3.11, 2 cores shared with other jobs, load average 3.7 to 4.6; process CPU time, best of 5 per run,
3 runs; 10,000 text frames of 100-byte event payloads, 102 bytes each, fed as one read of 1,020,000 bytes,
then one frame per read)::

    .venv/bin/python -m bench.agents.frames

    per message        FrameParser      wsproto FrameProtocol   wsproto Connection (what simple-websocket uses)
    one read           0.57 - 1.14 µs   7.0 - 12.9 µs           8.6 - 15.5 µs
    one frame a read   0.60 - 1.28 µs   7.7 - 12.8 µs           10.1 - 16.5 µs

about 12 times less. In the fleet the parser is now a small part of a message's cost: fed to
``data_received`` without a network, the whole lean path (parse, ``json.loads``, accounting, two
HdrHistogram records) took 10 to 15 µs per message, of which the two records about 5 µs.

``tests/bench/agents/test_frames.py`` checks it against wsproto over random frame sequences split at random
points (hypothesis): the same messages in the same order, and the same close code for malformed input.
"""

from __future__ import annotations

import codecs
import os
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "MAX_SIZE",
    "Close",
    "Control",
    "FrameParser",
    "Opcode",
    "ProtocolError",
    "close",
    "encode_frame",
    "pong",
]

MAX_SIZE = 16 << 20
"""Default largest message accepted, bytes (the lab's events are at most about ``LAB_MAX_BODY``, 1 MiB)."""

_CLOSE_KNOWN = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})
"""Codes below 3000 a peer may send (RFC 6455 7.4.1, and 1012/1013 as wsproto knows them)."""


class Opcode(IntEnum):
    """RFC 6455 section 5.2 opcodes."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class ProtocolError(ValueError):
    """The server broke RFC 6455 (or the size limit); ``code`` is the close code to answer with."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(f"{message} (close {code})")
        self.code = code
        """1002 protocol error, 1007 invalid UTF-8, 1009 message too big."""
        self.messages: list[Message] = []
        """The messages the failing :meth:`FrameParser.feed` call completed before the violation, in order."""


class Control(NamedTuple):
    """A ping or a pong frame, with its payload (at most 125 bytes)."""

    opcode: Opcode
    payload: bytes


class Close(NamedTuple):
    """A close frame: its code (1005 when it had none) and reason."""

    code: int
    reason: str


Message = str | bytes | Control | Close
"""What :meth:`FrameParser.feed` returns: a text message (``str``), a binary one (``bytes``), or a control frame."""


class FrameParser:
    """Sans-I/O parser of the frames a server sends: ``feed(bytes)`` returns every message they complete.

    Feed it bytes as they are read, split anywhere; it returns, in order, each complete text message
    (``str``), binary message (``bytes``), ping or pong (:class:`Control`) and close (:class:`Close`).
    A fragmented message comes out whole when its last fragment arrives; control frames between its
    fragments come out in their place. Raises :class:`ProtocolError` on the first violation (with the
    messages of the same call that came before it), and again on every later call.
    """

    def __init__(self, max_size: int = MAX_SIZE) -> None:
        self.max_size = max_size
        """Largest message accepted, bytes (a single frame or the sum of a fragmented message's)."""
        self.closed = False
        """A close frame was read; later bytes are ignored."""
        self._buf = bytearray()
        """Bytes of an incomplete frame, kept from one call to the next."""
        self._need = 2
        """Bytes ``_buf`` must hold before parsing it again is worth it."""
        self._opcode: Opcode | None = None
        """Opcode of the fragmented message in progress, if any."""
        self._parts: list[bytes] = []
        """Payloads of the fragmented message in progress (binary), or its decoded text so far."""
        self._text: list[str] = []
        self._size = 0
        """Bytes of the fragmented message in progress."""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Parse ``data`` after what came before; return the messages it completes, in order."""
        if self._error is not None:
            raise self._error
        if self.closed:
            return []
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            buf, self._buf = self._buf, bytearray()
        else:
            buf = data
        out: list[Message] = []
        try:
            pos = self._parse(buf, out)
        except ProtocolError as exc:
            exc.messages = out
            self._error = exc
            self._buf = bytearray()
            raise
        if pos < len(buf):
            self._buf = bytearray(buf[pos:]) if not self.closed else bytearray()
        return out

    def _parse(self, buf: bytes | bytearray, out: list[Message]) -> int:
        """Parse every complete frame of ``buf`` into ``out``; return where the incomplete rest starts."""
        end = len(buf)
        pos = 0
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            if b0 & 0x70:
                raise ProtocolError("reserved bit set, no extension was negotiated")
            if b1 & 0x80:
                raise ProtocolError("masked frame from the server")
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    self._need = 4
                    return pos
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
                if n < 126:
                    raise ProtocolError("a 16-bit length where 7 bits suffice")
            elif n == 127:
                if end - pos < 10:
                    self._need = 10
                    return pos
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
                if n >> 63:
                    raise ProtocolError("a 64-bit length with its most significant bit set")
                if n < 0x10000:
                    raise ProtocolError("a 64-bit length where 16 bits suffice")
            fin = b0 & 0x80
            if opcode & 0x08:
                if opcode > 0xA:
                    raise ProtocolError(f"unknown opcode {opcode:#x}")
                if not fin:
                    raise ProtocolError("a fragmented control frame")
                if n > 125:
                    raise ProtocolError("a control frame longer than 125 bytes")
            elif opcode > 2:
                raise ProtocolError(f"unknown opcode {opcode:#x}")
            elif (opcode == 0) != (self._opcode is not None):
                raise ProtocolError(
                    "a continuation frame with no message to continue"
                    if opcode == 0
                    else "a new message before the fragmented one ended"
                )
            elif self._size + n > self.max_size:
                raise ProtocolError(f"a message longer than {self.max_size} bytes", 1009)
            start = pos + head
            stop = start + n
            if stop > end:
                self._need = stop - pos
                return pos
            pos = stop
            if opcode == 1 and fin:  # the fast path: one unfragmented text frame
                try:
                    out.append(buf[start:stop].decode())
                except UnicodeDecodeError as exc:
                    raise ProtocolError(f"text that is not UTF-8: {exc}", 1007) from None
            elif opcode < 8:
                self._data_frame(Opcode(opcode), bool(fin), bytes(buf[start:stop]), out)
            elif opcode == 8:
                out.append(_parse_close(bytes(buf[start:stop])))
                self.closed = True
                return end
            elif opcode in (9, 10):
                out.append(Control(Opcode(opcode), bytes(buf[start:stop])))
            else:
                raise ProtocolError(f"unknown opcode {opcode:#x}")
        self._need = 2
        return pos

    def _data_frame(self, opcode: Opcode, fin: bool, payload: bytes, out: list[Message]) -> None:
        """A binary frame, or a fragment of a message (text or binary)."""
        if opcode is not Opcode.CONTINUATION:
            self._opcode = opcode
            self._decoder = codecs.getincrementaldecoder("utf-8")() if opcode is Opcode.TEXT else None
        self._size += len(payload)
        if self._decoder is not None:
            try:
                self._text.append(self._decoder.decode(payload, fin))
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"text that is not UTF-8: {exc}", 1007) from None
        else:
            self._parts.append(payload)
        if fin:
            out.append("".join(self._text) if self._decoder is not None else b"".join(self._parts))
            self._opcode, self._decoder, self._size = None, None, 0
            self._parts, self._text = [], []


def _parse_close(payload: bytes) -> Close:
    """A close frame's code and reason, checked as RFC 6455 section 7.4 (and wsproto) require."""
    if not payload:
        return Close(1005, "")
    if len(payload) == 1:
        raise ProtocolError("a close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not 1000 <= code <= 4999 or (code < 3000 and code not in _CLOSE_KNOWN):
        raise ProtocolError(f"a close frame with code {code}, which a peer may not send")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"a close reason that is not UTF-8: {exc}", 1007) from None
    return Close(code, reason)


def encode_frame(opcode: Opcode, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One client frame: masked (RFC 6455 section 5.3) with ``mask``, or 4 random bytes."""
    key = mask if mask is not None else os.urandom(4)
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 0x10000:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    if not n:
        return head + key
    repeated = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + key + masked


def pong(payload: bytes = b"", *, mask: bytes | None = None) -> bytes:
    """The pong answering a ping with ``payload``."""
    return encode_frame(Opcode.PONG, payload, mask=mask)


def close(code: int | None = 1000, reason: str = "", *, mask: bytes | None = None) -> bytes:
    """A close frame: ``code`` and ``reason`` (cut to fit 125 bytes on a character boundary); ``None``: no code."""
    if code is None:
        return encode_frame(Opcode.CLOSE, b"", mask=mask)
    raw = reason.encode()[:123].decode(errors="ignore").encode()
    return encode_frame(Opcode.CLOSE, code.to_bytes(2, "big") + raw, mask=mask)


def _measure(count: int = 10_000, size: int = 100, repeat: int = 5) -> None:
    """The one-off measurement quoted in the module docstring: this parser against wsproto's, per message."""
    import functools
    import time
    import timeit

    from wsproto import ConnectionType
    from wsproto.connection import Connection
    from wsproto.frame_protocol import FrameProtocol

    frame = bytes((0x81, size)) + b'{"channel":"c","seq":1,"ts":1,"data":"' + b"x" * (size - 40) + b'"}'
    one_read, reads = frame * count, [frame] * count

    def mine(chunks: list[bytes]) -> None:
        parser = FrameParser()
        got = sum(len(parser.feed(chunk)) for chunk in chunks)
        assert got == count

    def frame_protocol(chunks: list[bytes]) -> None:
        proto = FrameProtocol(client=True, extensions=[])
        got = 0
        for chunk in chunks:
            proto.receive_bytes(chunk)
            got += sum(1 for _ in proto.received_frames())
        assert got == count

    def connection(chunks: list[bytes]) -> None:
        conn = Connection(ConnectionType.CLIENT)
        got = 0
        for chunk in chunks:
            conn.receive_data(chunk)
            got += sum(1 for _ in conn.events())
        assert got == count

    parsers = (("FrameParser", mine), ("wsproto FrameProtocol", frame_protocol), ("wsproto Connection", connection))
    for label, chunks in (("one read", [one_read]), ("frame per read", reads)):
        times = []
        for name, parse in parsers:
            timer = timeit.Timer(functools.partial(parse, chunks), timer=time.process_time)  # CPU, not wall
            best = min(timer.repeat(number=1, repeat=repeat))
            times.append(f"{name} {best / count * 1e6:.2f} µs/message")
        print(f"{label}: " + ", ".join(times))


if __name__ == "__main__":
    _measure()
