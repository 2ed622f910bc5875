"""bench.report.peers: the peers section's rows, same-run ratios, idle, bytes and resume tables, and its chart.

The run is SYNTHETIC (tests/bench/fixtures/peers.py): schema-valid results built from chosen numbers, so
every cell, ratio and sentence below is known in advance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main as bench_main
from bench.report.charts import write_charts
from bench.report.kaazing import measured_table
from bench.report.load import load_run
from bench.report.markdown import summary_rows
from bench.report.peers import (
    SECTION_TITLE,
    peer_bytes_rows,
    peer_idle_rows,
    peer_points,
    peer_ratios,
    peer_results,
    peer_resume_rows,
    peers_section,
    resume_sentence,
    variant_label,
)
from bench.report.sweeps import find_sweeps
from bench.report.tables import cost_rows, idle_rows
from bench.report.targets import evaluate
from tests.bench.fixtures.peers import peer_result, write_run

FSIO = "flask_socketio"
WS = "peers-ws-100x100"
LP = "peers-lp-100x10"
# 1,000 samples: 980 at 0.5 ms and 20 at the tail value, so p50 is 0.5 ms and p99 the tail value, exactly
# (values below 2,048 µs are exact in a histogram of 3 significant digits)
TAIL_1MS = ((500, 980), (1000, 20))
TAIL_2MS = ((500, 980), (2000, 20))


def _results() -> list[dict[str, Any]]:
    return [
        # WebSocket (and SSE) 100 x 100: the lab, Socket.IO (and its default handshake, invalid), Nchan, websockets
        peer_result(f"{WS}-lab", WS, "websocket", 1, latency=TAIL_1MS, cpu_us=10.0),
        peer_result(f"{WS}-lab", WS, "websocket", 2, latency=TAIL_1MS, cpu_us=12.0),
        peer_result(f"{WS}-lab", WS, "sse", 1, latency=TAIL_1MS, cpu_us=20.0),
        peer_result(f"{WS}-flask_socketio", WS, "websocket", 1, server=FSIO, latency=TAIL_2MS, cpu_us=40.0),
        peer_result(f"{WS}-flask_socketio", WS, "websocket", 2, server=FSIO, latency=TAIL_2MS, cpu_us=40.0),
        peer_result(f"{WS}-flask_socketio-upgrade", WS, "websocket", 1, server=FSIO, upgrade=True, saturated=True),
        peer_result(f"{WS}-nchan", WS, "websocket", 1, server="nchan", cpu_us=20.0),
        peer_result(f"{WS}-nchan", WS, "sse", 1, server="nchan", cpu_us=16.0, latency=TAIL_2MS),
        peer_result(f"{WS}-nchan-auto", WS, "websocket", 1, server="nchan", workers=0, cpu_us=25.0),
        # 50 samples: too few for a p99 (100 needed), which is withheld
        peer_result(f"{WS}-websockets", WS, "websocket", 1, server="websockets", latency=((900, 50),), cpu_us=15.0),
        # long poll 100 x 10: Socket.IO's variants, one lossy; CPU below the floor for the threading mode
        peer_result(f"{LP}-lab", LP, "longpoll", 1, rate=10, cpu_us=100.0, requests_per_event=1.0),
        peer_result(
            f"{LP}-flask_socketio", LP, "longpoll", 1, server=FSIO, rate=10, cpu_us=250.0, requests_per_event=2.0
        ),
        peer_result(
            f"{LP}-flask_socketio-no-nodelay",
            LP,
            "longpoll",
            1,
            server=FSIO,
            rate=10,
            tcp_nodelay=False,
            missing=3,
            cpu_us=260.0,
        ),
        peer_result(
            f"{LP}-flask_socketio-threading", LP, "longpoll", 1, server=FSIO, rate=10, runtime="werkzeug", cpu_s=0.001
        ),
        # idle
        peer_result(
            "peers-idle-1000-lab", "peers-idle-1000", "websocket", idle=True, subscribers=1000, rate=10, idle_rss=9216.0
        ),
        peer_result(
            "peers-idle-1000-flask_socketio",
            "peers-idle-1000",
            "websocket",
            idle=True,
            subscribers=1000,
            rate=10,
            idle_rss=40960.0,
            idle_per_min=(30.0, 40.0),
            server=FSIO,
        ),
        # bytes at 1 ev/s
        peer_result(
            "peers-bytes-1-lab",
            "peers-bytes-1",
            "longpoll",
            subscribers=10,
            rate=1,
            expected=300,
            up=150.0,
            down=250.0,
            requests_per_event=1.0,
        ),
        peer_result(
            "peers-bytes-1-nchan",
            "peers-bytes-1",
            "polling",
            server="nchan",
            subscribers=10,
            rate=1,
            expected=300,
            poll_interval_s=1.0,
            up=180.0,
            down=400.0,
            requests_per_event=1.0,
        ),
        # resume: the lab resumes, Socket.IO loses, one Nchan row was never dropped
        peer_result(
            "peers-resume-lab",
            "peers-resume",
            "websocket",
            subscribers=10,
            rate=10,
            expected=2000,
            drop_every_s=2.0,
            reconnects=100,
        ),
        peer_result(
            "peers-resume-lab",
            "peers-resume",
            "longpoll",
            subscribers=10,
            rate=10,
            expected=2000,
            drop_every_s=2.0,
            reconnects=100,
        ),
        peer_result(
            "peers-resume-flask_socketio",
            "peers-resume",
            "websocket",
            server=FSIO,
            subscribers=10,
            rate=10,
            expected=2000,
            drop_every_s=2.0,
            reconnects=100,
            missing=37,
        ),
        peer_result(
            "peers-resume-nchan",
            "peers-resume",
            "sse",
            server="nchan",
            subscribers=10,
            rate=10,
            expected=2000,
            drop_every_s=2.0,
        ),
        # a lab scenario outside the peers' sweeps
        peer_result("target-ws-100x100", None, "websocket", latency=TAIL_1MS, cpu_us=11.0),
    ]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("peers") / "run", _results())


@pytest.fixture(scope="module")
def run(run_dir: Path) -> Any:
    return load_run(run_dir)


def test_labels_say_what_ran(run: Any) -> None:
    labels = {r.scenario.name: variant_label(r.scenario) for r in run.results}
    assert labels[f"{WS}-lab"] == "lab (gevent)"
    fast = dataclasses.replace(run.results[0].scenario, server="lab", runtime="gevent", fast_path=True)
    assert variant_label(fast) == "lab (gevent, fast path)"
    assert labels[f"{WS}-flask_socketio"] == "Flask-SocketIO, gevent, TCP_NODELAY"
    assert labels[f"{WS}-flask_socketio-upgrade"] == "Flask-SocketIO, default handshake (polling then upgrade)"
    assert labels[f"{LP}-flask_socketio-no-nodelay"] == "Flask-SocketIO, gevent, no TCP_NODELAY (socketio.run)"
    assert labels[f"{LP}-flask_socketio-threading"] == "Flask-SocketIO, threading"
    assert labels[f"{WS}-nchan"] == "Nchan, 1 worker"
    assert labels[f"{WS}-nchan-auto"] == "Nchan, 1 worker per core"
    assert labels[f"{WS}-websockets"] == "websockets (asyncio)"


def test_points_rows_in_order_with_their_numbers(run: Any) -> None:
    found = peer_points(run)
    assert [(p.name, p.title) for p in found] == [
        (WS, "100 subscribers x 100 ev/s"),
        (LP, "100 subscribers x 10 ev/s"),
        ("peers-bytes-1", "10 subscribers x 1 ev/s"),
    ]
    ws = found[0]
    assert [(row.variant, row.series) for row in ws.rows] == [
        ("lab (gevent)", "websocket"),
        ("Flask-SocketIO, gevent, TCP_NODELAY", "websocket"),
        ("Flask-SocketIO, default handshake (polling then upgrade)", "websocket"),
        ("Nchan, 1 worker", "websocket"),
        ("Nchan, 1 worker per core", "websocket"),
        ("websockets (asyncio)", "websocket"),
        ("lab (gevent)", "sse"),
        ("Nchan, 1 worker", "sse"),
    ]
    lab, fsio = ws.rows[0], ws.rows[1]
    assert lab.cpu_us_per_event == 11.0 and lab.p99_us == 1000
    assert fsio.cpu_us_per_event == 40.0 and fsio.p99_us == 2000
    assert ws.rows[5].p99_us is None  # 50 samples: withheld
    threading = next(row for row in found[1].rows if row.variant == "Flask-SocketIO, threading")
    assert threading.cpu_us_per_event is None  # below the CPU floor


def test_ratios_lab_over_peer_same_point_same_transport(run: Any) -> None:
    rows = {(r.point, r.series, r.peer): r for r in peer_ratios(run)}
    assert set(rows) == {
        (WS, "websocket", "Flask-SocketIO, gevent, TCP_NODELAY"),
        (WS, "websocket", "Flask-SocketIO, default handshake (polling then upgrade)"),
        (WS, "websocket", "Nchan, 1 worker"),
        (WS, "websocket", "Nchan, 1 worker per core"),
        (WS, "websocket", "websockets (asyncio)"),
        (WS, "sse", "Nchan, 1 worker"),
        (LP, "longpoll", "Flask-SocketIO, gevent, TCP_NODELAY"),
        (LP, "longpoll", "Flask-SocketIO, gevent, no TCP_NODELAY (socketio.run)"),
        (LP, "longpoll", "Flask-SocketIO, threading"),
    }  # at peers-bytes-1 Nchan polled at an interval: another series than the lab's long poll, no ratio
    fsio = rows[(WS, "websocket", "Flask-SocketIO, gevent, TCP_NODELAY")]
    assert fsio.cpu == pytest.approx(11.0 / 40.0) and fsio.p99 == pytest.approx(0.5)
    assert rows[(WS, "websocket", "Nchan, 1 worker")].cpu == pytest.approx(11.0 / 20.0)
    assert rows[(WS, "sse", "Nchan, 1 worker")].p99 == pytest.approx(0.5)
    assert rows[(WS, "websocket", "websockets (asyncio)")].p99 is None  # its p99 is withheld
    invalid = rows[(WS, "websocket", "Flask-SocketIO, default handshake (polling then upgrade)")]
    assert invalid.peer_cpu_us is None and invalid.cpu is None  # no valid repetition: no ratio
    assert rows[(LP, "longpoll", "Flask-SocketIO, threading")].cpu is None


def test_idle_bytes_and_resume_rows(run: Any) -> None:
    idle = {row.variant: row for row in peer_idle_rows(run)}
    assert set(idle) == {"lab (gevent)", "Flask-SocketIO, gevent, TCP_NODELAY"}
    assert (
        idle["Flask-SocketIO, gevent, TCP_NODELAY"].group.cell(
            lambda r: float(r.raw["idle"]["rss_per_connection_bytes"]), 2**-10
        )
        == "40"
    )
    assert [(row.variant, row.series) for row in peer_bytes_rows(run)] == [
        ("lab (gevent)", "longpoll"),
        ("Nchan, 1 worker", "polling 1 s"),
    ]
    resume = peer_resume_rows(run)
    assert [(row.variant, row.series, row.total("missing"), row.total("reconnects")) for row in resume] == [
        ("lab (gevent)", "longpoll", 0, 100),
        ("lab (gevent)", "websocket", 0, 100),
        ("Flask-SocketIO, gevent, TCP_NODELAY", "websocket", 37, 100),
        ("Nchan, 1 worker", "sse", 0, 0),
    ]
    assert resume_sentence(resume) == (
        "Resumed across every drop with nothing missing, duplicated or out of order: lab (gevent) over longpoll and "
        "websocket. Lost what was published while their clients were away: Flask-SocketIO, gevent, TCP_NODELAY "
        "lost 37 of 2,000 events over websocket (1 repetition). Never dropped (no reconnect counted, so the test "
        "did not happen): Nchan, 1 worker over sse."
    )


def test_resume_sentence_follows_the_numbers(tmp_path: Path) -> None:
    """Swap who loses: the sentence changes with the counters, it is not written in advance."""
    results = [
        peer_result("r-lab", "r", "websocket", drop_every_s=2.0, reconnects=10, missing=5),
        peer_result("r-fsio", "r", "websocket", server="flask_socketio", drop_every_s=2.0, reconnects=10, duplicate=2),
        peer_result("r-ws", "r", "websocket", server="websockets", drop_every_s=2.0, reconnects=10),
    ]
    run = load_run(write_run(tmp_path / "run", results))
    assert resume_sentence(peer_resume_rows(run)) == (
        "Resumed across every drop with nothing missing, duplicated or out of order: websockets (asyncio) "
        "over websocket. Lost what was published while their clients were away: lab (gevent) lost 5 of 1,000 events "
        "over websocket (1 repetition). Delivered events twice or out of order: Flask-SocketIO, gevent, "
        "TCP_NODELAY delivered 2 duplicate(s) and 0 out of order over websocket (1 repetition)."
    )


def test_section_markdown(run: Any) -> None:
    lines = peers_section(run)
    text = "\n".join(lines)
    assert lines[0] == f"## {SECTION_TITLE}"
    for heading in (
        "### At each point",
        "### Lab / peer, same run",
        "### Idle connections",
        "### Bytes per event at 1 ev/s",
        "### Resume: connections dropped",
    ):
        assert f"\n{heading}\n" in text, heading
    assert "same run" in text.split("### Lab / peer, same run")[1].split("###")[0].replace("\n", " ")
    assert (
        "| lab (gevent) | websocket | 2 | 2,000/2,000 | 0/0/0 | 1,000 | 0.5 | 1 | 11 [10-12] | 100 | 0 | — |" in lines
    )
    # the withheld p99: '—' although the raw file has a value
    assert "| websockets (asyncio) | websocket | 1 | 1,000/1,000 | 0/0/0 | 50 | 0.9 | — | 15 | 100 | 0 | — |" in lines
    # an invalid run: marked, numbers in italics, flagged
    invalid = next(line for line in lines if line.startswith("| Flask-SocketIO, default handshake"))
    assert "⚠ INVALID" in invalid and "*10*" in invalid and "r1 ⚠ invalid: clients_saturated" in invalid
    lossy = next(line for line in lines if line.startswith("| Flask-SocketIO, gevent, no TCP_NODELAY"))
    assert "✗" in lossy and "✗ 3/0/0" in lossy and "997/1,000" in lossy
    assert (
        "| 100 subscribers x 100 ev/s | websocket | lab (gevent) | Flask-SocketIO, gevent, TCP_NODELAY | 0.28 "
        "| 11 / 40 | 0.5 | 1 / 2 |" in lines
    )
    assert "| Flask-SocketIO, gevent, TCP_NODELAY | websocket | 1,000 | 1 | 40 | 70 | — |" in lines
    assert "| Nchan, 1 worker | polling 1 s | 32 | 180 | 400 | 1 | — |" in lines
    assert (
        "| Flask-SocketIO, gevent, TCP_NODELAY ✗ | websocket | 10 x 10 ev/s, every 2 s | 1 | 1,963/2,000 | 37 | 0 "
        "| 0 | 100 | r1 loss |" in lines
    )
    assert resume_sentence(peer_resume_rows(run)) in lines


def test_no_peers_no_section(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "run", [peer_result("target-ws-100x100", None, "websocket")]))
    assert peer_results(run) == [] and peers_section(run) == []
    assert bench_main(["report", str(run.path)]) == 0
    report = (run.path / "REPORT.md").read_text()
    assert SECTION_TITLE not in report and "(charts/peers--" not in report


def test_the_rest_of_the_report_keeps_to_the_lab(run: Any) -> None:
    assert find_sweeps(run.results) == []  # a sweep over servers is not one the lab's charts draw
    lp_target = [r for r in evaluate(run) if r.target.startswith("Long poll, 100 subscribers")]
    assert lp_target and all(row.source == f"{LP}-lab" for row in lp_target)
    ws_target = [r for r in evaluate(run) if r.target.startswith("WebSocket, 100 subscribers")]
    assert all(row.source == f"{WS}-lab, target-ws-100x100" for row in ws_target)
    assert {row.transport for row in measured_table(run)} == {"longpoll", "websocket", "sse"}  # no Nchan polling
    assert all(row.scenario.endswith("-lab") or row.scenario == "target-ws-100x100" for row in cost_rows(run))
    assert [row.scenario for row in idle_rows(run)] == ["peers-idle-1000-lab"]
    names = {row[0] for row in summary_rows(run)}
    assert f"{WS}-flask_socketio [server flask_socketio]" in names and f"{WS}-lab" in names


def test_bench_report_writes_the_section_and_its_charts(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["report", str(run_dir)]) == 0
    written = {Path(line).name for line in capsys.readouterr().out.split()}
    report = (run_dir / "REPORT.md").read_text()
    assert f"\n## {SECTION_TITLE}\n" in report
    assert report.index("## Summary") < report.index(f"## {SECTION_TITLE}") < report.index("## The Kaazing")
    for point in (WS, LP, "peers-bytes-1"):
        for ext in ("png", "svg"):
            assert f"peers--{point}.{ext}" in written
            assert (run_dir / "charts" / f"peers--{point}.{ext}").stat().st_size > 0
        assert f"(charts/peers--{point}.png)" in report
    assert "\n### Peers\n" in report
    assert not any(name.startswith("runtimes--") for name in written)  # the threading variant is no lab runtime


def test_peer_charts_are_byte_for_byte_reproducible(run: Any, tmp_path: Path) -> None:
    first = {c.stem: c for c in write_charts(run, tmp_path / "a") if c.section == "Peers"}
    second = {c.stem: c for c in write_charts(run, tmp_path / "b") if c.section == "Peers"}
    assert set(first) == {f"peers--{p}" for p in (WS, LP, "peers-bytes-1")} == set(second)
    for stem, chart in first.items():
        assert chart.png.read_bytes() == second[stem].png.read_bytes()
        assert chart.svg.read_bytes() == second[stem].svg.read_bytes()
