"""What the read commands print with `--json`: plain dicts in human units, as `perpdex
accounts --json` has them (USD and prices as numbers of dollars, sizes in base units, ratios
and rates as fractions, `None` where the table shows "-" or "none"). Every figure is read
from the chain's views, the same ones the tables of `perpdex.display` show."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

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
        "liquidations": [liquidation_event(ev.event_arguments, scale) for ev in vault.Liquidation.from_receipt(receipt)],
        "closed": [{"market": names[int(ev.market)], "closed_size": human(ev.closed_size), "size_after": human(ev.size),
                    "price_usd": human(ev.price), "realized_pnl_usd": human(ev.realized_pnl)}
                   for ev in vault.PositionLiquidated.from_receipt(receipt)],
        "bad_debt": [{"bad_debt_usd": human(ev.bad_debt), "from_insurance_usd": human(ev.from_insurance),
                      "from_pool_usd": human(ev.from_pool)} for ev in vault.BadDebtCovered.from_receipt(receipt)],
    }


def liquidation_event(args: Mapping[str, Any], token_scale: int) -> dict[str, Any]:
    """One `Liquidation` event's arguments (decoded by Ape or by `perpdex.logs`) in human units."""
    return {
        "owner": str(args["owner"]), "sub": int(args["sub"]), "equity_before_usd": human(args["equity"]),
        "maintenance_margin_usd": human(args["maintenance_margin"]), "share_closed": min(human(args["fraction"]), 1.0),
        "notional_closed_usd": human(args["notional_closed"]), "realized_pnl_usd": human(args["realized_pnl"]),
        "fee_usd": human(args["fee"]), "to_keeper_usd": human(int(args["keeper_reward"]) * token_scale),
        "to_insurance_usd": human(args["insurance_fee"]), "bad_debt_usd": human(args["bad_debt"]),
        "collateral_after_usd": human(args["collateral"]),
    }


# ---- the accounts and the router's requests (`perpdex accounts`, `perpdex orders`)

ORDER_KINDS = ("trade", "close", "add liquidity", "remove liquidity")
ORDER_STATUSES = ("-", "pending", "settled", "cancelled")


def open_accounts(events: Iterable[Any]) -> dict[tuple[str, int], dict[int, int]]:
    """(owner, sub) -> {market: size} of every account with a position, from its events (the
    size after each PositionModified, PositionLiquidated and Deleveraged;
    `perpdex.report.events.ChainEvent`s)."""
    sizes: dict[tuple[str, int], dict[int, int]] = {}
    for e in events:
        if e.name in ("PositionModified", "PositionLiquidated", "Deleveraged"):
            sizes.setdefault((str(e.args["owner"]), int(e.args["sub"])), {})[int(e.args["market"])] = int(e.args["size"])
    return {k: {m: z for m, z in v.items() if z} for k, v in sizes.items() if any(v.values())}


def accounts(x: Exchange, held: dict[tuple[str, int], dict[int, int]]) -> list[dict[str, Any]]:
    """`perpdex accounts --json`: the accounts of `held` (`open_accounts`), the closest to
    liquidation first (lowest margin ratio: equity over maintenance margin, liquidatable
    below 1): equity, margin, and each position's liquidation price (the model's, other
    prices fixed) with its distance from today's price (a fraction of it)."""
    from perpdex.sdk import liquidation_price_of

    names = x.market_names()
    rows = []
    for (owner, sub), positions in held.items():
        h = x.d.keeper.health(owner, sub)
        rows.append({
            "owner": owner, "sub": sub, "equity_usd": human(h.equity), "maintenance_margin_usd": human(h.maintenance_margin),
            "margin_ratio": ratio(h.margin_ratio), "liquidatable": bool(h.liquidatable),
            "positions": [_held(names[m], size, liquidation_price_of(x, owner, sub, m), x.price(m))
                          for m, size in sorted(positions.items())],
        })
    rows.sort(key=lambda r: (r["margin_ratio"] is None, r["margin_ratio"] or 0))
    return rows


def _held(name: str, size: int, liquidation_price: int | None, price: int) -> dict[str, Any]:
    return {"market": name, "size": human(size), "price_usd": human(price),
            "liquidation_price_usd": human(liquidation_price) if liquidation_price else None,
            "distance_to_liquidation": (liquidation_price - price) / price if liquidation_price else None}


def order(x: Exchange, order_id: int) -> dict[str, Any]:
    """One request on the router (`perpdex orders --json` has a list of these): sizes and
    amounts in raw units (WAD sizes, LP tokens or shares), times in chain seconds."""
    o = x.order(order_id)
    kind = int(o.kind)
    return {"id": order_id, "owner": str(o.owner), "sub": int(o.sub), "kind": ORDER_KINDS[kind],
            "market": x.market_names()[int(o.market)] if kind < 2 else None,
            "size_delta": int(o.size_delta), "amount": int(o.amount), "committed_at": int(o.committed_at),
            "settle_after": int(o.settle_after), "deadline": int(o.deadline), "status": ORDER_STATUSES[int(o.status)]}


def orders(x: Exchange, owner: str | None = None, last: int = 20) -> list[dict[str, Any]]:
    """The newest `last` requests on the router (of `owner` only, if given), newest first."""
    rows: list[dict[str, Any]] = []
    for order_id in range(int(x.d.router.order_count()), 0, -1):
        row = order(x, order_id)
        if owner and row["owner"].lower() != owner.lower():
            continue
        rows.append(row)
        if len(rows) >= last:
            break
    return rows
