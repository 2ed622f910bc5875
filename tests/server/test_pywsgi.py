"""Tests of server/pywsgi.py: gevent's WSGI server with the lab's header deadline, one write per response.

The handler is driven over a real socket pair in this process (gevent's sockets work without
monkey-patching); the runtime as a whole is in every ``RUNTIMES`` test (contract, errors, capacity,
slowloris, file descriptors, SSE, the WebSocket writer, shutdown).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket
from gevent.pywsgi import WSGIHandler, WSGIServer

from server.pywsgi import LabHandler, LabServer
from tests.support import UNIT, run_server


def serve_once(
    handler_class: type[WSGIHandler],
    request: bytes,
    status: str,
    headers: list[tuple[str, str]],
    body: Iterable[bytes],
) -> tuple[list[bytes], bytes]:
    """One request through ``handler_class`` on a socket pair: the server's ``sendall`` calls and the bytes."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response(status, headers)
        return iter(list(body))  # no len(): pywsgi sends chunked unless the app gave a Content-Length

    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    ours, theirs = gsocket.socketpair()
    writes: list[bytes] = []

    def _sendall(self: WSGIHandler, data: bytes) -> None:  # every write of a response goes through it
        writes.append(bytes(data))
        handler_class._sendall(self, data)

    recording = type("Recording", (handler_class,), {"_sendall": _sendall})
    theirs.sendall(request)
    theirs.shutdown(socket.SHUT_WR)  # one request, then the client is done
    handler = recording(ours, ("127.0.0.1", 1), server)
    gevent.spawn(handler.handle).join(10 * UNIT)
    received = b""
    while chunk := theirs.recv(65536):
        received += chunk
    theirs.close()
    return writes, received


def without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date: "))


GET = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    ("headers", "body", "writes"),
    [
        ([("Content-Type", "application/json"), ("Content-Length", "5")], [b"hello"], 1),
        ([("Content-Length", "0")], [], 1),
        ([("Content-Length", "5")], [b"hel", b"lo"], 2),  # a body in pieces: the head goes with the first
        ([("Content-Type", "text/event-stream")], [b"a", b"b"], 3),  # chunked: head + chunk, chunk, the end
    ],
)
def test_one_write_per_response_with_pywsgis_own_bytes(
    headers: list[tuple[str, str]], body: list[bytes], writes: int
) -> None:
    ours, ours_bytes = serve_once(LabHandler, GET, "200 OK", headers, body)
    theirs, theirs_bytes = serve_once(WSGIHandler, GET, "200 OK", headers, body)
    assert without_date(ours_bytes) == without_date(theirs_bytes)
    assert ours_bytes.startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(ours) == writes
    assert len(theirs) == writes + (1 if body else 0)  # pywsgi: the head alone, then the first chunk


def test_a_request_head_that_never_ends_gets_408_and_the_connection_closes() -> None:
    class Quick(LabHandler):
        header_timeout = 0.2 * UNIT

    server = WSGIServer(("127.0.0.1", 0), lambda e, s: [], log=None, error_log=None)
    ours, theirs = gsocket.socketpair()
    theirs.sendall(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
    gevent.spawn(Quick(ours, ("127.0.0.1", 1), server).handle).join(10 * UNIT)
    answer = b""
    while chunk := theirs.recv(65536):
        answer += chunk
    theirs.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b'"error": "request_timeout"' in answer
    assert answer.count(b"HTTP/1.1 ") == 1  # no 400 written after it


def test_a_kept_alive_connection_idle_longer_than_the_header_deadline_serves_its_next_request() -> None:
    """The header deadline is for a request's head; a kept-alive connection may wait longer between requests."""
    timeout = 0.5 * UNIT
    with (
        run_server("pywsgi", "--header-timeout", str(timeout)) as server,
        socket.create_connection(("127.0.0.1", server.port), 10 * UNIT) as s,
    ):
        for i in range(2):
            if i:
                time.sleep(3 * timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += s.recv(65536)


def test_the_listener_has_tcp_nodelay_and_accepted_sockets_inherit_it() -> None:
    server = LabServer(("127.0.0.1", 0), lambda e, s: [], log=None, error_log=None)
    server.init_socket()
    try:
        assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        listener = socket.socket(fileno=os.dup(server.socket.fileno()))
        with listener, socket.create_connection(("127.0.0.1", server.server_port), 10 * UNIT):
            listener.setblocking(True)
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.close()


def test_more_than_one_worker_is_refused() -> None:
    from server.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--runtime", "pywsgi", "--workers", "2", "--bus", "redis"])
