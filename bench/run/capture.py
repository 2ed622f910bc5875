"""One real exchange of each transport, captured byte for byte at the socket.

Every run stores ``capture.json`` beside its raw results: the bytes of one
long poll (request and response) and of one WebSocket session (the Upgrade
request, the ``101`` answer and the first event frame), as the lab's own
clients (:mod:`clients`) and server produced them, read verbatim by the relay
(:class:`bench.link.relay.Relay` with ``sample_bytes``). The notebook dissects
them header by header. Like every raw file it is written once, never edited.

The published event is a payment confirmation, the course's running example.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.contract.schema import validate_capture
from bench.link.relay import Relay
from bench.process import Child, wait_http_ok
from clients import AsyncPublisher, LongPollSubscriber, WebSocketSubscriber

__all__ = ["PAYLOAD", "capture_exchange", "split_frame", "split_http", "write_capture"]

PAYLOAD = {"payment": "pay_42", "status": "confirmed", "amount": 1999, "currency": "EUR"}
"""The event published once per transport."""
SAMPLE_BYTES = 16384


def split_http(data: bytes) -> tuple[bytes, bytes]:
    """The first HTTP message in ``data`` (head and ``Content-Length`` body), and the rest."""
    end = data.index(b"\r\n\r\n") + 4
    length = 0
    for line in data[:end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return data[: end + length], data[end + length :]


def split_frame(data: bytes) -> tuple[bytes, int]:
    """The first WebSocket frame in ``data`` (RFC 6455 section 5.2) and its header length."""
    size = data[1] & 0x7F
    header = 2 + {126: 2, 127: 8}.get(size, 0) + (4 if data[1] & 0x80 else 0)
    if size == 126:
        size = int.from_bytes(data[2:4], "big")
    elif size == 127:
        size = int.from_bytes(data[2:10], "big")
    return data[: header + size], header


async def _one_event(subscriber: LongPollSubscriber | WebSocketSubscriber, publish: Any) -> None:
    """Run ``subscriber`` until it has received the one event ``publish()`` sends."""
    stop = asyncio.Event()
    subscriber.on_event = lambda _: stop.set()
    task = asyncio.create_task(subscriber.run(stop))
    await asyncio.sleep(0.5)  # the poll is held / the socket is open
    await publish()
    await asyncio.wait_for(stop.wait(), 10)
    await task


async def capture_exchange(port: int) -> dict[str, Any]:
    """Capture one long poll and one WebSocket session against the server on ``port``."""
    relay = await Relay(("127.0.0.1", port), sample_bytes=SAMPLE_BYTES).start()
    try:
        url = f"http://127.0.0.1:{relay.port}"
        publisher = AsyncPublisher(f"http://127.0.0.1:{port}")  # straight to the server: not captured
        try:
            await _one_event(
                LongPollSubscriber(url, "pay_42-longpoll", timeout=5),
                lambda: publisher.publish("pay_42-longpoll", PAYLOAD),
            )
            await _one_event(WebSocketSubscriber(url, "pay_42-ws"), lambda: publisher.publish("pay_42-ws", PAYLOAD))
        finally:
            await publisher.aclose()
        await relay.wait_idle(5)
        (lp_up, lp_down), (ws_up, ws_down) = relay.samples()[:2]
    finally:
        await relay.close()
    lp_request, _ = split_http(lp_up)
    lp_response, _ = split_http(lp_down)
    ws_head_end = ws_down.index(b"\r\n\r\n") + 4
    frame, header = split_frame(ws_down[ws_head_end:])
    return {
        "schema": 1,
        "captured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "payload": PAYLOAD,
        "longpoll_request": lp_request.decode(),
        "longpoll_response": lp_response.decode(),
        "websocket_request": ws_up[: ws_up.index(b"\r\n\r\n") + 4].decode(),
        "websocket_response": ws_down[:ws_head_end].decode(),
        "websocket_frame": {"hex": frame.hex(), "header_bytes": header, "payload": frame[header:].decode()},
    }


def write_capture(run_dir: Path, runtime: str = "gevent", timeout: float = 30.0) -> Path:
    """Start a server, capture both exchanges into ``run_dir/capture.json``, stop the server."""
    with Child(["-m", "server", "--runtime", runtime, "--port", "0"], name="the server") as server:
        port = int(server.expect("port", timeout)["port"])
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout, alive=lambda: not server.exited())
        capture = asyncio.run(capture_exchange(port))
        capture["server"] = {"runtime": runtime}
    validate_capture(capture)
    target = run_dir / "capture.json"
    target.write_text(json.dumps(capture, indent=1) + "\n")
    return target
