"""The parent's end: start a child process, speak JSON lines with it, watch it, stop it.

Process layer of the benchmark, used by everything that starts a process: the
runner (server, fleet, publisher), the relay's handle, the floor's handle,
the capture, and the test support. One class, :class:`Child`, so there is
one answer to each of the questions every caller used to answer again:

- Every child leads its own process group (``start_new_session``), so
  stopping it stops what it started too (gunicorn's workers).
- Every read has a timeout: :meth:`Child.recv` raises :class:`ChildError`
  when no line comes in time or the child exits, with the tail of its log.
- Stopping is SIGTERM to the group, a wait, then SIGKILL to the group; it
  never returns with the group alive.
- Ports: a child started with port 0 announces the port it bound on its first
  line (:meth:`Child.expect`), so nothing binds a port and releases it for a
  child to take later. :func:`free_port` remains for the lab's server only,
  whose ``--port`` has no ready line.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import psutil

__all__ = ["ROOT", "Child", "ChildError", "free_port", "process_cpu_ns", "stop_group", "wait_http_ok"]

ROOT = Path(__file__).resolve().parent.parent.parent
"""The project's root: children run from there, so ``python -m bench...`` resolves."""


def process_cpu_ns(pid: int) -> int | None:
    """CPU time of process ``pid`` (all its threads, exited ones included), in nanoseconds; ``None`` if gone.

    Linux's per-process CPU clock (``clock_getcpuclockid``, spelled out as ``((~pid) << 3) | 2``: the
    process's CPUCLOCK_SCHED clock) reads the scheduler's own count of nanoseconds on CPU. psutil's
    ``cpu_times`` reads ``/proc/<pid>/stat``, in clock ticks of 10 ms: a run that spends 20 ms of server CPU
    would read 0, 10 or 20 ms. Where the clock is refused (another kernel), psutil's ticks are the fallback.
    """
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)
    except OSError:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            return None
        return round((times.user + times.system) * 1e9)


class ChildError(RuntimeError):
    """A child that did not start, answer in time, or stay alive."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (for a child that cannot announce its own)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    """SIGTERM the process group led by ``proc``, wait ``timeout``, SIGKILL what is left; its exit code.

    Never returns while the group's leader is alive; the final SIGKILL to the group also ends members
    that outlived their leader (a gunicorn worker whose arbiter was killed).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    return proc.returncode


def wait_http_ok(url: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Probe ``url`` until it answers 200; :class:`ChildError` if ``alive()`` turns false or time runs out."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise ChildError(f"the process behind {url} exited before it answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
                last = f"status {answer.status}"
        except (OSError, urllib.error.URLError) as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise ChildError(f"{url} did not answer 200 within {timeout:g} s ({last})")


class Child:
    """A child process in its own process group, spoken to with one JSON object per line.

    ``args`` is the command after the interpreter when ``python=True`` (the default), e.g.
    ``["-m", "bench.agents.fleet"]``. With ``lines=True`` its stdin and stdout are pipes for the JSON-lines
    protocol (:mod:`bench.process.agent` is the other end); otherwise stdout goes to the log. Its stderr goes
    to ``log`` (a binary file the caller owns) or to a temporary file whose tail :class:`ChildError` quotes.
    """

    _live: ClassVar[weakref.WeakSet[Child]] = weakref.WeakSet()
    """Children of this process not stopped yet: what :meth:`stop_all` stops."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        log: IO[bytes] | None = None,
        lines: bool = True,
        python: bool = True,
        cwd: Path = ROOT,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name or " ".join(args[:2])
        self._own_log = log is None
        self.log: IO[bytes] = log if log is not None else tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        command = [sys.executable, *args] if python else list(args)
        # A Ctrl-C is deferred while the child starts and is registered: it cannot fall between the two and
        # leave a child that nobody knows to stop (it is raised right after). Deferred by a handler, not by
        # blocking the signal: a blocked mask would be inherited across exec, and the child would ignore SIGINT.
        deferred: list[int] = []
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, lambda signum, frame: deferred.append(signum)) if main else None
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.PIPE if lines else subprocess.DEVNULL,
                stdout=subprocess.PIPE if lines else self.log,
                stderr=self.log,
                start_new_session=True,
                env=env,
            )
            Child._live.add(self)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
                if deferred:
                    signal.raise_signal(signal.SIGINT)
        self._buffer = b""
        self._last_cpu = 0.0

    # --- the JSON-lines protocol ------------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        """Write one JSON line to the child's stdin; :class:`ChildError` if it is gone."""
        if self.proc.stdin is None:
            raise ChildError(f"{self.name} was started without a command pipe")
        try:
            self.proc.stdin.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ChildError(f"{self.name} is not reading commands (exit code {self.proc.poll()})") from exc

    def recv(self, timeout: float) -> dict[str, Any]:
        """The child's next JSON line; :class:`ChildError` if none comes within ``timeout`` s or it exits."""
        if self.proc.stdout is None:
            raise ChildError(f"{self.name} was started without an answer pipe")
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChildError(f"no answer from {self.name} within {timeout:g} s{self._tail()}")
                if sel.select(left):
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        self.proc.wait(1)
                        raise ChildError(f"{self.name} exited (code {self.proc.poll()}){self._tail()}")
                    self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ChildError(f"{self.name} wrote a line that is not JSON: {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise ChildError(f"{self.name} wrote {message!r:.200} where a JSON object was expected")
        return message

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        """The next line that has ``key``; a line with ``error`` instead raises :class:`ChildError`."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(deadline - time.monotonic(), 0.0))
            if key in message:
                return message
            if "error" in message:
                raise ChildError(f"{self.name}: {message['error']}")

    def request(self, command: dict[str, Any], key: str, timeout: float) -> dict[str, Any]:
        """Send ``command`` and return the answer that has ``key``."""
        self.send(command)
        return self.expect(key, timeout)

    # --- watching -------------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def processes(self) -> list[psutil.Process]:
        """The child and its descendants (gunicorn's arbiter and workers), alive now."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """CPU time of the child and its live descendants, at nanosecond resolution (:func:`process_cpu_ns`).

        Once the child has exited, the last value read.
        """
        readings = [ns for p in self.processes() if (ns := process_cpu_ns(p.pid)) is not None]
        if readings:
            self._last_cpu = sum(readings) / 1e9
        return self._last_cpu

    def rss_bytes(self) -> int:
        """Resident memory of the child and its descendants."""
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def log_tail(self, size: int = 3000) -> str:
        """The end of what the child wrote to its log (stderr)."""
        with contextlib.suppress(OSError, ValueError):
            self.log.flush()
            end = self.log.seek(0, os.SEEK_END)
            self.log.seek(max(0, end - size))
            text = self.log.read().decode(errors="replace")
            self.log.seek(0, os.SEEK_END)
            return text
        return ""

    def _tail(self) -> str:
        tail = self.log_tail().strip()
        return f"; its log ends: {tail[-1500:]}" if tail and self._own_log else ""

    # --- stopping -------------------------------------------------------------------------------------

    @classmethod
    def stop_all(cls, timeout: float = 5.0) -> None:
        """Stop every child this process started and has not stopped (the last line of defence on Ctrl-C)."""
        children = list(cls._live)
        for child in children:
            child.terminate()
        for child in children:
            child.stop(timeout)

    def terminate(self) -> None:
        """SIGTERM the group without waiting (:meth:`stop` waits and kills)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Close its stdin, then :func:`stop_group`; returns the exit code. Safe to call twice."""
        self.cpu_seconds()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        code = stop_group(self.proc, timeout)
        Child._live.discard(self)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._own_log:
            with contextlib.suppress(OSError):
                self.log.close()
        return code

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
