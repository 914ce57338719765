"""What the CLI shows of a simulation: a rich progress bar while it runs, and the
`perpdex stress --all` comparison (built from the reports' summaries only): a table, and
the same rows saved as comparison.csv and comparison.md."""

from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perpdex.money import usd_text
from perpdex.sim.engine import BlockStatus, SimResult
from perpdex.sim.engine import Progress as OnBlock


@contextmanager
def progress_bar(console: Console, title: str) -> Iterator[OnBlock]:
    """A progress bar over the blocks showing the prices, trades and liquidations so far."""
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(title, total=None, detail="deploying")

        def update(s: BlockStatus) -> None:
            prices = "  ".join(f"{name} {price:,.2f}" for name, price in s.prices.items())
            detail = f"{prices}  trades {s.trades}  liquidations {s.liquidations}"
            bar.update(task, total=s.blocks - 1, completed=s.block, detail=detail)

        yield update


def _pct(start: float, end: float) -> str:
    return f"{(end / start - 1) * 100:+.1f}%" if start else "-"


def _usd(value: float) -> str:
    return usd_text(value, 0)  # whole dollars: five scenarios side by side fit 80 columns


def _usd_change(value: float) -> str:
    return ("+" if value > 0 else "") + _usd(value)


COMPARISON_COLUMNS = (
    "Scenario", "ETH move", "BTC move", "Trades", "Conditional orders placed / triggered / filled / cancelled",
    "Stop fills' slippage from the trigger, mean / worst (bps)", "Liquidated, partial / full", "Bad debt", "From insurance",
    "From pool (within its loss cap)", "To ADL (beyond the cap)", "ADL'd notional", "Recovered by ADL",
    "Bad debt to LPs (pool + ADL not recovered)", "Bad debt to LPs (of start value)",
    "Pool loss cap used (of cap x start value)", "Capped PnL (pro-rata cut + capped payments)",
    "Insurance fund change", "Pool value change", "Keeper rewards", "Funding paid by longs", "Checks", "Blocks/s",
)


def comparison_row(result: SimResult) -> list[str]:
    """One scenario's figures, as text without markup (the files and the table share it);
    USD in whole dollars (each scenario's report.html has the cents)."""
    s = result.report.summary

    def f(key: str) -> float:
        return float(s[key])

    failed = len(result.report.failed)
    return [
        result.config.name,
        _pct(f("ETH-USD.price_start_usd"), f("ETH-USD.price_end_usd")),
        _pct(f("BTC-USD.price_start_usd"), f("BTC-USD.price_end_usd")),
        f"{int(s['trades']):,}",
        "/".join(f"{int(s[k]):,}" for k in ("conditional_placed", "conditional_triggered", "conditional_filled",
                                              "conditional_cancelled")),
        f"{f('stop_slippage_mean_bps'):,.0f} / {f('stop_slippage_worst_bps'):,.0f}" if int(s["stops_filled"]) else "-",
        f"{int(s['liquidations_partial'])}/{int(s['liquidations_full'])}",
        _usd(f("bad_debt_usd")),
        _usd(f("bad_debt_from_insurance_usd")),
        _usd(f("bad_debt_from_pool_usd")),
        _usd(f("bad_debt_to_adl_usd")),
        _usd(f("adl_notional_usd")),
        _usd(f("adl_recovered_usd")),
        _usd(f("bad_debt_to_lps_usd")),
        f"{f('bad_debt_to_lps_pct'):.2f}%",
        f"{f('pool_loss_cap_used_pct'):.1f}%",
        _usd(f("pnl_capped_usd")),
        _usd_change(f("insurance_end_usd") - f("insurance_start_usd")),
        _usd_change(f("pool_value_end_usd") - f("pool_value_start_usd")),
        _usd(f("keeper_rewards_usd")),
        _usd(f("funding_paid_by_longs_usd")),
        "ok" if not failed else f"{failed} failed",
        f"{result.blocks_per_second:.1f}",
    ]


def comparison_table(rows: list[list[str]]) -> Table:
    """A figure per row and a scenario per column (five narrow columns fit 80 columns of
    terminal); numbers never wrap nor shrink below their width, the titles wrap."""
    table = Table(title="Stress scenarios (from chain events and state)", box=None, pad_edge=False, header_style="bold underline")
    table.add_column("Figure", overflow="fold")
    for row in rows:
        table.add_column(row[0], justify="right", no_wrap=True, min_width=max(len(cell) for cell in row))
    for i, figure in enumerate(COMPARISON_COLUMNS[1:], start=1):
        table.add_row(figure, *(_checks_markup(row[i]) if figure == "Checks" else row[i] for row in rows))
    return table


def _checks_markup(cell: str) -> str:
    return f"[green]{cell}[/green]" if cell == "ok" else f"[red]{cell}[/red]"


def write_comparison(rows: list[list[str]], out_dir: Path) -> tuple[Path, Path]:
    """`comparison.csv` and `comparison.md` (one row per scenario) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "comparison.csv", out_dir / "comparison.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COMPARISON_COLUMNS)
        writer.writerows(rows)
    lines = ["# Stress scenarios", "", "From each scenario's chain events and state (perpdex stress --all).", "",
             "| " + " | ".join(COMPARISON_COLUMNS) + " |",
             "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(COMPARISON_COLUMNS))) + "|",
             *("| " + " | ".join(row) + " |" for row in rows)]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path
