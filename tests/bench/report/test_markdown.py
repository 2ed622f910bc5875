"""bench.report (with bench.charts and bench.targets): everything regenerated from raw files alone.

The run is SYNTHETIC (tests/bench/fixtures/synthetic.py): schema-valid files with real HdrHistograms
of generated values, one lossy and two invalid (saturated) repetitions injected.
"""

from __future__ import annotations

import json
import re
import shutil

from bench.contract.names import HOST_STEAL_PERCENT
from bench.report.load import load_run
from bench.report.markdown import SUMMARY_COLUMNS, main, summary_rows, write_report
from bench.report.targets import evaluate
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run
from tests.bench.report.conftest import EXPECTED_CHARTS


def test_report_has_every_section_and_embeds_every_chart(report):
    for heading in (
        "# Benchmark report: 20261127T201500Z-synthetic",  # named from meta.json, wherever the run lies
        "## Run",
        "## Performance targets",
        "## Summary",
        "### Correctness",
        "### Latency (ms)",
        "### Cost",
        "## The Kaazing white paper's table, reproduced and recomputed",
        "## Charts",
    ):
        assert f"\n{heading}\n" in f"\n{report}", heading
    for stem in EXPECTED_CHARTS:
        assert f"(charts/{stem}.png)" in report
        assert f"(charts/{stem}.svg)" in report
    assert "SYNTHETIC FIXTURE" in report


def test_targets_table_measured_and_not_measured(report, run_dir):
    rows = [line for line in report.splitlines() if line.startswith("| WebSocket, 100 subscribers x 100 ev/s")]
    assert len(rows) == 3
    # The verdicts themselves are tests/bench/report/test_targets.py's; here, that each is printed as computed.
    computed = [r for r in evaluate(load_run(run_dir)) if r.target == "WebSocket, 100 subscribers x 100 ev/s, gevent"]
    assert [f"| **{r.verdict}** |" in row for r, row in zip(computed, rows, strict=True)] == [True] * 3
    assert all("target-ws-100x100 r1" in row and "target-ws-100x100 r2" in row for row in rows)
    for title in ("WebSocket, 1,000 subscribers x 10 ev/s", "Long poll, 1,000 subscribers x 10 ev/s"):
        missing = [line for line in report.splitlines() if line.startswith(f"| {title}")]
        assert missing and all("not measured in this run" in line for line in missing)


def test_kaazing_tables(report):
    section = report.split("## The Kaazing")[1].split("## Charts")[0]
    assert "6.645 (printed 6.6)" in section and "664.5 (printed 665)" in section
    assert "0.01526 (printed 0.015)" in section and "1.526 (printed 1.526)" in section
    assert "| longpoll |" in section and "| websocket |" in section and "| polling 1 s |" in section
    assert "delay-50-poll1s (1 ev/s per subscriber, one-way 50 ms" in section


def test_lossy_scenario_is_marked_in_every_table(report):
    lossy_rows = [line for line in report.splitlines() if line.startswith("| fan-100 ✗ | websocket |")]
    assert len(lossy_rows) == 3  # correctness, latency, cost
    assert "✗ 3/0/0" in lossy_rows[0] and "r1 loss" in lossy_rows[0]
    assert "this run HAS LOSS" in report
    assert not [line for line in report.splitlines() if line.startswith("| fan-100 ✗ | longpoll |")]


def test_invalid_runs_are_labelled_not_counted(report):
    assert "this run HAS INVALID repetitions" in report
    # rate-100 longpoll: r1 invalid, r2 valid -> numbers from r2, r1 labelled
    row = next(line for line in report.splitlines() if line.startswith("| rate-100 | longpoll | 2 |"))
    assert "r1 ⚠ invalid: clients_saturated" in row
    # rate-1000: no valid repetition left -> labelled INVALID, numbers in italics
    rows = [line for line in report.splitlines() if line.startswith("| rate-1000 ⚠ INVALID | longpoll |")]
    assert len(rows) == 3
    assert re.search(r"\| \*[0-9.,]+\* \|", rows[1])


def test_summary_rows_for_the_terminal(run_dir):
    rows = summary_rows(run_dir)
    run = load_run(run_dir)
    assert len(rows) == len({(r.scenario.name, r.scenario.series) for r in run.results})
    assert all(len(row) == len(SUMMARY_COLUMNS) for row in rows)
    by_key = {(row[0], row[1]): row for row in rows}
    assert by_key[("fan-100 ✗", "websocket")][4] == "✗ 3/0/0"
    assert "⚠" in by_key[("rate-1000 ⚠ INVALID", "longpoll")][-1]
    assert not any("*" in cell for row in rows for cell in row)  # no markdown in a terminal


def test_deleted_charts_are_recreated_and_stale_ones_removed(written, report, run_dir, capsys):
    shutil.rmtree(run_dir / "charts")
    (run_dir / "REPORT.md").unlink()
    assert main([str(run_dir)]) == 0
    (run_dir / "charts" / "from-an-old-version.png").write_bytes(b"stale")
    write_report(run_dir)
    assert not (run_dir / "charts" / "from-an-old-version.png").exists()
    printed = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in printed if p.endswith(".png")} == EXPECTED_CHARTS
    assert (run_dir / "REPORT.md").read_text() == report  # same raw files, same report
    assert {p.stem for p in (run_dir / "charts").iterdir()} == EXPECTED_CHARTS


def test_cli_refuses_a_bad_run(tmp_path, capsys):
    run_dir = write_synthetic_run(tmp_path / "run", [Spec("rate-1", "rate", rate=1, reps=1)])
    (run_dir / "rate-1--floor--r1.json").write_text("{}")
    assert main([str(run_dir)]) == 2
    assert "rate-1--floor--r1.json" in capsys.readouterr().err


def test_the_tail_section_appears_with_poisson_delay_scenarios(tmp_path):
    specs = [
        Spec("delay-poisson-50", "delay-poisson", one_way_ms=50, rate=5, arrivals="poisson", transports=("longpoll",))
    ]
    run_dir = write_synthetic_run(tmp_path / "run", specs)
    write_report(run_dir)
    report = (run_dir / "REPORT.md").read_text()
    section = report.split("## Long polling under random arrivals: events beyond one transit")[1].split("\n## ")[0]
    assert "| delay-poisson-50 | 50 | 5 | 50 |" in section
    assert "39.3%" in section  # 1 - exp(-5 x 0.1)


def test_the_hosts_steal_is_summarised_when_the_results_recorded_it(tmp_path, report):
    assert "stolen by the host" not in report  # the fixture's files predate the reading: no row
    run_dir = write_synthetic_run(tmp_path / "run", [Spec("rate-1", "rate", rate=1, reps=2)])
    steals = iter([1.0, 3.0, 2.0, 40.0, 0.5, 5.0])
    for path in sorted(run_dir.glob("*--*--r*.json")):
        obj = json.loads(path.read_text())
        obj["host"] = {"seconds": 5.0, "cpus": 2, "busy_percent": 50.0, "steal_percent": next(steals)}
        if obj["host"]["steal_percent"] > HOST_STEAL_PERCENT:
            obj["flags"].append("host_steal")
        path.write_text(json.dumps(obj))
    assert next(steals, None) is None  # every result file got a reading
    write_report(run_dir)
    report = (run_dir / "REPORT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| CPU time stolen by the host |"))
    assert "median 2.5 %, max 40.0 %" in row and "1 of 6 repetitions above 10 %" in row
    assert "r2 host_steal" in report or "r1 host_steal" in report  # the flag in its row's flags cell
