"""The fleet's Socket.IO subscriber: Engine.IO v4 + Socket.IO v5, over WebSocket, long polling, or both.

Agent layer of the benchmark, for the Flask-SocketIO peer (``peers/flask_socketio``). A
:class:`clients.Subscriber` like the lab's own lean ones: the accounting, the reconnect loop and the meter are
theirs; this module only speaks the protocol. The WebSocket is :class:`bench.agents.websocket.
LeanWebSocketSubscriber`'s connection (its frame parser, handshake, pongs and receive time), through three
small hooks (the request target, the moment it opened, each text message); the HTTP exchanges are
:class:`bench.agents.http.BarePoller`'s.

Three modes (``mode``), each what a Socket.IO client does:

- ``websocket``: ``GET /socket.io/?EIO=4&transport=websocket&channel=<c>``, the official clients'
  ``transports: ["websocket"]``. The server's first message is the Engine.IO open packet ``0{...}``; the
  client sends ``40`` (Socket.IO CONNECT to the main namespace) and gets ``40{"sid":...}``.
- ``polling``: Engine.IO long polling. ``GET ...&transport=polling&channel=<c>`` answers the open packet,
  ``POST ...&sid=<sid>`` carries ``40``, then ``GET ...&sid=<sid>`` is held until the server has packets
  and answers all of them, separated by ``\\x1e``. The server pings (``2``) every ``pingInterval``; the
  answer ``3`` goes over ``POST`` on a second keep-alive connection while the next ``GET`` is held (as a
  browser's pool does). Its raw results' transport is ``longpoll``: it is long polling.
- ``upgrade``: the official clients' default. Open, ``40`` and its ack over polling, then a WebSocket with
  the session's ``sid``: ``2probe``, ``3probe``, ``5`` (UPGRADE), after which everything comes over the
  WebSocket. The JS client probes while a ``GET`` is held; here the probe starts once the connect ack has
  arrived, with no ``GET`` pending: what the server queued meanwhile comes over the WebSocket after the
  ``5`` (and a NOOP ``6``, the server's way to end a pending poll), so nothing is lost either way.

Only EVENT packets ``42["<event>",<payload>]`` of the peer's event name (``event``, ``"e"``) are events: each
becomes the lab's event object (:func:`bench.agents.messages.peer_event`: the cursor is the number the
publisher put in the payload). Everything else (open, connect ack, pings, NOOP) is protocol traffic,
counted in bytes (the meter, ``payload_bytes``, ``frames``) but not as events. ``44`` (CONNECT_ERROR, e.g.
a bad channel) is a :class:`clients.SubscriberError`; ``41``, Engine.IO's ``1`` (close), an unknown
session (``400``) or a broken connection reconnect.

**No resume**: Socket.IO has none (python-socketio has no connection-state recovery), so a reconnect
opens a new session, and what was emitted meanwhile went to the old one: the tracker counts it missing
against the publisher's numbers. :meth:`SocketIOSubscriber.drop` aborts the WebSocket, or the held
``GET`` (which the official clients also take as the end of the session).

Counted as the lab's: ``stats.requests`` every HTTP request answered (``GET`` and ``POST``),
``empty_responses`` the ``GET`` answers with no event, ``connections`` new TCP connections and WebSocket
handshakes, ``payload_bytes`` HTTP bodies and WebSocket messages received; the meter has every byte, the
WebSocket Upgrade apart as ``head_*``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import quote

from clients import SubscriberError

from .http import Answer, BarePoller
from .messages import peer_event
from .meter import WireMeter
from .websocket import HANDSHAKE_TIMEOUT, LeanWebSocketSubscriber

__all__ = [
    "EVENT",
    "MODES",
    "SEPARATOR",
    "EngineOpen",
    "SocketIOSubscriber",
    "event_args",
    "parse_open",
    "split_payload",
]

EVENT = "e"
"""The event name the Flask-SocketIO peer emits every publish as."""
MODES = ("websocket", "polling", "upgrade")
SEPARATOR = "\x1e"
"""Engine.IO v4's separator of packets in one long-polling body (the record separator)."""
POLL_MARGIN = 5.0
"""Seconds a held ``GET`` may take beyond ``pingInterval + pingTimeout`` before it is given up."""


class EngineOpen(NamedTuple):
    """The Engine.IO open packet's fields (``0{"sid",...}``); times in seconds."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval: float
    ping_timeout: float
    max_payload: int


def parse_open(packet: str) -> EngineOpen:
    """The :class:`EngineOpen` of an open packet; :class:`ConnectionResetError` if ``packet`` is not one."""
    if not packet.startswith("0"):
        raise ConnectionResetError(f"expected the Engine.IO open packet, got {packet[:80]!r}")
    obj = json.loads(packet[1:])
    return EngineOpen(
        str(obj["sid"]),
        tuple(obj.get("upgrades", ())),
        obj.get("pingInterval", 25000) / 1000,
        obj.get("pingTimeout", 20000) / 1000,
        int(obj.get("maxPayload", 1_000_000)),
    )


def split_payload(body: str) -> list[str]:
    """The packets of one Engine.IO v4 long-polling body (none for an empty body)."""
    return body.split(SEPARATOR) if body else []


def event_args(packet: str) -> list[Any]:
    """The ``[name, *args]`` list of a Socket.IO EVENT packet (``42``, an optional ``/namespace,`` and ack id)."""
    i = 2
    if packet.startswith("/", i):
        i = packet.index(",", i) + 1
    while i < len(packet) and packet[i].isdigit():
        i += 1
    args = json.loads(packet[i:])
    if not isinstance(args, list) or not args or not isinstance(args[0], str):
        raise ValueError(f"not a Socket.IO event: {packet[:80]!r}")
    return args


class SocketIOSubscriber(LeanWebSocketSubscriber):
    """Subscribe to ``channel`` of a Socket.IO server at ``base_url`` in ``mode`` (see the module).

    ``event`` is the event name that carries the channel's payloads, ``path`` the server's Engine.IO
    path. Other keyword arguments are :class:`LeanWebSocketSubscriber`'s and :class:`clients.Subscriber`'s.
    """

    def __init__(
        self,
        base_url: str,
        channel: str,
        *,
        mode: str = "websocket",
        event: str = EVENT,
        path: str = "/socket.io/",
        meter: WireMeter | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        super().__init__(base_url, channel, meter=meter, **kwargs)
        self.mode = mode
        self.transport = "longpoll" if mode == "polling" else "websocket"
        """For raw results: ``longpoll`` for Engine.IO long polling, ``websocket`` otherwise."""
        self.event = event
        self._base = base_url.rstrip("/")
        self._query = f"{path}?EIO=4&transport={{transport}}&channel={quote(channel, safe='')}"
        self.opened: EngineOpen | None = None
        """The current session's open packet."""
        self.connected = False
        """The current session's Socket.IO CONNECT was acknowledged (``40{...}``), and the session is not over."""
        self._send: Callable[[str], None] | None = None
        """Sends one Engine.IO packet the current way: on the WebSocket, or queued for a ``POST``."""
        self._get: asyncio.Future[tuple[Answer, bool, int, int]] | None = None
        """The ``GET`` in flight, if any (what :meth:`drop` aborts when no WebSocket is open)."""
        self._abort: BaseException | None = None
        """Why the ``GET`` in flight was cancelled (a drop, a failed ``POST``)."""

    # -- the session ------------------------------------------------------------------------------------

    def drop(self) -> bool:
        """Abort the WebSocket, or the held ``GET``, as a network failure would; it reconnects with a new session."""
        get = self._get
        if get is not None and not get.done():
            self._abort = ConnectionResetError("dropped")
            get.cancel()
            return True
        return super().drop()

    async def _session(self) -> None:
        self.opened, self.connected, self._send, self._abort = None, False, None, None
        try:
            if self.mode != "websocket":
                await self._polling()  # polling: until the session ends; upgrade: until the CONNECT ack
                assert self.opened is not None
                if "websocket" not in self.opened.upgrades:
                    raise SubscriberError(f"the server offers no WebSocket upgrade: {self.opened.upgrades}")
            await super()._session()  # upgrade: _target() names the session, _opened() probes
        finally:
            self.connected = False

    async def _polling(self) -> None:
        """The session over Engine.IO long polling: open, ``40``, then held ``GET``s (until connected, to upgrade)."""
        get, post = BarePoller(self.meter), BarePoller(self.meter)
        outbox: asyncio.Queue[str] = asyncio.Queue()
        poster: asyncio.Task[None] | None = None
        try:
            url = self._base + self._query.format(transport="polling")
            body, recv_ns, recv_mono_ns = await self._exchange(get, "GET", url, HANDSHAKE_TIMEOUT, opening=True)
            packets = split_payload(body)
            if not packets:
                raise ConnectionResetError("an empty answer to the Engine.IO open request")
            self.opened = parse_open(packets[0])
            url += f"&sid={quote(self.opened.sid, safe='')}"
            await self._exchange(post, "POST", url, HANDSHAKE_TIMEOUT, body=b"40")
            self._send = outbox.put_nowait
            poster = asyncio.create_task(self._post_loop(post, url, outbox))
            poster.add_done_callback(self._poster_done)
            for packet in packets[1:]:
                self._packet(packet, recv_ns, recv_mono_ns)
            timeout = self.opened.ping_interval + self.opened.ping_timeout + POLL_MARGIN
            while self.mode == "polling" or not self.connected:
                await self._poll(get, url, timeout)
        finally:
            if poster is not None:
                poster.cancel()
            self._send = None
            await get.aclose()
            await post.aclose()

    async def _exchange(
        self, poller: BarePoller, method: str, url: str, timeout: float, *, body: bytes = b"", opening: bool = False
    ) -> tuple[str, int, int]:
        """One HTTP exchange of the session, counted: its body and when it was read, or why the session ends."""
        future = asyncio.ensure_future(poller.request(method, url, timeout, None, body))
        if method == "GET":
            self._get = future
        try:
            answer, new, recv_ns, recv_mono_ns = await future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._abort is None or (task is not None and task.cancelling()):
                raise
            raise self._abort from None
        finally:
            self._get = None
        stats = self.stats
        stats.requests += 1
        stats.connections += new
        stats.payload_bytes += len(answer.body)
        if answer.status != 200:
            message = f"{method} {url} answered {answer.status}: {answer.body[:200]!r}"
            if opening and 400 <= answer.status < 500:
                raise SubscriberError(message)
            raise ConnectionResetError(message)  # e.g. 400 "Invalid session": the server closed it
        return answer.body.decode(), recv_ns, recv_mono_ns

    async def _poll(self, get: BarePoller, url: str, timeout: float) -> None:
        """One held ``GET``: every packet of its answer, with the time the answer was read."""
        body, recv_ns, recv_mono_ns = await self._exchange(get, "GET", url, timeout)
        events = 0
        for packet in split_payload(body):
            events += self._packet(packet, recv_ns, recv_mono_ns)
        if not events:
            self.stats.empty_responses += 1

    async def _post_loop(self, post: BarePoller, url: str, outbox: asyncio.Queue[str]) -> None:
        """Send what the session queued (pongs), every packet waiting at once, one ``POST`` at a time."""
        while True:
            packets = [await outbox.get()]
            while not outbox.empty():
                packets.append(outbox.get_nowait())
            await self._exchange(post, "POST", url, HANDSHAKE_TIMEOUT, body=SEPARATOR.join(packets).encode())

    def _poster_done(self, poster: asyncio.Task[None]) -> None:
        """A failed ``POST`` ends the session: the held ``GET`` is aborted with its error."""
        if poster.cancelled():
            return
        error = poster.exception()
        get = self._get
        if error is not None and get is not None and not get.done():
            self._abort = error
            get.cancel()

    # -- the WebSocket, through LeanWebSocketSubscriber's hooks -----------------------------------------

    def _target(self) -> str:
        target = self._query.format(transport="websocket")
        if self.mode == "upgrade" and self.opened is not None:
            target += f"&sid={quote(self.opened.sid, safe='')}"
        return target

    def _opened(self, send: Callable[[str], None]) -> None:
        self._send = send
        if self.mode == "upgrade":
            send("2probe")

    def _on_text(self, text: str, recv_ns: int, recv_mono_ns: int) -> None:
        self._packet(text, recv_ns, recv_mono_ns)

    # -- the protocol -----------------------------------------------------------------------------------

    def _packet(self, packet: str, recv_ns: int, recv_mono_ns: int) -> bool:
        """One Engine.IO packet read at ``recv_ns``: account an event, answer what needs an answer.

        Returns whether it was an event of the channel.
        """
        kind = packet[:1]
        if kind == "4":  # MESSAGE: a Socket.IO packet
            sio = packet[1:2]
            if sio == "2":
                args = event_args(packet)
                if args[0] == self.event and len(args) > 1:
                    self._on_message(peer_event(self.channel, args[1]), recv_ns, recv_mono_ns)
                    return True
            elif sio == "0":
                self.connected = True
            elif sio == "4":
                raise SubscriberError(f"the Socket.IO server refused the connection: {packet[2:][:200]}")
            elif sio == "1":
                raise ConnectionResetError("the Socket.IO server disconnected this client")
        elif kind == "2":  # PING: answer PONG with the same data
            self._reply("3" + packet[1:])
        elif kind == "3":  # PONG: the answer to the upgrade's probe
            if packet == "3probe" and self.mode == "upgrade":
                self._reply("5")
        elif kind == "0":  # OPEN: on a WebSocket opened without polling first
            self.opened = parse_open(packet)
            self._reply("40")
        elif kind == "1":
            raise ConnectionResetError("the Engine.IO server closed the session")
        elif kind != "6":  # 6: NOOP
            raise ConnectionResetError(f"an unknown Engine.IO packet: {packet[:80]!r}")
        return False

    def _reply(self, packet: str) -> None:
        if self._send is None:
            raise ConnectionResetError(f"nowhere to send {packet!r}: the session is not open")
        self._send(packet)
