"""Tests specific to the Redis bus: shared seq space, cross-instance waking, the mirror's
fallbacks, Redis being down, and a real two-worker server.

The shared contract (same semantics as the memory bus) is in test_bus_contract.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
import simple_websocket

from server.bus import Gap
from server.bus.core import encode_event
from server.bus.memory import TOMBSTONE_LIFETIMES
from server.bus.redis import RedisBus, RedisUnavailable
from tests.support import UNIT, free_port, pinned_clients, run_redis, run_server, wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
def pair(redis_url: str, prefix: str) -> Iterator[tuple[RedisBus, RedisBus]]:
    """Two buses on one Redis and prefix, as two worker processes would have."""
    a = RedisBus(redis_url, history=1000, prefix=prefix)
    b = RedisBus(redis_url, history=1000, prefix=prefix)
    yield a, b
    a.close()
    b.close()


def seqs(batch):
    return [e.seq for e in batch.events]


def test_two_instances_share_one_seq_space(pair):
    a, b = pair
    assert [(a if i % 2 else b).publish("c", b"%d" % i).seq for i in range(6)] == [1, 2, 3, 4, 5, 6]
    # A mirror may lag Redis by the pub/sub delay, so one read may stop short;
    # reading on from the cursor reaches the newest event without waiting.
    drained = {bus: drain(bus, "c") for bus in (a, b)}
    assert [e.seq for e in drained[a]] == [1, 2, 3, 4, 5, 6]
    assert drained[a] == drained[b]  # the very same bytes


def drain(bus, channel):
    events, cursor = [], 0
    while batch := bus.read(channel, cursor, 100).events:
        events.extend(batch)
        cursor = batch[-1].seq
    return events


def test_concurrent_publishers_on_two_instances_get_contiguous_seqs(pair):
    a, b = pair
    got: list[int] = []
    lock = threading.Lock()

    def hammer(bus: RedisBus) -> None:
        for _ in range(100):
            seq = bus.publish("c", b"0").seq
            with lock:
                got.append(seq)

    threads = [threading.Thread(target=hammer, args=(bus,)) for bus in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * UNIT)
    assert sorted(got) == list(range(1, 401))
    assert [e.seq for e in drain(a, "c")] == list(range(1, 401))


def test_an_instance_wakes_the_waiters_of_another(pair):
    a, b = pair
    result = []
    waiting = threading.Thread(target=lambda: result.append(a.wait("c", 0, 10, 60 * UNIT)))
    waiting.start()
    assert wait_until(lambda: a._waiters.of("c"), 10 * UNIT)
    b.publish("c", b'"from b"')
    waiting.join(20 * UNIT)
    assert not waiting.is_alive()
    assert [(e.seq, e.data) for e in result[0].events] == [(1, b'"from b"')]


def test_remote_publish_wakes_only_that_channels_local_watchers(pair):
    a, b = pair
    on_x, on_y, on_z = threading.Event(), threading.Event(), threading.Event()
    a.watch("x", on_x)
    a.watch("y", on_y)
    a.watch("z", on_z)
    b.publish("x", b"1")
    b.publish("z", b"1")
    assert on_x.wait(10 * UNIT)
    assert on_z.wait(10 * UNIT)  # pub/sub keeps order: y's turn, had there been one, is past
    assert not on_y.is_set()
    # the listener mirrored them: served without asking Redis, same bytes
    assert seqs(a._mirrors["x"].read(0, 10)) == [1]


def test_stored_bytes_history_trim_and_key_prefix(redis_url, prefix):
    bus = RedisBus(redis_url, history=3, prefix=prefix)
    try:
        events = [bus.publish("c", b'{"n": %d}' % i) for i in range(5)]
        client = redis.Redis.from_url(redis_url)
        stored = client.zrange(f"{prefix}log:c", 0, -1, withscores=True)
        assert [(bytes(m), int(s)) for m, s in stored] == [(e.wire, e.seq) for e in events[2:]]
        assert all(e.wire == encode_event("c", e.seq, e.ts, e.data) for e in events)
        assert int(client.get(f"{prefix}seq:c")) == 5
        assert sorted(k.decode() for k in client.keys(prefix + "*")) == [
            f"{prefix}bytes:c",
            f"{prefix}log:c",
            f"{prefix}seq:c",
        ]
        assert int(client.get(f"{prefix}bytes:c")) == sum(len(e.wire) for e in events[2:])
        client.close()
    finally:
        bus.close()


def test_history_is_bounded_by_bytes_in_redis_and_in_the_mirror(redis_url, prefix):
    bus = RedisBus(redis_url, history=100, prefix=prefix, history_bytes=250)
    try:
        events = [bus.publish("b", b'"%s"' % (b"x" * 50)) for _ in range(10)]
        kept, total = 0, 0
        while total + len(events[-1 - kept].wire) <= 250:  # newest first, while they fit
            total += len(events[-1 - kept].wire)
            kept += 1
        client = redis.Redis.from_url(redis_url)
        stored = [bytes(m) for m in client.zrange(f"{prefix}log:b", 0, -1)]
        assert stored == [e.wire for e in events[-kept:]]
        assert kept == 2 and int(client.get(f"{prefix}bytes:b")) == total
        client.close()
        batch = bus.read("b", 0, 100)
        assert batch.gap is not None and (batch.gap.first, batch.gap.last) == (1, 10 - kept)
        assert [e.seq for e in batch.events] == list(range(11 - kept, 11))
        assert bus._mirrors["b"].nbytes <= 250
        big = bus.publish("b", b'"%s"' % (b"y" * 400))  # larger than the bound: kept alone
        assert [e.seq for e in bus.read("b", 10, 100).events] == [big.seq]
    finally:
        bus.close()


def test_channel_ttl_expires_the_log_and_keeps_the_counter_longer(redis_url, prefix):
    bus = RedisBus(redis_url, history=100, prefix=prefix, channel_ttl=60)
    try:
        for i in range(3):
            bus.publish("t", b"%d" % i)
        client = redis.Redis.from_url(redis_url)
        log_ttl = client.pttl(f"{prefix}log:t")
        assert 0 < log_ttl <= 60_000
        assert 0 < client.pttl(f"{prefix}bytes:t") <= 60_000
        assert 60_000 < client.pttl(f"{prefix}seq:t") <= 60_000 * TOMBSTONE_LIFETIMES
        # What Redis does when the log's time comes: a returning subscriber gets a gap, seq goes on.
        client.delete(f"{prefix}log:t", f"{prefix}bytes:t")
        client.close()
        fresh = RedisBus(redis_url, history=100, prefix=prefix, channel_ttl=60)  # no mirror of t
        try:
            batch = fresh.read("t", 1, 100)
            assert (batch.gap, batch.reset, batch.events) == (Gap(2, 3), None, ())
            assert fresh.publish("t", b"9").seq == 4
        finally:
            fresh.close()
    finally:
        bus.close()


def test_a_lost_notification_is_read_from_redis_and_repairs_the_mirror(pair):
    a, b = pair
    b.publish("c", b"1")
    assert wait_until(lambda: "c" in a._mirrors and a._mirrors["c"].last_seq == 1, 10 * UNIT)
    b._notify = b._notify + ":nobody-listens"  # b's next publishes are not announced to a
    b.publish("c", b"2")
    b.publish("c", b"3")
    assert a._mirrors["c"].last_seq == 1  # a heard nothing
    batch = a.read("c", 1, 10)  # the mirror has nothing after 1: Redis has
    assert seqs(batch) == [2, 3]
    assert a._mirrors["c"].last_seq == 3
    assert a.read("c", 3, 10).reset is None  # a cursor from another worker is no false reset


def test_events_a_read_fetched_from_redis_wake_local_watchers(pair):
    # Regression: a read got ahead of the listener, so the pub/sub copy was no
    # news and nobody woke the WebSockets watching the channel.
    a, b = pair
    b.publish("c", b"1")
    assert wait_until(lambda: "c" in a._mirrors and a._mirrors["c"].last_seq == 1, 10 * UNIT)
    watcher = threading.Event()
    a.watch("c", watcher)
    real = b._notify
    b._notify = real + ":nobody-listens"
    b.publish("c", b"2")
    assert not watcher.is_set()
    assert seqs(a.read("c", 1, 10)) == [2]  # e.g. a long poll's read, not the watcher's
    assert watcher.is_set()


def test_a_cursor_ahead_of_the_mirror_is_no_reset(pair):
    a, b = pair
    b.publish("c", b"0")
    assert wait_until(lambda: "c" in a._mirrors and a._mirrors["c"].last_seq == 1, 10 * UNIT)
    b._notify = b._notify + ":nobody-listens"
    for i in range(1, 4):
        b.publish("c", b"%d" % i)
    batch = a.read("c", 3, 10)  # a cursor handed out by the other worker, beyond a's mirror
    assert (batch.reset, seqs(batch)) == (None, [4])


def test_a_mirror_with_a_hole_is_no_false_gap(redis_url, prefix):
    a = RedisBus(redis_url, history=100, prefix=prefix)
    b = RedisBus(redis_url, history=100, prefix=prefix)
    try:
        a.publish("c", b"1")
        real = b._notify
        b._notify = real + ":nobody-listens"
        b.publish("c", b"2")
        b._notify = real
        b.publish("c", b"3")  # a's mirror jumps from 1 to 3: it restarts at 3
        assert wait_until(lambda: a._mirrors["c"].last_seq == 3, 10 * UNIT)
        batch = a.read("c", 0, 10)
        assert (batch.gap, seqs(batch)) == (None, [1, 2, 3])
        small = RedisBus(redis_url, history=2, prefix=prefix)
        small.publish("c", b"4")  # trims Redis to 3..4
        small.close()
        assert a.read("c", 0, 10).gap == Gap(1, 2)
    finally:
        a.close()
        b.close()


def test_close_stops_the_listener(redis_url, prefix):
    bus = RedisBus(redis_url, prefix=prefix)
    assert bus._listener.is_alive()
    bus.close()
    assert not bus._listener.is_alive()


def test_redis_down_at_start_is_a_clear_error():
    port = free_port()
    with pytest.raises(RedisUnavailable, match=f"cannot reach redis://127.0.0.1:{port}/0"):
        RedisBus(f"redis://127.0.0.1:{port}/0")


def test_redis_going_down_is_a_clear_error():
    with run_redis() as url:
        bus = RedisBus(url, prefix="x:")
        bus.publish("c", b"1")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        redis.Redis(port=port).shutdown(nosave=True)
        with pytest.raises(RedisUnavailable, match="cannot reach"):
            bus.publish("c", b"2")
        with pytest.raises(RedisUnavailable):
            bus.read("c", 0, 10)
        bus.close()
        assert not bus._listener.is_alive()


@contextlib.contextmanager
def redis_on(port: int) -> Iterator[None]:
    """A redis-server on a given port (so it can be restarted on the same one)."""
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: _pings(port), 10 * UNIT)
        yield
    finally:
        proc.terminate()
        proc.wait(10 * UNIT)


def _pings(port: int) -> bool:
    client = redis.Redis(port=port)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_the_listener_survives_a_redis_restart():
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_on(port):
        a = RedisBus(url, prefix="r:")
    try:
        with pytest.raises(RedisUnavailable):
            a.publish("c", b"1")
        with redis_on(port):  # an empty Redis: the channel starts again at 1
            b = RedisBus(url, prefix="r:")
            try:
                # The listener reconnects on its own; until it has, a's waiters cannot hear b.
                watcher = threading.Event()
                a.watch("c", watcher)
                assert wait_until(lambda: b.publish("c", b"2") and watcher.is_set(), 20 * UNIT, 0.2)
                watcher.clear()
                last = b.publish("c", b"3")
                assert watcher.wait(10 * UNIT)  # woken by b's event: a hears b again
                assert a._listener.is_alive()
                assert seqs(a.read("c", 0, 1)) == [1]
                assert a.read("c", last.seq - 1, 10).events == (last,)
            finally:
                b.close()
    finally:
        a.close()


# -- a real server: two gunicorn workers sharing channels through Redis -------------


def pinned_websockets(
    url: str, workers: dict[int, httpx.Client], per_worker: int
) -> dict[int, list[simple_websocket.Client]]:
    """WebSockets, ``per_worker`` held by each worker in ``workers``.

    The kernel gives a new connection to whichever worker accepts first, and
    one gevent worker can take every one of a burst. Each socket is opened
    alone and its worker found by whose ``/stats`` count rises; the surplus is
    closed.
    """

    def counts() -> dict[int, int]:
        return {pid: w.get("/stats").json()["connections"]["websocket"] for pid, w in workers.items()}

    def settle(before: dict[int, int]) -> dict[int, int]:
        """The counts once they differ from ``before`` (or at the deadline)."""
        deadline = time.monotonic() + 20 * UNIT
        now = counts()
        while now == before and time.monotonic() < deadline:
            time.sleep(0.02)
            now = counts()
        return now

    found: dict[int, list[simple_websocket.Client]] = {pid: [] for pid in workers}
    for _ in range(80):
        if all(len(held) == per_worker for held in found.values()):
            break
        before = counts()
        ws = simple_websocket.Client.connect(url)
        after = settle(before)
        (pid,) = [p for p in workers if after[p] == before[p] + 1]
        if len(found[pid]) < per_worker:
            found[pid].append(ws)
        else:
            ws.close()
            assert wait_until(lambda before=before: counts() == before, 20 * UNIT)
    return found


def long_poll(client: httpx.Client, channel: str, count: int, out: list[dict]) -> None:
    cursor = 0
    while len(out) < count:
        body = client.get(f"/channels/{channel}/poll", params={"after": cursor, "timeout": 20 * UNIT}).json()
        assert body["gap"] is None and body["reset"] is None
        out.extend(body["events"])
        cursor = body["next"]


@pytest.mark.parametrize("runtime", ["gthread", "gevent"])
def test_two_workers_deliver_every_event_to_every_subscriber(redis_url, runtime):
    channel = f"x-{uuid.uuid4().hex[:12]}"
    count = 20
    env = {"LAB_REDIS_URL": redis_url}
    with run_server(runtime, "--workers", "2", "--bus", "redis", env=env) as server:
        clients = pinned_clients(server.url, per_worker=2)
        try:
            assert len(clients) == 2, "could not reach both workers"
            pids = sorted(clients)
            workers = {pid: clients[pid][0] for pid in pids}  # to publish and ask /stats
            pollers_clients = {pid: clients[pid][1] for pid in pids}  # held by long polls
            held = pinned_websockets(f"{server.ws_url}/channels/{channel}/ws?after=0", workers, per_worker=3)
            sockets = [ws for pid in pids for ws in held[pid]]
            try:
                assert [len(held[pid]) for pid in pids] == [3, 3], "could not put sockets on both workers"

                polled: dict[int, list[dict]] = {pid: [] for pid in pids}
                pollers = [
                    threading.Thread(
                        target=long_poll, args=(pollers_clients[pid], channel, count, polled[pid]), daemon=True
                    )
                    for pid in pids
                ]
                for t in pollers:
                    t.start()
                assert wait_until(
                    lambda: all(workers[p].get("/stats").json()["connections"]["longpoll"] == 1 for p in pids),
                    20 * UNIT,
                )
                published = []
                for i in range(count):  # publishes alternate between the workers
                    resp = workers[pids[i % 2]].post(f"/channels/{channel}/events", content=b'{"i":%d}' % i)
                    assert resp.status_code == 201
                    published.append(resp.json()["seq"])
                assert published == list(range(1, count + 1))
                # both workers took publishes (the clients stayed pinned)
                assert all(workers[p].get("/stats").json()["events_published"] == count // 2 for p in pids)

                for t in pollers:
                    t.join(60 * UNIT)
                    assert not t.is_alive()
                expected = [{"channel": channel, "seq": i + 1, "data": {"i": i}} for i in range(count)]
                for pid in pids:
                    assert [{k: e[k] for k in ("channel", "seq", "data")} for e in polled[pid]] == expected
                reference = polled[pids[0]]
                assert polled[pids[1]] == reference  # the same ts too: one event, stored once

                for ws in sockets:
                    frames = [ws.receive(timeout=20 * UNIT) for _ in range(count)]
                    assert None not in frames
                    assert [json.loads(f) for f in frames] == reference
                    # each frame is exactly the event object's bytes
                    assert frames == [json.dumps(e, separators=(",", ":")) for e in reference]
            finally:
                for ws in sockets:
                    ws.close()
        finally:
            for pinned in clients.values():
                for client in pinned:
                    client.close()
