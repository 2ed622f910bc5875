"""End to end: ``python -m bench run --profile smoke`` into a temporary directory (slow: about a minute)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.scenarios import load_profile
from bench.schema import validate_meta, validate_result
from tests.support import ROOT, UNIT

pytestmark = pytest.mark.slow


def test_smoke_profile_end_to_end(tmp_path: Path) -> None:
    report = importlib.util.find_spec("bench.report") is not None
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--out", str(tmp_path)]
    done = subprocess.run(
        [*cmd, *([] if report else ["--no-report"])], cwd=ROOT, capture_output=True, text=True, timeout=300 * UNIT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    latest = tmp_path / "latest"
    assert latest.is_symlink()
    run = latest.resolve()
    assert run.parent == (tmp_path / "runs").resolve() and run.name.endswith("-smoke")

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

    transports = set()
    for name in meta["files"]:
        result = json.loads((run / name).read_text())
        validate_result(result)
        c = result["counters"]
        assert c["missing"] == c["duplicate"] == c["out_of_order"] == 0, (name, c)
        assert "loss" not in result["flags"]
        assert c["delivered"] == c["expected"], (name, c)
        if result["scenario"]["idle"]:
            assert result["idle"] is not None and c["expected"] == 0
        else:
            assert c["expected"] > 0 and result["latency"]["end_to_end"]["count"] == c["delivered"]
        transports.add(result["scenario"]["transport"])
    assert transports == {"longpoll", "websocket", "polling", "floor"}
    if report:
        assert (run / "REPORT.md").is_file()
    assert psutil.Process().children(recursive=True) == []
