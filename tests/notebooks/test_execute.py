"""The notebook executes top to bottom against a fresh smoke run (nbclient) and reads that run, through bench.report."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from bench.report import format_number, load_run, measured_table
from notebooks.execute import execute

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    out = execute(run=smoke_run, output=tmp_path_factory.mktemp("notebook") / "executed.ipynb", timeout=600)
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
