"""``/healthz`` says what a load balancer needs (server/app.py's route, server/bus/redis.py's check).

With the Redis bus, the probe pings Redis: while Redis is down the answer is
``503`` with ``{"error": "bus_unavailable"}``, so a load balancer stops
sending traffic to a server that can neither publish nor read; once Redis is
back, ``200`` again. Before, it answered ``200`` throughout.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from server.app import create_app, lab_of
from server.config import Config
from tests.support import UNIT, run_redis, wait_until


@pytest.mark.redis
def test_healthz_is_503_bus_unavailable_while_redis_is_down() -> None:
    with run_redis() as url:
        app = create_app(Config(bus="redis", redis_url=url))
        client = app.test_client()
        up = client.get("/healthz")
        assert (up.status_code, up.get_json()["status"], up.get_json()["bus"]) == (200, "ok", "redis")
    try:
        down = client.get("/healthz")  # redis-server is stopped now
        assert down.status_code == 503
        assert down.get_json()["error"] == "bus_unavailable"
        assert down.headers["Cache-Control"] == "no-store"
    finally:
        lab_of(app).bus.close()


@pytest.mark.redis
def test_healthz_recovers_when_redis_comes_back() -> None:
    """The same Redis port, restarted: the probe reconnects by itself."""
    with run_redis() as url:
        app = create_app(Config(bus="redis", redis_url=url))
    client = app.test_client()
    port = url.rsplit(":", 1)[1].split("/")[0]
    try:
        assert client.get("/healthz").status_code == 503
        binary = shutil.which("redis-server")
        assert binary is not None
        proc = subprocess.Popen(
            [binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_until(lambda: client.get("/healthz").status_code == 200, 10 * UNIT)
        finally:
            proc.terminate()
            proc.wait(5 * UNIT)
    finally:
        lab_of(app).bus.close()
