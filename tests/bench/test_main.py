"""``python -m bench`` end to end: the smoke profile, and a profile interrupted in the middle (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.contract.scenarios import load_profile
from bench.contract.schema import validate_meta, validate_result
from tests.conftest import SmokeRun
from tests.support import ROOT, TAG_VARIABLE, UNIT, tagged_processes, wait_until

pytestmark = pytest.mark.slow


def test_smoke_profile_end_to_end(smoke: SmokeRun) -> None:
    run = smoke.path
    assert run.parent.parent.joinpath("latest").resolve() == run
    assert run.name.endswith("-smoke")

    meta = json.loads((run / "meta.json").read_text())
    validate_meta(meta)
    assert meta["profile"] == "smoke" and meta["git"]["commit"] and meta["versions"]["flask"]
    assert meta["machine"]["cores"] >= 1 and meta["python"]
    profile = load_profile("smoke")
    expected = {
        f"{s.name}--{t}--r{k}.json"
        for s in profile.scenarios
        for t in s.transports
        for k in range(1, s.repetitions + 1)
    }
    assert set(meta["files"]) == expected
    assert {p.name for p in run.glob("*--*--r*.json")} == expected

    transports, servers = set(), set()
    for name in meta["files"]:
        result = json.loads((run / name).read_text())
        validate_result(result)
        if result["scenario"]["kind"] == "memory":
            steps = [s["step"] for s in result["memory"]["steps"]]
            assert steps == ["start", "channels", "big", "stall", "after_stall"], steps
            assert [s["published"] for s in result["memory"]["steps"]] == [0, 200, 3, 3, 0]
            assert all(s["rss_bytes"] > 1 << 20 for s in result["memory"]["steps"])
            continue
        c = result["counters"]
        assert c["missing"] == c["duplicate"] == c["out_of_order"] == 0, (name, c)
        assert "loss" not in result["flags"]
        assert c["delivered"] == c["expected"], (name, c)
        host = result["host"]  # the machine over the window, read from /proc/stat
        assert host["cpus"] == meta["machine"]["cores"] and host["seconds"] > 0, host
        assert 0 < host["busy_percent"] + host["steal_percent"] <= 100, host
        if result["scenario"]["idle"]:
            assert result["idle"] is not None and c["expected"] == 0
        else:
            assert c["expected"] > 0 and result["latency"]["end_to_end"]["count"] == c["delivered"]
        transports.add(result["scenario"]["transport"])
        servers.add(result["scenario"]["server"])
        if result["scenario"]["server"] != "lab":  # a peer: its ready line is kept, it has no delivery latency
            assert result["server"]["peer"]["name"] == result["scenario"]["server"], name
            assert result["server"]["peer"]["versions"], name
            assert result["server"]["cpu_s"] > 0, name
    assert transports == {"longpoll", "websocket", "polling", "sse", "floor"}
    assert servers == {"lab", "flask_socketio", "nchan", "websockets"}
    assert (run / "REPORT.md").is_file()
    assert sorted((run / "charts").glob("*.png"))
    capture = json.loads((run / "capture.json").read_text())
    assert capture["longpoll_request"].startswith("GET ") and capture["websocket_response"].startswith("HTTP/1.1 101")
    assert smoke.leftovers == []  # no process of the run outlived it, wherever it was re-parented


def test_an_interrupted_profile_still_reports_and_names_the_missing_runs(tmp_path: Path) -> None:
    """SIGINT in the middle of a profile: the runs so far are raw files, meta.json lists them and the plan."""
    tag = f"interrupt-{uuid.uuid4().hex}"
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--out", str(tmp_path), "--no-report"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, TAG_VARIABLE: tag}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        runs = tmp_path / "runs"

        def one_written() -> bool:
            metas = list(runs.glob("*/meta.json")) if runs.exists() else []
            return bool(metas) and bool(json.loads(metas[0].read_text())["files"])

        assert wait_until(one_written, 300 * UNIT, 0.1), "no run was written"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120 * UNIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-2000:]
    assert b"interrupted" in stderr
    run_dir = next(runs.iterdir())
    meta = json.loads((run_dir / "meta.json").read_text())
    validate_meta(meta)
    assert meta["finished_utc"] is None
    assert 0 < len(meta["files"]) < len(meta["planned"])
    for name in meta["files"]:
        validate_result(json.loads((run_dir / name).read_text()))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(run_dir)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = (run_dir / "REPORT.md").read_text()
    assert "**interrupted**" in report and "## Runs not measured" in report
    missing = [name for name in meta["planned"] if name not in meta["files"]]
    assert all(f"`{name}`" in report for name in missing)
    assert wait_until(lambda: tagged_processes(tag) == [], 30 * UNIT), tagged_processes(tag)
