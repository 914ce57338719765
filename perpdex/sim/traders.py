"""Simulated traders: a seeded population and what each behaviour does when it acts.

Behaviours (from how leverage is really used):
- `fixed`: opens at its leverage and rebalances back to it when it drifts more than 25%.
- `dynamic`: lowers its leverage when hourly volatility rises above 3%: adds margin while its
  equity is under twice its maintenance margin, otherwise reduces size.
- `stop_loss`: as soon as its position is open, places a real stop-loss order (SPEC 15) on
  each leg, for the whole position, half the way to a wipe-out (1 / (2 * leverage)) against
  its entry; TAKE_PROFIT_SHARE of them pair it (OCO) with a take-profit as far in their favour
  (1 / leverage); LIMIT_ENTRY_SHARE of the one-leg ones enter with a limit order
  LIMIT_OFFSET better than the price (expiring after LIMIT_EXPIRY seconds; a market open
  after that) instead of a market open. The order keeper (the engine) triggers and fills
  them; once stopped out it stays out.
- `hedged`: long ETH / short BTC at equal notional in one cross-margin sub-account; rebalances.

`decide` is pure: it turns a trader and a snapshot of its account read from the chain into
orders; the engine sends them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Union

from perpdex.conditional import LIMIT, STOP_LOSS, TAKE_PROFIT
from perpdex.model import WAD, Health

Style = Literal["fixed", "dynamic", "stop_loss", "hedged"]
STYLES: tuple[tuple[Style, float], ...] = (("fixed", 0.4), ("dynamic", 0.25), ("stop_loss", 0.2), ("hedged", 0.15))
REBALANCE_BAND = 0.25  # fixed / hedged: rebalance when leverage is off target by more than this
CALM_VOLATILITY = 0.03  # dynamic: hourly volatility above which leverage comes down
MARGIN_BUFFER = 2  # dynamic: add margin while equity < this * maintenance margin
IM_USE = 0.9  # never size above this share of what the initial margin allows
TAKE_PROFIT_SHARE = 0.4  # stop_loss: of them, those that pair a take-profit with the stop (OCO)
LIMIT_ENTRY_SHARE = 0.3  # stop_loss on one leg: of them, those that enter with a limit order
LIMIT_OFFSET = 0.005  # a limit entry buys this much below the price (sells above it)
LIMIT_EXPIRY = 3_600  # seconds a limit entry waits for its price


@dataclass(frozen=True)
class Trade:
    market: int
    size_delta: int  # WAD, signed


@dataclass(frozen=True)
class Close:
    market: int


@dataclass(frozen=True)
class Deposit:
    usd: int


@dataclass(frozen=True)
class Conditional:
    """A conditional order to place (perpdex.conditional): a limit entry of signed `size`, or a
    TP/SL on the whole position (`size` 0); `oco`: paired with the order placed just before
    it in the same batch (a take-profit with its stop-loss); `expires_in`: seconds (0: never)."""

    market: int
    kind: int  # perpdex.conditional.LIMIT, TAKE_PROFIT or STOP_LOSS
    trigger: int  # WAD
    size: int = 0  # WAD
    oco: bool = False
    expires_in: int = 0


Order = Union[Trade, Close, Deposit, Conditional]


@dataclass
class Trader:
    """One simulated trader: its own (owner, sub) account and what it remembers."""

    index: int
    owner: object
    sub: int
    style: Style
    legs: tuple[tuple[int, int], ...]  # (market, side +1 long / -1 short); two legs = cross margin
    leverage: float
    collateral_usd: int
    act_every: int
    take_profit: bool = False  # stop_loss: pairs a take-profit with its stop (OCO)
    limit_entry: bool = False  # stop_loss: enters with a limit order, not at market
    margin_added_usd: int = 0
    opened: bool = False  # its position was opened (a market open sent, or a limit entry filled)
    protected: bool = False  # stop_loss: its stop-loss orders are placed
    entries_live: int = 0  # limit entry orders placed and not yet filled or cancelled
    limits_placed: bool = False  # it tried a limit entry (after one expires it opens at market)
    done: bool = False  # stopped out or wiped out: acts no more
    refused: int = 0  # orders the chain refused
    history: list[str] = field(default_factory=list)

    @property
    def account(self) -> tuple[object, int]:
        return self.owner, self.sub

    @property
    def cross(self) -> bool:
        return len(self.legs) > 1

    def acts_at(self, block: int) -> bool:
        return not self.done and block % self.act_every == self.index % self.act_every

    def is_long(self, market: int) -> bool:
        return any(m == market and side > 0 for m, side in self.legs)


@dataclass(frozen=True)
class AccountState:
    """What a trader reads from the chain before acting."""

    health: Health
    sizes: dict[int, int]  # market -> size (WAD, signed)
    entries: dict[int, int]  # market -> entry price
    prices: dict[int, int]  # market -> oracle price
    max_leverage: dict[int, int]  # market -> WAD
    min_position_margin: int  # WAD
    hourly_volatility: float


def population(
    owners: list[object], count: int, seed: int, max_leverage: float, long_share: float = 0.55, markets: int = 2,
) -> list[Trader]:
    """`count` traders spread over `owners` (trader i: owner i % len(owners), sub i // len(owners)),
    with seeded styles (the first ones one of each), sides, leverage (1x to `max_leverage`),
    collateral and margin mode (a third cross across the markets); of the stop-loss traders,
    seeded take-profit and limit-entry users (the first of each kind uses it)."""
    rng = random.Random(seed)
    traders = []
    for i in range(count):
        style = STYLES[i][0] if i < len(STYLES) else _pick_style(rng)  # every style shows up
        side = 1 if rng.random() < long_share else -1
        if style == "hedged":
            legs: tuple[tuple[int, int], ...] = ((0, 1), (1, -1))
        elif markets > 1 and rng.random() < 1 / 3:
            legs = ((0, side), (1, side))
        else:
            legs = ((rng.randrange(markets), side),)
        traders.append(Trader(
            index=i, owner=owners[i % len(owners)], sub=i // len(owners), style=style, legs=legs,
            leverage=round(rng.uniform(1, max_leverage) * 2) / 2, collateral_usd=rng.choice((1, 2, 5, 10, 20)) * 1000,
            act_every=rng.randint(10, 30),
        ))
    _order_users(traders, random.Random(seed + 1))  # its own stream: the draws above stay as they were
    return traders


def _order_users(traders: list[Trader], rng: random.Random) -> None:
    """Which stop-loss traders also place a take-profit, and which (on one leg) a limit entry;
    the first of each kind does (every order kind shows up in a small run)."""
    stops = [t for t in traders if t.style == "stop_loss"]
    one_leg = [t for t in stops if not t.cross]
    for t in stops:
        t.take_profit = t is stops[0] or rng.random() < TAKE_PROFIT_SHARE
        t.limit_entry = not t.cross and (t is one_leg[0] or rng.random() < LIMIT_ENTRY_SHARE)


def _pick_style(rng: random.Random) -> Style:
    roll, total = rng.random(), 0.0
    for style, share in STYLES:
        total += share
        if roll < total:
            return style
    return STYLES[-1][0]


def target_sizes(trader: Trader, state: AccountState, leverage: float) -> dict[int, int]:
    """Per leg, the size that puts the account at `leverage` on its equity (notional split
    evenly), within IM_USE of what the initial margin allows."""
    equity = state.health.equity - state.min_position_margin * len(trader.legs)
    if equity <= 0:
        return {m: 0 for m, _ in trader.legs}
    allowed = min(state.max_leverage[m] for m, _ in trader.legs) / WAD * IM_USE
    milli = int(min(leverage, allowed) * 1000)  # leverage in thousandths: integer math from here
    notional = equity * milli // 1000 // len(trader.legs)
    return {m: side * (notional * WAD // state.prices[m]) for m, side in trader.legs}


def leverage_of(trader: Trader, state: AccountState) -> float:
    """Open notional over equity (inf when equity is gone)."""
    notional = sum(abs(state.sizes.get(m, 0)) * state.prices[m] // WAD for m, _ in trader.legs)
    return notional / state.health.equity if state.health.equity > 0 else float("inf")


def _move_to(current: dict[int, int], target: dict[int, int]) -> list[Order]:
    return [Trade(m, size - current.get(m, 0)) for m, size in target.items() if size != current.get(m, 0)]


def _rebalance(trader: Trader, state: AccountState, leverage: float) -> list[Order]:
    actual = leverage_of(trader, state)
    if abs(actual / leverage - 1) <= REBALANCE_BAND:
        return []
    return _move_to(state.sizes, target_sizes(trader, state, leverage))


def decide(trader: Trader, state: AccountState) -> list[Order]:
    """The orders `trader` sends now, given its account `state`."""
    has_position = any(state.sizes.values())
    if not trader.opened:
        if trader.entries_live:
            return []  # its limit entry still waits for its price
        if trader.limit_entry and not trader.limits_placed:
            return _limit_entries(trader, state)
        return _move_to({}, target_sizes(trader, state, trader.leverage))
    if not has_position:
        return []  # liquidated out: the engine marks it done
    if trader.style == "stop_loss":
        return [] if trader.protected else protect(trader, state)
    if trader.style == "dynamic":
        return _dynamic(trader, state)
    return _rebalance(trader, state, trader.leverage)


def stop_price(entry: int, side: int, leverage: float) -> int:
    """Half the way to a wipe-out against a position of `side` entered at `entry`."""
    return _away(entry, -side, 1 / (2 * leverage))


def take_profit_price(entry: int, side: int, leverage: float) -> int:
    """As far in the position's favour as a wipe-out is against it (its equity doubled)."""
    return _away(entry, side, 1 / leverage)


def _away(price: int, direction: int, fraction: float) -> int:
    return price * (1_000_000 + direction * round(fraction * 1_000_000)) // 1_000_000  # integer math: seeded runs agree


def protect(trader: Trader, state: AccountState) -> list[Order]:
    """Per open leg: a stop-loss on the whole position at `stop_price` (and, for a take-profit
    user, a take-profit at `take_profit_price` paired with it); a leg already at or past its
    stop is closed at market instead (the router refuses a stop the price has passed), and a
    take-profit the price has passed is left out."""
    orders: list[Order] = []
    for m, side in trader.legs:
        entry = state.entries.get(m, 0)
        if not state.sizes.get(m, 0) or not entry:
            continue
        stop, price = stop_price(entry, side, trader.leverage), state.prices[m]
        if (price - stop) * side <= 0:
            orders.append(Close(m))
            continue
        orders.append(Conditional(m, STOP_LOSS, stop))
        target = take_profit_price(entry, side, trader.leverage)
        if trader.take_profit and (target - price) * side > 0:
            orders.append(Conditional(m, TAKE_PROFIT, target, oco=True))
    return orders


def _limit_entries(trader: Trader, state: AccountState) -> list[Order]:
    """Limit orders for the opening sizes, LIMIT_OFFSET better than the price now."""
    return [Conditional(m, LIMIT, _away(state.prices[m], -1 if size > 0 else 1, LIMIT_OFFSET), size,
                        expires_in=LIMIT_EXPIRY)
            for m, size in target_sizes(trader, state, trader.leverage).items() if size]


def _dynamic(trader: Trader, state: AccountState) -> list[Order]:
    if state.hourly_volatility <= CALM_VOLATILITY:
        return _rebalance(trader, state, trader.leverage)
    if state.health.equity < MARGIN_BUFFER * state.health.maintenance_margin and trader.margin_added_usd < trader.collateral_usd:
        return [Deposit(trader.collateral_usd // 4)]
    calmer = max(1.0, trader.leverage * CALM_VOLATILITY / state.hourly_volatility)
    if leverage_of(trader, state) <= calmer * (1 + REBALANCE_BAND):
        return []
    return [o for o in _move_to(state.sizes, target_sizes(trader, state, calmer)) if _reduces(o, state)]


def _reduces(order: Order, state: AccountState) -> bool:
    return isinstance(order, Trade) and abs(state.sizes.get(order.market, 0) + order.size_delta) < abs(state.sizes.get(order.market, 0))
