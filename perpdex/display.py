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
from perpdex.sdk import Exchange, liquidation_price_of

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
    names = x.market_names()
    positions = Table(title=f"Positions of {str(owner)[:10]}… sub {sub}")
    for col in ("market", "size", "entry", "price", "unrealized PnL", "liquidation price"):
        positions.add_column(col, justify="right")
    for m in x.vault.open_markets(owner, sub):
        market = int(m)
        pos = x.position(owner, sub, market)
        price = x.price(market)
        liq = liquidation_price_of(x, owner, sub, market)
        positions.add_row(
            names[market], usd(pos.size, 4), usd(pos.entry_price), usd(price),
            usd(unrealized_pnl(pos.size, pos.entry_price, price)), usd(liq) if liq else "none",
        )
    h = x.health(owner, sub)
    margin = Table(title="Margin")
    for col in ("collateral", "unrealized PnL", "funding", "equity", "initial margin", "maint. margin", "withdrawable"):
        margin.add_column(col, justify="right")
    margin.add_row(
        usd(h.collateral), usd(h.unrealized_pnl), usd(h.funding), usd(h.equity), usd(h.initial_margin),
        usd(h.maintenance_margin), f"{x.vault.withdrawable(owner, sub) / 10 ** int(x.d.usd.decimals()):,.2f}",
    )
    return [positions, margin]


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
