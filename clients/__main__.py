"""``python -m clients``: subscribe and publish from a terminal (for people, not benchmarks).

    python -m clients subscribe --transport websocket --channel demo
    python -m clients subscribe --transport sse --channel demo
    python -m clients publish --channel demo '{"hello": 1}' --count 10 --rate 2

``subscribe`` prints one line per event (seq, delivery latency, data) and,
on Ctrl-C (SIGINT) or SIGTERM, a summary of the accounting counters and
transport statistics. ``publish`` prints the ``seq`` the server assigned to
each event. See docs/clients.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from .latency import LatencyHistogram
from .longpoll import LongPollSubscriber
from .polling import PollingSubscriber
from .publisher import Publisher, PublishError
from .sse import SSESubscriber
from .subscriber import Received, Subscriber, SubscriberError
from .websocket import WebSocketSubscriber

DEFAULT_URL = "http://127.0.0.1:8000"
SUBSCRIBERS: dict[str, type[Subscriber]] = {
    cls.transport: cls for cls in (LongPollSubscriber, WebSocketSubscriber, SSESubscriber, PollingSubscriber)
}
"""The ``--transport`` choices: each subscriber class names its own transport."""


def parse_data(text: str) -> Any:
    """The CLI's payload argument: JSON if it parses as JSON, else that text as a JSON string.

    ``NaN`` and ``Infinity`` are not JSON (Python's parser accepts them): they are sent as strings.
    """
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clients", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("subscribe", help="print the events of a channel as they arrive")
    s.add_argument("--transport", choices=list(SUBSCRIBERS), default="longpoll", help="default: %(default)s")
    s.add_argument("--channel", required=True)
    s.add_argument("--url", default=DEFAULT_URL, help="server base URL (default: %(default)s)")
    s.add_argument("--after", type=int, default=0, help="cursor to start after (default: 0, from the start)")
    s.add_argument("--timeout", type=float, default=25.0, help="longpoll: hold asked of the server, s")
    s.add_argument("--interval", type=float, default=1.0, help="polling: seconds between polls")
    s.add_argument("--compression", action="store_true", help="websocket: offer permessage-deflate")

    pub = sub.add_parser("publish", help="publish one event or a stream of them")
    pub.add_argument("--channel", required=True)
    pub.add_argument("--url", default=DEFAULT_URL, help="server base URL (default: %(default)s)")
    pub.add_argument("--count", type=int, default=1, help="how many events (default: 1)")
    pub.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as acked)")
    pub.add_argument("data", help="the payload: parsed as JSON if it is JSON, else sent as a JSON string")
    return p


def make_subscriber(args: argparse.Namespace, histogram: LatencyHistogram, console: Console) -> Subscriber:
    """The subscriber the ``subscribe`` arguments ask for, printing each event."""

    def show(r: Received) -> None:
        latency_ms = (r.recv_ns - r.ts) / 1e6 if r.ts is not None else float("nan")
        data = json.dumps(r.data, ensure_ascii=False)
        console.print(f"[bold cyan]{r.seq:>8}[/] [green]{latency_ms:9.3f} ms[/]  {escape(data)}", highlight=False)

    common: dict[str, Any] = {"after": args.after, "histogram": histogram, "on_event": show}
    if args.transport == "longpoll":
        return LongPollSubscriber(args.url, args.channel, timeout=args.timeout, **common)
    if args.transport == "polling":
        return PollingSubscriber(args.url, args.channel, interval=args.interval, **common)
    if args.transport == "sse":
        return SSESubscriber(args.url, args.channel, **common)
    return WebSocketSubscriber(args.url, args.channel, compression=args.compression, **common)


async def subscribe(args: argparse.Namespace, console: Console) -> int:
    """Run one subscriber until SIGINT/SIGTERM, then print the summary."""
    histogram = LatencyHistogram()
    subscriber = make_subscriber(args, histogram, console)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    console.print(f"[dim]{args.transport} subscriber on {args.url} channel {args.channel!r}; Ctrl-C stops[/]")
    code = 0
    try:
        await subscriber.run(stop)
    except SubscriberError as exc:
        console.print(f"[red]refused:[/] {escape(str(exc))}")
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    counters = subscriber.tracker.finish(None)
    console.print("[bold]summary[/]")
    console.print(f"  cursor {subscriber.tracker.cursor}, holes {subscriber.tracker.holes}", highlight=False)
    console.print("  events    " + _pairs(counters.as_dict()), highlight=False)
    console.print("  transport " + _pairs(subscriber.stats.as_dict()), highlight=False)
    latency = {k: v for k, v in histogram.summary().items() if v is not None}
    if histogram.count:
        latency = {k: round(v / 1000, 3) if k != "count" else v for k, v in latency.items()}
        console.print("  latency ms " + _pairs(latency).replace("_us", ""), highlight=False)
    return code


def _pairs(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def publish(args: argparse.Namespace, console: Console) -> int:
    """Publish ``--count`` events, ``--rate`` per second on a fixed schedule."""
    data = parse_data(args.data)
    start = time.monotonic()
    with Publisher(args.url) as publisher:
        for i in range(args.count):
            if args.rate:
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                ack = publisher.publish(args.channel, data)
            except PublishError as exc:
                console.print(f"[red]{escape(str(exc))}[/]")
                return 1
            console.print(f"seq {ack.seq}", highlight=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        if args.command == "subscribe":
            return asyncio.run(subscribe(args, console))
        return publish(args, console)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
