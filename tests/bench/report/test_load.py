"""bench.report.load: a run directory read, validated and typed; failed and missing runs named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.contract.schema import SchemaError
from bench.report.load import load_run
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    specs = [
        Spec("rate-10", "rate", reps=2, lossy={("websocket", 2)}, saturated={("longpoll", 1)}),
        Spec("idle-5", "idle", idle=True, rate=0, subscribers=5, transports=("longpoll", "websocket"), reps=1),
        Spec("delay-50-poll1s", "delay", one_way_ms=50, rate=1, transports=("polling",), poll_interval_s=1.0, reps=1),
    ]
    return write_synthetic_run(tmp_path_factory.mktemp("load") / "run", specs)


def test_load_run_gives_typed_results(run_dir):
    run = load_run(run_dir)
    assert len(run.results) == 3 * 2 + 2 + 1
    assert run.meta.cores == 2 and run.meta.provenance.startswith("SYNTHETIC FIXTURE")
    lossy = [r for r in run.results if r.lossy]
    assert [(r.scenario.name, r.scenario.transport, r.repetition) for r in lossy] == [("rate-10", "websocket", 2)]
    assert lossy[0].counters.missing == 3
    invalid = [r for r in run.results if not r.valid]
    assert [(r.scenario.transport, r.repetition, r.flags) for r in invalid] == [("longpoll", 1, ("clients_saturated",))]
    idle = [r for r in run.results if r.scenario.idle]
    assert len(idle) == 2 and all(r.end_to_end.count == 0 for r in idle)
    polling = [r for r in run.results if r.scenario.transport == "polling"]
    assert polling[0].scenario.series == "polling 1 s" and polling[0].scenario.link.one_way_ms == 50
    assert polling[0].end_to_end.histogram().get_total_count() == polling[0].end_to_end.count


def test_load_run_names_the_bad_file(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "run", [Spec("rate-1", "rate", rate=1, reps=1)])
    bad = run_dir / "rate-1--websocket--r1.json"
    obj = json.loads(bad.read_text())
    obj["counters"]["duplicate"] = -1
    bad.write_text(json.dumps(obj))
    with pytest.raises(SchemaError) as info:
        load_run(run_dir)
    assert info.value.file == "rate-1--websocket--r1.json"
    assert "rate-1--websocket--r1.json: counters.duplicate" in str(info.value)


def test_load_run_refuses_unlisted_and_misnamed_files(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "run", [Spec("rate-1", "rate", rate=1, reps=1)])
    src = run_dir / "rate-1--websocket--r1.json"
    (run_dir / "rate-1--websocket--r9.json").write_text(src.read_text())
    with pytest.raises(SchemaError, match=r"rate-1--websocket--r9.json: files: .*not listed"):
        load_run(run_dir)
    (run_dir / "rate-1--websocket--r9.json").unlink()
    (run_dir / "rate-1--longpoll--r1.json").write_text(src.read_text())  # websocket content, longpoll name
    with pytest.raises(SchemaError, match=r"rate-1--longpoll--r1.json: scenario: file name does not match"):
        load_run(run_dir)


def test_load_run_refuses_unreadable_json(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "run", [Spec("rate-1", "rate", rate=1, reps=1)])
    (run_dir / "meta.json").write_text("{not json")
    with pytest.raises(SchemaError, match=r"meta\.json"):
        load_run(run_dir)


def test_failed_and_missing_runs_are_named(tmp_path: Path) -> None:
    run_dir = write_synthetic_run(tmp_path / "run", [Spec("rate-1", "rate", rate=1, reps=1)])
    meta = json.loads((run_dir / "meta.json").read_text())
    ok = json.loads((run_dir / "rate-1--websocket--r1.json").read_text())
    failed = {k: ok[k] for k in ("schema", "scenario", "repetition", "started_utc", "wall_s")}
    failed["scenario"] = {**ok["scenario"], "name": "rate-2"}
    (run_dir / "rate-2--websocket--r1.json").write_text(json.dumps({**failed, "status": "failed", "error": "boom"}))
    meta["files"].append("rate-2--websocket--r1.json")
    meta["planned"] = [*meta["files"], "rate-3--websocket--r1.json"]
    meta["finished_utc"] = None
    (run_dir / "meta.json").write_text(json.dumps(meta))
    run = load_run(run_dir)
    assert [(f.scenario.name, f.scenario.transport, f.repetition, f.error) for f in run.failed] == [
        ("rate-2", "websocket", 1, "boom")
    ]
    assert run.missing == ("rate-3--websocket--r1.json",)
    assert run.meta.finished_utc is None
    assert "rate-2" not in {r.scenario.name for r in run.results}
