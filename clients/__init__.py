"""Python clients of the lab server: subscribers for each transport, publishers.

Layers: :mod:`clients.accounting` (sans-I/O cursor, loss, duplicate and order
accounting) and :mod:`clients.latency` (HdrHistogram wrapper) know nothing of
sockets; :mod:`clients.subscriber` holds the reconnect-and-resume loop shared
by the transport frontends :mod:`clients.longpoll`, :mod:`clients.polling`,
:mod:`clients.websocket` and :mod:`clients.sse` (over the sans-I/O
:mod:`clients.eventstream`); :mod:`clients.poller` is the one HTTP seam of
the long-poll and polling subscribers (httpx by default; the benchmark's
fleet passes its own); :mod:`clients.publisher` posts events.
``python -m clients`` is a command line for people (docs/clients.md).

Everything another package needs is re-exported here.
"""

from .accounting import Counters, Tracker
from .eventstream import EventStreamError, EventStreamParser, ServerSentEvent
from .latency import LatencyHistogram
from .longpoll import LongPollSubscriber, ServerUnavailable
from .poller import HttpxPoller, PollAnswer, Poller, make_http_client
from .polling import PollingSubscriber
from .publisher import Ack, AsyncPublisher, Publisher, PublishError
from .sse import SSESubscriber
from .subscriber import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    Received,
    Subscriber,
    SubscriberError,
    SubscriberStats,
    now_ns,
)
from .websocket import HandshakeRejected, NotConnected, WebSocketSubscriber

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "Ack",
    "AsyncPublisher",
    "Counters",
    "EventStreamError",
    "EventStreamParser",
    "HandshakeRejected",
    "HttpxPoller",
    "LatencyHistogram",
    "LongPollSubscriber",
    "NotConnected",
    "PollAnswer",
    "Poller",
    "PollingSubscriber",
    "PublishError",
    "Publisher",
    "Received",
    "SSESubscriber",
    "ServerSentEvent",
    "ServerUnavailable",
    "Subscriber",
    "SubscriberError",
    "SubscriberStats",
    "Tracker",
    "WebSocketSubscriber",
    "make_http_client",
    "now_ns",
]
