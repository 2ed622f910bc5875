"""bench.report.capture: reading capture.json (the reference run's real one, and broken ones)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.contract.schema import SchemaError
from bench.report.capture import load_capture

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
