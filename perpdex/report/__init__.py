"""The simulation's report: events and samples in, figures, invariant checks, tables,
charts and one HTML page out. Every number comes from chain events and state; the
simulator's own bookkeeping (`Expected`) is only compared with them."""

from perpdex.report.build import Expected, Header, LiquidationRow, Report, RunInfo, build_report
from perpdex.report.events import ChainEvent, EventLog
from perpdex.report.output import print_report, write_report
from perpdex.report.samples import MarketSample, Sample, Sampler

__all__ = [
    "ChainEvent", "EventLog", "Expected", "Header", "LiquidationRow", "MarketSample", "Report", "RunInfo", "Sample",
    "Sampler",
    "build_report", "print_report", "write_report",
]
