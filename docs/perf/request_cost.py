"""Server CPU per request, layer by layer, on gevent's pywsgi (docs/performance.md, "The request path on pywsgi").

A one-off measurement script, not part of the lab: one client process sends N keep-alive requests one
after the other (``TCP_NODELAY``, no pipelining) and the server process's CPU (``time.process_time``) is
divided by N. No fan-out and no holding: the cost of one request through each layer.

    .venv/bin/python docs/perf/request_cost.py plain      # gevent.pywsgi.WSGIServer, a 2-byte answer
    .venv/bin/python docs/perf/request_cost.py labserver  # server.pywsgi.LabServer/LabHandler, the same answer
    .venv/bin/python docs/perf/request_cost.py fast       # the lab's app, fast path: a poll answered at once
    .venv/bin/python docs/perf/request_cost.py flask      # the lab's app, Flask routes: the same poll

Run it from the project's root; interleave rounds and read the spread, the machine is noisy.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

N = 20_000


def client(port: int, path: str) -> None:
    """N sequential GETs on one connection, each answer read whole (by its Content-Length)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for _ in range(N):
        s.sendall(request)
        buf = b""
        while True:
            buf += s.recv(65536)
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += s.recv(65536)
                break


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def main(mode: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import dataclasses

    from gevent.pywsgi import WSGIServer

    from server.app import create_app, lab_of
    from server.capacity import FastRefusal
    from server.config import Config
    from server.pywsgi import LabHandler, LabServer

    app: Any = hello
    path = "/x"
    if mode in ("fast", "flask"):
        config = dataclasses.replace(Config.from_env({}), fast_path=mode == "fast")
        flask_app = create_app(config)
        lab = lab_of(flask_app)
        flask_app.wsgi_app = FastRefusal(flask_app.wsgi_app, lab.gate)  # type: ignore[method-assign]
        lab.bus.publish("c", b'{"i":1}')
        app, path = flask_app, "/channels/c/poll?after=0&timeout=0"
    if mode == "plain":
        server = WSGIServer(("127.0.0.1", 0), app, log=None)
    else:
        server = LabServer(("127.0.0.1", 0), app, log=None, handler_class=LabHandler)
    server.init_socket()
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.start()
    started = time.process_time()
    subprocess.run([sys.executable, __file__, "client", str(server.server_port), path], check=True)
    print(f"{mode:10s} {(time.process_time() - started) / N * 1e6:6.1f} us of server CPU per request")


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(int(sys.argv[2]), sys.argv[3])
    else:
        main(sys.argv[1])
