"""Tests of server/errors.py: the error answers, and bodies read whole or refused with a 413 the client reads.

The body rules run on WSGI environments built here; the 413s run against a
real server on every runtime, through raw sockets, because what failed was
the connection (a reset on gthread before any answer, a chunked body cut
at the limit and stored).
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask

from server.config import RUNTIMES
from server.errors import DRAIN_LIMIT, ApiError, TooLarge, drain_body, read_body
from tests.support import UNIT, ServerProcess, run_server

LIMIT = 1 << 20
"""The servers' LAB_MAX_BODY (the default, 1 MiB)."""


def environ(body: bytes, length: int | None = None, terminated: bool = False) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.input": io.BytesIO(body)}
    if length is not None:
        env["CONTENT_LENGTH"] = str(length)
    if terminated:
        env["wsgi.input_terminated"] = True
    return env


def test_api_error_response_is_json_with_its_headers() -> None:
    with Flask(__name__).app_context():
        resp = ApiError(426, "unsupported_version", "v13 only", headers={"Sec-WebSocket-Version": "13"}).response()
    assert resp.status_code == 426
    assert resp.get_json() == {"error": "unsupported_version", "detail": "v13 only"}
    assert (resp.headers["Sec-WebSocket-Version"], resp.headers["Cache-Control"]) == ("13", "no-store")


def test_read_body_with_a_content_length_reads_exactly_that() -> None:
    assert read_body(environ(b"[1]trailing", length=3), 10) == b"[1]"
    assert read_body(environ(b"x" * 10, length=10), 10) == b"x" * 10


def test_read_body_refuses_a_declared_length_over_the_limit_and_drains_it() -> None:
    env = environ(b"x" * 11 + b"next request", length=11)
    with pytest.raises(TooLarge) as caught:
        read_body(env, 10)
    assert (caught.value.status, caught.value.error, caught.value.headers) == (413, "too_large", {})
    assert env["wsgi.input"].read() == b"next request"  # drained exactly the body


def test_a_chunked_body_over_the_limit_is_refused_never_cut() -> None:
    assert read_body(environ(b"x" * 10, terminated=True), 10) == b"x" * 10
    env = environ(b"x" * 11, terminated=True)
    with pytest.raises(TooLarge):
        read_body(env, 10)
    assert env["wsgi.input"].read() == b""


def test_a_body_too_large_to_drain_closes_the_connection() -> None:
    with pytest.raises(TooLarge) as caught:
        read_body(environ(b"", length=DRAIN_LIMIT + 1), 10)
    assert caught.value.headers == {"Connection": "close"}


def test_drain_body_limits() -> None:
    assert drain_body(environ(b"x" * 5, length=5), 10)
    assert not drain_body(environ(b"x" * 20, length=20), 10)
    assert not drain_body(environ(b"x" * 20, terminated=True), 10)
    assert drain_body(environ(b"x" * 20))  # no body the server knows of: nothing to drain
    assert not drain_body(environ(b"", length="nan"), 10)  # type: ignore[arg-type]


def test_no_body_is_an_empty_body() -> None:
    assert read_body(environ(b"ignored"), 10) == b""


def test_a_content_length_that_is_no_number_is_a_400() -> None:
    env = environ(b"", length=None)
    env["CONTENT_LENGTH"] = "12x"
    with pytest.raises(ApiError) as caught:
        read_body(env, 10)
    assert (caught.value.status, caught.value.error) == (400, "bad_request")


# -- against real servers -------------------------------------------------


PATHS = [(runtime, fast) for runtime in RUNTIMES for fast in ("off", "on")]
"""Every runtime, with the Flask routes and with the fast path (server/fastpath.py)."""


@pytest.fixture(scope="module", params=PATHS, ids=[f"{r}-fast-{f}" for r, f in PATHS])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    runtime, fast = request.param
    with run_server(runtime, "--threads", "8", "--fast-path", fast) as proc:
        yield proc


def exchange(port: int, request: bytes, responses: int = 1) -> list[bytes]:
    """Send whole requests (the client writes everything, as curl does); read ``responses`` answers or until EOF."""
    got: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT) as sock:
        sock.sendall(request)
        data = b""
        try:
            while len(got) < responses:
                if b"\r\n\r\n" in data:
                    size = data.index(b"\r\n\r\n") + 4 + content_length(data)
                    if len(data) >= size:
                        got.append(data[:size])
                        data = data[size:]
                        continue
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError as exc:
            raise AssertionError(f"connection reset after {got} {data[:200]!r}") from exc
    assert got, f"no answer: {data[:200]!r}"
    return got


def content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def post_request(port: int, channel: str, body: bytes, chunked: bool) -> bytes:
    head = f"POST /channels/{channel}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    if not chunked:
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunks = [b"%x\r\n%s\r\n" % (len(body[i : i + 65536]), body[i : i + 65536]) for i in range(0, len(body), 65536)]
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + b"".join(chunks) + b"0\r\n\r\n"


def answer_of(data: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body[: content_length(data)])


def stored(server: ServerProcess, channel: str) -> list[Any]:
    events = httpx.get(f"{server.url}/channels/{channel}/poll", params={"timeout": 0}, timeout=10 * UNIT).json()
    return [e["data"] for e in events["events"]]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_8_mib_body_is_answered_413_and_the_client_reads_it(server: ServerProcess, chunked: bool) -> None:
    """Before: gthread reset the Content-Length connection unanswered; a chunked one was a 400 at char 1048576."""
    channel = f"big-{server.runtime}-{chunked}"
    body = b"[" + b"1," * (4 * LIMIT - 1) + b"1]"
    status, answer = answer_of(exchange(server.port, post_request(server.port, channel, body, chunked))[0])
    assert (status, answer["error"]) == (413, "too_large")
    assert stored(server, channel) == []


def test_a_chunked_body_over_the_limit_with_a_valid_prefix_is_not_stored_cut(server: ServerProcess) -> None:
    """Before: 201, and the first 1,048,576 bytes (a valid JSON string) were stored."""
    channel = f"prefix-{server.runtime}"
    body = b'"' + b"x" * (LIMIT - 2) + b'"' + b" " * 100 + b"[1]" * 1000
    status, answer = answer_of(exchange(server.port, post_request(server.port, channel, body, chunked=True))[0])
    assert (status, answer["error"]) == (413, "too_large")
    assert stored(server, channel) == []


def test_a_chunked_body_at_the_limit_is_stored_whole(server: ServerProcess) -> None:
    channel = f"exact-{server.runtime}"
    body = b'"' + b"x" * (LIMIT - 2) + b'"'
    status, answer = answer_of(exchange(server.port, post_request(server.port, channel, body, chunked=True))[0])
    assert (status, answer["seq"]) == (201, 1)
    assert stored(server, channel) == ["x" * (LIMIT - 2)]


def test_the_connection_serves_the_next_request_after_a_drained_413(server: ServerProcess) -> None:
    channel = f"after-{server.runtime}"
    big = post_request(server.port, channel, b"[" + b"0," * LIMIT + b"0]", chunked=False)
    small = post_request(server.port, channel, b'"ok"', chunked=False)
    answers = exchange(server.port, big + small, responses=2)
    assert answer_of(answers[0])[0] == 413
    if len(answers) == 1:  # the runtime closed after the refusal (Connection: close): also clean
        assert b"connection: close" in answers[0].lower()
        assert stored(server, channel) == []
        return
    status, answer = answer_of(answers[1])
    assert (status, answer["seq"]) == (201, 1)


def test_a_refusal_drains_the_unread_body_once() -> None:
    app = Flask(__name__)
    with app.test_request_context("/", method="POST", data=b"x" * 100) as ctx:
        env = ctx.request.environ
        env["wsgi.input"] = io.BytesIO(b"x" * 100 + b"next request")
        resp = ApiError(403, "forbidden_host", "no").response()
        assert "Connection" not in resp.headers
        assert env["wsgi.input"].read(5) == b"next "
        ApiError(403, "forbidden_host", "again").response()  # nothing left to drain: reads nothing more
        assert env["wsgi.input"].read() == b"request"


def test_a_refusal_whose_body_cannot_be_drained_closes_the_connection() -> None:
    app = Flask(__name__)
    with app.test_request_context("/", method="POST", data=b"x") as ctx:
        ctx.request.environ["CONTENT_LENGTH"] = str(DRAIN_LIMIT + 1)
        assert ApiError(403, "forbidden_host", "no").response().headers["Connection"] == "close"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "content_type", "status"),
    [("/channels/c/poll", "application/json", 405), ("/channels/c/events", "text/plain", 415)],
    ids=["405", "415"],
)
def test_any_refusal_of_a_large_body_is_read_by_the_client(
    server: ServerProcess, path: str, content_type: str, status: int, chunked: bool
) -> None:
    """The body is refused before it is read: the answer must still arrive, not a connection reset."""
    request = post_request(server.port, "c", b"[" + b"1," * 4 * LIMIT + b"1]", chunked)
    request = request.replace(b"/channels/c/events", path.encode(), 1)
    request = request.replace(b"Content-Type: application/json", f"Content-Type: {content_type}".encode(), 1)
    assert answer_of(exchange(server.port, request)[0])[0] == status
