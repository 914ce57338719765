"""What the read commands print with `--json`: plain dicts in human units, as `perpdex
accounts --json` has them (USD and prices as numbers of dollars, sizes in base units, ratios
and rates as fractions, `None` where the table shows "-" or "none"). Every figure is read
from the chain's views, the same ones the tables of `perpdex.display` show."""

from __future__ import annotations

from typing import Any

from perpdex.funding import MarketFunding, PositionFunding
from perpdex.model import WAD, unrealized_pnl
from perpdex.sdk import Exchange

NO_RATIO = 2**255  # the keeper's health() reports an unbounded margin ratio (no margin needed) from here up


def human(value: int) -> float:
    """A WAD amount (USD, base units, a fraction) as a plain number."""
    return int(value) / WAD


def ratio(value: int) -> float | None:
    """A margin ratio, None when it is unbounded (no position)."""
    return None if int(value) >= NO_RATIO else human(value)


def system(x: Exchange) -> dict[str, Any]:
    """`perpdex show --json`: the contracts, every market and the pool."""
    return {"contracts": x.d.addresses(), "markets": [market(x, m) for m in x.market_names()], "pool": pool(x)}


def market(x: Exchange, market_id: int) -> dict[str, Any]:
    p, st = x.params(market_id), x.vault.market_state(market_id)
    rate, _ = x.vault.funding(market_id)
    return {
        "id": market_id, "market": x.market_names()[market_id], "price_usd": human(x.price(market_id)),
        "max_leverage": human(p.max_leverage), "maintenance_margin_ratio": human(p.maintenance_margin_ratio),
        "taker_fee": human(p.taker_fee), "oi_long": human(st.oi_long), "oi_short": human(st.oi_short),
        "skew": human(int(st.oi_long) - int(st.oi_short)), "funding_rate_per_day": human(rate),
    }


def pool(x: Exchange) -> dict[str, Any]:
    vault = x.vault
    return {"pool_value_usd": human(vault.pool_value()), "pool_cash_usd": human(vault.pool_balance()),
            "lp_shares": human(vault.total_lp_shares()), "insurance_fund_usd": human(vault.insurance_fund())}


def account(x: Exchange, owner: Any, sub: int) -> dict[str, Any]:
    """`show --owner` / `liquidation --owner` with --json: positions with their liquidation
    prices (`LiquidationKeeper.liquidation_price`) and the health breakdown (`.health`)."""
    return {"owner": str(owner), "sub": sub, "positions": [position(x, owner, sub, int(m)) for m in x.open_markets(owner, sub)],
            "health": health(x, owner, sub)}


def position(x: Exchange, owner: Any, sub: int, market_id: int) -> dict[str, Any]:
    pos, price = x.position(owner, sub, market_id), x.price(market_id)
    liq = int(x.d.keeper.liquidation_price(owner, sub, market_id))
    return {
        "market": x.market_names()[market_id], "size": human(pos.size), "entry_price_usd": human(pos.entry_price),
        "price_usd": human(price), "unrealized_pnl_usd": human(unrealized_pnl(pos.size, pos.entry_price, price)),
        "liquidation_price_usd": human(liq) if liq else None,
        "distance_to_liquidation": (liq - price) / price if liq else None,  # a fraction of today's price
    }


def health(x: Exchange, owner: Any, sub: int) -> dict[str, Any]:
    h = x.d.keeper.health(owner, sub)
    return {
        "collateral_usd": human(h.collateral), "unrealized_pnl_usd": human(h.unrealized_pnl), "funding_usd": human(h.funding),
        "equity_usd": human(h.equity), "initial_margin_usd": human(h.initial_margin),
        "maintenance_margin_usd": human(h.maintenance_margin), "margin_ratio": ratio(h.margin_ratio),
        "liquidatable": bool(h.liquidatable),
        "withdrawable_usd": int(x.vault.withdrawable(owner, sub)) / 10 ** int(x.d.usd.decimals()),
    }


def funding(markets: list[MarketFunding], positions: list[PositionFunding] | None = None,
            owner: str | None = None) -> dict[str, Any]:
    """`perpdex funding --json`: per market (rates per day unless named; + means longs pay
    shorts) and, with an owner, what each of its positions has accrued and pays next day."""
    out: dict[str, Any] = {"markets": [{
        "market": f.name, "price_usd": human(f.price), "skew": human(f.skew), "skew_over_scale": f.skew / f.skew_scale,
        "rate_per_hour": human(f.rate_per_hour), "rate_per_day": human(f.rate), "apr": human(f.apr),
        "predicted_rate_per_day": {f"{hours}h": human(r) for hours, r in f.predicted.items()},
        "one_unit_long_next_day_usd": human(f.long_unit_day),
    } for f in markets]}
    if positions is not None:
        out["owner"] = owner
        out["positions"] = [{"market": p.name, "size": human(p.size), "accrued_usd": human(p.accrued),
                             "next_day_usd": human(p.next_day)} for p in positions]
    return out


def liquidation(x: Exchange, receipt: Any) -> dict[str, Any]:
    """What one liquidation transaction did, from its events (as `display.liquidation_tables`)."""
    vault, names = x.vault, x.market_names()
    scale = int(vault.TOKEN_SCALE())
    return {
        "liquidations": [{
            "owner": str(ev.owner), "sub": int(ev.sub), "equity_before_usd": human(ev.equity),
            "maintenance_margin_usd": human(ev.maintenance_margin), "share_closed": min(human(ev.fraction), 1.0),
            "notional_closed_usd": human(ev.notional_closed), "realized_pnl_usd": human(ev.realized_pnl),
            "fee_usd": human(ev.fee), "to_keeper_usd": human(int(ev.keeper_reward) * scale),
            "to_insurance_usd": human(ev.insurance_fee), "bad_debt_usd": human(ev.bad_debt),
            "collateral_after_usd": human(ev.collateral),
        } for ev in vault.Liquidation.from_receipt(receipt)],
        "closed": [{"market": names[int(ev.market)], "closed_size": human(ev.closed_size), "size_after": human(ev.size),
                    "price_usd": human(ev.price), "realized_pnl_usd": human(ev.realized_pnl)}
                   for ev in vault.PositionLiquidated.from_receipt(receipt)],
        "bad_debt": [{"bad_debt_usd": human(ev.bad_debt), "from_insurance_usd": human(ev.from_insurance),
                      "from_pool_usd": human(ev.from_pool)} for ev in vault.BadDebtCovered.from_receipt(receipt)],
    }
