"""bench.capture: one real exchange per transport, byte for byte."""

from __future__ import annotations

import json

from bench.run.capture import PAYLOAD, split_frame, split_http, write_capture


def test_split_http_takes_one_message_by_content_length() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n\r\n"
    first, rest = split_http(data)
    assert first == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    assert rest == b"GET / HTTP/1.1\r\n\r\n"


def test_split_frame_reads_rfc6455_lengths() -> None:
    from wsproto.frame_protocol import FrameProtocol

    for size, header in ((5, 2), (125, 2), (126, 4), (70000, 10)):
        frame = bytes(FrameProtocol(client=False, extensions=[]).send_data(b"x" * size))
        assert split_frame(frame + b"tail") == (frame, header)
    masked = bytes(FrameProtocol(client=True, extensions=[]).send_data(b"x" * 5))
    assert split_frame(masked) == (masked, 6)


def test_write_capture_records_both_transports(tmp_path) -> None:
    capture = json.loads(write_capture(tmp_path).read_text())
    assert capture["longpoll_request"].startswith("GET /channels/pay_42-longpoll/poll?after=0")
    assert capture["longpoll_request"].endswith("\r\n\r\n")
    head, _, body = capture["longpoll_response"].partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 OK")
    assert "Cache-Control: no-store" in head
    assert json.loads(body)["events"][0]["data"] == PAYLOAD
    assert "Upgrade: websocket" in capture["websocket_request"]
    assert capture["websocket_response"].startswith("HTTP/1.1 101 ")
    frame = capture["websocket_frame"]
    assert frame["header_bytes"] == 4  # the event is 126..65535 bytes: 16-bit length
    assert json.loads(frame["payload"])["data"] == PAYLOAD
    assert bytes.fromhex(frame["hex"])[0] == 0x81  # FIN + text
