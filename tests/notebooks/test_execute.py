"""The notebook executes top to bottom against a fresh smoke run (nbclient) and reads that run, through bench.report.

The smoke run measures every peer once and captures a Socket.IO session, so the peers sections render from it
(it is given as the peers run too, so a committed ``results/peers`` cannot stand in for it). A SYNTHETIC peers
run with chosen numbers (tests/bench/fixtures/peers.py) checks what the "C push server" prose concludes.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from bench.report import format_number, load_run, measured_table, peer_points
from bench.report.capture import load_socketio_capture
from notebooks.execute import execute
from tests.bench.fixtures.peers import peer_result, write_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    out = tmp_path_factory.mktemp("notebook") / "executed.ipynb"
    execute(run=smoke_run, peers_run=smoke_run, output=out, timeout=600)
    return nbformat.read(out, as_version=4)


def _outputs(nb: nbformat.NotebookNode, kind: str) -> str:
    """Every stream text (``kind="stream"``) or generated Markdown (``kind="text/markdown"``) of the code cells."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    if kind == "stream":
        return "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    return "\n".join(o["data"][kind] for c in code for o in c.outputs if kind in o.get("data", {}))


def test_every_code_cell_ran_without_error(executed: nbformat.NotebookNode) -> None:
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert [o for c in code for o in c.outputs if o.output_type == "error"] == []
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the sequence diagrams, the spectrum, the transits, the cost


def test_it_read_the_run_it_was_given(executed: nbformat.NotebookNode, smoke_run: Path) -> None:
    text = _outputs(executed, "stream")
    assert smoke_run.name in text  # not the reference
    assert load_run(smoke_run).meta.provenance in text


def test_the_capture_was_dissected(executed: nbformat.NotebookNode) -> None:
    text = _outputs(executed, "stream")
    assert "--- longpoll_request:" in text
    assert "--- websocket_frame:" in text


def test_its_kaazing_table_is_the_reports(executed: nbformat.NotebookNode, smoke_run: Path) -> None:
    """The measured row of each transport: same scenario, same bytes as REPORT.md's (bench.report.measured_table)."""
    markdown = _outputs(executed, "text/markdown")
    rows = measured_table(load_run(smoke_run))
    assert {row.transport for row in rows} >= {"longpoll", "websocket"}
    for row in rows:
        line = next(
            line for line in markdown.splitlines() if line.startswith(f"| {row.transport} |") and row.source in line
        )
        assert f"| {format_number(row.bytes_per_event)} |" in line


def test_its_prose_quotes_this_runs_numbers(executed: nbformat.NotebookNode, smoke_run: Path) -> None:
    markdown = _outputs(executed, "text/markdown")
    run = load_run(smoke_run)
    websocket = next(row for row in measured_table(run) if row.transport == "websocket")
    assert f"WebSocket's {format_number(websocket.bytes_per_event)} bytes per event" in markdown
    assert (
        f"{len(run.results)} repetitions, {sum(r.counters.expected for r in run.results):,} events expected" in markdown
    )


def test_the_socketio_session_is_shown_step_by_step(executed: nbformat.NotebookNode, smoke_run: Path) -> None:
    capture = load_socketio_capture(smoke_run)
    assert capture is not None  # the runner captures one when the profile has a Flask-SocketIO scenario
    markdown = _outputs(executed, "text/markdown")
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and " | `" in line]
    assert len(rows) == len(capture.steps)
    for i, (row, step) in enumerate(zip(rows, capture.steps, strict=True), 1):
        assert row.startswith(f"| {i} | {step.connection} | ") and f" | {step.length} | " in row
        assert row.endswith(f" | {step.what} |")
    assert f"`{capture.event.text}`" in markdown
    assert f"`pingInterval` {capture.open['pingInterval']:,} ms" in markdown
    assert f"the session id `sid` (`{capture.open['sid']}`)" in markdown


def test_the_peers_sections_quote_the_peers_runs_numbers(executed: nbformat.NotebookNode, smoke_run: Path) -> None:
    markdown = _outputs(executed, "text/markdown").splitlines()
    points = peer_points(load_run(smoke_run))
    assert points  # the smoke run measures every peer
    for point in points:
        assert f"**{point.title}** (sweep `{point.name}`)" in markdown
        for row in point.rows:
            g = row.group
            line = next(x for x in markdown if x.startswith(f"| {row.variant}{g.marks} | {row.series} | "))
            assert f" | {g.total('delivered'):,}/{g.total('expected'):,} | " in line
            assert f" | {g.cell(lambda r: r.cpu_us_per_event)} | " in line


# --- the "C push server" prose, from chosen numbers ---------------------------------------------------------

WS, LP = "peers-ws-1000x10", "peers-lp-1000x10"
LOAD = {"subscribers": 1000, "rate": 10, "expected": 100_000}


@pytest.fixture(scope="module")
def synthetic_peers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SYNTHETIC: the lab's long poll 10 times its WebSocket per event, Nchan's 3 times; one resume row lost 37."""
    results = [
        peer_result(f"{WS}-lab", WS, "websocket", cpu_us=20.0, **LOAD),
        peer_result(f"{WS}-lab", WS, "sse", cpu_us=30.0, down=120.0, **LOAD),
        peer_result(f"{WS}-nchan", WS, "websocket", server="nchan", cpu_us=4.0, **LOAD),
        peer_result(f"{LP}-lab", LP, "longpoll", cpu_us=200.0, requests_per_event=1.0, **LOAD),
        peer_result(f"{LP}-nchan", LP, "longpoll", server="nchan", cpu_us=12.0, requests_per_event=1.0, **LOAD),
        peer_result("peers-resume-flask_socketio", "peers-resume", "websocket", server="flask_socketio",
                    drop_every_s=2.0, reconnects=90, missing=37),
    ]  # fmt: skip
    return write_run(tmp_path_factory.mktemp("peers"), results)


@pytest.fixture(scope="module")
def executed_synthetic(
    smoke_run: Path, synthetic_peers: Path, tmp_path_factory: pytest.TempPathFactory
) -> nbformat.NotebookNode:
    out = tmp_path_factory.mktemp("notebook") / "synthetic.ipynb"
    execute(run=smoke_run, peers_run=synthetic_peers, output=out, timeout=600)
    return nbformat.read(out, as_version=4)


def test_the_c_server_prose_separates_the_technique_from_the_request_path(
    executed_synthetic: nbformat.NotebookNode,
) -> None:
    markdown = " ".join(_outputs(executed_synthetic, "text/markdown").split())
    assert (
        "the lab's long poll costs 200 µs of server CPU per event against 20 µs for its WebSocket: 10 times as much. "
        "Nchan's long poll costs 12 µs against 4 µs for its own WebSocket: 3 times." in markdown
    )
    assert "the lab's is 3.3 times that: the excess is what the lab's request path" in markdown
    assert "the lab spends 17 times its CPU per event over longpoll" in markdown
    assert "SSE costs 1.5 times WebSocket's server CPU per event" in markdown
    assert "lost 37 of 1,000 events over websocket" in markdown


def test_no_number_of_another_run(executed: nbformat.NotebookNode, smoke_run: Path) -> None:
    """Executed against the smoke run, the notebook quotes the smoke run: none of the committed reference's sentences
    that this run's data would word differently, and the hero section follows this run (its caption or its absence)."""
    from bench.report.hero import hero_caption
    from bench.report.tables import byte_parts

    markdown = _outputs(executed, "text/markdown")
    stream = _outputs(executed, "stream")
    run = load_run(smoke_run)
    reference = load_run(Path(__file__).resolve().parents[2] / "results" / "reference")
    assert reference.meta.provenance not in stream + markdown
    assert "`reference` run" not in markdown
    caption = hero_caption(run)
    if caption:
        assert caption in markdown
    else:
        assert "no scenario with random arrivals under a delay" in markdown
    ref_caption = hero_caption(reference)
    assert not ref_caption or ref_caption not in markdown
    for row in measured_table(reference):
        if row.source not in {r.source for r in measured_table(run)}:
            assert row.source not in markdown
    parts = byte_parts(run)
    ws = next((p for p in parts if p.series == "websocket" and not p.browser), None)
    if ws is not None:
        assert f"mostly the lab's envelope ({format_number(ws.envelope)} bytes)" in markdown
