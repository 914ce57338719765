"""The report's numbers from events alone (one pass, exact integers: WAD USD unless named
tokens), plus the funding still unsettled at the end, read from chain views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from perpdex.conditional import STOP, STOP_LOSS
from perpdex.keepers.orders import KIND_CONDITIONAL
from perpdex.model import WAD
from perpdex.report.events import ChainEvent
from perpdex.report.samples import Sample

Key = tuple[str, int, int]  # (owner, sub, market)


@dataclass
class MarketTally:
    trades: int = 0
    volume: int = 0  # WAD USD: sum |size_delta| * fill_price
    fees: int = 0
    liquidated_notional: int = 0  # WAD USD at oracle prices
    funding_longs: int = 0  # what long positions got from funding (+ received, - paid)
    funding_shorts: int = 0
    funding_pool: int = 0  # what the pool got: index change * skew at each accrual
    accruals: int = 0
    last_index: int | None = None


@dataclass(frozen=True)
class Placed:
    """A conditional order as ConditionalPlaced tells it."""

    market: int
    kind: int  # perpdex.conditional: LIMIT, STOP, TAKE_PROFIT, STOP_LOSS
    side: int  # +1 buys, -1 sells
    trigger_price: int  # WAD


@dataclass(frozen=True)
class StopFill:
    """A stop or stop-loss order's fill (its OrderSettled) against its trigger price."""

    order_id: int
    market: int
    side: int
    trigger_price: int  # WAD
    fill_price: int  # WAD, with price impact
    timestamp: int

    @property
    def slippage_bps(self) -> float:
        """How much worse than its trigger the order filled, in basis points of the trigger:
        a sell below it, a buy above it (negative: better)."""
        return (self.fill_price - self.trigger_price) * self.side * 10_000 / self.trigger_price


@dataclass
class OrderTally:
    """Conditional orders (SPEC 15): placed (by kind), triggered, filled, cancelled (by reason),
    and the stop fills."""

    placed: dict[int, Placed] = field(default_factory=dict)  # order id -> the order
    triggered: int = 0
    filled: int = 0
    cancel_reasons: dict[str, int] = field(default_factory=dict)
    stop_fills: list[StopFill] = field(default_factory=list)

    @property
    def cancelled(self) -> int:
        return sum(self.cancel_reasons.values())

    @property
    def open_at_end(self) -> int:
        """Placed and neither filled nor cancelled (open or triggered)."""
        return len(self.placed) - self.filled - self.cancelled

    def by_kind(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for o in self.placed.values():
            counts[o.kind] = counts.get(o.kind, 0) + 1
        return counts

    def slippage_bps(self) -> tuple[float, float]:
        """The stop fills' mean and worst slippage (0, 0 without any)."""
        slips = [f.slippage_bps for f in self.stop_fills]
        return (sum(slips) / len(slips), max(slips)) if slips else (0.0, 0.0)


@dataclass
class Tally:
    markets: dict[int, MarketTally]
    deposits_tokens: int = 0
    withdrawals_tokens: int = 0
    margin_transfers: int = 0
    lp_added_tokens: int = 0
    lp_removed_tokens: int = 0
    price_updates: int = 0
    liquidations: int = 0
    liquidations_partial: int = 0
    liquidation_fees: int = 0
    keeper_rewards_tokens: int = 0
    insurance_fees: int = 0
    bad_debt: int = 0
    bad_debt_from_insurance: int = 0
    bad_debt_from_pool: int = 0  # the pool's loss, within its loss cap
    bad_debt_to_adl: int = 0  # beyond the cap: advanced by the pool, owed by the other side (ADL)
    adl_booked: int = 0  # DeleverageBooked.recover summed
    adl_closes: int = 0
    adl_notional: int = 0  # WAD USD: sum |closed_size| * bankruptcy price over Deleveraged
    adl_recovered: int = 0
    profit_capped: int = 0  # profit realized at the pool's pro-rata share: what the share cut
    payments_capped: int = 0  # TraderPaymentCapped: owed - paid (beyond the pool's cash)
    settlements: int = 0
    requests_committed: int = 0  # two-step requests (OrderRouter)
    requests_settled: int = 0
    cancel_reasons: dict[str, int] = field(default_factory=dict)  # requests'
    orders: OrderTally = field(default_factory=OrderTally)  # conditional orders
    commit_times: dict[int, int] = field(default_factory=dict)  # order id -> committed_at
    fill_seconds: list[int] = field(default_factory=list)  # commit to settlement, per settled request
    book: dict[Key, int] = field(default_factory=dict)  # position size after the last event
    entries: dict[Key, int] = field(default_factory=dict)  # entry price after the last event
    liquidated_pnl: dict[tuple[str, int], int] = field(default_factory=dict)  # PositionLiquidated pnl, this liquidation
    last_payment_cap: tuple[str, str, int, int, int] | None = None  # (tx, owner, sub, owed, paid) of the last one
    gaps: list[str] = field(default_factory=list)  # why the funding history is incomplete

    @property
    def trades(self) -> int:
        return sum(m.trades for m in self.markets.values())

    @property
    def pnl_capped(self) -> int:
        """Profit traders did not get because of the pool's caps: the pro-rata share's cut
        plus payments beyond the pool's cash."""
        return self.profit_capped + self.payments_capped

    @property
    def adl_unrecovered(self) -> int:
        """Bad debt the pool advanced to ADL and ADL has not given back (to_adl - recovered):
        still owed, or never booked; pending ADL expires to the pool, so it is the LPs' loss
        unless a deleverage recovers it later (0 when ADL recovered it all)."""
        return max(0, self.bad_debt_to_adl - self.adl_recovered)

    @property
    def bad_debt_to_lps(self) -> int:
        """The bad debt LPs bear (issue 17): what the pool absorbed within its loss cap plus
        what it advanced to ADL and did not get back."""
        return self.bad_debt_from_pool + self.adl_unrecovered

    @property
    def requests_cancelled(self) -> int:
        return sum(self.cancel_reasons.values())

    @property
    def open_positions(self) -> dict[Key, int]:
        return {k: size for k, size in self.book.items() if size}

    def funding_side(self, key: Key, size: int, amount: int, settled: bool = True) -> None:
        """Books `amount` of funding of a position of `size` (before the settlement);
        `settled=False`: accrued and not settled yet."""
        m = self.markets[key[2]]
        if size > 0:
            m.funding_longs += amount
        elif size < 0:
            m.funding_shorts += amount
        elif amount:
            self.gaps.append(f"funding {amount} settled by a position the log never saw open ({key[0][:10]}/{key[1]})")
        self.settlements += settled


def tally(events: Iterable[ChainEvent], markets: Iterable[int], baseline: dict[int, int] | None = None) -> Tally:
    """`baseline`: per market, the funding index before the first event, when known (see
    `funding_baseline`); without it a market's first accrual must find no skew."""
    t = Tally({m: MarketTally(last_index=(baseline or {}).get(m)) for m in markets})
    for e in events:
        handler = _HANDLERS.get(e.name)
        if handler is not None:
            handler(t, e.args)
        elif e.name in _EVENT_HANDLERS:
            _EVENT_HANDLERS[e.name](t, e)
    return t


def _committed(t: Tally, e: ChainEvent) -> None:
    t.requests_committed += 1
    t.commit_times[int(e.args["order_id"])] = int(e.args["committed_at"])


def _order_settled(t: Tally, e: ChainEvent) -> None:
    if int(e.args["kind"]) >= KIND_CONDITIONAL:
        _conditional_filled(t.orders, e)
        return
    t.requests_settled += 1
    committed = t.commit_times.get(int(e.args["order_id"]))
    if committed is not None:
        t.fill_seconds.append(e.timestamp - committed)


def _order_cancelled(t: Tally, e: ChainEvent) -> None:
    """A request's or a conditional order's (OrderCancelled has no kind: its id tells)."""
    reasons = t.orders.cancel_reasons if int(e.args["order_id"]) in t.orders.placed else t.cancel_reasons
    reason = str(e.args["reason"])
    reasons[reason] = reasons.get(reason, 0) + 1


def _conditional_placed(t: Tally, e: ChainEvent) -> None:
    a = e.args
    t.orders.placed[int(a["order_id"])] = Placed(int(a["market"]), int(a["kind"]) - KIND_CONDITIONAL, int(a["side"]),
                                                 int(a["trigger_price"]))


def _conditional_triggered(t: Tally, e: ChainEvent) -> None:
    t.orders.triggered += 1


def _conditional_filled(o: OrderTally, e: ChainEvent) -> None:
    o.filled += 1
    order_id, kind = int(e.args["order_id"]), int(e.args["kind"]) - KIND_CONDITIONAL
    placed = o.placed.get(order_id)
    if placed is not None and kind in (STOP, STOP_LOSS):
        o.stop_fills.append(StopFill(order_id, placed.market, placed.side, placed.trigger_price,
                                     int(e.args["fill_price"]), e.timestamp))


def _payment_capped(t: Tally, e: ChainEvent) -> None:
    a = e.args
    owed, paid = int(a["owed"]), int(a["paid"])
    t.payments_capped += owed - paid
    t.last_payment_cap = (e.tx, str(a["owner"]), int(a["sub"]), owed, paid)


def _before_payment_cap(t: Tally, e: ChainEvent) -> int:
    """A Liquidation's or Deleveraged's realized_pnl is what was paid: after the pro-rata
    share, then after a TraderPaymentCapped (logged just before, in the same transaction,
    for the same account) when the pool's cash fell short. This is the PnL before the
    latter (the payment cap is counted by its own event)."""
    paid, cap = int(e.args["realized_pnl"]), t.last_payment_cap
    if cap is not None and cap[:3] == (e.tx, str(e.args["owner"]), int(e.args["sub"])) and cap[4] == paid:
        return cap[3]
    return paid


def _liquidation(t: Tally, e: ChainEvent) -> None:
    a = e.args
    t.liquidations += 1
    t.liquidations_partial += int(a["fraction"]) < WAD
    t.liquidation_fees += int(a["fee"])
    t.keeper_rewards_tokens += int(a["keeper_reward"])
    t.insurance_fees += int(a["insurance_fee"])
    t.bad_debt += int(a["bad_debt"])
    at_share = _before_payment_cap(t, e)
    t.profit_capped += t.liquidated_pnl.pop((str(a["owner"]), int(a["sub"])), at_share) - at_share


def _deleveraged(t: Tally, e: ChainEvent) -> None:
    """An ADL close at the bankruptcy price (PnL at the pro-rata share, as any close)."""
    a, key = e.args, _key(e.args)
    closed, price = int(a["closed_size"]), int(a["price"])
    t.adl_closes += 1
    t.adl_notional += abs(closed) * price // WAD
    t.adl_recovered += int(a["recovered"])
    _cut_by_share(t, key, closed, price, _before_payment_cap(t, e))
    t.book[key] = int(a["size"])


_EVENT_HANDLERS = {
    "OrderCommitted": _committed, "OrderSettled": _order_settled, "OrderCancelled": _order_cancelled,
    "ConditionalPlaced": _conditional_placed, "ConditionalTriggered": _conditional_triggered,
    "TraderPaymentCapped": _payment_capped, "Deleveraged": _deleveraged, "Liquidation": _liquidation,
}


def _key(a: dict[str, Any]) -> Key:
    return (str(a["owner"]), int(a["sub"]), int(a["market"]))


def _modified(t: Tally, a: dict[str, Any]) -> None:
    m, key = t.markets[int(a["market"])], _key(a)
    before = int(a["size"]) - int(a["size_delta"])
    if before != t.book.get(key, 0):
        t.gaps.append(f"{key[0][:10]}/{key[1]} held {before} in market {key[2]} before the log started")
    if before:
        t.funding_side(key, before, int(a["funding"]))
    m.trades += 1
    m.volume += abs(int(a["size_delta"])) * int(a["fill_price"]) // WAD
    m.fees += int(a["fee"])
    delta = int(a["size_delta"])
    if before and (before > 0) != (delta > 0):  # a reduce, close or flip realizes PnL
        closed = before if abs(delta) >= abs(before) else -delta
        _cut_by_share(t, key, closed, int(a["fill_price"]), int(a["realized_pnl"]))
    t.book[key] = int(a["size"])
    t.entries[key] = int(a["entry_price"])


def _cut_by_share(t: Tally, key: Key, closed: int, price: int, realized: int) -> None:
    """Books what the pool's pro-rata share cut from closing `closed` (signed, of the
    position's side) at `price`: the PnL in full (floored, as the vault computes it) minus
    `realized` (at the share). Needs the position's entry from an earlier event."""
    entry = t.entries.get(key)
    if entry is None:
        return
    full = closed * (price - entry) // WAD
    if full > 0:
        t.profit_capped += full - realized


def _settled(t: Tally, a: dict[str, Any]) -> None:
    key = _key(a)
    t.funding_side(key, t.book.get(key, 0), int(a["amount"]))


def _position_liquidated(t: Tally, a: dict[str, Any]) -> None:
    """Its realized_pnl is before the pro-rata share; the Liquidation event that follows
    has the account's sum after it."""
    key = _key(a)
    t.markets[key[2]].liquidated_notional += abs(int(a["closed_size"])) * int(a["price"]) // WAD
    t.book[key] = int(a["size"])
    account = (key[0], key[1])
    t.liquidated_pnl[account] = t.liquidated_pnl.get(account, 0) + int(a["realized_pnl"])


def _accrued(t: Tally, a: dict[str, Any]) -> None:
    m = t.markets[int(a["market"])]
    index, skew = int(a["funding_index"]), int(a["skew"])
    if m.last_index is None:
        if skew:
            t.gaps.append(f"market {a['market']}: first accrual in the log had skew {skew}")
    else:
        m.funding_pool += (index - m.last_index) * skew // WAD
    m.last_index = index
    m.accruals += 1


def _bad_debt(t: Tally, a: dict[str, Any]) -> None:
    t.bad_debt_from_insurance += int(a["from_insurance"])
    t.bad_debt_from_pool += int(a["from_pool"])
    t.bad_debt_to_adl += int(a["to_adl"])


def _adder(name: str, arg: str = "amount") -> Any:
    def add(t: Tally, a: dict[str, Any]) -> None:
        setattr(t, name, getattr(t, name) + int(a[arg]))

    return add


def _counter(name: str) -> Any:
    def count(t: Tally, _: dict[str, Any]) -> None:
        setattr(t, name, getattr(t, name) + 1)

    return count


_HANDLERS = {
    "PositionModified": _modified,
    "FundingSettled": _settled,
    "PositionLiquidated": _position_liquidated,
    "FundingAccrued": _accrued,
    "BadDebtCovered": _bad_debt,
    "DeleverageBooked": _adder("adl_booked", "recover"),
    "Deposit": _adder("deposits_tokens"),
    "Withdraw": _adder("withdrawals_tokens"),
    "LiquidityAdded": _adder("lp_added_tokens"),
    "LiquidityRemoved": _adder("lp_removed_tokens"),
    "MarginTransferred": _counter("margin_transfers"),
    "PriceUpdated": _counter("price_updates"),
}


def funding_baseline(first: Sample, events: list[ChainEvent]) -> dict[int, int]:
    """The funding index of each market that had no open interest at the `first` sample,
    taken before every event: no position owed anything then, and the sample's index
    (accrued to its time) is what an accrual at that time would store."""
    if events and events[0].block <= first.block:
        return {}
    return {m: s.funding_index for m, s in first.markets.items() if s.oi_long == 0 and s.oi_short == 0}


def add_unsettled_funding(t: Tally, vault: Any, lens: Any) -> None:
    """Adds what open positions have accrued and not settled (lens views, now), and the
    pool's side of it: index now minus the last accrual's, times the skew now."""
    for (owner, sub, market), size in t.open_positions.items():
        t.funding_side((owner, sub, market), size, int(lens.accrued_funding(owner, sub, market)), settled=False)
    for market, m in t.markets.items():
        st = vault.market_state(market)
        skew = int(st.oi_long) - int(st.oi_short)
        index = int(vault.funding(market)[1])
        if m.last_index is None:
            if skew:
                t.gaps.append(f"market {market}: skew {skew} but no accrual in the log")
            continue
        m.funding_pool += (index - m.last_index) * skew // WAD


def funding_rounding_bound(t: Tally) -> int:
    """Wei of rounding the funding sums may be off by: each settlement and open position
    floors once against the trader, and each pool step floors once here."""
    return t.settlements + len(t.open_positions) + sum(m.accruals + 1 for m in t.markets.values())
