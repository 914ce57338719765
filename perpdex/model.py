"""The reference model of perpdex's math: exact integers, the same rounding as the contracts.

Every formula the vault uses lives here once. Tests compare the contracts against it; the
CLI, the simulator and the keepers use it to explain and predict what the chain will do.

Units (SPEC section 2): prices and USD values in WAD (1e18), sizes signed base units in WAD,
rates as WAD fractions (funding rates per day). Every rounding goes against the trader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from fractions import Fraction
from typing import Callable, TypeVar

T = TypeVar("T")

WAD = 10**18
DAY = 86_400
VIRTUAL_SHARES = WAD
VIRTUAL_ASSETS = WAD
MAX_ABS_SIZE = 2**120
MAX_PRICE = 2**128 - 1
MAX_MARKETS_PER_ACCOUNT = 8
# Liquidation (SPEC 8): close everything when equity is below this share of MM, or when
# what would remain holds less than DUST_MARGIN of initial margin above the fixed minimums.
FULL_LIQUIDATION_RATIO = WAD // 2
DUST_MARGIN = WAD  # 1 USD
# Widths of the packed funding word (see MarginVault._pack_funding).
RATE_BIAS = 2**87
INDEX_BIAS = 2**127


class ModelRevert(Exception):
    """The model refuses an action for the same reason the contract reverts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise ModelRevert(reason)


# ---------------------------------------------------------------- rounding


def ceil_div(a: int, b: int) -> int:
    """Ceiling of a / b for a >= 0, b > 0."""
    return -((-a) // b)


def floor_div(a: int, b: int) -> int:
    """Floor of a / b for b > 0 (Python's // already floors)."""
    return a // b


def to_wad(value: Decimal | int | float | str) -> int:
    """A human number (3000.5, "0.025") to WAD, exactly for decimal strings."""
    return int(Decimal(str(value)) * WAD)


def from_wad(value: int) -> Decimal:
    return Decimal(value) / WAD


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class MarketParams:
    """Field order matches the Vyper struct `IMarginVault.MarketParams`."""

    max_leverage: int
    maintenance_margin_ratio: int
    taker_fee: int
    skew_scale: int
    max_funding_velocity: int
    max_open_interest: int
    liquidation_fee_ratio: int
    min_position_margin: int
    max_pool_exposure: int

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_human(cls, values: dict[str, object]) -> "MarketParams":
        """Build from human units (20 for 20x, 0.025 for 2.5%, 1000000 base units)."""
        return cls(**{f.name: to_wad(values[f.name]) for f in fields(cls)})  # type: ignore[arg-type]

    @classmethod
    def from_chain(cls, struct: object) -> "MarketParams":
        return cls(**{f.name: int(getattr(struct, f.name)) for f in fields(cls)})


# ---------------------------------------------------------------- trading


def fill_price(price: int, skew: int, delta: int, skew_scale: int) -> int:
    """fill = P * (1 + (skew_before + skew_after) / (2 * skew_scale)); up for buys, down for sells."""
    scale2 = 2 * skew_scale
    numerator = price * (scale2 + 2 * skew + delta)
    require(numerator > 0, "vault: fill price not positive")
    fill = ceil_div(numerator, scale2) if delta > 0 else numerator // scale2
    require(0 < fill <= MAX_PRICE, "vault: fill price out of range")
    return fill


def notional(size: int, price: int) -> int:
    return ceil_div(abs(size) * price, WAD)


def trade_fee(delta: int, fill: int, taker_fee: int) -> int:
    return ceil_div(notional(delta, fill) * taker_fee, WAD)


def increases_risk(old: int, new: int) -> bool:
    if new == 0:
        return False
    if old == 0 or (old > 0) != (new > 0):
        return True
    return abs(new) > abs(old)


def trade_pnl_and_entry(size: int, entry: int, delta: int, fill: int) -> tuple[int, int]:
    """Realized PnL of the closed part (floored) and the entry price after the trade."""
    new_size = size + delta
    if size == 0:
        return 0, fill
    if (size > 0) == (delta > 0):
        total = abs(size) * entry + abs(delta) * fill
        return 0, (ceil_div(total, abs(new_size)) if size > 0 else total // abs(new_size))
    closed = size if abs(delta) >= abs(size) else -delta
    pnl = floor_div(closed * (fill - entry), WAD)
    if new_size == 0:
        return pnl, 0
    if (new_size > 0) != (size > 0):
        return pnl, fill
    return pnl, entry


def unrealized_pnl(size: int, entry: int, price: int) -> int:
    return floor_div(size * (price - entry), WAD)


def accrued_funding(size: int, index: int, snapshot: int) -> int:
    """What a position gains (+) or pays (-) from funding since its last settlement."""
    return floor_div(-size * (index - snapshot), WAD)


def initial_margin(size: int, price: int, params: MarketParams) -> int:
    return ceil_div(notional(size, price) * WAD, params.max_leverage) + params.min_position_margin


def maintenance_margin(size: int, price: int, params: MarketParams) -> int:
    return ceil_div(notional(size, price) * params.maintenance_margin_ratio, WAD) + params.min_position_margin


def liquidation_price(
    equity_excluding: int, mm_excluding: int, size: int, entry: int, funding: int, params: MarketParams
) -> int | None:
    """The oracle price of one market at which the account's equity meets its maintenance
    margin, every other price fixed. `equity_excluding` / `mm_excluding` are the account's
    equity and MM without this position (collateral and other markets). None when no price
    liquidates it (e.g. a long so over-collateralised that the price would have to go below 0).

    Solves  E + size * (P - entry) + funding = MM + |size| * P * mmr + min_position_margin
    in exact rationals (the contract's per-step rounding moves it by a few wei at most).
    """
    if size == 0:
        return None
    mmr = params.maintenance_margin_ratio
    # numerator and denominator scaled by WAD
    numerator = (mm_excluding + params.min_position_margin - equity_excluding - funding) * WAD + size * entry
    denominator = size * WAD - abs(size) * mmr
    exact = Fraction(numerator * WAD, denominator)
    price = math.floor(exact) if size > 0 else math.ceil(exact)
    return price if price > 0 else None


# ---------------------------------------------------------------- funding


def funding_velocity(skew: int, params: MarketParams) -> int:
    proportional = _trunc_div(skew * WAD, params.skew_scale)
    proportional = max(min(proportional, WAD), -WAD)
    return _trunc_div(proportional * params.max_funding_velocity, WAD)


def current_funding(
    rate: int, index: int, elapsed: int, skew: int, price: int, params: MarketParams
) -> tuple[int, int]:
    """Rate and index after `elapsed` seconds at a constant skew and price (trapezoid rule)."""
    if elapsed == 0:
        return rate, index
    new_rate = rate + _trunc_div(funding_velocity(skew, params) * elapsed, DAY)
    delta = floor_div((rate + new_rate) * elapsed * price, 2 * DAY * WAD)
    return new_rate, index + delta


def predicted_rate(rate: int, skew: int, hours: int, params: MarketParams) -> int:
    """The funding rate `hours` from now if the skew stays what it is."""
    return current_funding(rate, 0, hours * 3600, skew, 0, params)[0]


def funding_over(size: int, rate: int, skew: int, price: int, seconds: int, params: MarketParams) -> int:
    """What a position pays (-) or receives (+) over the next `seconds` at today's skew and
    price: the index grows by the trapezoid of the rate's path."""
    _, delta_index = current_funding(rate, 0, seconds, skew, price, params)
    return accrued_funding(size, delta_index, 0)


def check_funding_packable(rate: int, index: int) -> None:
    require(-RATE_BIAS < rate < RATE_BIAS, "vault: funding rate out of range")
    require(-INDEX_BIAS < index < INDEX_BIAS, "vault: funding index out of range")


def _trunc_div(a: int, b: int) -> int:
    """Division truncating toward zero, like the EVM's SDIV (b > 0)."""
    q = abs(a) // b
    return q if a >= 0 else -q


# ---------------------------------------------------------------- accounts


@dataclass
class Position:
    size: int = 0
    entry_price: int = 0
    funding_index: int = 0


@dataclass
class Health:
    collateral: int = 0
    unrealized_pnl: int = 0
    funding: int = 0
    equity: int = 0
    initial_margin: int = 0
    maintenance_margin: int = 0
    positions: int = 0

    @property
    def liquidatable(self) -> bool:
        return self.equity < self.maintenance_margin

    @property
    def free_collateral(self) -> int:
        """What may leave the account: min(collateral + funding, equity) - IM, never negative.
        Funding counts as settled (a withdrawal settles it first); unrealized PnL does not."""
        return max(0, min(self.collateral + self.funding, self.equity) - self.initial_margin)


# ---------------------------------------------------------------- the vault


@dataclass
class MarketState:
    params: MarketParams
    oi_long: int = 0
    oi_short: int = 0
    entry_sum: int = 0
    funding_sum: int = 0
    long_entry_sum: int = 0  # sum(size * entry) over the longs alone: splits traders' PnL by side
    funding_rate: int = 0
    funding_index: int = 0
    last_funding_time: int = 0
    paused: bool = False

    @property
    def skew(self) -> int:
        return self.oi_long - self.oi_short


@dataclass
class TradeResult:
    fill_price: int
    fee: int
    realized_pnl: int
    funding: int
    size: int
    entry_price: int


@dataclass
class LiquidationResult:
    full: bool
    fraction: int  # WAD share of every position closed
    equity: int  # before, after funding settled
    maintenance_margin: int  # before
    notional_closed: int
    realized_pnl: int
    fee: int  # liquidation fee due: liquidation_fee_ratio of the notional closed
    keeper_reward: int  # WAD, paid to the caller in tokens (keeper_reward // token_scale)
    insurance_fee: int  # the rest of the collected fee (and rounding dust), to the insurance fund
    bad_debt: int  # the account's shortfall (the uncollected fee is not part of it)
    from_insurance: int  # covered by the insurance fund
    from_pool: int  # borne by the LP pool (within its loss cap)
    fee_collected: int = 0  # the part of the fee the account could pay: min(fee, max(equity, 0))
    reward_from_insurance: int = 0  # the insurance fund's top-up of the reward to min_keeper_reward
    to_adl: int = 0  # beyond the pool's loss cap: advanced by the pool, recovered by ADL


@dataclass
class AdlPending:
    """What one side of a market owes by ADL (SPEC 14, modules/adl.vy): the size still to
    close, sum(size * bankruptcy price) and when it was last booked (owed until ADL_EXPIRY
    after that)."""
    size: int = 0
    notional: int = 0
    booked_at: int = 0

    def live(self, now: int) -> bool:
        return self.size != 0 and now < self.booked_at + ADL_EXPIRY

    def price(self, side: int) -> int:
        """The size-weighted bankruptcy price: rounded down for the longs, up for the shorts."""
        if self.size == 0:
            return 0
        return self.notional // self.size if side == ADL_LONGS else ceil_div(self.notional, self.size)


@dataclass
class DeleverageResult:
    closed_size: int  # signed like the position
    size: int  # left
    price: int  # the bankruptcy price
    mark_price: int
    realized_pnl: int
    recovered: int


ADL_LONGS, ADL_SHORTS = 0, 1  # the side that owes: the longs (a short went bankrupt), the shorts
ADL_EXPIRY = 3_600  # adl.ADL_EXPIRY: seconds after its last booking that ADL stays owed
LOSS_WINDOW = 86_400


def liquidation_fraction(equity: int, im_notional: int, min_margins: int, fee_full: int, maintenance: int) -> int:
    """The WAD share of every position to close so that what remains meets its initial margin:
    the smallest f with  E - f * F >= (1 - f) * I + M0  (closing at the oracle price moves no
    value except the fee), rounded up; WAD (everything) below the full-liquidation threshold,
    when f >= 1, or when the remainder would be dust."""
    if equity * WAD < maintenance * FULL_LIQUIDATION_RATIO:
        return WAD
    room = im_notional - fee_full
    if room <= 0:
        return WAD
    f = ceil_div((im_notional + min_margins - equity) * WAD, room)
    if f >= WAD or (WAD - f) * im_notional < DUST_MARGIN * WAD:
        return WAD
    return max(f, 1)


def keeper_reward_due(collected: int, max_reward: int, min_reward: int, insurance_fund: int) -> int:
    """A liquidation keeper's reward before rounding to tokens (USD, WAD; SPEC 14): the fee
    collected up to the cap; below the floor, topped up by the insurance fund as far as it
    holds it. Never from the pool."""
    due = min(collected, max_reward)
    if due < min_reward:
        due += min(min_reward - due, insurance_fund)
    return due


def closed_size(size: int, fraction: int) -> int:
    """The size a liquidation closes: |size| * fraction rounded up (never more than size)."""
    if fraction >= WAD:
        return size
    part = ceil_div(abs(size) * fraction, WAD)
    return part if size > 0 else -part


Account = tuple[str, int]


@dataclass
class VaultModel:
    """A state-for-state model of MarginVault, driven with the same calls in tests."""

    token_scale: int = 10**12
    markets: list[MarketState] = field(default_factory=list)
    prices: dict[int, int] = field(default_factory=dict)
    collateral: dict[Account, int] = field(default_factory=dict)
    positions: dict[tuple[str, int, int], Position] = field(default_factory=dict)
    pool_balance: int = 0
    insurance_fund: int = 0
    lp_shares: dict[str, int] = field(default_factory=dict)
    total_lp_shares: int = 0
    paused: bool = False
    now: int = 0
    max_keeper_reward: int = 50 * WAD
    min_keeper_reward: int = 5 * WAD  # the floor the insurance fund tops the reward up to
    reserve_factor: int = WAD  # per market and side: OI * price <= this x pool value (SPEC 14)
    max_exposure_factor: int = 3 * WAD // 2  # all markets and sides: sum(OI * price) <= this x pool value
    max_pnl_factor: int = 9 * WAD // 10  # traders' profit is paid in full up to this x the pool's cash
    pool_loss_cap: int = 5 * WAD // 1000  # bad debt the pool absorbs per 24 h, x its cash; the rest by ADL
    loss_window_start: int = 0
    loss_budget: int = 0  # what the pool may still absorb in the window
    adl: dict[tuple[int, int], AdlPending] = field(default_factory=dict)  # (market, owing side)
    adl_owing: int = 0  # adl._owing: market sides with ADL booked (expired or not)
    adl_until: int = 0  # and the last booking's expiry: LP deposits wait until then while adl_owing
    keeper_paid: dict[str, int] = field(default_factory=dict)  # token units
    settled: set[int] = field(default_factory=set)  # ended markets: prices[m] is their final price

    # ---- setup
    def add_market(self, params: MarketParams, price: int) -> int:
        self.markets.append(MarketState(params=params, last_funding_time=self.now))
        self.prices[len(self.markets) - 1] = price
        return len(self.markets) - 1

    # ---- views
    def position(self, owner: str, sub: int, market: int) -> Position:
        return self.positions.get((owner, sub, market), Position())

    def open_markets(self, owner: str, sub: int) -> list[int]:
        return sorted(m for (o, s, m), p in self.positions.items() if o == owner and s == sub and p.size != 0)

    def funding_now(self, market: int) -> tuple[int, int]:
        st = self.markets[market]
        if market in self.settled:  # frozen at settlement
            return st.funding_rate, st.funding_index
        return current_funding(
            st.funding_rate, st.funding_index, self.now - st.last_funding_time, st.skew, self.prices[market], st.params
        )

    def health(self, owner: str, sub: int) -> Health:
        h = Health(collateral=self.collateral.get((owner, sub), 0))
        profit = 0
        for m in self.open_markets(owner, sub):
            pos, price, params = self.position(owner, sub, m), self.prices[m], self.markets[m].params
            pnl = unrealized_pnl(pos.size, pos.entry_price, price)
            if pnl > 0:
                profit += pnl
            else:
                h.unrealized_pnl += pnl
            h.funding += accrued_funding(pos.size, self.funding_now(m)[1], pos.funding_index)
            h.initial_margin += initial_margin(pos.size, price, params)
            h.maintenance_margin += maintenance_margin(pos.size, price, params)
            h.positions += 1
        if profit > 0:  # profit counts at the share the pool pays
            h.unrealized_pnl += self.capped_profit(profit)
        h.equity = h.collateral + h.unrealized_pnl + h.funding
        return h

    def withdrawable(self, owner: str, sub: int) -> int:
        return self.health(owner, sub).free_collateral // self.token_scale

    def pool_value(self) -> int:
        return self.valuation()[0]

    @property
    def unpaid_losses(self) -> int:
        """The sum of negative collateral: losses booked to the pool that the vault does not
        hold yet; LP withdrawals may only take the cash beyond it."""
        return sum(-c for c in self.collateral.values() if c < 0)

    def valuation(self) -> tuple[int, int, int, int]:
        """(pool value, gross exposure, largest side, traders' profit), as MarginVault's
        pool._valuation: gross exposure is sum((OI_long + OI_short) * P), the largest side
        max(OI_side * P), the traders' profit the sum of each market side's PnL when positive,
        all rounded up. Profit beyond what the pool pays in full is not deducted from the value."""
        value, gross, largest, profit = self.pool_balance, 0, 0, 0
        for m, st in enumerate(self.markets):
            if st.oi_long == 0 and st.oi_short == 0:
                continue
            price = self.prices[m]
            _, index = self.funding_now(m)
            trader_pnl = st.skew * price - st.entry_sum
            owed_funding = st.skew * index - st.funding_sum
            value += floor_div(owed_funding - trader_pnl, WAD)
            gross += ceil_div((st.oi_long + st.oi_short) * price, WAD)
            largest = max(largest, ceil_div(max(st.oi_long, st.oi_short) * price, WAD))
            long_pnl = st.oi_long * price - st.long_entry_sum
            profit += ceil_div(max(long_pnl, 0), WAD) + ceil_div(max(trader_pnl - long_pnl, 0), WAD)
        room = self.max_pnl_room(self.pool_balance)
        if profit * WAD > room:
            value += profit - ceil_div(room, WAD)
        return value, gross, largest, profit

    def max_pnl_room(self, cash: int) -> int:
        """max_pnl_factor x the pool's cash the vault holds (`cash` - unpaid_losses), WAD x WAD."""
        return max(cash - self.unpaid_losses, 0) * self.max_pnl_factor

    def profit_ratio(self) -> tuple[int, int]:
        """The share of a trader's profit the pool pays (SPEC 14): 1 while the traders' profit is
        at most max_pnl_factor of the pool's cash, pro rata beyond it."""
        profit, room = self.valuation()[3], self.max_pnl_room(self.pool_balance)
        return (1, 1) if profit * WAD <= room else (room, profit * WAD)

    def capped_profit(self, profit: int) -> int:
        num, den = self.profit_ratio()
        return at_share(profit, num, den)

    def pay_trader(self, amount: int, own_debt: int) -> int:
        """What the pool pays of `amount` owed to an account with negative collateral `own_debt`:
        a gain at most the pool's cash the vault holds (plus that debt, which it repays), so pool
        cash never goes below zero (SPEC 11.12). Books it in the pool's cash."""
        paid = amount
        if amount > 0:
            paid = min(amount, max(self.pool_balance - self.unpaid_losses + own_debt, 0))
        self.pool_balance -= paid
        return paid

    def check_caps(self, side: int, gross: int, value: int) -> None:
        """The pool's caps (SPEC 14): one side's notional against reserve_factor, the gross
        exposure against max_exposure_factor, both of `value`."""
        require(side * WAD <= self.reserve_factor * value, "vault: reserve cap")
        require(gross * WAD <= self.max_exposure_factor * value, "vault: exposure cap")

    # ---- collateral
    def deposit(self, owner: str, sub: int, amount: int) -> None:
        require(amount != 0, "vault: zero amount")
        self.collateral[(owner, sub)] = self.collateral.get((owner, sub), 0) + amount * self.token_scale

    def withdraw(self, owner: str, sub: int, amount: int) -> None:
        require(amount != 0, "vault: zero amount")
        self._atomic(self._debit_free_collateral, owner, sub, amount)

    def transfer_margin(self, owner: str, from_sub: int, to_sub: int, amount: int) -> None:
        require(amount != 0, "vault: zero amount")
        require(from_sub != to_sub, "vault: same sub-account")
        self._atomic(self._debit_free_collateral, owner, from_sub, amount)
        self.collateral[(owner, to_sub)] = self.collateral.get((owner, to_sub), 0) + amount * self.token_scale

    def settle_funding(self, owner: str, sub: int) -> dict[int, int]:
        """Settle the account's accrued funding into collateral (the pool takes the other
        side); returns the amount settled per market."""
        settled: dict[int, int] = {}
        for m in self.open_markets(owner, sub):
            self.accrue(m)
            st, pos = self.markets[m], self.positions[(owner, sub, m)]
            if st.funding_index == pos.funding_index:
                continue
            amount = accrued_funding(pos.size, st.funding_index, pos.funding_index)
            st.funding_sum += pos.size * (st.funding_index - pos.funding_index)
            pos.funding_index = st.funding_index
            settled[m] = amount
        total = sum(settled.values())
        if total:
            collateral = self.collateral.get((owner, sub), 0)
            self.collateral[(owner, sub)] = collateral + self.pay_trader(total, max(-collateral, 0))
        return settled

    def _debit_free_collateral(self, owner: str, sub: int, amount: int) -> None:
        wad = amount * self.token_scale
        self.settle_funding(owner, sub)
        h = self.health(owner, sub)
        if wad > h.collateral:
            if wad <= h.equity - h.initial_margin:
                raise ModelRevert("vault: unrealized profit not withdrawable")
            raise ModelRevert("vault: insufficient collateral")
        require(wad <= h.free_collateral, "vault: below initial margin")
        self.collateral[(owner, sub)] = h.collateral - wad

    # ---- trading
    def accrue(self, market: int) -> None:
        if market in self.settled:  # frozen, as the chain leaves its funding word alone
            return
        st = self.markets[market]
        rate, index = self.funding_now(market)
        check_funding_packable(rate, index)
        st.funding_rate, st.funding_index = rate, index
        st.last_funding_time = self.now

    def poke(self, market: int) -> None:
        require(market < len(self.markets), "vault: unknown market")
        self.accrue(market)

    def predicted_rate(self, market: int, hours: int) -> int:
        st = self.markets[market]
        return predicted_rate(self.funding_now(market)[0], st.skew, hours, st.params)

    def accrued_funding(self, owner: str, sub: int, market: int) -> int:
        pos = self.position(owner, sub, market)
        return accrued_funding(pos.size, self.funding_now(market)[1], pos.funding_index) if pos.size else 0

    def modify_position(self, owner: str, sub: int, market: int, delta: int, acceptable_price: int) -> TradeResult:
        """Apply a trade; on a revert nothing changes (like the EVM)."""
        return self._atomic(self._modify, owner, sub, market, delta, acceptable_price)

    def _atomic(self, action: Callable[..., T], *args: object) -> T:
        """Run `action`; if it reverts, undo everything it changed (like the EVM)."""
        snapshot = _copy_state(self)
        try:
            return action(*args)
        except ModelRevert:
            _restore_state(self, snapshot)
            raise

    def _modify(self, owner: str, sub: int, market: int, delta: int, acceptable_price: int) -> TradeResult:
        require(delta != 0, "vault: zero size")
        require(-MAX_ABS_SIZE <= delta <= MAX_ABS_SIZE, "vault: size out of range")
        require(market < len(self.markets), "vault: unknown market")
        self.accrue(market)
        st, price = self.markets[market], self.prices[market]
        params = st.params
        pos = self.position(owner, sub, market)
        size = pos.size + delta
        risky = increases_risk(pos.size, size)
        settled = market in self.settled
        require(not (settled and risky), "vault: market settled")
        healthy_before = True
        if not risky:
            h = self.health(owner, sub)
            healthy_before = not h.liquidatable

        skew = st.skew
        # a settled market fills at its final price, without price impact or fee
        fill = price if settled else fill_price(price, skew, delta, params.skew_scale)
        if delta > 0:
            require(fill <= acceptable_price, "vault: fill above acceptable price")
        else:
            require(fill >= acceptable_price, "vault: fill below acceptable price")
        fee = 0 if settled else trade_fee(delta, fill, params.taker_fee)
        funding = accrued_funding(pos.size, st.funding_index, pos.funding_index)
        pnl, entry = trade_pnl_and_entry(pos.size, pos.entry_price, delta, fill)
        if pnl > 0:
            pnl = self.capped_profit(pnl)

        st.oi_long += max(size, 0) - max(pos.size, 0)
        st.oi_short += max(-size, 0) - max(-pos.size, 0)
        st.entry_sum += size * entry - pos.size * pos.entry_price
        st.long_entry_sum += max(size, 0) * entry - max(pos.size, 0) * pos.entry_price
        st.funding_sum += size * st.funding_index - pos.size * pos.funding_index

        before = self.collateral.get((owner, sub), 0)
        change = self.pay_trader(pnl + funding - fee, max(-before, 0))
        collateral = before + change
        if size == 0:
            self.positions.pop((owner, sub, market), None)
        else:
            self.positions[(owner, sub, market)] = Position(size, entry, st.funding_index)
        if collateral < 0 and not self.open_markets(owner, sub):
            # the owner closed their last position underwater: the shortfall is bad debt
            self._book_adl(market, pos.size, fill, self._cover_bad_debt(-collateral)[2])
            collateral = 0
        self.collateral[(owner, sub)] = collateral

        if risky:
            require(not self.paused and not st.paused, "vault: market paused")
            side_oi = st.oi_long if size > 0 else st.oi_short
            require(side_oi <= params.max_open_interest, "vault: open interest cap")
            require(pool_backs(skew + delta, price, self.pool_balance, params), "vault: pool cannot back open interest")
            value, gross, _, _ = self.valuation()
            self.check_caps(ceil_div(side_oi * price, WAD), gross, value)
            if pos.size == 0:
                require(len(self.open_markets(owner, sub)) <= MAX_MARKETS_PER_ACCOUNT, "vault: too many positions")
            h = self.health(owner, sub)
            require(h.equity >= h.initial_margin, "vault: below initial margin")
        elif healthy_before:
            require(not self.health(owner, sub).liquidatable, "vault: trade would make account liquidatable")
        return TradeResult(fill, fee, pnl, funding, size, entry)

    # ---- ending a market (SPEC 14)
    def settle_market(self, market: int, price: int, updated_at: int, max_price_age: int,
                      max_price_jump: int) -> int:
        """MarginVault.settle_market with the oracle's last price (`self.prices[market]`, written
        at `updated_at`): the final price is that price when fresh, else `price` within
        max_price_jump of it. Funding accrues to now and freezes. Returns the final price."""
        require(market < len(self.markets), "vault: unknown market")
        require(market not in self.settled, "vault: market settled")
        last = self.prices[market]
        final = last
        if self.now - updated_at > max_price_age:
            jump = last * max_price_jump // WAD
            require(price != 0 and last - jump <= price <= last + jump, "vault: final price out of range")
            final = price
        self.accrue(market)
        self.markets[market].funding_rate = 0
        self.settled.add(market)
        self.prices[market] = final
        return final

    def close_settled(self, owner: str, sub: int, market: int) -> TradeResult:
        """Anyone closes a position of a settled market at its final price."""
        require(market in self.settled, "vault: market not settled")
        size = self.position(owner, sub, market).size
        require(size != 0, "vault: no position")
        return self.modify_position(owner, sub, market, -size, 0 if size > 0 else 2**256 - 1)

    # ---- liquidation
    def liquidate(self, owner: str, sub: int, keeper: str) -> LiquidationResult | None:
        """Liquidate if `equity < MM` (None, and nothing changes, when healthy)."""
        return self._atomic(self._liquidate, owner, sub, keeper)

    def _liquidate(self, owner: str, sub: int, keeper: str) -> LiquidationResult | None:
        self.settle_funding(owner, sub)
        h = self.health(owner, sub)
        if not h.liquidatable:
            return None
        markets = self.open_markets(owner, sub)
        min_margins = sum(self.markets[m].params.min_position_margin for m in markets)
        fee_full = sum(
            ceil_div(notional(self.positions[(owner, sub, m)].size, self.prices[m])
                     * self.markets[m].params.liquidation_fee_ratio, WAD)
            for m in markets
        )
        fraction = liquidation_fraction(h.equity, h.initial_margin - min_margins, min_margins, fee_full,
                                        h.maintenance_margin)
        closed_notional = pnl_total = fee = 0
        closes: list[tuple[int, int, int, int, int]] = []  # market, size, price, loss, notional
        num, den = self.profit_ratio()  # winners realize profit at the share health counted
        for m in markets:
            st, price, pos = self.markets[m], self.prices[m], self.positions[(owner, sub, m)]
            closed = closed_size(pos.size, fraction)
            n = notional(closed, price)
            pnl = unrealized_pnl(closed, pos.entry_price, price)
            closes.append((m, closed, price, max(-pnl, 0), n))
            pnl = at_share(pnl, num, den)
            closed_notional, pnl_total = closed_notional + n, pnl_total + pnl
            fee += ceil_div(n * st.params.liquidation_fee_ratio, WAD)
            self._reduce(owner, sub, m, closed)
        # keeper pay only from the fee collected (SPEC 14): what the account can pay, its equity
        collected = min(fee, max(h.equity, 0))
        pnl_total = self.pay_trader(pnl_total, max(-h.collateral, 0))
        collateral = h.collateral + pnl_total - collected
        bad_debt = from_insurance = from_pool = to_adl = 0
        if fraction == WAD and collateral < 0:
            bad_debt = -collateral
            from_insurance, from_pool, to_adl = self._cover_bad_debt(bad_debt)
            self._share_adl(closes, to_adl)
            collateral = 0
        self.collateral[(owner, sub)] = collateral
        topped_up, reward_tokens = self._keeper_pay(collected)
        self.keeper_paid[keeper] = self.keeper_paid.get(keeper, 0) + reward_tokens
        paid = reward_tokens * self.token_scale
        return LiquidationResult(
            full=fraction == WAD, fraction=fraction, equity=h.equity, maintenance_margin=h.maintenance_margin,
            notional_closed=closed_notional, realized_pnl=pnl_total, fee=fee, keeper_reward=paid,
            insurance_fee=collected + topped_up - paid, bad_debt=bad_debt, from_insurance=from_insurance,
            from_pool=from_pool, fee_collected=collected, reward_from_insurance=topped_up, to_adl=to_adl,
        )

    def _reduce(self, owner: str, sub: int, market: int, closed: int) -> int:
        """Close `closed` (signed like the position) of a position at its entry and funding
        snapshot (a liquidation's or an ADL's close): open interest and the aggregates follow
        (positions._move_position). Returns the size left."""
        st, pos = self.markets[market], self.positions[(owner, sub, market)]
        left = pos.size - closed
        st.oi_long -= max(pos.size, 0) - max(left, 0)
        st.oi_short -= max(-pos.size, 0) - max(-left, 0)
        st.entry_sum -= closed * pos.entry_price
        st.long_entry_sum -= (max(pos.size, 0) - max(left, 0)) * pos.entry_price
        st.funding_sum -= closed * pos.funding_index
        if left == 0:
            del self.positions[(owner, sub, market)]
        else:
            pos.size = left
        return left

    def _keeper_pay(self, collected: int) -> tuple[int, int]:
        """The keeper's reward (after the bad debt is covered): the collected fee up to the cap,
        topped up to the floor by the insurance fund as far as it holds it, paid in tokens
        rounded down. Returns (the insurance fund's part in WAD, the reward in tokens)."""
        due = keeper_reward_due(collected, self.max_keeper_reward, self.min_keeper_reward, self.insurance_fund)
        paid = due // self.token_scale * self.token_scale
        self.insurance_fund += collected - paid
        return paid - min(paid, collected), due // self.token_scale

    def _cover_bad_debt(self, bad_debt: int) -> tuple[int, int, int]:
        """The waterfall (SPEC 14): the insurance fund pays what it can; the pool advances the
        rest and keeps as its loss what its loss window's budget allows; the part beyond is for
        ADL to give back. Returns (from insurance, the pool's loss, to ADL)."""
        from_insurance = min(self.insurance_fund, bad_debt)
        self.insurance_fund -= from_insurance
        rest, to_adl = bad_debt - from_insurance, 0
        if rest:
            budget = self._loss_budget(bad_debt)
            absorbed = min(rest, budget)
            to_adl = rest - absorbed
            self.loss_budget = budget - absorbed
        self.pool_balance -= rest
        return from_insurance, rest - to_adl, to_adl

    def _loss_budget(self, bad_debt: int) -> int:
        """What the pool may still absorb in its loss window, opening a new one (budget:
        pool_loss_cap of the cash it holds: its books count the bankrupt's loss in full, of which
        `bad_debt` was never paid) when 24 h have passed."""
        if self.loss_window_start and self.now < self.loss_window_start + LOSS_WINDOW:
            return self.loss_budget
        self.loss_window_start = self.now
        self.loss_budget = max(self.pool_balance - self.unpaid_losses - bad_debt, 0) * self.pool_loss_cap // WAD
        return self.loss_budget

    def _book_adl(self, market: int, bankrupt_size: int, price: int, recover: int) -> None:
        """modules/adl.vy `_book`: the other side closes |size| at the price where it gives up
        `recover` against `price` (rounded towards `price`, kept above 0)."""
        size = abs(bankrupt_size)
        if size == 0 or recover == 0:
            return
        per_unit = recover * WAD // size
        side, at = (ADL_SHORTS, price + per_unit) if bankrupt_size > 0 else (ADL_LONGS, max(price, per_unit + 1) - per_unit)
        pending = self.adl.setdefault((market, side), AdlPending())
        if pending.size == 0:
            self.adl_owing += 1
        elif not pending.live(self.now):  # expired: the pool keeps it as its loss
            pending.size = pending.notional = 0
        pending.size += size
        pending.notional += size * at
        pending.booked_at = self.now
        self.adl_until = self.now + ADL_EXPIRY

    def _share_adl(self, closes: list[tuple[int, int, int, int, int]], to_adl: int) -> None:
        """liquidation._book_adl: `to_adl` shared by the loss of each close (by notional when
        none lost), floored."""
        if not to_adl:
            return
        total_loss = sum(c[3] for c in closes)
        total_notional = sum(c[4] for c in closes)
        for market, size, price, loss, n in closes:
            share = to_adl * loss // total_loss if total_loss else to_adl * n // total_notional
            self._book_adl(market, size, price, share)

    def adl_pending(self, market: int, side: int) -> tuple[int, int, int]:
        """MarginVault.adl_pending: (size, bankruptcy price, expiry); zeros once expired."""
        p = self.adl.get((market, side), AdlPending())
        return (p.size, p.price(side), p.booked_at + ADL_EXPIRY) if p.live(self.now) else (0, 0, 0)

    def check_no_recovery_pending(self) -> None:
        """adl._check_no_recovery_pending: LP deposits wait while ADL can still be recovered."""
        require(self.adl_owing == 0 or self.now >= self.adl_until, "vault: ADL recovery pending")

    def deleverage(self, owner: str, sub: int, market: int, size: int) -> DeleverageResult:
        """VaultExtension.deleverage; on a revert nothing changes."""
        return self._atomic(self._deleverage, owner, sub, market, size)

    def _deleverage(self, owner: str, sub: int, market: int, size: int) -> DeleverageResult:
        self.settle_funding(owner, sub)
        pos = self.position(owner, sub, market)
        require(pos.size != 0, "vault: no position")
        side = ADL_LONGS if pos.size > 0 else ADL_SHORTS
        pending = self.adl.get((market, side), AdlPending())
        require(pending.live(self.now), "vault: nothing to deleverage")
        bankruptcy, mark = pending.price(side), self.prices[market]
        closed = min(size, abs(pos.size), pending.size)
        require(closed != 0, "vault: zero size")
        if side == ADL_LONGS:
            require(pos.entry_price <= bankruptcy, "vault: not in profit at the bankruptcy price")
            require(bankruptcy < mark, "vault: nothing to recover")
            recovered, signed = closed * (mark - bankruptcy) // WAD, closed
        else:
            require(pos.entry_price >= bankruptcy, "vault: not in profit at the bankruptcy price")
            require(bankruptcy > mark, "vault: nothing to recover")
            recovered, signed = closed * (bankruptcy - mark) // WAD, -closed
        pnl = signed * (bankruptcy - pos.entry_price) // WAD
        if pnl > 0:
            pnl = self.capped_profit(pnl)
        left = self._reduce(owner, sub, market, signed)
        before = self.collateral.get((owner, sub), 0)
        pnl = self.pay_trader(pnl, max(-before, 0))
        self.collateral[(owner, sub)] = before + pnl
        if closed == pending.size:
            del self.adl[(market, side)]
            self.adl_owing -= 1
        else:
            pending.notional -= pending.notional * closed // pending.size
            pending.size -= closed
        require(self.health(owner, sub).equity >= 0, "vault: ADL would leave negative equity")
        return DeleverageResult(signed, left, bankruptcy, mark, pnl, recovered)

    # ---- liquidity
    def add_liquidity(self, owner: str, amount: int) -> int:
        self.check_no_recovery_pending()
        require(amount != 0, "vault: zero amount")
        value = self.pool_value()
        require(value >= 0, "vault: pool insolvent")
        self.pool_balance += amount * self.token_scale
        # shares for the value the deposit adds (less than the amount while profit is capped)
        shares = lp_shares_for_deposit(self.pool_value() - value, self.total_lp_shares, value)
        if shares == 0:
            self.pool_balance -= amount * self.token_scale
            raise ModelRevert("vault: zero shares")
        self.lp_shares[owner] = self.lp_shares.get(owner, 0) + shares
        self.total_lp_shares += shares
        return shares

    def remove_liquidity(self, owner: str, shares: int) -> int:
        require(shares != 0, "vault: zero shares")
        require(shares <= self.lp_shares.get(owner, 0), "vault: insufficient shares")
        value, gross, largest, profit = self.valuation()
        require(value > 0, "vault: pool insolvent")
        amount = lp_value_of_shares(shares, self.total_lp_shares, value) // self.token_scale
        require(amount != 0, "vault: zero amount")
        cash = self.pool_balance - amount * self.token_scale
        require(cash >= self.unpaid_losses, "vault: pool cash locked")
        for m, st in enumerate(self.markets):
            require(pool_backs(st.skew, self.prices[m], cash, st.params), "vault: liquidity locked by open interest")
        require(profit * WAD <= self.max_pnl_room(cash), "vault: traders' profit locks liquidity")
        self.check_caps(largest, gross, value - amount * self.token_scale)
        self.pool_balance = cash
        self.lp_shares[owner] -= shares
        self.total_lp_shares -= shares
        return amount


def at_share(pnl: int, num: int, den: int) -> int:
    """pool._at_share: a profit at the share num / den of VaultModel.profit_ratio, floored; a
    loss in full."""
    return pnl if pnl <= 0 or num == den else pnl * num // den


def pool_backs(skew: int, price: int, pool_cash: int, params: MarketParams) -> bool:
    """The pool may carry a net exposure of |skew| * price up to max_pool_exposure of its cash."""
    return abs(skew) * price // WAD * WAD <= pool_cash * params.max_pool_exposure


def lp_shares_for_deposit(amount_wad: int, total_shares: int, pool_value: int) -> int:
    return amount_wad * (total_shares + VIRTUAL_SHARES) // (pool_value + VIRTUAL_ASSETS)


def lp_value_of_shares(shares: int, total_shares: int, pool_value: int) -> int:
    """What `shares` are paid: the smaller of the virtual-share price and the pro-rata part."""
    return min(shares * (pool_value + VIRTUAL_ASSETS) // (total_shares + VIRTUAL_SHARES),
               shares * pool_value // total_shares)


def _copy_state(model: VaultModel) -> dict[str, object]:
    return {
        "markets": [replace(st) for st in model.markets],
        "collateral": dict(model.collateral),
        "positions": {k: replace(v) for k, v in model.positions.items()},
        "pool_balance": model.pool_balance,
        "insurance_fund": model.insurance_fund,
        "keeper_paid": dict(model.keeper_paid),
        "adl": {k: replace(v) for k, v in model.adl.items()},
        "adl_owing": model.adl_owing,
        "adl_until": model.adl_until,
        "loss_window_start": model.loss_window_start,
        "loss_budget": model.loss_budget,
    }


def _restore_state(model: VaultModel, snapshot: dict[str, object]) -> None:
    for name, value in snapshot.items():
        setattr(model, name, value)


# ---------------------------------------------------------------------- two-step requests (SPEC 13)

KIND_TRADE, KIND_CLOSE, KIND_ADD, KIND_REMOVE = 0, 1, 2, 3
PENDING, SETTLED, CANCELLED = 1, 2, 3
ORACLE_HISTORY = 64  # PriceOracle.HISTORY: rounds kept per market
MAX_PENDING = 4  # OrderRouter.MAX_PENDING: per account; an owner's LP requests are one more account
MAX_SUB = 2**30 - 1
LP_ACCOUNT = 2**30
MAX_ACCEPTABLE_PRICE = 2**96 - 1  # OrderRouter.MAX_PRICE: a request's acceptable price clamps here
MAX_LP_AMOUNT = 2**224 - 1  # OrderRouter.MAX_AMOUNT: LP tokens or shares a request can name
LP_GRACE = 12  # OrderRouter.LP_GRACE: seconds an LP request waits after its rounds (and its deadline's extra)


@dataclass
class Request:
    order_id: int
    owner: str
    sub: int
    market: int
    kind: int
    size_delta: int  # trades; a close keeps the side it closes (+1 long, -1 short)
    acceptable_price: int
    amount: int  # LP: tokens to add or shares to remove
    committed_at: int
    settle_after: int
    deadline: int
    status: int = PENDING
    slot: int = 0  # which of its account's MAX_PENDING body slots holds its body

    @property
    def account(self) -> int:
        return LP_ACCOUNT if self.kind >= KIND_ADD else self.sub

    @property
    def body_key(self) -> tuple[str, int, int]:
        return self.owner, self.account, self.slot


@dataclass
class Outcome:
    """What settling or cancelling a request did: filled (`result`: a TradeResult, or the LP
    shares minted / tokens paid) or cancelled with `reason`."""

    filled: bool
    reason: str = ""
    result: object = None
    size_delta: int = 0  # the size filled (a close: minus the position at settlement)


@dataclass
class RouterModel:
    """The OrderRouter and the oracle's rounds over a VaultModel: requests committed now fill
    at their settlement round (the first round of their market at or after committed_at +
    delay; LP requests every market's), with the vault's rules at those prices."""

    vault: VaultModel
    reward_tokens: int
    delay: int = 2
    window: int = 60
    requests: dict[int, Request] = field(default_factory=dict)
    rounds: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # market -> [(updated_at, price)]
    next_id: int = 1
    bodies: dict[tuple[str, int, int], int] = field(default_factory=dict)  # body slot -> the order written last

    # ---- the oracle's rounds
    def record_round(self, market: int, price: int, updated_at: int) -> None:
        self.rounds.setdefault(market, []).append((updated_at, price))
        self.vault.prices[market] = price

    def round_at(self, market: int, time: int) -> tuple[int, int] | None:
        """(index, price) of the first round at or after `time`; None while there is none.
        Raises like the oracle when that round (or the one before, which proves it is the
        first) has left the history."""
        history = self.rounds.get(market, [])
        for i, (at, price) in enumerate(history):
            if at >= time:
                require(i == 0 or i - 1 >= len(history) - ORACLE_HISTORY, "oracle: round expired")
                return i, price
        return None

    # ---- commit
    def pending_count(self, owner: str, account: int) -> int:
        return sum(1 for r in self.requests.values() if r.status == PENDING and r.owner == owner and r.account == account)

    def commit(self, owner: str, sub: int, market: int, kind: int, size_delta: int = 0, acceptable_price: int = 0,
               amount: int = 0) -> Request:
        """The router's checks at commit (its revert reasons), then the request, pending."""
        v = self.vault
        if kind == KIND_TRADE:
            require(size_delta != 0, "router: zero size")
            require(-MAX_ABS_SIZE <= size_delta <= MAX_ABS_SIZE, "router: size out of range")
            require(size_delta < 0 or acceptable_price != 0, "router: zero acceptable price")
        elif kind == KIND_CLOSE:
            size = v.position(owner, sub, market).size
            require(size != 0, "router: no position")
            require(size > 0 or acceptable_price != 0, "router: zero acceptable price")
            size_delta = 1 if size > 0 else -1
        elif kind == KIND_ADD:
            require(amount != 0, "router: zero amount")
            require(amount <= MAX_LP_AMOUNT, "router: amount out of range")
        else:
            require(amount != 0, "router: zero shares")
            require(amount <= MAX_LP_AMOUNT, "router: amount out of range")
            require(amount <= v.lp_shares.get(owner, 0), "router: insufficient shares")
        if kind < KIND_ADD:
            require(sub <= MAX_SUB, "router: sub out of range")
            require(market < len(v.markets), "router: unknown market")
            require(v.position(owner, sub, market).size != 0 or v.collateral.get((owner, sub), 0) > 0,
                    "router: no collateral")
        else:
            sub = market = 0
        request = Request(self.next_id, owner, sub, market, kind, size_delta, min(acceptable_price, MAX_ACCEPTABLE_PRICE),
                          amount, v.now, v.now + self.delay,
                          v.now + self.delay + self.window + (LP_GRACE if kind >= KIND_ADD else 0))
        require(self.pending_count(owner, request.account) < MAX_PENDING, "router: too many pending requests")
        request.slot = self.free_slot(owner, request.account)
        self.bodies[request.body_key] = request.order_id
        self.requests[request.order_id] = request
        self.next_id += 1
        return request

    def escrow_of(self, r: Request) -> int:
        """Tokens a request escrows at commit: the reward, and an add's LP tokens."""
        return self.reward_tokens + (r.amount if r.kind == KIND_ADD else 0)

    def free_slot(self, owner: str, account: int) -> int:
        """The lowest body slot of the account that no pending request holds."""
        busy = {r.slot for r in self.requests.values()
                if r.status == PENDING and r.owner == owner and r.account == account}
        return min(set(range(MAX_PENDING)) - busy)

    def body_view(self, order_id: int) -> tuple[int, int, int]:
        """(size_delta, acceptable_price, amount) as `OrderRouter.order` returns them: all
        zero once a later request of the account has reused the order's body slot."""
        r = self.requests[order_id]
        if self.bodies[r.body_key] != order_id:
            return 0, 0, 0
        if r.kind >= KIND_ADD:
            return 0, 0, r.amount
        return (r.size_delta if r.kind == KIND_TRADE else 0), r.acceptable_price, 0

    def escrow(self) -> int:
        """Tokens the router holds: what every live request escrowed."""
        return sum(self.escrow_of(r) for r in self.requests.values() if r.status == PENDING)

    # ---- settle and cancel
    def due(self, r: Request) -> bool:
        """Whether `settle` would fill or cancel it now (else it reverts / is skipped)."""
        if r.status != PENDING:
            return False
        if self.vault.now > r.deadline:
            return True
        if r.kind >= KIND_ADD:
            return all(self.lp_round_ready(m, r.settle_after) for m in range(len(self.vault.markets)))
        return bool(self.rounds.get(r.market)) and self.rounds[r.market][-1][0] >= r.settle_after

    def lp_round_ready(self, market: int, settle_after: int) -> bool:
        """An LP request's round in `market`: the first at or after `settle_after`, published
        LP_GRACE seconds ago or more (so liquidations at its prices land first). A settled
        market needs none; a round that left the history counts as ready (the fill fails)."""
        if market in self.vault.settled:
            return True
        try:
            found = self.round_at(market, settle_after)
        except ModelRevert:
            return True
        return found is not None and self.rounds[market][found[0]][0] + LP_GRACE <= self.vault.now

    def settle(self, order_id: int) -> Outcome | None:
        """Settle one request as the router does; None (nothing changed) while it is not due."""
        r = self.requests[order_id]
        require(r.status == PENDING, "router: order not pending")
        if not self.due(r):
            return None
        if self.vault.now > r.deadline:
            return self._finish(r, Outcome(False, "router: expired"))
        delta = r.size_delta
        if r.kind == KIND_CLOSE:
            size = self.vault.position(r.owner, r.sub, r.market).size
            if size == 0 or (size > 0) != (delta > 0):
                return self._finish(r, Outcome(False, "router: position closed or flipped"))
            delta = -size
        try:
            result = self._at_rounds(r, delta)
        except ModelRevert as exc:
            return self._finish(r, Outcome(False, exc.reason))
        return self._finish(r, Outcome(True, result=result, size_delta=delta if r.kind < KIND_ADD else 0))

    def cancel(self, order_id: int, by_owner: bool) -> Outcome:
        r = self.requests[order_id]
        require(r.status == PENDING, "router: order not pending")
        if self.vault.now > r.deadline:
            return self._finish(r, Outcome(False, "router: expired"))
        require(by_owner, "router: not the owner")
        require(self.vault.now < r.settle_after, "router: order is live")
        return self._finish(r, Outcome(False, "router: cancelled by owner"))

    def _at_rounds(self, r: Request, delta: int) -> object:
        """The vault's fill with every market priced at its first round at or after the
        request's settlement time (as MarginVault reads prices while the router settles)."""
        v = self.vault
        latest = dict(v.prices)
        try:
            for m in range(len(v.markets)):
                found = self.round_at(m, r.settle_after)
                if found is not None:
                    v.prices[m] = found[1]
                elif r.kind >= KIND_ADD or v.position(r.owner, r.sub, m).size != 0:
                    raise ModelRevert("oracle: no round yet")
            if r.kind >= KIND_ADD:
                if r.kind == KIND_ADD:
                    return v.add_liquidity(r.owner, r.amount)
                return v.remove_liquidity(r.owner, r.amount)
            return v.modify_position(r.owner, r.sub, r.market, delta, r.acceptable_price)
        finally:
            v.prices.update(latest)

    def _finish(self, r: Request, outcome: Outcome) -> Outcome:
        r.status = SETTLED if outcome.filled else CANCELLED
        return outcome
