"""Tests of clients.__main__: the CLI, run as subprocesses against a real server."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

from clients.__main__ import parse_data
from tests.support import ROOT, UNIT


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clients", *args], cwd=ROOT, capture_output=True, text=True, timeout=30 * UNIT
    )


def test_parse_data():
    assert parse_data('{"a": 1}') == {"a": 1}
    assert parse_data("42") == 42
    assert parse_data("hello") == "hello"
    assert parse_data("NaN") == "NaN"
    assert parse_data("[1, -Infinity]") == "[1, -Infinity]"


def test_publish_prints_seqs(server, channel):
    r = cli("publish", "--url", server.url, "--channel", channel, '{"x": 1}', "--count", "3", "--rate", "50")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["seq", "1", "seq", "2", "seq", "3"]


def test_publish_refused_exits_1(server):
    r = cli("publish", "--url", server.url, "--channel", "bad name", "x")
    assert r.returncode == 1
    assert "bad_channel" in r.stdout


@pytest.mark.parametrize("transport", ["longpoll", "websocket", "sse", "polling"])
def test_subscribe_prints_events_and_a_summary_on_sigint(server, channel, transport):
    assert cli("publish", "--url", server.url, "--channel", channel, "first").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "clients", "subscribe", "--transport", transport, "--channel", channel,
         "--url", server.url, "--timeout", "2", "--interval", "0.05"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        assert cli("publish", "--url", server.url, "--channel", channel, '{"second": 2}').returncode == 0
        seen: list[str] = []
        while not any('{"second": 2}' in line for line in seen):
            seen.append(lines.get(timeout=20 * UNIT))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20 * UNIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10 * UNIT)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    while not lines.empty():
        seen.append(lines.get())
    events = [line.split() for line in seen if line.split() and line.split()[0].isdigit()]
    assert [e[0] for e in events] == ["1", "2"]
    assert events[0][-1] == '"first"'
    assert all(e[2] == "ms" for e in events)
    text = "".join(seen)
    assert "delivered=2 duplicate=0 out_of_order=0 missing=0" in text
    assert "latency ms count=2" in text
