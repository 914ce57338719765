"""Rich tables for the CLI: the system, its markets, an account. Numbers come from chain."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from perpdex.deploy import Deployment
from perpdex.funding import HORIZONS
from perpdex.model import WAD, from_wad, unrealized_pnl
from perpdex.sdk import Exchange

# Wide enough for every table when output is piped (rich falls back to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 132)


def usd(value: int, places: int = 2) -> str:
    return f"{from_wad(value):,.{places}f}"


def pct(value: int) -> str:
    return f"{Decimal(value) * 100 / WAD:.3f}%"


def addresses_table(d: Deployment) -> Table:
    table = Table(title="Contracts")
    table.add_column("name")
    table.add_column("address")
    for name, address in d.addresses().items():
        table.add_row(name, address)
    return table


def markets_table(x: Exchange) -> Table:
    table = Table(title="Markets")
    for col in ("id", "market", "price", "max lev", "mmr", "fee", "OI long", "OI short", "skew", "funding/day"):
        table.add_column(col, justify="right")
    for market, name in x.market_names().items():
        p, st = x.params(market), x.vault.market_state(market)
        rate, _ = x.vault.funding(market)
        table.add_row(
            str(market), name, usd(x.price(market)), f"{from_wad(p.max_leverage):.0f}x",
            pct(p.maintenance_margin_ratio), pct(p.taker_fee), usd(st.oi_long, 4), usd(st.oi_short, 4),
            usd(int(st.oi_long) - int(st.oi_short), 4), pct(int(rate)),
        )
    return table


def pool_table(x: Exchange) -> Table:
    table = Table(title="Pool")
    for col in ("pool value", "pool cash", "LP shares", "insurance fund"):
        table.add_column(col, justify="right")
    table.add_row(
        usd(x.vault.pool_value()), usd(x.vault.pool_balance()), usd(x.vault.total_lp_shares()), usd(x.vault.insurance_fund())
    )
    return table


def account_tables(x: Exchange, owner: Any, sub: int) -> list[Table]:
    """Positions with their liquidation price, and the health breakdown, from the on-chain
    views (`LiquidationKeeper.liquidation_price` and `.health`): what a liquidation uses."""
    names, keeper = x.market_names(), x.d.keeper
    positions = Table(title=f"Positions of {str(owner)[:10]}… sub {sub}")
    for col in ("market", "size", "entry", "price", "unrealized PnL", "liquidation price", "distance"):
        positions.add_column(col, justify="right")
    for m in x.open_markets(owner, sub):
        market = int(m)
        pos = x.position(owner, sub, market)
        price = x.price(market)
        liq = int(keeper.liquidation_price(owner, sub, market))
        positions.add_row(
            names[market], usd(pos.size, 4), usd(pos.entry_price), usd(price),
            usd(unrealized_pnl(pos.size, pos.entry_price, price)), usd(liq) if liq else "none",
            f"{(liq - price) * 100 / price:+.2f}%" if liq else "-",
        )
    return [positions, health_table(x, owner, sub)]


def health_table(x: Exchange, owner: Any, sub: int, title: str = "Margin") -> Table:
    h = x.d.keeper.health(owner, sub)
    table = Table(title=title)
    for col in ("collateral", "unrealized PnL", "funding", "equity", "initial margin", "maint. margin", "margin ratio", "status", "withdrawable"):
        table.add_column(col, justify="right")
    ratio = "∞" if int(h.margin_ratio) == 2**256 - 1 else f"{from_wad(int(h.margin_ratio)):.3f}"
    status = "[red]LIQUIDATABLE[/red]" if h.liquidatable else "[green]healthy[/green]"
    table.add_row(
        usd(h.collateral), usd(h.unrealized_pnl), usd(h.funding), usd(h.equity), usd(h.initial_margin),
        usd(h.maintenance_margin), ratio, status, f"{x.vault.withdrawable(owner, sub) / 10 ** int(x.d.usd.decimals()):,.2f}",
    )
    return table


def liquidation_tables(x: Exchange, receipt: Any) -> list[Table]:
    """What one liquidation did, from its events: the close per market, the fee split, and
    the bad-debt waterfall if there was one."""
    vault, names = x.vault, x.market_names()
    scale = int(vault.TOKEN_SCALE())
    tables = []
    for ev in vault.Liquidation.from_receipt(receipt):
        summary = Table(title=f"Liquidation of {str(ev.owner)[:10]}… sub {ev.sub}")
        for col in ("equity before", "maint. margin", "closed", "notional closed", "realized PnL", "fee", "to keeper", "to insurance", "bad debt", "collateral after"):
            summary.add_column(col, justify="right")
        closed = "all" if int(ev.fraction) >= WAD else pct(int(ev.fraction))
        summary.add_row(
            usd(ev.equity), usd(ev.maintenance_margin), closed, usd(ev.notional_closed), usd(ev.realized_pnl),
            usd(ev.fee), usd(int(ev.keeper_reward) * scale), usd(ev.insurance_fee), usd(ev.bad_debt), usd(ev.collateral),
        )
        tables.append(summary)
    closes = Table(title="Positions closed at the oracle price (no price impact)")
    for col in ("market", "closed size", "size after", "price", "realized PnL"):
        closes.add_column(col, justify="right")
    for ev in vault.PositionLiquidated.from_receipt(receipt):
        closes.add_row(names[int(ev.market)], usd(ev.closed_size, 4), usd(ev.size, 4), usd(ev.price), usd(ev.realized_pnl))
    tables.append(closes)
    for ev in vault.BadDebtCovered.from_receipt(receipt):
        debt = Table(title="Bad debt covered")
        for col in ("bad debt", "from insurance fund", "from pool"):
            debt.add_column(col, justify="right")
        debt.add_row(usd(ev.bad_debt), usd(ev.from_insurance), usd(ev.from_pool))
        tables.append(debt)
    return tables


def print_system(x: Exchange) -> None:
    console.print(addresses_table(x.d))
    console.print(markets_table(x))
    console.print(pool_table(x))


def rate(value: int) -> str:
    """A rate per day (WAD) as a signed percentage."""
    return f"{Decimal(value) * 100 / WAD:+.4f}%"


def funding_tables(markets: list[Any], positions: list[Any] | None = None, owner: str = "") -> list[Table]:
    """Per market: skew, rate per hour / day / APR, predicted rates and what a 1-unit long
    pays over a day; per position: funding accrued and the next day's (perpdex.funding)."""
    table = Table(title="Funding (rates per day unless marked; + means longs pay shorts)")
    horizons = [f"in {h}h" for h in HORIZONS]
    for col in ("market", "price", "skew", "skew/scale", "per hour", "per day", "APR", *horizons, "1-unit long, next day"):
        table.add_column(col, justify="right")
    for f in markets:
        table.add_row(
            f.name, usd(f.price), usd(f.skew, 4), pct(f.skew * WAD // f.skew_scale), rate(f.rate_per_hour),
            rate(f.rate), rate(f.apr), *(rate(r) for r in f.predicted.values()), usd(f.long_unit_day, 4),
        )
    tables = [table]
    if positions is not None:
        pos = Table(title=f"Funding of {owner[:10]}… (+ received, - paid), USD")
        for col in ("market", "size", "accrued, unsettled", "next 24h (today's skew)"):
            pos.add_column(col, justify="right")
        for p in positions:
            pos.add_row(p.name, usd(p.size, 4), usd(p.accrued, 4), usd(p.next_day, 4))
        tables.append(pos)
    return tables
