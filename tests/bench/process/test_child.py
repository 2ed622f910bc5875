"""bench.process.child: one way to start, speak to, watch and stop a child process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from bench.process import Child, ChildError, free_port, process_cpu_ns, stop_group, wait_http_ok
from tests.support import UNIT


def test_recv_times_out_with_the_childs_name() -> None:
    with (
        Child(["-c", "import time; time.sleep(60)"], name="the sleeper") as quiet,
        pytest.raises(ChildError, match="no answer from the sleeper"),
    ):
        quiet.recv(0.2 * UNIT)
    assert quiet.exited()


def test_recv_reports_exit_and_quotes_the_log() -> None:
    code = "import sys; print('{\"a\": 1}', flush=True); sys.stderr.write('boom at the end'); sys.exit(3)"
    with Child(["-c", code]) as gone:
        assert gone.recv(10 * UNIT) == {"a": 1}
        with pytest.raises(ChildError, match=r"exited \(code 3\).*boom at the end"):
            gone.recv(10 * UNIT)


def test_a_line_that_is_not_a_json_object_is_an_error() -> None:
    with Child(["-c", "print('[1, 2]', flush=True); print('not json', flush=True)"]) as child:
        with pytest.raises(ChildError, match="where a JSON object was expected"):
            child.recv(10 * UNIT)
        with pytest.raises(ChildError, match="not JSON"):
            child.recv(10 * UNIT)


def test_expect_skips_other_lines_and_raises_on_error_lines() -> None:
    code = (
        "import json, sys\n"
        "print(json.dumps({'noise': 1}), flush=True)\n"
        "print(json.dumps({'ready': True}), flush=True)\n"
        "print(json.dumps({'error': 'bad command'}), flush=True)\n"
        "sys.stdin.readline()\n"
    )
    with Child(["-c", code]) as child:
        assert child.expect("ready", 10 * UNIT) == {"ready": True}
        with pytest.raises(ChildError, match="bad command"):
            child.expect("ready", 10 * UNIT)


def test_stop_ends_the_whole_group_even_a_child_that_ignores_sigterm() -> None:
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "sub = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print(sub.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = Child(["-c", code], lines=False)
    deadline = time.monotonic() + 30 * UNIT
    while len(child.processes()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = [p.pid for p in child.processes()]
    assert len(members) == 2
    child.stop(timeout=0.5 * UNIT)
    assert child.exited()
    for pid in members:
        assert _gone(pid), pid


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_group_returns_the_exit_code() -> None:
    child = Child(["-c", "import sys; sys.exit(7)"], lines=False)
    child.proc.wait(30 * UNIT)
    assert stop_group(child.proc) == 7
    child.stop()


def test_cpu_and_rss_of_a_busy_child_are_positive_and_kept_after_exit() -> None:
    with Child(
        ["-c", "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(60)"],
        lines=False,
    ) as busy:
        deadline = time.monotonic() + 30 * UNIT
        while busy.cpu_seconds() < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert busy.cpu_seconds() >= 0.25
        assert busy.rss_bytes() > 1 << 20
        busy.terminate()
        busy.proc.wait(30 * UNIT)
        assert busy.cpu_seconds() >= 0.25  # the last value seen survives the exit


def test_wait_http_ok_raises_when_nothing_answers_or_the_process_died() -> None:
    port = free_port()
    with pytest.raises(ChildError, match="did not answer 200"):
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 0.3 * UNIT)
    with pytest.raises(ChildError, match="exited before it answered"):
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 10 * UNIT, alive=lambda: False)


def test_terminate_sends_sigterm_to_the_group(tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    code = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(marker)!r}).write_text('x'), sys.exit(0)))\n"
        "print('{\"ready\": true}', flush=True)\n"
        "time.sleep(60)\n"
    )
    with Child(["-c", code]) as child:
        child.expect("ready", 30 * UNIT)
        child.terminate()
        child.proc.wait(30 * UNIT)
    assert marker.read_text() == "x"  # the handler ran in the child


def test_a_child_leads_its_own_process_group() -> None:
    with Child(["-c", "import time; time.sleep(60)"], lines=False) as child:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(os.getpid())


def test_stop_all_stops_every_child_not_yet_stopped() -> None:
    children = [Child(["-c", "import time; time.sleep(60)"], lines=False) for _ in range(3)]
    children[0].stop()
    Child.stop_all(timeout=5 * UNIT)
    assert all(child.exited() for child in children)
    assert not set(Child._live) & set(children)


def test_process_cpu_is_read_in_nanoseconds_with_exited_threads_counted() -> None:
    code = (
        "import threading, time\n"
        "def burn():\n"
        "    end = time.thread_time() + 0.25\n"
        "    while time.thread_time() < end: pass\n"
        "t = threading.Thread(target=burn); t.start(); t.join()\n"
        "print('{\"burnt\": true}', flush=True)\n"
        "time.sleep(60)\n"
    )
    with Child(["-c", code]) as child:
        child.expect("burnt", 30 * UNIT)
        ns = process_cpu_ns(child.pid)
        assert ns is not None and ns >= 250_000_000  # the thread has exited; its time is still the process's
        assert ns % 10_000_000 != 0  # not a count of 10 ms clock ticks
    assert process_cpu_ns(child.pid) is None or not psutil.pid_exists(child.pid)


def test_a_child_starts_with_sigint_unblocked() -> None:
    """Deferring a Ctrl-C while the child starts must not leave SIGINT blocked in the child (it would ignore it)."""
    import signal

    child = Child(["-c", "import time; time.sleep(30)"], lines=False)
    try:
        blocked = next(line for line in Path(f"/proc/{child.pid}/status").read_text().splitlines() if "SigBlk" in line)
        assert int(blocked.split()[1], 16) & (1 << (signal.SIGINT - 1)) == 0
        os.kill(child.pid, signal.SIGINT)
        assert child.proc.wait(10 * UNIT) == -signal.SIGINT  # Python re-raises an uncaught KeyboardInterrupt as it
    finally:
        child.stop()
