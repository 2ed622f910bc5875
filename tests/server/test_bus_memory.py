"""Tests of the memory bus: thread safety, under threads and under gevent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

from server.bus import MemoryBus
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
