"""The notebook executes top to bottom against a fresh smoke run (nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from notebooks.build import NOTEBOOK, build
from notebooks.execute import execute

pytestmark = pytest.mark.slow


def test_committed_notebook_has_the_cells_of_its_source() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in build().cells]


def test_notebook_executes_against_a_smoke_run(smoke_run: Path, tmp_path: Path) -> None:
    out = execute(run=smoke_run, output=tmp_path / "executed.ipynb", timeout=600)
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert smoke_run.name in text  # it read the run it was given, not the reference
    assert "longpoll_request" in text  # the capture was dissected
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3
