"""bench.report.capture: reading capture.json (the reference run's real one, and broken ones)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.contract.schema import SchemaError
from bench.report.capture import describe_packet, load_capture, load_socketio_capture

REFERENCE = Path(__file__).resolve().parents[3] / "results" / "reference" / "capture.json"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    shutil.copy(REFERENCE, tmp_path / "capture.json")
    return tmp_path


def test_a_run_without_capture_reads_as_none(tmp_path):
    assert load_capture(tmp_path) is None


def test_messages_are_split_into_head_lines_and_body(run_dir):
    capture = load_capture(run_dir)
    assert capture is not None
    raw = json.loads((run_dir / "capture.json").read_text())
    assert list(capture.messages()) == [
        "longpoll_request",
        "longpoll_response",
        "websocket_request",
        "websocket_response",
    ]
    for name, message in capture.messages().items():
        assert message.raw == raw[name]
        assert message.size == len(raw[name].encode())
        assert message.head_size + message.body_size == message.size
        assert sum(size for size, _ in message.lines()) + 2 == message.head_size  # + the blank line's CRLF
    response = capture.longpoll_response
    assert response.lines()[0] == (len("HTTP/1.1 200 OK") + 2, "HTTP/1.1 200 OK")
    content_length = next(line for _, line in response.lines() if line.lower().startswith("content-length:"))
    assert int(content_length.split(":")[1]) == response.body_size
    assert json.loads(response.body)["events"][0]["data"] == capture.payload
    assert capture.websocket_request.body == "" and capture.websocket_request.body_size == 0


def test_the_frame_is_its_header_and_payload(run_dir):
    capture = load_capture(run_dir)
    assert capture is not None
    frame = capture.websocket_frame
    assert frame.size == frame.header_bytes + len(frame.payload.encode())
    assert bytes.fromhex(frame.header_hex)[0] == 0x81  # FIN + text frame (RFC 6455 section 5.2)
    assert capture.runtime == "gevent"


def test_a_file_without_a_field_is_refused_with_its_name(run_dir):
    path = run_dir / "capture.json"
    obj = json.loads(path.read_text())
    del obj["websocket_frame"]["header_bytes"]
    path.write_text(json.dumps(obj))
    with pytest.raises(SchemaError, match=r"capture\.json: websocket_frame\.header_bytes: required field is missing"):
        load_capture(run_dir)


def test_a_file_that_is_no_json_is_refused(run_dir):
    (run_dir / "capture.json").write_text("{")
    with pytest.raises(SchemaError, match="cannot read JSON"):
        load_capture(run_dir)


def test_older_files_without_the_server_block_load(run_dir):
    path = run_dir / "capture.json"
    obj = json.loads(path.read_text())
    del obj["server"]
    path.write_text(json.dumps(obj))
    capture = load_capture(run_dir)
    assert capture is not None and capture.runtime is None


# --- socketio-capture.json --------------------------------------------------------------------------------

SOCKETIO = Path(__file__).resolve().parent / "socketio-capture.json"
"""A real one, written by ``python -m bench.run.capture socketio`` against the Flask-SocketIO peer."""


@pytest.fixture
def socketio_dir(tmp_path: Path) -> Path:
    shutil.copy(SOCKETIO, tmp_path / "socketio-capture.json")
    return tmp_path


def test_a_run_without_a_socketio_capture_reads_as_none(tmp_path):
    assert load_socketio_capture(tmp_path) is None


def test_each_step_says_what_it_is_in_wire_order(socketio_dir):
    capture = load_socketio_capture(socketio_dir)
    assert capture is not None
    raw = json.loads(SOCKETIO.read_text())["exchanges"]
    assert [(s.connection, s.direction, s.text, s.length) for s in capture.steps] == [
        (r["connection"], r["direction"], r["text"], r["length"]) for r in raw
    ]
    whats = [s.what for s in capture.steps]
    order = [
        "the Engine.IO handshake: a long-polling GET without a session",
        "a long-polling answer: Engine.IO OPEN: the session's sid, the transports it may upgrade to, pingInterval "
        "and pingTimeout",
        "a long-polling POST, the client's packets: Socket.IO CONNECT to the main namespace",
        "the answer to the POST: its packets were taken",
        "a long-polling GET of the session, held until the server has packets",
        "a long-polling answer: Socket.IO CONNECT ack, with the Socket.IO session's own sid",
        "the WebSocket Upgrade request, on a new connection, naming the polling session's sid",
        "101 Switching Protocols: from here on the connection carries WebSocket frames",
        "Engine.IO PING probe: does the WebSocket carry the session?",
        "Engine.IO PONG probe: it does",
        "Engine.IO UPGRADE: from now on the session is on the WebSocket",
        "Socket.IO EVENT: the event's name and its data, as a JSON array",
        "Engine.IO PING: the server's heartbeat",
        "Engine.IO PONG: the client's answer to the heartbeat",
        "WebSocket close frame (status 1000)",
        "an HTTP answer after the close frames: the WSGI server ending the request the WebSocket ran in",
    ]
    at = [whats.index(what) for what in order]
    assert at == sorted(at)


def test_the_open_packet_the_event_and_the_packets(socketio_dir):
    capture = load_socketio_capture(socketio_dir)
    assert capture is not None
    assert capture.open["pingInterval"] == 1000 and capture.open["pingTimeout"] == 20000
    assert capture.open["upgrades"] == ["websocket"] and capture.open["sid"]
    assert capture.options["ping_interval"] == 1.0 and capture.written_after_run is True
    event = capture.event
    assert event.layer == "websocket" and event.opcode == "text" and event.direction == "down"
    assert json.loads(event.text[2:]) == ["e", dict(capture.payload)]
    assert event.hex is not None and event.length == len(event.hex) // 2 == event.header_bytes + len(event.text)
    assert capture.first("2probe").direction == "up" and capture.first("3probe").direction == "down"
    assert capture.steps.index(capture.first("5")) < capture.steps.index(event)
    post = next(s for s in capture.steps if s.start_line.startswith("POST "))
    assert post.packets == ["40"] and post.http is not None and post.http.body == "40"
    assert next(s for s in capture.steps if s.text.startswith("HTTP/1.1 101")).packets == []
    assert {s.what for s in capture.steps if s.packets == []} >= {"the answer to the POST: its packets were taken"}


def test_a_polling_body_with_several_packets_is_split_at_the_record_separator(socketio_dir):
    path = socketio_dir / "socketio-capture.json"
    obj = json.loads(path.read_text())
    step = next(s for s in obj["exchanges"] if s["layer"] == "http" and '\r\n\r\n40{"sid":' in s["text"])
    head, _, body = step["text"].partition("\r\n\r\n")
    body = body + "\x1e2"
    head = head.replace(f"Content-Length: {len(body) - 2}", f"Content-Length: {len(body)}")
    step["text"] = f"{head}\r\n\r\n{body}"
    step["length"] = len(step["text"].encode())
    path.write_text(json.dumps(obj))
    capture = load_socketio_capture(socketio_dir)
    assert capture is not None
    changed = next(s for s in capture.steps if s.text == step["text"])
    assert changed.packets == [body[:-2], "2"]
    assert changed.what.endswith("Socket.IO session's own sid; Engine.IO PING: the server's heartbeat")


def test_describe_packet_names_socketio_packets():
    assert describe_packet('44{"message":"bad_channel"}').startswith("Socket.IO CONNECT_ERROR")
    assert describe_packet("41") == "Socket.IO DISCONNECT"
    assert describe_packet("9x") == "an Engine.IO packet of type 9"


def test_a_broken_socketio_capture_is_refused_with_its_name(socketio_dir):
    path = socketio_dir / "socketio-capture.json"
    obj = json.loads(path.read_text())
    obj["exchanges"][3]["length"] += 1
    path.write_text(json.dumps(obj))
    with pytest.raises(SchemaError, match=r"socketio-capture\.json: exchanges\[3\]\.length"):
        load_socketio_capture(socketio_dir)
    path.write_text("[")
    with pytest.raises(SchemaError, match=r"socketio-capture\.json: <root>: cannot read JSON"):
        load_socketio_capture(socketio_dir)
