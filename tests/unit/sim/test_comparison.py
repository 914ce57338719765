"""`perpdex stress --all`'s comparison: saved as comparison.csv and comparison.md, and a rich
table that never cuts a number at 80 columns."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console

from types import SimpleNamespace

from perpdex.sim.ui import COMPARISON_COLUMNS, comparison_row, comparison_table, write_comparison

ROWS = [
    [name, "-40.0%", "+12.5%", "12,345", "1,234/1,012/987/247", "1,234 / 1,480", "11/18", "$1,234,568", "$234,568", "$50,000", "$950,000", "$9,876,543",
     "$949,999", "$50,001", "1.00%", "100.0%", "$1,234", "-$1,097,812", "+$12,345,679", "$98,765", "$1,235",
     "ok" if name != "gap" else "2 failed", "3.4"]
    for name in ("gbm", "crash", "gap", "squeeze", "bleed")
]


def test_write_comparison__csv_and_markdown_hold_every_row(tmp_path: Path) -> None:
    csv_path, md_path = write_comparison(ROWS, tmp_path / "out")
    assert (csv_path.name, md_path.name) == ("comparison.csv", "comparison.md")
    read = list(csv.reader(csv_path.open()))
    assert read == [list(COMPARISON_COLUMNS), *ROWS]
    lines = md_path.read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| " + " | ".join(COMPARISON_COLUMNS) + " |"
    assert len(table) == 2 + len(ROWS) and all(line.count("|") == len(COMPARISON_COLUMNS) + 1 for line in table)
    assert "| gap | -40.0% |" in md_path.read_text() and "2 failed" in table[4]


def test_comparison_table__80_columns__every_number_whole() -> None:
    console = Console(record=True, width=80)
    console.print(comparison_table(ROWS))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for cell in ("-$1,097,812", "+$12,345,679", "$1,234,568", "2 failed"):
        assert any(cell in line for line in text.splitlines()), cell


def test_comparison_row__loss_waterfall_adl_and_capped_pnl_columns() -> None:
    summary = {
        "ETH-USD.price_start_usd": 3000.0, "ETH-USD.price_end_usd": 2400.0, "BTC-USD.price_start_usd": 60000.0,
        "BTC-USD.price_end_usd": 60000.0, "trades": 1234, "liquidations_partial": 3, "liquidations_full": 18,
        "bad_debt_usd": 213_092.4, "bad_debt_from_insurance_usd": 1_000.2, "bad_debt_from_pool_usd": 50_012.6,
        "bad_debt_to_adl_usd": 162_079.6, "adl_notional_usd": 1_500_000.0, "adl_recovered_usd": 160_000.0,
        "bad_debt_to_lps_usd": 52_092.6, "bad_debt_to_lps_pct": 1.041852, "pool_loss_cap_used_pct": 100.0252, "pnl_capped_usd": 42.5, "insurance_end_usd": 0.0,
        "insurance_start_usd": 1_000.2, "pool_value_end_usd": 4_950_000.0, "pool_value_start_usd": 5_000_000.0,
        "keeper_rewards_usd": 0.0, "funding_paid_by_longs_usd": -3.0, "conditional_placed": 1_204,
        "conditional_triggered": 31, "conditional_filled": 29, "conditional_cancelled": 40, "stops_filled": 12,
        "stop_slippage_mean_bps": 1_234.56, "stop_slippage_worst_bps": 1_480.49,
    }
    report = SimpleNamespace(summary=summary, failed=[object()])
    result = SimpleNamespace(config=SimpleNamespace(name="gap"), report=report, blocks_per_second=8.54)
    row = dict(zip(COMPARISON_COLUMNS, comparison_row(result)))  # type: ignore[arg-type]
    assert len(row) == len(COMPARISON_COLUMNS) == len(ROWS[0])
    assert (row["Bad debt"], row["From insurance"], row["From pool (within its loss cap)"]) == (
        "$213,092", "$1,000", "$50,013")
    assert (row["To ADL (beyond the cap)"], row["ADL'd notional"], row["Recovered by ADL"]) == (
        "$162,080", "$1,500,000", "$160,000")
    assert (row["Bad debt to LPs (pool + ADL not recovered)"], row["Bad debt to LPs (of start value)"]) == (
        "$52,093", "1.04%")
    assert row["Pool loss cap used (of cap x start value)"] == "100.0%"
    assert row["Capped PnL (pro-rata cut + capped payments)"] == "$42"
    assert (row["ETH move"], row["Pool value change"], row["Checks"], row["Blocks/s"]) == (
        "-20.0%", "-$50,000", "1 failed", "8.5")
    assert row["Conditional orders placed / triggered / filled / cancelled"] == "1,204/31/29/40"
    assert row["Stop fills' slippage from the trigger, mean / worst (bps)"] == "1,235 / 1,480"
    summary["stops_filled"] = 0  # no stop filled: no slippage to show, not a zero
    row = dict(zip(COMPARISON_COLUMNS, comparison_row(result)))  # type: ignore[arg-type]
    assert row["Stop fills' slippage from the trigger, mean / worst (bps)"] == "-"
