"""Tests of bench.run.proxy: nginx on docs/nginx/lab.conf in front of the lab's server.

What the launcher promises: it runs the shipped file with only the documented changes, all three listeners
answer (TLS with HTTP/2 by ALPN, TLS with HTTP/1.1 only, plain HTTP/1.1) with a certificate clients trust
only when told, every transport delivers through it with no loss, and stopping leaves no process and no
directory. docs/deployment.md quotes the file byte for byte. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from bench.process import Child
from bench.run.proxy import CONF, Nginx, NginxError, find_nginx, render
from clients import (
    AsyncPublisher,
    HttpxPoller,
    LongPollSubscriber,
    Received,
    SSESubscriber,
    Subscriber,
    WebSocketSubscriber,
)
from tests.support import ROOT, UNIT, ServerProcess, run_server

needs_nginx = pytest.mark.skipif(find_nginx() is None, reason="needs nginx (apt-get install nginx-light)")

EVENTS = 20
"""Events published in each delivery test."""


# --- the file and what the launcher changes in it ------------------------------------------------------


def test_deployment_doc_quotes_the_file_byte_for_byte() -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"^```nginx\n(.*?)^```$", doc, flags=re.DOTALL | re.MULTILINE)
    assert blocks, "docs/deployment.md has no ```nginx block"
    assert blocks[0] == CONF.read_text(), "the first nginx block of docs/deployment.md is not docs/nginx/lab.conf"


def _render(**traps: Any) -> str:
    return render(
        CONF.read_text(),
        upstream=("127.0.0.1", 5555),
        tls_port=1001,
        tls_h1_port=1002,
        plain_port=1003,
        cert=Path("/tmp/x/cert.pem"),
        key=Path("/tmp/x/key.pem"),
        **traps,
    )


def _changes(rendered: str) -> tuple[list[str], list[str]]:
    """Lines removed from and added to the shipped file."""
    diff = list(difflib.ndiff(CONF.read_text().splitlines(), rendered.splitlines()))
    return [d[2:].strip() for d in diff if d.startswith("- ")], [d[2:].strip() for d in diff if d.startswith("+ ")]


def test_render_changes_only_listeners_upstream_and_certificate() -> None:
    removed, added = _changes(_render())
    assert sorted(removed) == sorted(
        [
            "listen 443 ssl http2;",
            "listen 80;",
            "server 127.0.0.1:8000;",
            "ssl_certificate /etc/letsencrypt/live/lab.example.com/fullchain.pem;",
            "ssl_certificate_key /etc/letsencrypt/live/lab.example.com/privkey.pem;",
        ]
    )
    assert sorted(added) == sorted(
        [
            "listen 127.0.0.1:1001 ssl http2;",
            "listen 127.0.0.1:1002 ssl;",
            "listen 127.0.0.1:1003;",
            "server 127.0.0.1:5555;",
            "ssl_certificate /tmp/x/cert.pem;",
            "ssl_certificate_key /tmp/x/key.pem;",
        ]
    )


def test_render_traps_change_only_their_lines() -> None:
    removed, added = _changes(_render(read_timeout_s=1.5))
    assert [r for r in removed if "timeout" in r] == [  # long poll, WebSocket, SSE
        "proxy_read_timeout 45s;",
        "proxy_read_timeout 75s;",
        "proxy_read_timeout 45s;",
    ]
    assert [a for a in added if "timeout" in a] == ["proxy_read_timeout 1500ms;"] * 3
    removed, added = _changes(_render(sse_buffering=True))
    assert [r for r in removed if "buffering" in r.lower()] == ["proxy_buffering off;"]
    assert [a for a in added if "buffering" in a.lower()] == [
        "proxy_buffering on;",
        "proxy_ignore_headers X-Accel-Buffering;",
    ]


def test_render_refuses_a_file_without_the_lines_it_changes() -> None:
    with pytest.raises(NginxError, match="listen 80"):
        render(
            CONF.read_text().replace("    listen 80;\n", ""),
            upstream=("127.0.0.1", 1),
            tls_port=1,
            tls_h1_port=2,
            plain_port=3,
            cert=Path("c"),
            key=Path("k"),
        )


# --- a running nginx -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with run_server("werkzeug", "--poll-timeout", "5") as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(server: ServerProcess) -> Iterator[Nginx]:
    if find_nginx() is None:
        pytest.skip("needs nginx (apt-get install nginx-light)")
    with Nginx(("127.0.0.1", server.port)) as nginx:
        yield nginx


def _base(proxy: Nginx, listener: str) -> str:
    if listener == "plain":
        return f"http://127.0.0.1:{proxy.plain_port}"
    port = proxy.tls_port if listener == "h2" else proxy.tls_h1_port
    return f"https://localhost:{port}"


def test_every_listener_answers_healthz(proxy: Nginx) -> None:
    with httpx.Client(verify=proxy.ssl_context(), http2=True, timeout=10 * UNIT) as client:
        versions = {
            name: client.get(f"{_base(proxy, name)}/healthz") for name in ("plain", "h2", "h1")
        }  # ALPN offers h2 on the TLS listener only
    assert {name: (r.status_code, r.http_version) for name, r in versions.items()} == {
        "plain": (200, "HTTP/1.1"),
        "h2": (200, "HTTP/2"),
        "h1": (200, "HTTP/1.1"),
    }
    assert all(r.json()["status"] == "ok" for r in versions.values())
    assert set(proxy.versions) == {"nginx", "openssl"} and proxy.versions["nginx"].startswith("1.")


def test_the_certificate_is_trusted_only_when_given(proxy: Nginx) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{_base(proxy, 'h2')}/healthz", timeout=10 * UNIT)
    assert len(proxy.spki_sha256) == 44  # base64 of a SHA-256


def test_host_reaches_the_server_and_is_checked_there(proxy: Nginx) -> None:
    """``proxy_set_header Host $host``: the lab sees the client's Host, so its DNS-rebinding check still works."""
    answer = httpx.get(f"{_base(proxy, 'plain')}/healthz", headers={"Host": "evil.example"}, timeout=10 * UNIT)
    assert (answer.status_code, answer.json()["error"]) == (403, "forbidden_host")


def test_body_above_the_labs_limit_is_refused_by_nginx(proxy: Nginx) -> None:
    url = f"{_base(proxy, 'plain')}/channels/big/events"
    answer = httpx.post(url, content=b'"' + b"x" * (1 << 20) + b'"', timeout=10 * UNIT)
    assert answer.status_code == 413 and "nginx" in answer.text  # refused before the server read it
    assert httpx.post(url, content=b'"' + b"x" * 1000 + b'"', timeout=10 * UNIT).status_code == 201


def _tls_env(proxy: Nginx) -> dict[str, str]:
    """``SSL_CERT_FILE``: the default context of the WebSocket client (no ``ssl_context`` seam) trusts it."""
    return {"SSL_CERT_FILE": proxy.cert_path}


def _subscriber(
    transport: str, base: str, channel: str, proxy: Nginx, http2: bool, seen: list[Received], versions: set[str]
) -> tuple[Subscriber, list[httpx.AsyncClient]]:
    """A subscriber of ``transport`` through the proxy at ``base``; the clients it leaves to be closed."""

    async def record(response: httpx.Response) -> None:
        versions.add(response.http_version)

    hooks: dict[str, Any] = {"response": [record]}
    if transport == "longpoll":
        client = httpx.AsyncClient(verify=proxy.ssl_context(), http2=http2, event_hooks=hooks)
        poller = HttpxPoller(client)
        return LongPollSubscriber(base, channel, timeout=2, poller=poller, on_event=seen.append), [client]
    if transport == "sse":
        sse_transport = httpx.AsyncHTTPTransport(verify=proxy.ssl_context(), http2=http2)
        return SSESubscriber(base, channel, transport=sse_transport, on_event=seen.append), []
    return WebSocketSubscriber(base, channel, on_event=seen.append), []


@needs_nginx
@pytest.mark.parametrize("listener", ["plain", "h2", "h1"])
@pytest.mark.parametrize("transport", ["longpoll", "websocket", "sse"])
def test_transports_deliver_through_nginx(
    proxy: Nginx, transport: str, listener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _tls_env(proxy).items():
        monkeypatch.setenv(name, value)
    base = _base(proxy, listener)
    channel = f"p-{transport}-{listener}-{uuid.uuid4().hex[:6]}"
    seen: list[Received] = []
    versions: set[str] = set()

    async def main() -> list[int]:
        sub, clients = _subscriber(transport, base, channel, proxy, listener == "h2", seen, versions)
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        seqs: list[int] = []
        try:
            http = httpx.AsyncClient(verify=proxy.ssl_context(), http2=listener == "h2")
            async with http, AsyncPublisher(base, client=http) as pub:
                for i in range(EVENTS):
                    seqs.append((await pub.publish(channel, {"i": i})).seq)
                    await asyncio.sleep(0.01)
            deadline = asyncio.get_running_loop().time() + 20 * UNIT
            while len(seen) < EVENTS and not task.done() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10 * UNIT)
            for client in clients:
                await client.aclose()
        counters = sub.tracker.finish(seqs[-1])
        assert counters.as_dict() | {"delivered": 0} == dict.fromkeys(counters.as_dict(), 0), counters
        return seqs

    seqs = asyncio.run(main())
    assert [r.seq for r in seen] == seqs == list(range(1, EVENTS + 1))
    assert [r.data for r in seen] == [{"i": i} for i in range(EVENTS)]
    if transport == "longpoll":
        assert versions == {"HTTP/2" if listener == "h2" else "HTTP/1.1"}


@needs_nginx
def test_stop_leaves_no_process_and_no_directory(server: ServerProcess) -> None:
    nginx = Nginx(("127.0.0.1", server.port), workers=2)
    nginx.start()
    try:
        pids = nginx.pids()
        prefix = nginx.prefix
        assert len(pids) == 3  # the master and two workers
        assert prefix is not None and (prefix / "lab.conf").read_text() == nginx.config_text
        assert httpx.get(f"http://127.0.0.1:{nginx.plain_port}/healthz", timeout=10 * UNIT).status_code == 200
        assert nginx.cpu_seconds() > 0
    finally:
        nginx.stop()
    nginx.stop()  # idempotent
    assert [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE] == []
    assert not prefix.exists()
    assert nginx.pids() == [] and nginx.cpu_seconds() > 0


@needs_nginx
def test_a_start_that_fails_leaves_nothing(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration nginx refuses: :class:`NginxError` with its error log, no process, no directory."""
    broken = Path(os.environ.get("TMPDIR", "/tmp")) / f"lab-broken-{uuid.uuid4().hex}.conf"
    broken.write_text(CONF.read_text().replace("keepalive 32;", "keepalive 32 nonsense;"))
    monkeypatch.setattr("bench.run.proxy.CONF", broken)
    started: list[Child] = []

    class Recorded(Child):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr("bench.run.proxy.Child", Recorded)
    nginx = Nginx(("127.0.0.1", server.port))
    try:
        with pytest.raises(NginxError, match="keepalive"):
            nginx.start()
    finally:
        broken.unlink()
    assert len(started) == 1 and started[0].exited()
    assert nginx.prefix is None and nginx.pid is None
