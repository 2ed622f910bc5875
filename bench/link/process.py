"""The relay as a process the runner controls: started on port 0, asked for snapshots, stopped.

Link layer of the benchmark: a :class:`bench.process.Child` running ``python -m bench.link.relay``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bench.contract.scenarios import Link
from bench.process import Child, ChildError

__all__ = ["RelayProcess"]


class RelayProcess:
    """Handle on a ``python -m bench.link.relay`` subprocess.

    ``start()`` waits for the ready line; ``snapshot()`` asks for totals; ``cpu_seconds()`` is the process's
    user + system CPU; ``stop()`` asks it to quit (its final totals land in :attr:`bye`), then terminates and
    kills it if it must, and never leaves it running. Also a context manager.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        link: Link | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        timeout: float = 10.0,
    ) -> None:
        self.upstream = upstream
        self.link = link or Link()
        self.listen = listen
        self.timeout = timeout
        """Seconds to wait for the ready line and for each answer."""
        self.bye: dict[str, Any] | None = None
        """The final totals the process printed when it quit (``None`` if it was killed)."""
        self._child: Child | None = None
        self._port: int | None = None

    def start(self) -> RelayProcess:
        if self._child is not None:
            raise RuntimeError("already started")
        link = self.link
        args = [
            "-m", "bench.link.relay",
            "--upstream", f"{self.upstream[0]}:{self.upstream[1]}",
            "--listen-host", self.listen[0],
            "--listen-port", str(self.listen[1]),
            "--one-way-ms", repr(float(link.one_way_ms)),
            "--jitter-ms", repr(float(link.jitter_ms)),
            "--bandwidth-kbps", str(link.bandwidth_kbps),
            "--seed", str(link.seed),
        ]  # fmt: skip
        self._child = Child(args, name="the relay")
        try:
            self._port = int(self._child.expect("port", self.timeout)["port"])
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def child(self) -> Child:
        if self._child is None:
            raise RuntimeError("the relay process is not started")
        return self._child

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the relay process is not started")
        return self._port

    @property
    def pid(self) -> int:
        return self.child.pid

    def snapshot(self, rows: bool = False) -> dict[str, Any]:
        """Totals since the relay started (see :meth:`bench.link.relay.Relay.snapshot`)."""
        if self.child.exited():
            raise ChildError("the relay process is not running")
        return self.child.request({"cmd": "snapshot", "rows": rows}, "event", self.timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the relay process so far (the last value seen once it exited)."""
        return self.child.cpu_seconds()

    def stop(self) -> int | None:
        """Ask the relay to quit; terminate, then kill it if it does not. Returns its exit code."""
        child = self._child
        if child is None:
            return None
        if not child.exited():
            child.cpu_seconds()
            with contextlib.suppress(ChildError):
                child.send({"cmd": "quit"})
                answer = child.expect("event", self.timeout)
                while answer.get("event") != "bye":
                    answer = child.expect("event", self.timeout)
                self.bye = answer
        return child.stop(self.timeout)

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
