"""``python -m peers.nchan``: nginx with Nchan on 127.0.0.1, started and stopped like the lab's server.

It writes the config (:mod:`peers.nchan.config`) to a directory of its own, runs ``nginx -c <conf> -p <dir>``
as a child in the foreground, and once ``/healthz`` answers prints one JSON line on stdout (the only thing
it writes there)::

    {"listening": "http://127.0.0.1:N", "port": N, "peer": "nchan", "pid": ..., "versions": {...}, "options": {...}}

With ``--port 0`` it picks a free port; picking one means binding it, closing it and handing the number to
nginx, which someone else could take in between, so a start that fails with "Address already in use" is
tried again on another port. On SIGTERM or SIGINT it stops nginx (SIGQUIT, a graceful stop; SIGTERM after
``GRACE_S``; SIGKILL to what is left after as long again), removes its directory and exits 0. If nginx dies
on its own, it exits 1 with the tail of nginx's error log on stderr.

nginx stays in this process's process group (it is not given a session of its own): whoever stops the group
(``bench.process.Child``: SIGTERM, then SIGKILL to the group) stops nginx's master and workers with it even
if this process is killed first. A worker of a killed master would otherwise keep serving, orphaned.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import NoReturn

import psutil

from .config import MODULE_PATH, NchanConfig, render

NGINX_CANDIDATES = ("/usr/sbin/nginx",)
"""Where Debian installs nginx, in case ``/usr/sbin`` is not on ``PATH``."""
INSTALL = "apt-get install nginx-light libnginx-mod-nchan"
"""The command that installs what this peer runs."""
START_TIMEOUT_S = 20.0
"""Seconds nginx has to accept connections and answer ``/healthz``."""
GRACE_S = 3.0
"""Seconds a graceful stop (SIGQUIT) may take before nginx is told to stop at once (SIGTERM)."""
PORT_ATTEMPTS = 5
"""Free ports tried when ``--port 0`` and the one picked was taken before nginx bound it."""


class _Stop(BaseException):
    """SIGTERM or SIGINT arrived: unwind to the cleanup, wherever the main thread was."""


class _PortTaken(Exception):
    """nginx could not bind the port."""


def find_nginx() -> str | None:
    """The nginx binary: on ``PATH``, else where Debian puts it."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((c for c in NGINX_CANDIDATES if os.access(c, os.X_OK)), None)


def versions(nginx: str) -> dict[str, str]:
    """What this peer runs: nginx's own version line, and the Debian packages' versions where dpkg knows them."""
    out: dict[str, str] = {}
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10, check=False)
    line = (done.stderr or done.stdout).strip()
    out["nginx"] = line.rpartition("/")[2] if "/" in line else line
    for package in ("nginx-light", "nginx-common", "libnginx-mod-nchan"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            query = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", package],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if query.returncode == 0 and query.stdout.strip():
                out[package] = query.stdout.strip()
    return out


def _pick_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _log_tail(prefix: Path, limit: int = 3000) -> str:
    try:
        return (prefix / "error.log").read_text(errors="replace")[-limit:]
    except OSError:
        return "(no error log)"


def _start(nginx: str, config: NchanConfig) -> subprocess.Popen[bytes]:
    """Write the config, start nginx, wait until it answers ``/healthz``; :class:`_PortTaken` if it could not bind."""
    conf = config.prefix / "nginx.conf"
    conf.write_text(render(config))
    (config.prefix / "error.log").write_bytes(b"")
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(config.prefix), "-e", str(config.prefix / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,  # stdout is the ready line's alone
        stderr=sys.stderr,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        code = proc.poll()
        if code is not None:
            tail = _log_tail(config.prefix)
            if "Address already in use" in tail:
                raise _PortTaken(tail)
            _fail(f"nginx exited with code {code} before it answered:\n{tail}")
        if _accepts(config.port) and _healthy(config.port):
            return proc
        if time.monotonic() > deadline:
            _stop_nginx(proc)
            _fail(f"nginx did not answer /healthz within {START_TIMEOUT_S:g} s:\n{_log_tail(config.prefix)}")
        time.sleep(0.02)


def _stop_nginx(proc: subprocess.Popen[bytes]) -> None:
    """SIGQUIT (graceful), SIGTERM after :data:`GRACE_S`, then SIGKILL to the master and every worker left."""
    try:
        family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.Error:
        family = [proc.pid]
    for signum in (signal.SIGQUIT, signal.SIGTERM):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(GRACE_S)
    for pid in family:  # a worker outlives a killed master: never leave one
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(GRACE_S)


def _fail(message: str) -> NoReturn:
    print(f"peers.nchan: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m peers.nchan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one, announced)")
    parser.add_argument("--workers", default="1", help="nginx worker processes: a number, or 'auto' (one per core)")
    parser.add_argument("--history", type=int, default=10_000, help="messages kept per channel (the lab's history)")
    parser.add_argument(
        "--poll-timeout",
        type=float,
        default=25.0,
        help="seconds a long poll is held before 408 (rounded up to whole seconds; 0: held until a message)",
    )
    parser.add_argument("--message-timeout", type=int, default=3600, help="seconds a message is kept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nginx = find_nginx()
    if nginx is None:
        _fail(f"nginx is not installed (Debian: {INSTALL})")
    if not MODULE_PATH.exists():
        _fail(f"the Nchan module is not installed at {MODULE_PATH} (Debian: {INSTALL})")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)
    # A parent may start us with signals blocked (bench.process.Child holds SIGINT while it forks, and the mask
    # is inherited): unblock them, or a SIGINT would wait forever; nginx, started below, inherits the clean mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    prefix = Path(tempfile.mkdtemp(prefix="peer-nchan-"))
    proc: subprocess.Popen[bytes] | None = None
    user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
    try:
        for attempt in range(1 if args.port else PORT_ATTEMPTS):
            config = NchanConfig(
                port=args.port or _pick_port(),
                prefix=prefix,
                workers=args.workers,
                history=args.history,
                message_timeout_s=args.message_timeout,
                poll_timeout_s=math.ceil(args.poll_timeout),
                user=user,
            )
            try:
                proc = _start(nginx, config)
                break
            except _PortTaken as exc:
                if args.port or attempt == PORT_ATTEMPTS - 1:
                    _fail(f"could not bind 127.0.0.1:{config.port}:\n{exc}")
        assert proc is not None
        try:
            workers = len(psutil.Process(proc.pid).children())
        except psutil.Error:
            workers = 0
        ready = {
            "listening": f"http://127.0.0.1:{config.port}",
            "port": config.port,
            "peer": "nchan",
            "pid": os.getpid(),
            "versions": versions(nginx),
            "options": {
                "workers": args.workers,
                "worker_processes": workers,
                "history": config.history,
                "poll_timeout": config.poll_timeout_s,
                "message_timeout": config.message_timeout_s,
            },
        }
        print(json.dumps(ready), flush=True)
        code = proc.wait()
        _fail(f"nginx exited on its own with code {code}:\n{_log_tail(prefix)}")
    except _Stop:
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):  # the cleanup runs to its end
            signal.signal(signum, signal.SIG_IGN)
        if proc is not None:
            _stop_nginx(proc)
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
