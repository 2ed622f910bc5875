"""nginx in front of the server under test, run on exactly the configuration people copy (docs/nginx/lab.conf).

Run layer of the benchmark, and what the proxy tests start. :class:`Nginx` reads ``docs/nginx/lab.conf``,
changes only what must change to run on this machine, writes it into a temporary directory of its own with a
small ``nginx.conf`` around it (what Debian's ``/etc/nginx/nginx.conf`` provides: the ``http { }`` block,
``events``, the pid file, the logs, the temporary paths), makes a throwaway certificate there with
``openssl``, and runs ``nginx -c <conf> -p <dir>`` in the foreground (``daemon off``) as a
:class:`bench.process.Child` (its own process group: stopping it stops the master and every worker).

What is changed in the copied file, each by a substitution (:func:`render`) that must match exactly as
often as they are expected to (so the file and this launcher cannot drift apart unnoticed):

- the listeners: ``listen 443 ssl http2;`` becomes ``127.0.0.1:<tls_port>`` plus a second TLS listener
  without ``http2`` (``tls_h1_port``, HTTP/1.1 only: the browser's six-connection limit is shown there);
  ``listen 80;`` becomes ``127.0.0.1:<plain_port>``;
- the upstream ``server 127.0.0.1:8000;`` becomes the server under test;
- the certificate paths become the throwaway certificate's;
- the traps, only when asked: ``read_timeout_s`` sets every ``proxy_read_timeout`` (a proxy whose read
  timeout is below the long-poll hold), ``sse_buffering=True`` replaces the SSE location's
  ``proxy_buffering off;`` by ``proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;`` (a generic
  proxy block that ignores the lab's ``X-Accel-Buffering: no``, as a CDN does), and ``sse_gzip=True`` its
  ``gzip off;`` by ``gzip on; gzip_types text/event-stream;`` (a generic compression list); docs/deployment.md
  says what each does, alone and together.

Ports: nginx cannot announce a port it chose, so free ports are picked by binding port 0 and closing it (as
``peers/nchan`` does); another process may take one in between, so a start that fails with "Address already
in use" is tried again on new ports.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from bench.process import ROOT, Child

__all__ = ["CONF", "NGINX_CANDIDATES", "Nginx", "NginxError", "find_nginx", "render"]

CONF = ROOT / "docs" / "nginx" / "lab.conf"
"""The configuration people copy; the launcher runs it with the changes listed in the module docstring."""
NGINX_CANDIDATES = ("/usr/sbin/nginx",)
"""Where Debian installs nginx, in case ``/usr/sbin`` is not on ``PATH``."""
OPENSSL = "/usr/bin/openssl"
START_TIMEOUT_S = 20.0
"""Seconds nginx has to bind its listeners."""
STOP_TIMEOUT_S = 3.0
"""Seconds nginx has to stop after SIGTERM (its fast shutdown) before the group is killed."""
PORT_ATTEMPTS = 5
"""Sets of free ports tried when the ones picked were taken before nginx bound them."""


class NginxError(RuntimeError):
    """nginx is missing, did not start, or the configuration does not have the lines the launcher changes."""


def find_nginx() -> str | None:
    """The nginx binary: on ``PATH``, else where Debian puts it."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((c for c in NGINX_CANDIDATES if os.access(c, os.X_OK)), None)


def _sub(text: str, pattern: str, replacement: str, count: int, what: str) -> str:
    """Replace ``pattern`` (a regex) by ``replacement``; :class:`NginxError` unless it matched ``count`` times."""
    new, found = re.subn(pattern, lambda _: replacement, text, flags=re.MULTILINE)
    if found != count:
        raise NginxError(f"{CONF.name}: expected {count} match(es) of {pattern!r} ({what}), found {found}")
    return new


def _duration(seconds: float) -> str:
    """An nginx time value (milliseconds, so fractions of a second survive)."""
    if not 0 < seconds < 1e6:
        raise ValueError(f"a timeout must be > 0 s, got {seconds}")
    return f"{max(1, round(seconds * 1000))}ms"


def render(
    conf: str,
    *,
    upstream: tuple[str, int],
    tls_port: int,
    tls_h1_port: int,
    plain_port: int,
    cert: Path,
    key: Path,
    sse_buffering: bool = False,
    sse_gzip: bool = False,
    read_timeout_s: float | None = None,
) -> str:
    """``docs/nginx/lab.conf`` (the text ``conf``) with the changes that make it run here: a pure function."""
    host, port = upstream
    text = _sub(
        conf,
        r"(?<=^    )listen 443 ssl http2;",
        f"listen 127.0.0.1:{tls_port} ssl http2;\n    listen 127.0.0.1:{tls_h1_port} ssl;",
        1,
        "the TLS listener, plus the HTTP/1.1-only one",
    )
    text = _sub(text, r"(?<=^    )listen 80;", f"listen 127.0.0.1:{plain_port};", 1, "the plain listener")
    text = _sub(text, r"(?<=^    )server 127\.0\.0\.1:8000;", f"server {host}:{port};", 1, "the upstream")
    text = _sub(text, r"(?<=^    )ssl_certificate \S+;", f"ssl_certificate {cert};", 1, "the certificate")
    text = _sub(text, r"(?<=^    )ssl_certificate_key \S+;", f"ssl_certificate_key {key};", 1, "the key")
    if read_timeout_s is not None:
        text = _sub(
            text,
            r"(?<=^        )proxy_read_timeout \S+;",
            f"proxy_read_timeout {_duration(read_timeout_s)};",
            3,
            "the read timeouts (long poll, WebSocket, SSE)",
        )
    if sse_buffering:
        text = _sub(
            text,
            r"(?<=^        )proxy_buffering off;",
            "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;",
            1,
            "SSE buffering",
        )
    if sse_gzip:
        text = _sub(
            text,
            r"(?<=^        )gzip off;",
            "gzip on;\n        gzip_types text/event-stream;",
            1,
            "SSE compression",
        )
    return text


def _wrapper(prefix: Path, site: Path, workers: int, user: str | None) -> str:
    """The ``nginx.conf`` around the site file: what Debian's main configuration provides, in ``prefix``."""
    user_line = f"user {user};\n" if user else ""
    return f"""# Generated by bench/run/proxy.py around {site.name} (docs/nginx/lab.conf, changed to run here).
daemon off;
master_process on;
worker_processes {workers};
{user_line}pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    # As Debian's nginx.conf: sendfile, gzip on (text/html only by default), a types table.
    sendfile on;
    tcp_nopush on;
    gzip on;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {prefix / "client_body"};
    proxy_temp_path {prefix / "proxy"};
    fastcgi_temp_path {prefix / "fastcgi"};
    uwsgi_temp_path {prefix / "uwsgi"};
    scgi_temp_path {prefix / "scgi"};

    include {site};
}}
"""


def _pick_ports(n: int) -> list[int]:
    """``n`` distinct ports nothing listens on right now (bound together, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def _versions(nginx: str) -> dict[str, str]:
    """nginx's version and the OpenSSL it runs with (``nginx -V``)."""
    done = _run([nginx, "-V"])
    text = done.stderr + done.stdout
    out: dict[str, str] = {}
    if m := re.search(r"nginx version: nginx/(\S+)", text):
        out["nginx"] = m.group(1)
    if m := re.search(r"running with OpenSSL (\S+)", text) or re.search(r"built with OpenSSL (\S+)", text):
        out["openssl"] = m.group(1)
    return out


class Nginx:
    """nginx on ``docs/nginx/lab.conf`` in front of the server at ``upstream``, on three free loopback ports.

    ``sse_buffering=True``, ``sse_gzip=True`` and ``read_timeout_s`` are the traps (module docstring); the
    defaults run the file as shipped. ``workers`` is ``worker_processes``. :meth:`start` returns once every
    listener accepts; :meth:`stop` (also on leaving a ``with`` block) stops the master and its workers and
    removes the directory. Nothing is left running or on disk after it.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        sse_buffering: bool = False,
        read_timeout_s: float | None = None,
        workers: int = 1,
        sse_gzip: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.upstream = upstream
        self.sse_buffering = sse_buffering
        self.sse_gzip = sse_gzip
        self.read_timeout_s = read_timeout_s
        self.workers = workers
        self.tls_port = 0
        """TLS, ALPN ``h2`` and ``http/1.1`` (a WebSocket over TLS uses HTTP/1.1)."""
        self.tls_h1_port = 0
        """TLS, HTTP/1.1 only (no ``http2`` on this listener)."""
        self.plain_port = 0
        """Plain HTTP/1.1."""
        self.cert_path = ""
        """The throwaway certificate (PEM): clients trust this one only."""
        self.spki_sha256 = ""
        """Base64 SHA-256 of the certificate's public key (Chromium's ``--ignore-certificate-errors-spki-list``)."""
        self.versions: dict[str, str] = {}
        """``nginx`` and ``openssl`` versions."""
        self.prefix: Path | None = None
        """The temporary directory (configuration, certificate, logs, pid, temporary files) while running."""
        self.config_text = ""
        """The site file as run (``docs/nginx/lab.conf`` after :func:`render`)."""
        self._child: Child | None = None
        self._last_cpu = 0.0

    # --- starting --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Write the configuration and certificate, start nginx, wait until every listener accepts."""
        if self._child is not None:
            raise NginxError("nginx is already running")
        nginx = find_nginx()
        if nginx is None:
            raise NginxError("nginx is not installed (Debian: apt-get install nginx-light)")
        self.prefix = Path(tempfile.mkdtemp(prefix="lab-nginx-"))
        try:
            self.versions = _versions(nginx)
            cert, key = self._make_certificate(self.prefix)
            for attempt in range(PORT_ATTEMPTS):
                self.tls_port, self.tls_h1_port, self.plain_port = _pick_ports(3)
                try:
                    self._start(nginx, cert, key)
                    return
                except _PortTaken:
                    if attempt == PORT_ATTEMPTS - 1:
                        raise NginxError(f"no free ports after {PORT_ATTEMPTS} attempts:\n{self.log_tail()}") from None
        except BaseException:
            self.stop()
            raise

    def _make_certificate(self, prefix: Path) -> tuple[Path, Path]:
        """A self-signed P-256 certificate for ``localhost`` and ``127.0.0.1``, valid two days, in ``prefix``."""
        cert, key = prefix / "cert.pem", prefix / "key.pem"
        done = _run(
            [
                OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ]
        )  # fmt: skip
        if done.returncode != 0:
            raise NginxError(f"openssl could not make a certificate: {done.stderr.strip()[-1000:]}")
        pem = _run([OPENSSL, "x509", "-in", str(cert), "-pubkey", "-noout"]).stdout.encode()
        spki = subprocess.run(
            [OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pem, capture_output=True, timeout=30, check=False
        ).stdout
        if not spki:
            raise NginxError("openssl could not read the certificate's public key")
        self.spki_sha256 = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        self.cert_path = str(cert)
        return cert, key

    def _start(self, nginx: str, cert: Path, key: Path) -> None:
        assert self.prefix is not None
        prefix = self.prefix
        self.config_text = render(
            CONF.read_text(),
            upstream=self.upstream,
            tls_port=self.tls_port,
            tls_h1_port=self.tls_h1_port,
            plain_port=self.plain_port,
            cert=cert,
            key=key,
            sse_buffering=self.sse_buffering,
            sse_gzip=self.sse_gzip,
            read_timeout_s=self.read_timeout_s,
        )
        site = prefix / "lab.conf"
        site.write_text(self.config_text)
        # As root, workers would switch to "nobody" and could not read the key or write the temporary paths.
        user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
        main_conf = prefix / "nginx.conf"
        main_conf.write_text(_wrapper(prefix, site, self.workers, user))
        (prefix / "error.log").write_bytes(b"")
        child = Child(
            [nginx, "-c", str(main_conf), "-p", str(prefix), "-e", str(prefix / "error.log")],
            python=False,
            lines=False,
            name="nginx",
        )
        self._child = child
        deadline = time.monotonic() + START_TIMEOUT_S
        ports = (self.tls_port, self.tls_h1_port, self.plain_port)
        while True:
            if child.exited():
                tail = self.log_tail()
                child.stop(STOP_TIMEOUT_S)
                self._child = None
                if "Address already in use" in tail:
                    raise _PortTaken(tail)
                raise NginxError(f"nginx exited with code {child.proc.returncode} at start:\n{tail}")
            if all(_accepts(p) for p in ports):
                return
            if time.monotonic() > deadline:
                raise NginxError(f"nginx did not listen within {START_TIMEOUT_S:g} s:\n{self.log_tail()}")
            time.sleep(0.02)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the throwaway certificate and nothing else (httpx's ``verify=``)."""
        if not self.cert_path:
            raise NginxError("no certificate yet: start nginx first")
        return ssl.create_default_context(cafile=self.cert_path)

    # --- watching and stopping -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The master's pid while it runs."""
        return self._child.pid if self._child is not None else None

    def pids(self) -> list[int]:
        """The master and its workers, alive now."""
        return [p.pid for p in self._child.processes()] if self._child is not None else []

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (the last reading once stopped)."""
        if self._child is not None:
            self._last_cpu = self._child.cpu_seconds()
        return self._last_cpu

    def log_tail(self, size: int = 3000) -> str:
        """The end of nginx's error log."""
        if self.prefix is None:
            return ""
        try:
            return (self.prefix / "error.log").read_text(errors="replace")[-size:]
        except OSError:
            return "(no error log)"

    def stop(self) -> None:
        """Stop nginx (SIGTERM to its group, SIGKILL after :data:`STOP_TIMEOUT_S`) and remove its directory."""
        child, self._child = self._child, None
        if child is not None:
            self._last_cpu = child.cpu_seconds()
            child.stop(STOP_TIMEOUT_S)
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _PortTaken(Exception):
    """nginx could not bind a port picked for it."""


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.run.proxy``: the lab's server behind nginx on docs/nginx/lab.conf, for a person to try."""
    import argparse
    import signal
    import sys

    from bench.process import wait_http_ok

    parser = argparse.ArgumentParser(prog="python -m bench.run.proxy", description=main.__doc__)
    parser.add_argument("--runtime", default="gevent", help="the server's runtime (default: %(default)s)")
    parser.add_argument("--read-timeout", type=float, help="trap: every proxy_read_timeout, seconds")
    parser.add_argument("--sse-buffering", action="store_true", help="trap: SSE buffered, X-Accel-Buffering ignored")
    parser.add_argument("--sse-gzip", action="store_true", help="trap: SSE compressed")
    args = parser.parse_args(argv)
    server = Child(["-m", "server", "--runtime", args.runtime, "--port", "0"], name="the server")
    nginx: Nginx | None = None
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        port = int(server.expect("port", 60)["port"])
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, alive=lambda: not server.exited())
        nginx = Nginx(
            ("127.0.0.1", port),
            sse_buffering=args.sse_buffering,
            sse_gzip=args.sse_gzip,
            read_timeout_s=args.read_timeout,
        )
        nginx.start()
        print(f"server:          http://127.0.0.1:{port}/  ({args.runtime})")
        print(f"nginx, TLS + h2: https://localhost:{nginx.tls_port}/")
        print(f"nginx, TLS h1:   https://localhost:{nginx.tls_h1_port}/")
        print(f"nginx, plain:    http://localhost:{nginx.plain_port}/")
        print(
            f"certificate:     {nginx.cert_path} (curl --cacert it; Chromium: --ignore-certificate-errors-spki-list="
            f"{nginx.spki_sha256})"
        )
        print(f"configuration:   {nginx.prefix}/lab.conf; Ctrl-C stops both", flush=True)
        while not server.exited() and nginx.pids():
            time.sleep(0.5)
        print("the server or nginx exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
