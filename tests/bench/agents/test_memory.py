"""bench.agents.memory: a stalled reader completes its handshake, reads nothing more, and the server holds it."""

from __future__ import annotations

import httpx

from bench.agents.memory import STALLED_RCVBUF, open_stalled_reader
from tests.support import UNIT, run_server, wait_until


def test_a_stalled_reader_is_an_open_websocket_that_never_reads() -> None:
    with run_server("gevent", "--ws-ping-interval", "0") as server:
        sock = open_stalled_reader("127.0.0.1", server.port, "stalled")
        try:
            import socket

            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 4 * STALLED_RCVBUF  # the kernel doubles it
            with httpx.Client(base_url=server.url, timeout=10 * UNIT) as http:
                assert wait_until(lambda: http.get("/stats").json()["connections"]["websocket"] == 1, 10 * UNIT)
                for _ in range(3):
                    assert http.post("/channels/stalled/events", json="x" * 100_000).status_code == 201
                assert http.get("/stats").json()["connections"]["websocket"] == 1  # still held, unread
        finally:
            sock.close()
