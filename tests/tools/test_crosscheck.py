"""Tests of the independent client (tests/tools/crosscheck.py): its readers against wsproto and by hand, its
accounting, its schedule, its independence from the lab's code, and one whole run that must count every event
exactly once and stop every process it started.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from tests.support import ROOT, TAG_VARIABLE, UNIT, tagged_processes
from tests.tools import crosscheck
from tests.tools.crosscheck import FrameReader, ProtocolError, ResponseReader, Tally

# --- independence --------------------------------------------------------------------------------------------


def test_imports_nothing_of_the_lab() -> None:
    """The tool must not share the lab's code: no import of server, clients or bench, at any depth."""
    tree = ast.parse(Path(crosscheck.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative import"
            names.add(node.module or "")
    assert names, "the walk found the imports"
    lab = sorted(n for n in names if n.split(".")[0] in {"server", "clients", "bench", "tests", "notebooks"})
    assert lab == []
    assert {"hdrh.histogram", "psutil", "asyncio"} <= names


# --- WebSocket frames ----------------------------------------------------------------------------------------


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


message = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("big"), st.integers(min_value=126, max_value=70_000)),
    st.tuples(st.just("fragmented"), st.lists(st.text(max_size=40), min_size=2, max_size=4)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(message, min_size=1, max_size=8), st.lists(st.integers(min_value=0, max_value=10**6), max_size=12))
def test_frame_reader_reads_what_wsproto_writes(messages: list[tuple[str, object]], cuts: list[int]) -> None:
    """Server frames written by wsproto (short, 16-bit and 64-bit lengths, continuation, ping), split anywhere."""
    server = FrameProtocol(client=False, extensions=[])
    wire = bytearray()
    expected: list[tuple[int, bytes]] = []
    for kind, value in messages:
        if kind == "text":
            assert isinstance(value, str)
            wire += server.send_data(value, fin=True)
            expected.append((0x1, value.encode()))
        elif kind == "big":
            assert isinstance(value, int)
            text = "x" * value
            wire += server.send_data(text, fin=True)
            expected.append((0x1, text.encode()))
        elif kind == "fragmented":
            assert isinstance(value, list)
            for i, part in enumerate(value):
                wire += server.send_data(part, fin=i == len(value) - 1)
            expected.append((0x1, "".join(value).encode()))
        else:
            assert isinstance(value, bytes)
            wire += server.ping(value)
            expected.append((0x9, value))
    reader = FrameReader()
    got = [frame for piece in _split(bytes(wire), cuts) for frame in reader.feed(piece)]
    assert got == expected


def test_frame_reader_refuses_a_masked_frame() -> None:
    masked = crosscheck.client_frame(0x1, b"hello", b"\x01\x02\x03\x04")
    try:
        FrameReader().feed(masked)
    except ProtocolError:
        return
    raise AssertionError("a masked server frame was accepted")


def test_client_frame_is_what_wsproto_reads() -> None:
    """The pong (any client frame) this tool writes is a valid masked frame for wsproto's server side."""
    server = FrameProtocol(client=False, extensions=[])
    for payload in (b"", b"ping-payload", b"y" * 200, b"z" * 70_000):
        server.receive_bytes(crosscheck.client_frame(0xA if len(payload) < 126 else 0x2, payload, b"\x9a\x01\xff\x10"))
        frames = list(server.received_frames())
        assert len(frames) == 1
        assert frames[0].opcode == (Opcode.PONG if len(payload) < 126 else Opcode.BINARY)
        received = frames[0].payload
        assert isinstance(received, (bytes, bytearray))
        assert bytes(received) == payload


# --- HTTP/1.1 responses ---------------------------------------------------------------------------------------


def _answers() -> bytes:
    body = b'{"channel":"c","events":[],"next":0,"more":false,"gap":null,"reset":null}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    fixed = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    empty = b"HTTP/1.1 201 CREATED\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    return fixed + chunked + empty


def test_response_reader_at_every_split_point() -> None:
    wire = _answers()
    for cut in range(len(wire) + 1):
        reader = ResponseReader()
        got = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
        assert [(r.status, r.body) for r in got] == [
            (200, b'{"channel":"c","events":[],"next":0,"more":false,"gap":null,"reset":null}'),
            (200, b"hello world"),
            (201, b""),
        ], cut
        assert got[0].headers["content-type"] == "application/json"
        assert got[2].headers["connection"] == "close"


def test_response_reader_byte_by_byte() -> None:
    reader = ResponseReader()
    got = [r for byte in _answers() for r in reader.feed(bytes([byte]))]
    assert [r.body for r in got] == [got[0].body, b"hello world", b""]
    assert len(got) == 3


def test_response_reader_keeps_the_frames_after_a_101() -> None:
    frame = FrameProtocol(client=False, extensions=[]).send_data("first", fin=True)
    wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n" + frame
    reader = ResponseReader()
    got = reader.feed(wire)
    assert [r.status for r in got] == [101]
    assert reader.upgraded
    assert FrameReader().feed(reader.rest) == [(0x1, b"first")]


# --- accounting and schedule ----------------------------------------------------------------------------------


def test_tally_counts_duplicates_disorder_and_holes() -> None:
    hist = HdrHistogram(1, crosscheck.HIST_MAX_US, 3)
    tally = Tally(n_warm=2, hist=hist)
    now = 10_000_000
    for seq, index in [(1, 0), (2, 1), (4, 3), (3, 2), (4, 3), (7, 6)]:
        tally.event(seq, [index, now - 1_500_000], now)
    tally.message({"type": "gap", "first": 5, "last": 5}, now)
    assert (tally.duplicate, tally.out_of_order, tally.notices, tally.max_seq) == (1, 1, 1, 7)
    assert tally.events == 5
    assert tally.measured == 3  # indexes 3, 2 and 6; 0 and 1 are warm-up
    assert hist.get_total_count() == 3
    assert hist.get_max_value() == hist.get_min_value() == 1500  # microseconds
    assert tally.missing(7) == 2  # 5 and 6
    assert tally.missing(5000) == 4995  # beyond what was seen, and beyond the first buffer


def test_schedule_periodic_and_poisson() -> None:
    offsets, warm = crosscheck.schedule(20, 0.5, 2.0, "periodic", 1)
    assert len(offsets) == 50
    assert warm == 10
    assert offsets[:3] == [0, 50_000_000, 100_000_000]
    poisson, warm_p = crosscheck.schedule(100, 1.0, 10.0, "poisson", 7)
    assert poisson == crosscheck.schedule(100, 1.0, 10.0, "poisson", 7)[0]  # the seed decides
    assert poisson != crosscheck.schedule(100, 1.0, 10.0, "poisson", 8)[0]
    assert poisson == sorted(poisson)
    assert poisson[-1] < 11_000_000_000
    assert warm_p == sum(1 for o in poisson if o < 1_000_000_000)
    assert 900 < len(poisson) < 1300  # 1,100 expected; 6 standard deviations either side


def test_compare_against_a_lab_raw_result() -> None:
    ours = {"latency": {"p50_us": 2000, "p99_us": 4000}, "server": {"cpu_us_per_event": 20.0}}
    lab = {
        "scenario": {"name": "target-ws-100x100"},
        "latency": {"end_to_end": {"count": 30000, "p50_us": 2300, "p99_us": 5300}},
        "server": {"cpu_us_per_event": 25.0},
    }
    got = crosscheck.compare(ours, lab)
    assert got["p50_us"]["difference"] == 0.15
    assert got["p50_us"]["within"] is True
    assert got["p99_us"]["difference"] == 0.325
    assert got["p99_us"]["within"] is False
    assert got["cpu_us_per_event"]["within"] is False
    assert got["lab_count"] == 30000


# --- one whole run ---------------------------------------------------------------------------------------------


def _run(transport: str, tmp_path: Path) -> tuple[dict[str, object], list[str]]:
    tag = f"crosscheck-{uuid.uuid4().hex}"
    out = tmp_path / f"{transport}.json"
    cmd = [
        sys.executable, "-m", "tests.tools.crosscheck", "--transport", transport, "--subscribers", "5",
        "--rate", "20", "--duration", "2", "--warmup", "0.5", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=120 * UNIT, env={**os.environ, TAG_VARIABLE: tag}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == json.loads(out.read_text())
    return json.loads(out.read_text()), tagged_processes(tag)


def _check_run(result: dict[str, object], leftovers: list[str]) -> None:
    assert leftovers == [], "the tool left processes running"
    offsets, warm = crosscheck.schedule(20, 0.5, 2.0, "periodic", 1)
    measured = len(offsets) - warm
    publisher = result["publisher"]
    assert isinstance(publisher, dict)
    assert publisher["intended"] == publisher["sent"] == publisher["answered"] == publisher["last_seq"] == 50
    assert publisher["errors"] == 0
    assert publisher["statuses"] == {"201": 50}
    counters = result["counters"]
    assert isinstance(counters, dict)
    assert counters["expected"] == counters["delivered"] == 5 * measured == 200
    assert counters["missing"] == counters["duplicate"] == counters["out_of_order"] == 0
    assert counters["reconnects"] == counters["connections_lost"] == counters["unfinished_subscribers"] == 0
    assert counters["drained"] is True
    latency = result["latency"]
    assert isinstance(latency, dict)
    assert latency["count"] == 200
    order = [latency[k] for k in ("min_us", "p50_us", "p90_us", "p99_us", "max_us")]
    assert all(isinstance(v, int) and v >= 1 for v in order), order
    assert order == sorted(order)
    assert latency["p999_us"] is None  # 200 samples do not hold a p99.9
    decoded = HdrHistogram.decode(latency["hdr"])
    assert decoded.get_total_count() == 200
    assert decoded.get_max_value() == latency["max_us"]
    window = result["window_s"]
    assert isinstance(window, float)
    assert 0 < window < 120 * UNIT
    server = result["server"]
    assert isinstance(server, dict)
    assert len(server["pids"]) >= 2  # gunicorn's arbiter and its worker
    assert server["cpu_ms"] > 0
    assert math.isclose(server["cpu_us_per_event"], server["cpu_ms"] * 1000 / 200, rel_tol=1e-3, abs_tol=1e-3)
    clients = result["clients"]
    assert isinstance(clients, dict)
    assert [s["subscribers"] for s in clients["shards"]] == [3, 2]
    for shard in [*clients["shards"], clients["publisher"]]:
        assert math.isfinite(shard["cpu_ms"])
        assert shard["cpu_ms"] > 0
    machine = result["machine"]
    assert isinstance(machine, dict)
    assert 0 <= machine["busy_percent"] <= 100


def test_websocket_run_counts_every_event_once(tmp_path: Path) -> None:
    result, leftovers = _run("websocket", tmp_path)
    _check_run(result, leftovers)
    counters = result["counters"]
    assert isinstance(counters, dict)
    assert counters["messages"] == 5 * 50  # one text frame per event and subscriber, warm-up included
    assert counters["notices"] == 0


def test_longpoll_run_counts_every_event_once(tmp_path: Path) -> None:
    result, leftovers = _run("longpoll", tmp_path)
    _check_run(result, leftovers)
    server = result["server"]
    counters = result["counters"]
    assert isinstance(server, dict)
    assert isinstance(counters, dict)
    assert 5 <= counters["messages"] <= 5 * 50  # every answer of a 25 s hold carries at least one event ...
    assert counters["empty_answers"] == 0  # ... so none is empty in a 3 s run
    assert server["longpoll_requests"] > 0
