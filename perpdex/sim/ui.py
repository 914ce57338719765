"""What the CLI shows of a simulation: a rich progress bar while it runs, and the
`perpdex stress --all` comparison table (built from the reports' summaries only)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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


COMPARISON_COLUMNS = (
    "scenario", "ETH move", "BTC move", "trades", "liq. partial/full", "bad debt", "insurance Δ",
    "pool value Δ", "keeper rewards", "funding paid by longs", "checks", "blocks/s",
)


def comparison_row(result: SimResult) -> list[str]:
    s = result.report.summary

    def f(key: str) -> float:
        return float(s[key])

    failed = len(result.report.failed)
    return [
        result.config.name,
        _pct(f("ETH-USD.price_start_usd"), f("ETH-USD.price_end_usd")),
        _pct(f("BTC-USD.price_start_usd"), f("BTC-USD.price_end_usd")),
        f"{int(s['trades']):,}",
        f"{int(s['liquidations_partial'])}/{int(s['liquidations_full'])}",
        f"{f('bad_debt_usd'):,.2f}",
        f"{f('insurance_end_usd') - f('insurance_start_usd'):+,.2f}",
        f"{f('pool_value_end_usd') - f('pool_value_start_usd'):+,.2f}",
        f"{int(s['keeper_rewards_tokens']) / 10 ** int(result.x.d.config['token']['decimals']):,.2f}",
        f"{f('funding_paid_by_longs_usd'):,.2f}",
        "[green]ok[/green]" if not failed else f"[red]{failed} failed[/red]",
        f"{result.blocks_per_second:.1f}",
    ]


def comparison_table(results: list[SimResult]) -> Table:
    """One row per scenario; USD figures from each report's summary (chain events and state)."""
    table = Table(title="Stress scenarios (USD; from chain events and state)")
    for col in COMPARISON_COLUMNS:
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for result in results:
        table.add_row(*comparison_row(result))
    return table
