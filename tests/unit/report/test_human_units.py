"""The report as a person reads it: a header (seed, traders, blocks, network, contracts, date),
titled rows, every amount in USD with separators; rich tables that never cut a number at 80
columns; charts at least 1,200 px wide with labelled axes and liquidation markers that never
hide one another; timeseries.csv."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from perpdex.model import WAD
from perpdex.money import tokens_usd, units_text, usd_text, wad_usd_text
from perpdex.report import RunInfo, build_report, print_report, write_report
from perpdex.report.charts import CHARTS, MIN_WIDTH_PX, liquidation_markers
from perpdex.report.events import ChainEvent
from perpdex.report.output import market_rows, summary_rows
from perpdex.report.units import FIGURES, figure_text, title

RUN = RunInfo(seed=7, traders=4, blocks=10)


@pytest.fixture
def report(history: Any, lp: Any, liquidator: Any) -> Any:
    return build_report(history.x, history.log, history.sampler, accounts=history.accounts, lps=[lp],
                        keeper=liquidator, title="test", exit_check=False, run=RUN)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_money__usd_text_separators_sign_and_exact_wei() -> None:
    assert usd_text(1_234_567.891) == "$1,234,567.89" and usd_text(-0.5) == "-$0.50"
    assert wad_usd_text(3) == "$0.000000000000000003" and wad_usd_text(-2 * WAD) == "-$2"
    assert wad_usd_text(0) == "$0" and tokens_usd(434_000_000_000, 6) == 434_000.0
    assert units_text(36 * WAD) == "36" and units_text(WAD // 2) == "0.5"


def test_units__every_figure_titled_in_words__market_figures_by_their_own_name() -> None:
    assert all("_" not in t and t[0].isupper() for t, _ in FIGURES.values())
    assert title("ETH-USD.volume_usd") == "Volume"
    assert figure_text("deposits_usd", 434_000.0) == "$434,000.00" and figure_text("events", 1234) == "1,234"
    assert figure_text("fees_usd", 0.1155) == "$0.1155" and figure_text("fees_usd", 0.0) == "$0.00"
    with pytest.raises(KeyError):
        title("deposits_tokens")  # a figure without a title is an error, not a snake_case row


def test_summary__amounts_in_usd__no_token_units(report: Any) -> None:
    rows = dict(summary_rows(report))
    assert rows["Deposits"] == "$20,500.00" and rows["Withdrawals"] == "$100.00"  # not 20,500,000,000 token units
    assert not any(k.endswith("_tokens") for k in report.summary)
    usd_rows = [v for k, v in summary_rows(report) if k in {t for t, kind in FIGURES.values() if kind == "usd"}]
    assert len(usd_rows) > 15 and all(v.lstrip("-").startswith("$") for v in usd_rows)
    markets = {r[0]: r[1:] for r in market_rows(report)}
    assert markets["Price at the start"] == ["$3,000.00", "$60,000.00"]
    assert markets["Open interest long at the end"][0].startswith("$")  # notional, not base units


def test_html__header_titled_rows_usd(report: Any, tmp_path: Path) -> None:
    page = write_report(report, tmp_path)["report.html"].read_text()
    for shown in ("Seed", "Traders", "Blocks simulated", "Network", "ethereum:local:boa", "Date", "UTC",
                  f"Contract: vault</th><td>{report.header.contracts['vault']}", "Deposits", "$20,500.00"):
        assert shown in page
    assert not [key for key in report.summary if "_" in key and key.split(".")[-1] in page]  # no snake_case row
    assert " WAD" not in page  # the checks' details in USD too


def test_summary_json__header_without_the_date__liquidations_in_usd(report: Any, tmp_path: Path) -> None:
    data = json.loads(write_report(report, tmp_path)["summary.json"].read_text())
    assert data["header"]["contracts"]["vault"] == str(report.header.contracts["vault"]) != ""
    assert (data["header"]["seed"], data["header"]["traders"], data["header"]["blocks"]) == (7, 4, 10)
    assert "date" not in json.dumps(data["header"])  # two runs of a seed write the same file
    first = data["liquidations"][0]
    assert 0 < first["notional_closed_usd"] < 10_000 and 0 < first["closed_pct"] < 100
    assert "notional_closed" not in first and first["keeper_reward_usd"] > 0


def test_terminal__80_columns__no_number_cut(report: Any) -> None:
    console = Console(record=True, width=80)
    print_report(report, console)
    text = console.export_text()
    assert "…" not in text
    lines = text.splitlines()
    numbers = [v for _, v in summary_rows(report)] + [c for r in market_rows(report) for c in r[1:]]
    cut = [n for n in numbers if not any(n in line for line in lines)]
    assert not cut, cut  # every number whole, on one line
    assert max(len(line) for line in lines) <= 80


def test_charts__wide_enough__every_axis_labelled(report: Any, tmp_path: Path) -> None:
    files = write_report(report, tmp_path)
    for name in CHARTS:
        assert png_size(files[name])[0] >= MIN_WIDTH_PX
    for name, draw in CHARTS.items():
        fig = draw(report)
        for ax in fig.axes:
            assert ax.get_ylabel(), f"{name}: no y label"
            assert ax.get_xlabel() or name != "equity_distribution", name


def test_timeseries_csv__a_row_per_sample__usd_columns(report: Any, tmp_path: Path) -> None:
    path = write_report(report, tmp_path)["timeseries.csv"]
    assert path.parent == tmp_path
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(report.samples)
    assert [int(r["block"]) for r in rows] == [s.block for s in report.samples]
    assert {"ETH-USD price (USD)", "BTC-USD open interest long (USD)", "pool value (USD)",
            "insurance fund (USD)", "ETH-USD funding rate (% per day)"} <= set(rows[0])
    assert float(rows[-1]["ETH-USD price (USD)"]) == 2_770.0


class FakeReport:
    """Just what the liquidation markers read: events and samples with timestamps."""

    def __init__(self, events: list[ChainEvent]) -> None:
        self.events, self.samples = events, []


def liquidated(ts: int, size: int, price: int, market: int = 0) -> ChainEvent:
    return ChainEvent(1, ts, "0x", 0, "PositionLiquidated", {"market": market, "size": size, "price": price * WAD})


def test_liquidation_markers__counted_per_bin__none_hidden() -> None:
    """11 liquidations in the same minute were 11 markers drawn on one spot (they showed as
    ~3); now one marker per bin and kind carries the count."""
    events = [liquidated(0, 0, 100)] + [liquidated(36_000, i % 2, 2_800 + i) for i in range(11)]
    events += [liquidated(72_000, 0, 2_500), liquidated(72_000, 0, 2_500, market=1)]
    markers = liquidation_markers(FakeReport(events), 0)  # type: ignore[arg-type]
    assert sum(m.count for m in markers) == 13
    same_spot = [(m.hours, m.price, m.full) for m in markers]
    assert len(same_spot) == len(set(same_spot))  # no two markers of a kind on one spot
    middle = [m for m in markers if m.hours == 10.0]
    assert sorted((m.full, m.count) for m in middle) == [(False, 5), (True, 6)]
