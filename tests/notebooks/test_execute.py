"""The notebook executes top to bottom against a fresh smoke run (nbclient) and reads that run, through bench.report.

The smoke run measures every peer once and captures a Socket.IO session, so the peers sections render from it
(it is given as the peers run too, so a committed ``results/peers`` cannot stand in for it). It is given as the
deploy run as well: it has no result through nginx, so the "Behind a proxy" section must say so and show nothing
(and a committed ``results/deploy`` cannot stand in for it). A SYNTHETIC peers run with chosen numbers
(tests/bench/fixtures/peers.py) checks what the "C push server" prose concludes, and a SYNTHETIC deploy run
(tests/bench/report/test_deploy.py's results) what the "Behind a proxy" section shows and says.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from bench.report import format_number, load_run, measured_table, peer_points
from bench.report.capture import load_socketio_capture
from bench.report.deploy import (
    by_point,
    closing_sentence,
    deploy_rows,
    hpack_table,
    kaazing_table,
    nginx_cpu_us,
    point_table,
    point_title,
    trap_table,
)
from notebooks.execute import execute
from tests.bench.fixtures.peers import peer_result, write_run
from tests.bench.report.test_deploy import fixture_results

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    out = tmp_path_factory.mktemp("notebook") / "executed.ipynb"
    execute(run=smoke_run, peers_run=smoke_run, deploy_run=smoke_run, output=out, timeout=600)
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
def synthetic_deploy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SYNTHETIC: a direct point and its nginx HTTP/1.1 + TLS and HTTP/2 + TLS rows (clear 400 / 400 / 260 bytes per
    event, TLS 470 / 300, nginx 20 / 33 µs per event), HTTP/2 with 10 streams per connection, HPACK blocks of 45 then
    30 bytes, and the SSE buffering trap (5 events per read, up to 12, 3 never arrived)."""
    return write_run(tmp_path_factory.mktemp("deploy"), [dict(r.raw) for r in fixture_results()], profile="deploy")


@pytest.fixture(scope="module")
def executed_synthetic(
    smoke_run: Path, synthetic_peers: Path, synthetic_deploy: Path, tmp_path_factory: pytest.TempPathFactory
) -> nbformat.NotebookNode:
    out = tmp_path_factory.mktemp("notebook") / "synthetic.ipynb"
    execute(run=smoke_run, peers_run=synthetic_peers, deploy_run=synthetic_deploy, output=out, timeout=600)
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
    reference = load_run(ROOT / "results" / "reference")
    assert reference.meta.provenance not in stream + markdown
    if (ROOT / "results" / "deploy" / "meta.json").exists():  # given the smoke run, it must not read the committed one
        assert load_run(ROOT / "results" / "deploy").meta.provenance not in stream + markdown
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


# --- "Behind a proxy": without a deploy run, and with a synthetic one ----------------------------------------


def test_without_a_deploy_run_the_proxy_section_says_so_and_shows_nothing(
    executed: nbformat.NotebookNode, smoke_run: Path
) -> None:
    markdown = _outputs(executed, "text/markdown")
    stream = _outputs(executed, "stream")
    assert (
        f"_No run through a proxy is available (`{smoke_run.name}` has no result through nginx): set `LAB_DEPLOY_RUN`"
        in markdown
    )
    assert markdown.count("_No run through a proxy: nothing to show (above)._") == 5  # each later subsection
    assert "nginx µs/event" not in markdown and "request block: first" not in markdown
    assert "deploy run:" not in stream
    # the configuration that avoids each trap is read from docs/nginx/lab.conf whatever the run
    assert "location ~ ^/channels/[^/]+/poll$ {" in stream and "proxy_buffering off;" in stream


def test_the_proxy_section_shows_the_deploy_runs_tables(
    executed_synthetic: nbformat.NotebookNode, synthetic_deploy: Path
) -> None:
    markdown = _outputs(executed_synthetic, "text/markdown")
    run = load_run(synthetic_deploy)
    rows = deploy_rows(run.results)
    assert f"deploy run: {synthetic_deploy.name}, profile deploy" in _outputs(executed_synthetic, "stream")
    assert list(by_point(rows)) == ["deploy-100x10", "deploy-h2-streams", "deploy-sse-buffering"]
    for rows_of_point in by_point(rows).values():
        assert f"**{point_title(rows_of_point)}**" in markdown
        assert point_table(rows_of_point) in markdown
    for piece in (hpack_table(rows), trap_table(rows), kaazing_table(rows), closing_sentence(rows)):
        assert piece and piece in markdown

    def chart(nb: nbformat.NotebookNode) -> list[object]:
        cell = next(c for c in nb.cells if c.cell_type == "code" and "bytes_figure(DEPLOY_ROWS)" in c.source)
        return [o for o in cell.outputs if "image/png" in o.get("data", {})]

    assert len(chart(executed_synthetic)) == 1  # the bytes-per-event bars


def test_no_proxy_chart_without_a_deploy_run(executed: nbformat.NotebookNode) -> None:
    cell = next(c for c in executed.cells if c.cell_type == "code" and "bytes_figure(DEPLOY_ROWS)" in c.source)
    assert [o for o in cell.outputs if "image/png" in o.get("data", {})] == []


def test_the_proxy_prose_quotes_the_deploy_runs_numbers(
    executed_synthetic: nbformat.NotebookNode, synthetic_deploy: Path
) -> None:
    markdown = " ".join(_outputs(executed_synthetic, "text/markdown").split())
    run = load_run(synthetic_deploy)
    fair = [r for r in run.results if r.scenario.sweep != "rate" and not r.scenario.proxy_buffering]
    assert (
        f"missing / duplicate / out of order: 0 / 0 / 0 of {sum(r.counters.expected for r in fair):,} events expected: "
        "nothing lost through the proxy." in markdown
    )
    assert (
        "**long polling** (`deploy-100x10`): 400 bytes per event direct; through nginx over HTTP/1.1 400 in the clear "
        "and 470 on the wire, over HTTP/2 260 and 300: in the clear, HTTP/2's bytes are 0.65 times HTTP/1.1's."
        in markdown
    )
    assert "over HTTP/2 260 and 300; its HTTP/2 row is the same HTTP/1.1 Upgrade over TLS" in markdown  # WebSocket
    assert "WebSocket's event takes 470 bytes on the wire for 400 in the clear, 70 more." in markdown
    assert (
        "Long polling in `deploy-100x10`: a connection's first request took 45 bytes of header block, each of the 10 "
        "later ones 30 on average (0.67 of the first); nginx's answers 110 bytes first, 108 later." in markdown
    )
    assert (
        "**Multiplexed** (`deploy-h2-streams`): 100 long polling subscribers per repetition, 10 streams per "
        "connection: 2 connections over the whole run, 200 bytes per event on the wire and 200 in the clear, against "
        "300 and 260 with one stream per connection (`deploy-100x10`)" in markdown
    )
    h2 = next(
        row for row in deploy_rows(run.results) if row.transport == "longpoll" and row.mode == "nginx HTTP/2 + TLS"
    )
    proxy, server = h2.median(nginx_cpu_us), h2.median(lambda r: r.cpu_us_per_event)
    assert proxy == 33 and server  # the fixture's
    share = format_number(proxy / server, 2)
    hop = [
        line
        for line in _outputs(executed_synthetic, "text/markdown").splitlines()
        if line.startswith("| deploy-100x10 | longpoll | nginx HTTP/2 + TLS | ") and " → " in line
    ]
    assert len(hop) == 1 and hop[0].endswith(f" | {h2.group.cell(lambda r: r.cpu_us_per_event)} | 33 | {share} |")
    expected = sum(r.counters.expected for r in run.results if r.scenario.proxy_buffering)
    assert "a read brought 5 events on average and up to 12 at once" in markdown
    assert f"3 of {expected:,} never arrived within the window." in markdown
    assert "With the shipped configuration: 1 events per read, at most 1," in markdown
    assert (
        "Over HTTP/2 long polling costs 1 times WebSocket's bytes on the wire per event (over HTTP/1.1: 1.6 times)."
        in markdown
    )
