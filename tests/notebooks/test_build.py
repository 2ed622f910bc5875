"""The notebook's source (notebooks/build.py): its prose quotes no measured number, it reads bench.report only.

Every number the notebook's prose quotes must come from the run it is executed against, so a Markdown
cell may hold no literal measurement: a sentence that cites one is written by a code cell. The same goes
for the string literals of code cells (a ``Markdown("about 93 bytes")`` would be a literal in disguise).
The only numbers with units allowed are definitions, listed in :data:`DEFINITIONS` with their source.
"""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

from notebooks.build import CELLS, NOTEBOOK, build

UNITS = (
    r"ms|µs|us|s|sec|seconds?|B|bytes?|KiB|MiB|GiB|kB|KB|MB|Mbps|%|x|times|"
    r"requests? per event|events? per (?:poll|response|second)|events?/s|ev/s|transits?"
)
NUMBER = r"(?<![\w.^])\d[\d,]*(?:\.\d+)?"
MEASURED = re.compile(rf"{NUMBER}(?:\s*(?:-|to)\s*{NUMBER})?[\s-]*\+?[\s-]*(?:{UNITS})(?![\w/])")
"""A number followed by a unit (``93 bytes``, ``0.93 requests per event``, ``2-byte``, ``30-60 s``)."""

DEFINITIONS = {
    "2 to 14 bytes": "RFC 6455 section 5.2: the smallest and the largest frame header",
    "2 bytes of header up to 125 bytes of payload, 4 up to 64 KiB": "RFC 6455 section 5.2: payload length encodings",
    "2 bytes up to 125 bytes of payload": "RFC 6455 section 5.2: the 7-bit payload length",
    "4-byte mask": "RFC 6455 section 5.3: the masking key of client frames",
    "2-byte frame header": "the Kaazing paper's input: framing bytes per WebSocket message",
    "871 bytes": "the Kaazing paper's input: HTTP header bytes per poll",
    '"from 150 ms to 50 ms" at 50 ms one way': "the Kaazing paper's quoted latency reduction and its link delay",
    "the 30 s that RFC 6202": "RFC 6202 section 5.5: the timeout it names as safe behind proxies",
    "default `pingInterval` is 25 s": "Socket.IO's documented default (python-engineio's ping_interval=25)",
}
"""Phrases quoting a number that is a definition (a standard's or the paper's), not a measurement."""

PROJECT = ("bench", "server", "clients", "notebooks")
ALLOWED_IMPORT = "bench.report"


def measured_numbers(text: str) -> list[str]:
    """Numbers with a unit in ``text``, once the phrases of :data:`DEFINITIONS` are taken out."""
    text = " ".join(text.split())  # prose wraps: a phrase may span lines
    for phrase in DEFINITIONS:
        text = text.replace(phrase, " ")
    return [m.group(0) for m in MEASURED.finditer(text)]


def string_literals(source: str) -> list[str]:
    """Every string constant of a code cell (f-strings' literal parts included)."""
    return [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def project_imports(source: str) -> list[str]:
    """Modules of this project a code cell imports (``import x``, ``from x import y``, ``import_module("x")``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found += [a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return [m for m in found if m.startswith(".") or m.split(".")[0] in PROJECT]


def forbidden_imports(source: str) -> list[str]:
    return [m for m in project_imports(source) if m != ALLOWED_IMPORT and not m.startswith(ALLOWED_IMPORT + ".")]


MARKDOWN = [src for kind, src in CELLS if kind == "md"]
CODE = [src for kind, src in CELLS if kind == "code"]


def test_committed_notebook_has_the_cells_of_its_source() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in build().cells]


@pytest.mark.parametrize("index", range(len(MARKDOWN)))
def test_markdown_cells_quote_no_measured_number(index: int) -> None:
    assert measured_numbers(MARKDOWN[index]) == []


@pytest.mark.parametrize("index", range(len(CODE)))
def test_string_literals_of_code_cells_quote_no_measured_number(index: int) -> None:
    assert [(s, found) for s in string_literals(CODE[index]) if (found := measured_numbers(s))] == []


@pytest.mark.parametrize(
    ("prose", "number"),
    [
        ("(its JSON envelope plus the payload, about 93 bytes here)", "93 bytes"),
        ("(about 0.93 requests per event here)", "0.93 requests per event"),
        ("batches them (0.10 requests per event at 100 events/s over a 50 ms link)", "0.10 requests per event"),
        ("often 500 to 1,000 bytes per request", "500 to 1,000 bytes"),
        ("two events 3 ms apart", "3 ms"),
        ("after 30-60 s", "30-60 s"),
        ("a 140-byte frame", "140-byte"),
        ("p99 of 12.5ms", "12.5ms"),
        ("RSS 20.3 KiB per connection, 6.6 Mbps", "20.3 KiB"),
        ("3.2 times as much", "3.2 times"),
        ("a 97% hit rate", "97%"),
    ],
)
def test_the_check_finds_numbers_the_prose_used_to_quote(prose: str, number: str) -> None:
    assert number in measured_numbers(prose)


@pytest.mark.parametrize(
    "prose",
    ["RFC 6455 section 5.2", "RFC 6202 section 2.2", "2^20 bits per second", "the 2010 white paper", "101 Switching"],
)
def test_the_check_leaves_references_alone(prose: str) -> None:
    assert measured_numbers(prose) == []


def test_every_definition_is_quoted_somewhere() -> None:
    """A phrase of the allow-list nobody quotes any more is a hole: it would let the measurement it names back."""
    text = " ".join(" ".join(MARKDOWN + [s for src in CODE for s in string_literals(src)]).split())
    assert [phrase for phrase in DEFINITIONS if phrase not in text] == []


def test_the_notebook_imports_bench_report_and_nothing_else_of_the_project() -> None:
    imported = [m for src in CODE for m in project_imports(src)]
    assert ALLOWED_IMPORT in imported
    assert [m for src in CODE for m in forbidden_imports(src)] == []


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from bench.contract.schema import Result\n", "bench.contract.schema"),
        ("import bench\n", "bench"),
        ("import bench.run.runner as runner\n", "bench.run.runner"),
        ("from server import create_app\n", "server"),
        ("import clients.subscriber\n", "clients.subscriber"),
        ("from .build import CELLS\n", ".build"),
        ("import importlib\nimportlib.import_module('bench.agents')\n", "bench.agents"),
        ("def f():\n    from bench.reports import x\n", "bench.reports"),
    ],
)
def test_the_import_check_finds_a_forbidden_import(source: str, bad: str) -> None:
    assert forbidden_imports(source) == [bad]


def test_the_import_check_allows_bench_report_and_third_parties() -> None:
    source = "import numpy as np\nfrom bench.report import load_run\nimport bench.report.tables\nimport benchmark\n"
    assert forbidden_imports(source) == []
