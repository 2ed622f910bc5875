"""Everything derived from a run's raw files: loading, tables, the Kaazing table, targets, charts, REPORT.md.

Report layer of the benchmark. It reads raw files and never runs anything: it imports the contract and
nothing else of the benchmark (no agent, link emulator or runner). The notebook imports this package only.
"""

from .kaazing import PAPER_CLIENTS, MeasuredRow, PaperRow, measured_table, paper_table
from .load import load_run
from .markdown import summary_rows, write_report
from .targets import TargetRow, evaluate

__all__ = [
    "PAPER_CLIENTS",
    "MeasuredRow",
    "PaperRow",
    "TargetRow",
    "evaluate",
    "load_run",
    "measured_table",
    "paper_table",
    "summary_rows",
    "write_report",
]
