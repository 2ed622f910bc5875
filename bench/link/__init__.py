"""The link emulator: its sans-I/O model, the relay, the relay as a process, and its own measured cost.

Link layer of the benchmark: imports the contract and the process layer, nothing else of the benchmark.
"""

from .model import DirectionMeter, LinkSchedule
from .overhead import measure_overhead
from .process import RelayProcess
from .relay import Relay

__all__ = ["DirectionMeter", "LinkSchedule", "Relay", "RelayProcess", "measure_overhead"]
