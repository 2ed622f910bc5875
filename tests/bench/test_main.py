"""End to end: ``python -m bench run --profile smoke`` into a temporary directory (slow: about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from bench.contract.scenarios import load_profile
from bench.contract.schema import validate_meta, validate_result

pytestmark = pytest.mark.slow


def test_smoke_profile_end_to_end(smoke_run: Path) -> None:
    run = smoke_run
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
    assert (run / "REPORT.md").is_file()
    assert sorted((run / "charts").glob("*.png"))
    capture = json.loads((run / "capture.json").read_text())
    assert capture["longpoll_request"].startswith("GET ") and capture["websocket_response"].startswith("HTTP/1.1 101")
    assert psutil.Process().children(recursive=True) == []
