"""The Redis bus: channels shared by every worker and server that uses one Redis.

I/O layer over the sans-I/O core (:mod:`server.bus.core`), for scale-out:
several gunicorn workers, or several servers, publish and subscribe to the same
channels. Redis is the source of truth; each process keeps a mirror.

**In Redis** (keys under a configurable prefix, default ``lab:``):

- ``<prefix>seq:<channel>``: the channel's counter, its newest ``seq``;
- ``<prefix>log:<channel>``: a sorted set of the retained events, member = the
  event's serialized bytes, score = its ``seq``, trimmed to ``history`` events
  and ``history_bytes`` bytes (the newest event is always kept);
- ``<prefix>bytes:<channel>``: the bytes the sorted set holds;
- ``<prefix>events``: a pub/sub channel that carries each event's bytes.

**Expiry**: with ``channel_ttl``, each publish sets the log and its byte
count to expire ``channel_ttl`` seconds later, and the counter
``TOMBSTONE_LIFETIMES`` times later (as the memory bus keeps a tombstone): a
subscriber that comes back to an expired channel gets a gap notice for the
events it missed, and ``seq`` goes on. The per-process mirrors of channels
nobody published to for ``channel_ttl`` are dropped too (they are a cache).

**Publish** is one Lua script, registered once and run atomically by Redis:
``INCR`` the counter, read Redis's clock (``TIME``, so ``ts`` is wall clock in
ns, at microsecond resolution, and never decreases along ``seq`` whichever
process published), build the event bytes from the pieces
:func:`~server.bus.core.event_parts` gives (the format stays defined in the
core), ``ZADD`` them, trim, and ``PUBLISH`` them. The bytes are built once and
stored as they are; readers hand the same bytes to both transports. Because
the script is atomic, the retained ``seq`` are always contiguous: a reader
never sees ``seq + 1`` without ``seq``.

**Reads** are served from a per-process mirror when it can answer, else from
Redis. One listener thread per process (a greenlet under gevent:
:mod:`threading` is looked up at call time) receives every event from
``<prefix>events``, appends it to that channel's mirror
(:class:`~server.bus.core.ChannelLog`) and wakes only the local waiters of
that channel. Pub/sub is at-most-once (a dropped connection loses messages),
so the mirror is a cache with strict rules, never an authority:

- it answers only a cursor inside its range (``first - 1 <= after <= last``)
  and only with events (a non-empty batch). Those events are correct: the
  mirror holds contiguous events with the very bytes stored in Redis. They
  may stop short of Redis's newest (by the pub/sub delay, with ``more``
  false); the next read, from the new cursor, gets the rest at once.
- every other read goes to Redis: a cursor the mirror cannot place (older than
  the mirror, or ahead of it because another worker is ahead: the mirror
  must not announce a false gap or a false reset), and any read that would
  come back empty (the mirror may lag Redis, and a ``201`` answered by another
  worker promises the event is readable everywhere). Events read from Redis
  feed the mirror, which repairs it after a lost message, and wake the
  channel's local waiters (the pub/sub copy that comes later is no news and
  wakes no one, so the read must).
- when the listener (re)subscribes (redis-py reconnects by itself), the
  mirrors are dropped and every local waiter is woken to read again.

A Redis read is one ``MULTI`` round trip (the counter, the oldest retained
``seq``, the events after the cursor), so its answer is one consistent
snapshot to which :class:`~server.bus.core.Window` applies the same cursor
rules as the memory bus; a reset (cursor ahead of the channel) costs one more
round trip.

**Cost**: every process mirrors every channel it hears of (at most
``history`` events each, as the memory bus holds) and parses each published
event once; a waiting long poll costs two Redis round trips before it sleeps
(its two empty reads) and a WebSocket woken by a client message with nothing
new costs one. A broadcast to N local subscribers costs no Redis read at all:
they are served from the mirror. A notification lost with a dropped pub/sub
connection delays (never loses) an event until the next event, the next
resubscription, or the long poll's timeout.

If Redis is unreachable, the constructor, :meth:`RedisBus.publish` and
:meth:`RedisBus.read` raise :class:`RedisUnavailable` naming the server.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import redis

from .base import Bus, BusUnavailable
from .core import Batch, ChannelLog, Event, Window, event_parts
from .memory import TOMBSTONE_LIFETIMES

__all__ = ["RedisBus", "RedisUnavailable"]

PUBLISH_SCRIPT = """
-- KEYS[1]: counter, KEYS[2]: sorted set of events, KEYS[3]: its size in bytes.
-- ARGV: head, mid, tail (core.event_parts), history, notify channel,
--       history bytes, ttl of the log in ms (0: none), ttl of the counter in ms.
if redis.replicate_commands then redis.replicate_commands() end
local seq = redis.call('INCR', KEYS[1])
local now = redis.call('TIME')
-- Lua numbers are doubles: ns since the epoch do not fit, so build text.
local ts = now[1] .. string.format('%06d', tonumber(now[2])) .. '000'
local wire = ARGV[1] .. string.format('%d', seq) .. ARGV[2] .. ts .. ARGV[3]
redis.call('ZADD', KEYS[2], seq, wire)
local total = redis.call('INCRBY', KEYS[3], string.len(wire))
local n = redis.call('ZCARD', KEYS[2])
local history, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[6])
while n > 1 and (n > history or total > max_bytes) do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  total = redis.call('DECRBY', KEYS[3], string.len(oldest[1]))
  n = n - 1
end
if total < 0 then redis.call('SET', KEYS[3], 0) end
local ttl, seq_ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[1], seq_ttl)
end
redis.call('PUBLISH', ARGV[5], wire)
return {seq, ts, wire}
"""
"""Assigns ``seq`` and ``ts``, stores and announces one event, atomically."""

LISTEN_POLL = 0.25
"""Seconds the listener blocks on pub/sub before checking for close()."""

READ_ATTEMPTS = 8
"""Snapshots a read may take when history moves under it (two suffice unless trimming races it)."""


class RedisUnavailable(BusUnavailable):
    """Redis cannot be reached: the Redis bus cannot publish or read."""


class RedisBus(Bus):
    """Channels kept in Redis, shared by every process that uses the same URL and prefix."""

    name = "redis"

    def __init__(
        self,
        url: str,
        history: int = 10_000,
        prefix: str = "lab:",
        history_bytes: int | None = None,
        channel_ttl: float | None = None,
    ) -> None:
        super().__init__()
        if history < 1:
            raise ValueError("history must be >= 1")
        self.history = history
        self.history_bytes = history_bytes
        self.channel_ttl = channel_ttl
        self._mirror_heard: OrderedDict[str, float] = OrderedDict()
        """Channel -> monotonic time its mirror last advanced, least recent first; guarded by ``_lock``."""
        self.prefix = prefix
        self._notify = prefix + "events"
        """The pub/sub channel carrying every event's bytes."""
        self._mirrors: dict[str, ChannelLog] = {}
        """Per-channel cache of what the listener heard; guarded by ``_lock``."""
        self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        kwargs = self._client.connection_pool.connection_kwargs
        self._where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        self._stop = threading.Event()
        self._pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            self._client.ping()
            # Subscribed before the constructor returns: no publish made after
            # it can miss this process's waiters. The confirmation is consumed
            # here, so the listener takes any later one for a reconnection.
            self._pubsub.subscribe(self._notify)
            confirmed = self._pubsub.get_message(timeout=5)
            if confirmed is None or confirmed["type"] != "subscribe":
                raise redis.ConnectionError(f"no confirmation of SUBSCRIBE {self._notify}: {confirmed!r}")
        except redis.RedisError as exc:
            self._client.close()
            raise self._unavailable(exc) from exc
        self._publish_script = self._client.register_script(PUBLISH_SCRIPT)
        self._listener = threading.Thread(target=self._listen, name="lab-redis-listener", daemon=True)
        self._listener.start()

    def _unavailable(self, exc: Exception) -> RedisUnavailable:
        return RedisUnavailable(f"Redis bus: cannot reach {self._where}: {exc}")

    def check(self) -> None:
        """Health check (``/healthz``): one ``PING``; :class:`RedisUnavailable` if Redis does not answer."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc

    def _keys(self, channel: str) -> tuple[str, str]:
        return f"{self.prefix}seq:{channel}", f"{self.prefix}log:{channel}"

    def _script_args(self, head: bytes, mid: bytes, tail: bytes) -> list[Any]:
        ttl_ms = 0 if self.channel_ttl is None else max(1, int(self.channel_ttl * 1000))
        max_bytes = self.history_bytes if self.history_bytes is not None else 2**62
        return [head, mid, tail, self.history, self._notify, max_bytes, ttl_ms, ttl_ms * TOMBSTONE_LIFETIMES]

    # -- publish ---------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> Event:
        head, mid, tail = event_parts(channel, data)
        try:
            seq, ts, wire = self._publish_script(
                keys=[*self._keys(channel), f"{self.prefix}bytes:{channel}"], args=self._script_args(head, mid, tail)
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        wire = bytes(wire)
        event = Event(channel, int(seq), int(ts), wire, len(wire) - len(data) - 1)
        self._heard((event,))  # local waiters need not wait for the pub/sub echo
        return event

    # -- read ------------------------------------------------------------

    def read(self, channel: str, after: int, limit: int) -> Batch:
        if after < 0:
            raise ValueError("cursor must be >= 0")
        with self._lock:
            mirror = self._mirrors.get(channel)
            if mirror is not None and mirror.first_seq - 1 <= after <= mirror.last_seq:
                batch = mirror.read(after, limit)
                if batch.events:
                    return batch
        batch = self._read_redis(channel, after, limit)
        if batch.events:
            self._heard(batch.events)
        return batch

    def _read_redis(self, channel: str, after: int, limit: int) -> Batch:
        """One consistent snapshot from Redis, cut by the core's cursor rules."""
        seq_key, log_key = self._keys(channel)
        fetch_after = after
        for _ in range(READ_ATTEMPTS):
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    pipe.get(seq_key)
                    pipe.zrange(log_key, 0, 0, withscores=True)
                    pipe.zrangebyscore(log_key, f"({fetch_after}", "+inf", start=0, num=limit + 1)
                    raw_last, oldest, raw_events = pipe.execute()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise self._unavailable(exc) from exc
            last = int(raw_last or 0)
            first = int(oldest[0][1]) if oldest else last + 1
            window = Window.resolve(after, first, last)
            # What was fetched starts right after max(fetch_after, first - 1):
            # usable when that is where the window starts.
            if max(fetch_after, first - 1) == window.start:
                events = tuple(Event.from_wire(bytes(w)) for w in raw_events)
                return window.batch(events[:limit], len(events) > limit)
            fetch_after = window.start  # a reset: fetch again from the start
        raise RuntimeError(f"Redis bus: history of {channel!r} moved under {READ_ATTEMPTS} reads")

    # -- mirror and listener ----------------------------------------------

    def _mirror(self, channel: str) -> ChannelLog:
        """The channel's mirror, created empty; call with ``_lock`` held."""
        mirror = self._mirrors.get(channel)
        if mirror is None:
            mirror = self._mirrors[channel] = ChannelLog(channel, self.history, self.history_bytes)
        return mirror

    def _expire_mirrors(self, now: float) -> None:
        """Drop the mirrors of channels not heard of for ``channel_ttl``; call with ``_lock`` held."""
        if self.channel_ttl is None:
            return
        heard = self._mirror_heard
        while heard:
            channel, at = next(iter(heard.items()))
            if now - at < self.channel_ttl:
                break
            del heard[channel]
            self._mirrors.pop(channel, None)

    def _heard(self, events: tuple[Event, ...]) -> None:
        """Add events of one channel to its mirror; wake its waiters if that is news here.

        Whoever advances the mirror wakes: the listener, a local publish, or a
        read from Redis that got ahead of the listener. The later copies of an
        event (the pub/sub echo of a local publish) are no news and wake no one.
        """
        channel = events[0].channel
        with self._lock:
            mirror = self._mirror(channel)
            before = mirror.last_seq
            for event in events:
                mirror.add(event)
            if mirror.last_seq == before:
                return
            now = time.monotonic()
            self._mirror_heard[channel] = now
            self._mirror_heard.move_to_end(channel)
            self._expire_mirrors(now)
            waiters = self._waiters.of(channel)
        for waiter in waiters:
            waiter.set()

    def _resync(self) -> None:
        """Forget the mirrors and wake everyone: messages may have been lost."""
        with self._lock:
            self._mirrors.clear()
            self._mirror_heard.clear()
            waiters = self._waiters.everyone()
        for waiter in waiters:
            waiter.set()

    def _listen(self) -> None:
        """The one pub/sub listener of this process."""
        try:
            while not self._stop.is_set():
                try:
                    message: dict[str, Any] | None = self._pubsub.get_message(timeout=LISTEN_POLL)
                except (redis.RedisError, OSError):
                    if self._stop.is_set():
                        return
                    self._resync()
                    self._stop.wait(LISTEN_POLL)
                    continue
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self._resync()  # reconnected: whatever was sent meanwhile is lost
                elif message["type"] == "message":
                    try:
                        event = Event.from_wire(bytes(message["data"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # not ours: someone else publishing on the channel
                    self._heard((event,))
        finally:
            self._pubsub.close()

    def close(self) -> None:
        """Stop the listener, wake every waiter, release the connections."""
        self._stop.set()
        super().close()
        if self._listener is not threading.current_thread():
            self._listener.join(4 * LISTEN_POLL)
        self._client.close()
