"""How a fleet subscriber turns one received message into the lab's message object.

Agent layer of the benchmark. The lab's subscribers account every event through
:meth:`clients.Subscriber._on_message`, which takes the lab's own message object (docs/protocol.md): an event
``{"channel", "seq", "ts", "data"}`` or a control message with a ``type``. The lab's server sends exactly that.
A peer (``peers/``) sends something else: Nchan and Socket.IO deliver the published payload as it was posted,
with no number and no time stamp of their own. A :data:`Decode` is the one place that difference lives, so the
lean subscribers (:mod:`bench.agents.websocket`, the SSE one) share everything else with the lab's path.

For a peer, the event's cursor is the payload's own number on its channel (:func:`bench.contract.payload.
encode_payload`, which the publisher numbers when the scenario says ``numbering = "publisher"``), so loss,
duplicates and order are counted against the publisher's sequence, and ``ts`` is ``None``: such a run has
end-to-end latency (from the schedule's intended time) but no delivery latency.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bench.contract.payload import decode_payload

__all__ = ["Decode", "lab_message", "numbered_by_publisher", "peer_event"]

Decode = Callable[[str, str], dict[str, Any]]
"""``decode(channel, text)``: the lab's message object for one text message received on ``channel``."""


def lab_message(channel: str, text: str) -> dict[str, Any]:
    """The lab's server's own messages: the text is the message object's JSON."""
    obj: dict[str, Any] = json.loads(text)
    return obj


def numbered_by_publisher(channel: str, text: str) -> dict[str, Any]:
    """A peer's message: the text is the published payload itself; its number on the channel is the cursor."""
    return peer_event(channel, json.loads(text))


def peer_event(channel: str, data: Any) -> dict[str, Any]:
    """The lab's event object for a payload a peer delivered (already decoded from its own envelope)."""
    return {"channel": channel, "seq": decode_payload(data).number, "ts": None, "data": data}
