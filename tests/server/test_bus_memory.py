"""Tests of the memory bus: thread safety, under threads and under gevent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

from server.bus import Gap, MemoryBus
from server.bus.memory import TOMBSTONE_LIFETIMES
from tests.support import ROOT, UNIT


def test_concurrent_publishers_get_contiguous_seqs():
    bus = MemoryBus(history=10_000)
    threads, per_thread = 8, 400
    got: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def hammer(i: int) -> None:
        start.wait()
        for n in range(per_thread):
            got[i].append(bus.publish("c", b'{"t":%d,"n":%d}' % (i, n)).seq)

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60 * UNIT)
    total = threads * per_thread
    assert sorted(s for seqs in got for s in seqs) == list(range(1, total + 1))
    assert all(seqs == sorted(seqs) for seqs in got)  # each publisher sees its seqs increase
    batch = bus.read("c", 0, total + 1)
    assert [e.seq for e in batch.events] == list(range(1, total + 1))
    ts = [e.ts for e in batch.events]
    assert ts == sorted(ts)  # ts never decreases along seq
    for i in range(threads):  # no payload lost: each publisher's events in its own order
        mine = [json.loads(e.data)["n"] for e in batch.events if json.loads(e.data)["t"] == i]
        assert mine == list(range(per_thread))


def test_history_bound_and_independent_channels():
    bus = MemoryBus(history=2)
    for _ in range(5):
        bus.publish("a", b"0")
    bus.publish("b", b"0")
    assert [e.seq for e in bus.read("a", 0, 10).events] == [4, 5]
    assert [e.seq for e in bus.read("b", 0, 10).events] == [1]
    assert bus.read("unknown", 0, 10).events == ()
    assert "unknown" not in bus._channels  # reading does not create channels


GEVENT_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import json
    import threading

    import gevent

    from server.bus import MemoryBus

    bus = MemoryBus()
    greenlets, per_greenlet = 50, 40
    seen = []

    def waiter():
        cursor = 0
        while cursor < greenlets * per_greenlet:
            batch = bus.wait("c", cursor, 1000, 30)
            seen.extend(e.seq for e in batch.events)
            cursor = batch.next

    def hammer(i):
        out = []
        for n in range(per_greenlet):
            out.append(bus.publish("c", b"%d" % n).seq)
            gevent.sleep(0)  # let the others interleave
        return out

    w = gevent.spawn(waiter)
    jobs = [gevent.spawn(hammer, i) for i in range(greenlets)]
    gevent.joinall(jobs, timeout=60)
    w.join(timeout=60)
    print(json.dumps({
        "seqs": sorted(s for j in jobs for s in j.value),
        "seen": seen,
        "lock": type(bus._lock).__module__,
        "patched": monkey.is_module_patched("threading"),
        # the greenlets really ran concurrently: someone's seqs are not one run
        "interleaved": any(j.value != list(range(j.value[0], j.value[0] + per_greenlet)) for j in jobs),
    }))
    """
)


def test_gevent_greenlets_publish_contiguous_seqs_in_a_subprocess():
    out = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        timeout=120 * UNIT,
        check=True,
    )
    result = json.loads(out.stdout)
    total = 50 * 40
    assert result["patched"] is True
    assert result["lock"].startswith("gevent")  # the bus's lock is gevent's cooperative one
    assert result["seqs"] == list(range(1, total + 1))
    assert result["seen"] == list(range(1, total + 1))  # a waiting greenlet got all, in order
    assert result["interleaved"] is True


def test_gevent_patching_did_not_leak_into_pytest():
    from gevent import monkey

    assert not monkey.is_module_patched("threading")
    assert not monkey.is_module_patched("socket")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_channels_expire_and_a_returning_subscriber_gets_a_gap():
    clock = Clock()
    bus = MemoryBus(history=100, channel_ttl=60, clock=clock)
    for _ in range(3):
        bus.publish("idle", b"1")
    bus.publish("busy", b"1")
    clock.now += 59
    bus.publish("busy", b"2")
    assert bus.footprint() == {"channels": 2, "tombstones": 0, "history_bytes": bus.footprint()["history_bytes"]}
    clock.now += 2  # idle: 61 s without a publish; busy: 2 s
    assert bus.read("busy", 0, 10).next == 2
    assert bus.footprint()["channels"] == 1 and bus.footprint()["tombstones"] == 1
    batch = bus.read("idle", 1, 10)  # history gone, seq kept: exactly what was missed
    assert (batch.gap, batch.reset, batch.events, batch.next) == (Gap(2, 3), None, (), 3)
    assert bus.read("idle", 3, 10).events == ()
    assert bus.publish("idle", b"2").seq == 4  # seq goes on
    assert bus.footprint()["tombstones"] == 0


def test_tombstones_go_too_and_then_a_cursor_ahead_gets_a_reset():
    clock = Clock()
    bus = MemoryBus(history=100, channel_ttl=10, clock=clock)
    for _ in range(5):
        bus.publish("old", b"1")
    clock.now += 11
    bus.read("other", 0, 1)
    assert bus.footprint()["tombstones"] == 1
    clock.now += 10 * TOMBSTONE_LIFETIMES
    bus.read("other", 0, 1)
    assert bus.footprint() == {"channels": 0, "tombstones": 0, "history_bytes": 0}
    batch = bus.read("old", 5, 10)
    assert batch.reset is not None and (batch.reset.after, batch.reset.last_seq) == (5, 0)


def test_without_a_ttl_nothing_expires():
    clock = Clock()
    bus = MemoryBus(history=100, channel_ttl=None, clock=clock)
    bus.publish("c", b"1")
    clock.now += 10**9
    assert [e.seq for e in bus.read("c", 0, 10).events] == [1]


def test_history_bytes_bound_in_the_memory_bus():
    bus = MemoryBus(history=1000, history_bytes=10_000)
    for _ in range(200):
        bus.publish("c", b'"%s"' % (b"z" * 500))
    footprint = bus.footprint()
    assert footprint["history_bytes"] <= 10_000 and footprint["channels"] == 1
    batch = bus.read("c", 0, 1000)
    assert batch.gap is not None and batch.events[-1].seq == 200


def test_total_bytes_bound_expires_the_least_recently_published_channel():
    clock = Clock()
    bus = MemoryBus(history=100, total_bytes=3_000, clock=clock)
    payload = b'"%s"' % (b"p" * 900)
    for name in ("a", "b", "c"):
        bus.publish(name, payload)
        clock.now += 1
    assert bus.footprint()["channels"] == 3
    bus.publish("b", payload)  # b is now the most recent; a the least
    footprint = bus.footprint()
    assert footprint["history_bytes"] <= 3_000 and footprint["tombstones"] == 1
    batch = bus.read("a", 0, 10)
    assert (batch.gap, batch.events) == (Gap(1, 1), ())  # a returning subscriber of a is told
    assert [e.seq for e in bus.read("b", 0, 10).events] == [1, 2]
    assert bus.publish("a", b"1").seq == 2  # seq goes on
