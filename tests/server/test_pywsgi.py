"""Tests of server/pywsgi.py: gevent's WSGI server with the lab's header deadline, one write per response.

The handler is driven over a real socket pair in this process (gevent's sockets work without
monkey-patching); the runtime as a whole is in every ``RUNTIMES`` test (contract, errors, capacity,
slowloris, file descriptors, SSE, the WebSocket writer, shutdown).
"""

from __future__ import annotations

import email.utils
import http.client
import io
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket
from gevent.pywsgi import WSGIHandler, WSGIServer
from hypothesis import given
from hypothesis import strategies as st

from server.pywsgi import MAX_HEADERS, LabHandler, LabServer, read_headers
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


# -- the header parser, against the standard library's ------------------------------------------------------

TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"))


@given(st.lists(st.tuples(TOKEN, VALUE), max_size=12), st.sampled_from([b"\r\n", b"\n"]))
def test_read_headers_reads_what_http_client_reads(fields: list[tuple[str, str]], eol: bytes) -> None:
    head = b"".join(f"{name}: {value}".encode("latin-1") + eol for name, value in fields) + eol + b"body"
    ours = read_headers(io.BytesIO(head))
    theirs = http.client.parse_headers(io.BytesIO(head))
    assert ours.status == ""
    assert [(k, v) for k, v in ours.fields] == [(k, v.strip(" \t")) for k, v in theirs.items()]
    for name, _ in fields:
        for spelled in (name, name.lower(), name.upper()):
            theirs_value = theirs.get(spelled)
            assert ours.get(spelled) == (None if theirs_value is None else theirs_value.strip(" \t"))
    assert ours.typeheader == (None if theirs.get("content-type") is None else theirs["content-type"].strip(" \t"))
    assert ours.get("absent", "x") == "x"


def test_read_headers_stops_at_the_empty_line_and_deletes_by_name() -> None:
    rfile = io.BytesIO(b"Content-Length: 3\r\nX-A: 1\r\ncontent-length: 4\r\n\r\nabc")
    headers = read_headers(rfile)
    assert rfile.read() == b"abc"
    assert headers.get("CONTENT-LENGTH") == "3"
    assert headers.headers == ["Content-Length: 3\r\n", "X-A: 1\r\n", "content-length: 4\r\n"]
    del headers["content-length"]
    assert headers.fields == [("X-A", "1")]


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"Host : a\r\n\r\n", "invalid header line"),  # RFC 9112 5.1: whitespace before the colon
        (b"Host: a\r\n folded\r\n\r\n", "invalid header line"),  # obs-fold
        (b"no colon here\r\n\r\n", "invalid header line"),
        (b"X-A: a\rb\r\n\r\n", "invalid header line"),  # a bare CR inside a value
        (b"X-A: a\x00b\r\n\r\n", "invalid header line"),
        (b"X(A): 1\r\n\r\n", "invalid header line"),  # not a token
        (b"X-A: " + b"a" * 65536 + b"\r\n\r\n", "Line too long"),
        (b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n", f"got more than {MAX_HEADERS} headers"),
    ],
)
def test_read_headers_refuses_what_rfc_9112_refuses(head: bytes, why: str) -> None:
    assert read_headers(io.BytesIO(head)).status.startswith(why)


@pytest.mark.parametrize(
    "line",
    [b"Host : 127.0.0.1", b"X-A: 1\r\n folded", b"not a header", b"X-A: " + b"a" * 70000],
)
def test_a_bad_header_line_gets_400_and_the_connection_closes(line: bytes) -> None:
    request = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line + b"\r\n\r\n"
    _, answer = serve_once(LabHandler, request, "200 OK", [("Content-Length", "2")], [b"ok"])
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"ok" not in answer


def test_the_date_header_is_an_http_date_of_now() -> None:
    before = time.time()
    _, answer = serve_once(LabHandler, GET, "200 OK", [("Content-Length", "2")], [b"ok"])
    dates = [line[6:] for line in answer.split(b"\r\n") if line.startswith(b"Date: ")]
    assert len(dates) == 1
    when = email.utils.parsedate_to_datetime(dates[0].decode()).timestamp()
    assert int(before) - 1 <= when <= time.time() + 1
