"""bench.run.capture: one real exchange per transport, byte for byte, and one Socket.IO session in wire order."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.contract.schema import SchemaError, validate_socketio_capture
from bench.run.capture import (
    PAYLOAD,
    SOCKETIO_PING_INTERVAL_S,
    main,
    split_frame,
    split_http,
    wire_pieces,
    write_capture,
)


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


# --- socketio-capture.json --------------------------------------------------------------------------------

SOCKETIO_STEPS = [
    ("down", "http", lambda t: t.partition("\r\n\r\n")[2].startswith('0{"sid"')),  # Engine.IO OPEN
    ("up", "http", lambda t: t.startswith("POST ") and t.endswith("\r\n\r\n40")),  # Socket.IO CONNECT
    ("down", "http", lambda t: t.partition("\r\n\r\n")[2].startswith('40{"sid"')),  # its ack
    ("up", "http", lambda t: "transport=websocket" in t and "Upgrade: websocket" in t),
    ("down", "http", lambda t: t.startswith("HTTP/1.1 101 ")),
    ("up", "websocket", lambda t: t == "2probe"),
    ("down", "websocket", lambda t: t == "3probe"),
    ("up", "websocket", lambda t: t == "5"),
    ("down", "websocket", lambda t: t.startswith('42["e",')),
    ("down", "websocket", lambda t: t == "2"),
    ("up", "websocket", lambda t: t == "3"),
]
"""What the default handshake must show, in this order (other steps, a NOOP or the close, may come between)."""


@pytest.fixture(scope="module")
def socketio_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run's directory given a socketio-capture.json after the fact, by the command line."""
    run = tmp_path_factory.mktemp("run")
    (run / "meta.json").write_text("{}")
    assert main(["socketio", str(run)]) == 0
    return run


def test_the_socketio_exchange_has_the_default_handshake_in_wire_order(socketio_run: Path) -> None:
    capture = json.loads((socketio_run / "socketio-capture.json").read_text())
    steps = capture["exchanges"]
    at, found = 0, []
    for direction, layer, match in SOCKETIO_STEPS:
        at = next(
            i
            for i in range(at, len(steps))
            if steps[i]["direction"] == direction and steps[i]["layer"] == layer and match(steps[i]["text"])
        )
        found.append(at)
    assert found == sorted(set(found))
    connections = [steps[i]["connection"] for i in found]
    assert connections[0] != connections[1]  # the POST goes on a second keep-alive connection
    assert len(set(connections[3:])) == 1 and connections[3] not in connections[:3]  # the WebSocket's own
    opened = json.loads(steps[found[0]]["text"].partition("\r\n\r\n")[2][1:])
    assert opened["pingInterval"] == 1000 and opened["upgrades"] == ["websocket"]
    assert f"sid={opened['sid']}" in steps[found[3]]["text"]  # the Upgrade names the polling session


def test_the_socketio_event_carries_the_payload_verbatim(socketio_run: Path) -> None:
    capture = json.loads((socketio_run / "socketio-capture.json").read_text())
    event = next(s for s in capture["exchanges"] if s["text"].startswith("42"))
    assert json.loads(event["text"][2:]) == ["e", PAYLOAD]
    frame = bytes.fromhex(event["hex"])
    assert frame[0] == 0x81 and not frame[1] & 0x80  # FIN + text, unmasked (server to client)
    assert frame[event["header_bytes"] :] == event["text"].encode()
    assert event["length"] == len(frame)
    pong = next(s for s in capture["exchanges"] if s["direction"] == "up" and s["text"] == "3")
    masked = bytes.fromhex(pong["hex"])
    assert masked[1] & 0x80 and pong["header_bytes"] == 6 and pong["length"] == 7  # client frames are masked


def test_the_socketio_file_says_how_it_was_made(socketio_run: Path) -> None:
    capture = json.loads((socketio_run / "socketio-capture.json").read_text())
    validate_socketio_capture(capture)
    assert capture["written_after_run"] is True
    assert capture["payload"] == PAYLOAD
    assert capture["client"] == {"adapter": "bench.agents.socketio.SocketIOSubscriber", "mode": "upgrade"}
    assert capture["peer"]["options"]["ping_interval"] == SOCKETIO_PING_INTERVAL_S
    assert "--ping-interval 1" in capture["peer"]["command"] and "25 s" in capture["note"]
    assert {"flask-socketio", "python-engineio", "python-socketio"} <= set(capture["peer"]["versions"])
    for step in capture["exchanges"]:
        if step["layer"] == "http":
            assert step["length"] == len(step["text"].encode())


def test_the_command_line_refuses_what_is_no_run_and_a_second_capture(tmp_path: Path, socketio_run: Path) -> None:
    with pytest.raises(SystemExit):
        main(["socketio", str(tmp_path)])  # no meta.json
    before = (socketio_run / "socketio-capture.json").read_bytes()
    with pytest.raises(SystemExit):
        main(["socketio", str(socketio_run)])  # written once
    assert (socketio_run / "socketio-capture.json").read_bytes() == before


def _broken(capture: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    broken = copy.deepcopy(capture)
    change(broken)
    return broken


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda c: c["exchanges"][0].pop("direction"), r"exchanges\[0\]\.direction"),
        (lambda c: c["exchanges"][0].update(length=c["exchanges"][0]["length"] + 1), r"exchanges\[0\]\.length"),
        (lambda c: next(s for s in c["exchanges"] if s["layer"] == "websocket").pop("hex"), r"exchanges\[\d+\]"),
        (lambda c: c["exchanges"][0].update(hex="00"), r"exchanges\[0\]"),  # an HTTP message has no frame bytes
        (lambda c: c.update(exchanges=[]), "exchanges"),
        (lambda c: c.pop("written_after_run"), "written_after_run"),
        (lambda c: c["peer"].update(name="nchan"), r"peer\.name"),
    ],
)
def test_the_socketio_schema_refuses_a_broken_file(
    socketio_run: Path, change: Callable[[dict[str, Any]], None], where: str
) -> None:
    capture = json.loads((socketio_run / "socketio-capture.json").read_text())
    with pytest.raises(SchemaError, match=where):
        validate_socketio_capture(_broken(capture, change))


def test_wire_pieces_splits_http_and_frames_and_unmasks_what_the_client_sent() -> None:
    from wsproto.frame_protocol import CloseReason, FrameProtocol

    client, server = FrameProtocol(client=True, extensions=[]), FrameProtocol(client=False, extensions=[])
    post = b"POST /socket.io/?sid=a HTTP/1.1\r\nContent-Length: 2\r\n\r\n40"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
    upgrade, switched = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    probe, pong = bytes(client.send_data("2probe")), bytes(server.send_data("3probe"))
    close = bytes(server.close(CloseReason.NORMAL_CLOSURE))
    after = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    samples = [
        (post + b"GET /unfinished", ok + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n0{"),
        (
            upgrade + probe,
            switched + pong + close + after,
        ),
    ]
    pieces = [p.as_dict() for p in wire_pieces(samples)]
    assert [(p["connection"], p["direction"], p["layer"], p["text"]) for p in pieces] == [
        (0, "up", "http", post.decode()),  # the unfinished request and answer are left out
        (0, "down", "http", ok.decode()),
        (1, "up", "http", upgrade.decode()),
        (1, "up", "websocket", "2probe"),  # unmasked
        (1, "down", "http", switched.decode()),
        (1, "down", "websocket", "3probe"),
        (1, "down", "websocket", "1000"),
        (1, "down", "http", after.decode()),  # HTTP again after the close frame
    ]
    assert pieces[3]["hex"] == probe.hex() and pieces[3]["header_bytes"] == 6 and pieces[3]["length"] == len(probe)
    assert pieces[6]["opcode"] == "close"
    assert [p.offset for p in wire_pieces(samples)][4:] == [
        0,
        len(switched),
        len(switched) + len(pong),
        len(switched) + len(pong) + len(close),
    ]
