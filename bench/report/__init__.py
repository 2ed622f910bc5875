"""Everything derived from a run's raw files: loading, tables, the Kaazing table, targets, charts, REPORT.md.

The peers section (:mod:`.peers`) sets the lab beside Flask-SocketIO, Nchan and ``websockets``; every other
table and chart is about the lab's own server (:func:`.tables.lab_results`).

Report layer of the benchmark. It reads raw files and never runs anything: it imports the contract and
nothing else of the benchmark (no agent, link emulator or runner). The notebook imports this package only.
"""

from .capture import Capture, Frame, HttpMessage, SocketIOCapture, load_capture, load_socketio_capture
from .charts import percentile_spectrum
from .kaazing import PAPER_CLIENTS, MeasuredRow, PaperRow, measured_table, paper_table
from .load import load_run
from .markdown import summary_rows, write_report
from .peers import (
    PeerRow,
    Point,
    RatioRow,
    peer_bytes_rows,
    peer_idle_rows,
    peer_points,
    peer_ratios,
    peer_results,
    peer_resume_rows,
    resume_sentence,
    variant_label,
)
from .sweeps import find_sweeps
from .tables import (
    BatchingRow,
    BytesParts,
    CostRow,
    IdleRow,
    LossTotals,
    Series,
    TransitRow,
    by_series,
    byte_parts,
    bytes_per_event,
    cost_rows,
    events_per_response,
    format_number,
    idle_rows,
    longpoll_batching,
    loss_totals,
    markdown_table,
    median_of_valid,
    spectrum_scenario,
    transits,
)
from .targets import TargetRow, evaluate

__all__ = [
    "PAPER_CLIENTS",
    "BatchingRow",
    "BytesParts",
    "Capture",
    "CostRow",
    "Frame",
    "HttpMessage",
    "IdleRow",
    "LossTotals",
    "MeasuredRow",
    "PaperRow",
    "PeerRow",
    "Point",
    "RatioRow",
    "Series",
    "SocketIOCapture",
    "TargetRow",
    "TransitRow",
    "by_series",
    "byte_parts",
    "bytes_per_event",
    "cost_rows",
    "evaluate",
    "events_per_response",
    "find_sweeps",
    "format_number",
    "idle_rows",
    "load_capture",
    "load_run",
    "load_socketio_capture",
    "longpoll_batching",
    "loss_totals",
    "markdown_table",
    "measured_table",
    "median_of_valid",
    "paper_table",
    "peer_bytes_rows",
    "peer_idle_rows",
    "peer_points",
    "peer_ratios",
    "peer_results",
    "peer_resume_rows",
    "percentile_spectrum",
    "resume_sentence",
    "spectrum_scenario",
    "summary_rows",
    "transits",
    "variant_label",
    "write_report",
]
