"""Simulated traders: a seeded population and what each behaviour does when it acts.

Behaviours (from how leverage is really used):
- `fixed`: opens at its leverage and rebalances back to it when it drifts more than 25%.
- `dynamic`: lowers its leverage when hourly volatility rises above 3%: adds margin while its
  equity is under twice its maintenance margin, otherwise reduces size.
- `stop_loss`: closes everything once the price has moved half the way to a wipe-out
  (1 / (2 * leverage)) against it, then stays out.
- `hedged`: long ETH / short BTC at equal notional in one cross-margin sub-account; rebalances.

`decide` is pure: it turns a trader and a snapshot of its account read from the chain into
orders; the engine sends them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Union

from perpdex.model import WAD, Health

Style = Literal["fixed", "dynamic", "stop_loss", "hedged"]
STYLES: tuple[tuple[Style, float], ...] = (("fixed", 0.4), ("dynamic", 0.25), ("stop_loss", 0.2), ("hedged", 0.15))
REBALANCE_BAND = 0.25  # fixed / hedged: rebalance when leverage is off target by more than this
CALM_VOLATILITY = 0.03  # dynamic: hourly volatility above which leverage comes down
MARGIN_BUFFER = 2  # dynamic: add margin while equity < this * maintenance margin
IM_USE = 0.9  # never size above this share of what the initial margin allows


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


Order = Union[Trade, Close, Deposit]


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
    margin_added_usd: int = 0
    opened: bool = False
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
    collateral and margin mode (a third cross across the markets)."""
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
    return traders


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


def _adverse_move(trader: Trader, state: AccountState) -> float:
    """The worst move against any open leg since entry, as a fraction of the entry price."""
    worst = 0.0
    for m, side in trader.legs:
        if state.sizes.get(m, 0) and state.entries.get(m):
            worst = max(worst, -side * (state.prices[m] / state.entries[m] - 1))
    return worst


def decide(trader: Trader, state: AccountState) -> list[Order]:
    """The orders `trader` sends now, given its account `state`."""
    has_position = any(state.sizes.values())
    if not trader.opened:
        return _move_to({}, target_sizes(trader, state, trader.leverage))
    if not has_position:
        return []  # liquidated out: the engine marks it done
    if trader.style == "stop_loss":
        if _adverse_move(trader, state) >= 1 / (2 * trader.leverage):
            return [Close(m) for m, _ in trader.legs if state.sizes.get(m, 0)]
        return []
    if trader.style == "dynamic":
        return _dynamic(trader, state)
    return _rebalance(trader, state, trader.leverage)


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
