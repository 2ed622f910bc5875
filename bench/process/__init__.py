"""One way to start, speak to, watch and stop a child process (both ends of the JSON-lines protocol).

Process layer: below the agents, the link emulator and the runner, above nothing of the benchmark's own.
"""

from .agent import commands, say
from .child import ROOT, Child, ChildError, free_port, process_cpu_ns, stop_group, wait_http_ok

__all__ = [
    "ROOT",
    "Child",
    "ChildError",
    "commands",
    "free_port",
    "process_cpu_ns",
    "say",
    "stop_group",
    "wait_http_ok",
]
