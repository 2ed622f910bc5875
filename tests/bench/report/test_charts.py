"""bench.report.charts: every chart written as PNG and SVG, and the same raw files give the same bytes."""

from __future__ import annotations

import shutil

from bench.report.charts import write_charts
from bench.report.load import load_run
from tests.bench.report.conftest import EXPECTED_CHARTS


def test_every_chart_is_written_as_png_and_svg(written, run_dir):
    charts = run_dir / "charts"
    stems = {p.stem for p in charts.iterdir()}
    assert stems == EXPECTED_CHARTS
    for stem in EXPECTED_CHARTS:
        assert (charts / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (charts / f"{stem}.svg").read_text()[:2000]
    assert set(written) == {*charts.iterdir(), run_dir / "REPORT.md"}


def test_charts_are_byte_for_byte_reproducible(written, run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "charts")
    write_charts(load_run(copy), copy / "charts")
    for stem in EXPECTED_CHARTS:
        for ext in ("png", "svg"):
            assert (copy / "charts" / f"{stem}.{ext}").read_bytes() == (
                run_dir / "charts" / f"{stem}.{ext}"
            ).read_bytes()


def test_titles_say_what_a_sweep_holds_not_its_internal_name(written, report) -> None:
    """A chart's title names subscribers, rates, arrivals: never "sweep 'delay'" (the TOML's key)."""
    titles = [line for line in report.splitlines() if line.startswith("*") and "([SVG]" in line]
    assert titles
    assert not [t for t in titles if "sweep '" in t]
    assert any("subscriber" in t for t in titles)
