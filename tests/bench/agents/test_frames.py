"""bench.agents.frames against wsproto: the same messages, in the same order, and the same close code for bad input.

Valid streams are written by wsproto's server side (``FrameProtocol(client=False)``); malformed ones by a
hand-written frame writer that can set any header bit. Both parsers read the same bytes split at the same
random points; wsproto's client side (``FrameProtocol(client=True)``) is the reference.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, ParseFailed
from wsproto.frame_protocol import Opcode as WsOpcode

from bench.agents.frames import (
    Close,
    Control,
    FrameParser,
    Message,
    Opcode,
    ProtocolError,
    close,
    encode_frame,
    pong,
)

# --- the two parsers, reading the same chunks -------------------------------------------------------------


def reference(chunks: list[bytes]) -> tuple[list[Message], int | None]:
    """wsproto's reading of ``chunks``: complete messages and control frames, and the close code of its error."""
    proto = FrameProtocol(client=True, extensions=[])
    out: list[Message] = []
    parts: list[Any] = []
    try:
        for chunk in chunks:
            proto.receive_bytes(chunk)
            for frame in proto.received_frames():
                if frame.opcode in (WsOpcode.PING, WsOpcode.PONG):
                    out.append(Control(Opcode(frame.opcode), bytes(frame.payload)))
                elif frame.opcode is WsOpcode.CLOSE:
                    code, reason = frame.payload
                    out.append(Close(int(code), reason))
                else:
                    parts.append(frame.payload)
                    if frame.message_finished:
                        out.append("".join(parts) if frame.opcode is WsOpcode.TEXT else b"".join(parts))
                        parts = []
    except ParseFailed as exc:
        return out, int(exc.code)
    return out, None


def mine(chunks: list[bytes], max_size: int | None = None) -> tuple[list[Message], int | None]:
    """FrameParser's reading of ``chunks``, in the same form."""
    parser = FrameParser() if max_size is None else FrameParser(max_size)
    out: list[Message] = []
    try:
        for chunk in chunks:
            out.extend(parser.feed(chunk))
    except ProtocolError as exc:
        return out + exc.messages, exc.code
    return out, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at these offsets (any order, repeats allowed: empty chunks are fed too)."""
    points = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- valid streams, written by wsproto's server side ------------------------------------------------------

large = st.tuples(st.integers(65_530, 70_000), st.binary(min_size=1, max_size=8)).map(lambda t: (t[1] * t[0])[: t[0]])
"""Payloads around the 16-bit length's end (126..65535 takes 16 bits, more takes 64), cheap to draw."""
payloads = st.binary(max_size=300) | large
texts = st.text(max_size=200) | st.text(alphabet="é€𝄞a", min_size=30, max_size=70)
controls = st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125))
messages = st.tuples(st.just("text"), texts, st.lists(st.integers(0, 300), max_size=3)) | st.tuples(
    st.just("binary"), payloads, st.lists(st.integers(0, 70_000), max_size=3)
)


@st.composite
def valid_stream(draw: st.DrawFn) -> tuple[bytes, list[Message]]:
    """Bytes of random messages (some fragmented, with controls between fragments), maybe a close; and them."""
    proto = FrameProtocol(client=False, extensions=[])
    data = bytearray()
    expected: list[Message] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            kind, payload = draw(controls)
            data += proto.ping(payload) if kind == "ping" else proto.pong(payload)
            expected.append(Control(Opcode.PING if kind == "ping" else Opcode.PONG, payload))
            continue
        kind, body, cuts = draw(messages)
        points = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
        pieces = [body[a:b] for a, b in itertools.pairwise(points)] or [body]
        for i, piece in enumerate(pieces):
            data += proto.send_data(piece, fin=i == len(pieces) - 1)
            if i < len(pieces) - 1 and draw(st.booleans()):  # a control frame between two fragments
                kind_c, payload = draw(controls)
                data += proto.ping(payload) if kind_c == "ping" else proto.pong(payload)
                expected.append(Control(Opcode.PING if kind_c == "ping" else Opcode.PONG, payload))
        expected.append(body)
    if draw(st.booleans()):
        code = draw(st.sampled_from([None, 1000, 1001, 1011, 1013, 3000, 4400, 4403]))
        reason = draw(st.text(max_size=40)) if code is not None else ""
        data += proto.close(code, reason)
        expected.append(Close(1005 if code is None else code, reason))
        data += proto.send_data("after the close: never read")
    return bytes(data), expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=valid_stream(), cuts=st.lists(st.integers(0, 1 << 20), max_size=8))
def test_valid_streams_read_as_wsproto_reads_them(stream: tuple[bytes, list[Message]], cuts: list[int]) -> None:
    data, expected = stream
    chunks = split(data, cuts)
    assert reference(chunks) == (expected, None)  # the generator is right about what it wrote
    assert mine(chunks) == (expected, None)


def test_every_split_of_a_small_stream() -> None:
    """Exhaustively: a ping, a fragmented text message around a pong, a 16-bit binary, a close; every cut."""
    proto = FrameProtocol(client=False, extensions=[])
    data = bytes(
        proto.ping(b"p")
        + proto.send_data("héllo ", fin=False)
        + proto.pong(b"")
        + proto.send_data("wörld", fin=True)
        + proto.send_data(b"\x00" * 200)
        + proto.close(4400, "bad json")
    )
    expected = [Control(Opcode.PING, b"p"), Control(Opcode.PONG, b""), "héllo wörld", b"\x00" * 200]
    expected.append(Close(4400, "bad json"))
    for a in range(len(data) + 1):
        for b in range(a, len(data) + 1, 7):
            assert mine([data[:a], data[a:b], data[b:]]) == (expected, None), (a, b)


# --- malformed streams: any header bit, any length form ---------------------------------------------------


def raw_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, key: bytes | None = None, form: int = 0
) -> bytes:
    """One frame exactly as asked: ``form`` 0 the shortest length, 16 or 64 that many bits whatever the length."""
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if key is not None else 0
    if form == 64 or (form == 0 and n >= 0x10000):
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    elif form == 16 or (form == 0 and n >= 126):
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | n])
    if key is None:
        return bytes(head) + payload
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason,
        st.sampled_from([0, 999, 1000, 1003, 1004, 1005, 1006, 1012, 1014, 1015, 2999, 3000, 4999, 5000, 65535]),
        st.sampled_from([b"", b"ok", "é".encode(), b"\xff\xfe", "é".encode()[:1]]),
    ),
)
utf8_edges = st.sampled_from(
    [b"", b"ok", "é€".encode(), "é".encode()[:1], "€".encode()[1:], b"\xc0\xaf", b"\xed\xa0\x80"]
)


@st.composite
def any_frame(draw: st.DrawFn) -> bytes:
    """A frame that may break any rule a client checks (mostly it does not: so later frames matter too)."""
    opcode = draw(st.sampled_from([0, 0, 1, 1, 1, 2, 2, 8, 9, 10, 3, 7, 11, 15]))
    if opcode == 8:
        payload = draw(close_payloads)
    elif opcode in (0, 1):
        payload = draw(utf8_edges | st.text(max_size=40).map(str.encode) | st.binary(max_size=130))
    else:
        payload = draw(st.binary(max_size=120) | st.binary(min_size=120, max_size=130))
    return raw_frame(
        opcode,
        payload,
        fin=draw(st.sampled_from([True, True, False])),
        rsv=draw(st.sampled_from([0] * 40 + [1, 2, 4, 7])),  # each rule broken now and then, so that most
        key=draw(st.sampled_from([None] * 40 + [b"abcd"])),  # sequences get past their first frames
        form=draw(st.sampled_from([0] * 40 + [16, 64])),
    )


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    prefix=st.none() | valid_stream(),
    frames=st.lists(any_frame(), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 1 << 17), max_size=6),
)
def test_malformed_streams_fail_as_wsproto_fails(
    prefix: tuple[bytes, list[Message]] | None, frames: list[bytes], cuts: list[int]
) -> None:
    """Valid frames (or none), then frames that may break any rule: the same messages, then the same close code."""
    chunks = split((prefix[0] if prefix else b"") + b"".join(frames), cuts)
    assert mine(chunks) == reference(chunks)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (raw_frame(1, b"x", rsv=4), 1002),  # RSV1 with no extension negotiated
        (raw_frame(1, b"x", key=b"abcd"), 1002),  # a masked server frame
        (raw_frame(9, b"x", fin=False), 1002),  # a fragmented control frame
        (raw_frame(9, b"x" * 126), 1002),  # a control frame over 125 bytes
        (raw_frame(3, b""), 1002),  # a reserved opcode
        (raw_frame(0, b"x"), 1002),  # a continuation with nothing to continue
        (raw_frame(1, b"x", fin=False) + raw_frame(2, b"y"), 1002),  # a new message inside a fragmented one
        (raw_frame(1, b"x", form=16), 1002),  # a length not in its shortest form
        (bytes([0x82, 127]) + struct.pack("!Q", 1 << 63), 1002),  # a 64-bit length with its top bit set
        (raw_frame(1, b"\xff"), 1007),  # text that is not UTF-8
        (raw_frame(1, "é".encode()[:1], fin=False) + raw_frame(0, b"a"), 1007),  # not UTF-8 across fragments
        (raw_frame(8, b"\x03"), 1002),  # a close frame with a 1-byte payload
        (raw_frame(8, struct.pack("!H", 1006)), 1002),  # a local-only close code
        (raw_frame(8, struct.pack("!H", 1000) + b"\xff"), 1007),  # a close reason that is not UTF-8
    ],
)
def test_each_rule_is_enforced_with_its_code(frame: bytes, code: int) -> None:
    assert mine([frame]) == reference([frame]) == ([], code)
    parser = FrameParser()
    with pytest.raises(ProtocolError) as first:
        parser.feed(frame)
    with pytest.raises(ProtocolError) as again:  # a failed parser stays failed
        parser.feed(raw_frame(1, b"fine"))
    assert again.value is first.value


# --- the size limit (wsproto has none) ---------------------------------------------------------------------


def test_an_oversized_frame_is_refused_at_its_header() -> None:
    header = bytes([0x82, 127]) + struct.pack("!Q", 1 << 40)  # a terabyte announced, not a byte of it sent
    assert mine([header], max_size=1 << 20) == ([], 1009)
    assert mine([raw_frame(1, b"x" * 1000)], max_size=999) == ([], 1009)
    assert mine([raw_frame(1, b"x" * 999)], max_size=999) == (["x" * 999], None)


def test_an_oversized_fragmented_message_is_refused_at_the_fragment_that_crosses() -> None:
    stream = raw_frame(1, b"a" * 600, fin=False) + raw_frame(9, b"p") + raw_frame(0, b"b" * 600)
    assert mine([stream], max_size=1000) == ([Control(Opcode.PING, b"p")], 1009)
    assert mine([stream], max_size=1200) == ([Control(Opcode.PING, b"p"), "a" * 600 + "b" * 600], None)


def test_a_large_message_in_small_reads_is_buffered_once() -> None:
    """1 MiB arriving in 1 KiB reads: nothing comes out before the last byte, then the whole message."""
    body = bytes(range(256)) * 4096
    data = raw_frame(2, body)
    parser = FrameParser()
    got = [parser.feed(data[i : i + 1024]) for i in range(0, len(data), 1024)]
    assert all(g == [] for g in got[:-1])
    assert got[-1] == [body]


def test_nothing_is_read_after_a_close() -> None:
    parser = FrameParser()
    assert parser.feed(raw_frame(8, struct.pack("!H", 1001)) + raw_frame(1, b"late")) == [Close(1001, "")]
    assert parser.closed
    assert parser.feed(raw_frame(1, b"later")) == []


# --- the client's frames, read by wsproto's server side ---------------------------------------------------


def server_reads(data: bytes) -> list[Any]:
    proto = FrameProtocol(client=False, extensions=[])
    proto.receive_bytes(data)
    return [(frame.opcode, frame.payload) for frame in proto.received_frames()]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_encoded_frames_are_masked_and_read_back(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    data = encode_frame(Opcode.BINARY, payload)
    assert data[1] & 0x80  # masked, as a client must
    assert server_reads(data) == [(WsOpcode.BINARY, payload)]


def test_encoding_matches_wsproto_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the same masking key, wsproto's client side writes the same bytes."""
    monkeypatch.setattr("wsproto.frame_protocol.os.urandom", lambda n: b"\x01\x02\x03\x04")
    ws = FrameProtocol(client=True, extensions=[])
    key = b"\x01\x02\x03\x04"
    assert pong(b"abc", mask=key) == bytes(ws.pong(b"abc"))
    assert close(1000, "bye", mask=key) == bytes(ws.close(1000, "bye"))
    assert close(None, mask=key) == bytes(ws.close())
    assert encode_frame(Opcode.TEXT, b"x" * 300, mask=key) == bytes(ws.send_data("x" * 300))
    assert encode_frame(Opcode.TEXT, b"hi", fin=False, mask=key) == bytes(ws.send_data("hi", fin=False))


def test_close_reason_is_cut_on_a_character_boundary() -> None:
    frames = server_reads(close(1001, "é" * 100))
    assert frames == [(WsOpcode.CLOSE, (1001, "é" * 61))]  # 2 + 122 bytes: the 62nd é would not fit whole
    with pytest.raises(ValueError):
        encode_frame(Opcode.PING, b"", mask=b"abc")
