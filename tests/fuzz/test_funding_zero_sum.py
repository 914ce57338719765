"""Property test: funding is zero-sum (SPEC 6) over random sequences of trades and time.

Four traders trade both markets on both sides while time jumps (minutes to days), prices move
(within 15% of the start), markets are poked, and traders withdraw or move margin (which
settles their funding). Checked after every step and at the end:

1. Unsettled funding: per market, the sum of `accrued_funding` over all open positions plus
   the pool's unsettled claim, floor((skew * index - funding_sum) / WAD) (the funding term of
   `_pool_value`, cross-checked against `pool_value()` and against the positions' snapshots),
   lies in [-open positions, 0]: one floor per party, never in the traders' favour.
2. Settled funding: every settlement (`PositionModified.funding` on a trade, `FundingSettled`
   on a withdrawal or margin transfer) equals floor(-size * (index - snapshot) / WAD) of the
   exact amount the test tracks with `Fraction`s; after every position is closed, the traders'
   settled funding plus the pool's funding gain (pool_balance movements minus fees plus
   realized PnL) is exactly 0, and the traders got at most the exact amount, less by under
   one wei per settlement.

The worst bounds seen are kept in OBSERVED and printed at the end of the module (pytest -s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpdex.model import DAY, WAD
from perpdex.sdk import MAX_UINT256

from strategies import Move, Poke, Wait  # tests/fuzz is on sys.path (prepend import mode)

TOKEN = 10**6
COLLATERAL_USD = 300_000
# Trades are clamped (never expected to revert): a position stays within POSITION_CAP and a
# market's |skew| within SKEW_CAP (5 BTC at +15% = 100 ETH at +15% = 345,000 USD) and within
# POOL_SHARE of what the market's net rule allows (max_pool_exposure, ETH 0.1 and BTC 0.5 by
# default, of the pool's cash, 1,000,000 USD at the start) at the current price. Each
# trader's 300,000 USD covers the initial margin of two full positions (about 17,000 USD)
# after the worst price moves and funding.
POSITION_CAP = {0: 50 * WAD, 1: 5 * WAD // 2}
SKEW_CAP = {0: 100 * WAD, 1: 5 * WAD}
POOL_SHARE = 80  # percent of the net rule's bound: fees and funding move the cash between steps
PRICE_BAND_BPS = 1_500  # prices stay within 15% of where they started
TIME_BUDGET = 14 * DAY  # total waiting per sequence: bounds how far the funding rate drifts
STEP_SECONDS = 13  # every action lands in a new block this much later

# The worst figures seen over all examples (printed by the module fixture below).
OBSERVED: dict[str, Any] = {
    "examples": 0,
    "steps": 0,
    "trades": 0,
    "skipped_trades": 0,
    "withdraw_settlements": 0,
    "settlements": 0,
    "checks": 0,
    "worst_unsettled_sum_wei": 0,  # most negative traders + pool over a check
    "open_positions_at_worst": 0,
    "max_open_positions": 0,
    "max_settlement_loss_wei": Fraction(0),  # exact - settled, one settlement
    "max_total_gap_wei": Fraction(0),  # exact - settled, all settlements of one example
    "settlements_at_max_gap": 0,
    "max_abs_settlement_wei": 0,
}


@dataclass(frozen=True)
class Trade:
    who: int
    market: int
    size_milli: int  # thousandths of a base unit (BTC: divided by 20); clamped to the caps
    dust: int  # extra wei, so sizes are not round numbers


@dataclass(frozen=True)
class Close:
    who: int
    market: int


@dataclass(frozen=True)
class Withdraw:
    who: int
    usd: int  # capped at what is withdrawable


@dataclass(frozen=True)
class Transfer:
    who: int
    usd: int  # sub-account 0 -> 1, capped at what is withdrawable


WHO = st.integers(0, 3)
MARKET = st.integers(0, 1)
trades = st.builds(Trade, WHO, MARKET, st.integers(-100_000, 100_000).filter(bool), st.integers(0, 10**6))
waits = st.builds(
    Wait, st.one_of(st.integers(60, 3_600), st.integers(3_600, DAY), st.integers(DAY, 4 * DAY))
)
actions = st.one_of(
    trades,
    trades,  # twice: trades are what moves the skew
    st.builds(Close, WHO, MARKET),
    st.builds(Withdraw, WHO, st.integers(1, 2_000)),
    st.builds(Transfer, WHO, st.integers(1, 2_000)),
    st.builds(Move, MARKET, st.integers(-PRICE_BAND_BPS, PRICE_BAND_BPS)),
    waits,
    waits,
    st.builds(Poke, MARKET),
)


class ZeroSum:
    """Drives the chain and keeps, per position, the size and funding snapshot it must have."""

    def __init__(self, x: Any, traders: list[Any], chain: Any):
        self.x, self.vault, self.traders, self.chain = x, x.vault, traders, chain
        self.now = max(int(chain.pending_timestamp), int(chain.blocks.head.timestamp) + 1)
        self.waited = 0
        self.token_scale = x.token_scale
        self.base_prices = {m: x.price(m) for m in (0, 1)}
        self.prices = dict(self.base_prices)  # what the oracle holds (only this test feeds it)
        self.max_pool_exposure = {m: x.params(m).max_pool_exposure for m in (0, 1)}  # WAD
        self.pos: dict[tuple[int, int], tuple[int, int]] = {}  # (who, market) -> (size, snapshot)
        self.settled = 0  # trader funding settled, wei
        self.exact = Fraction(0)  # the same settlements, exactly
        self.settlements = 0
        self.fees = 0
        self.pnl = 0
        self.deposited = 0  # WAD, into sub-accounts 0 and 1
        self.withdrawn = 0  # WAD, out of them
        self._advance(0)
        self._refresh_prices()
        self.pool_start = int(self.vault.pool_balance())
        for t in traders:
            x.deposit(t, COLLATERAL_USD * TOKEN)
            self.deposited += COLLATERAL_USD * TOKEN * self.token_scale

    # ---------------------------------------------------------------- time and prices

    def _advance(self, seconds: int) -> None:
        """Move the (stopped) clock forward for good: every later call sees the new time."""
        self.now += seconds
        self.chain.pending_timestamp = self.now
        self.chain.mine()

    def _refresh_prices(self) -> None:
        self.x.d.oracle.set_prices([0, 1], [self.prices[0], self.prices[1]], sender=self.x.d.deployer)

    # ---------------------------------------------------------------- actions

    def apply(self, action: object) -> None:
        if isinstance(action, Wait):
            seconds = min(action.seconds, TIME_BUDGET - self.waited) or 60
            self.waited += seconds
            self._advance(seconds)
            self._refresh_prices()  # trading needs prices younger than an hour
            return
        self._advance(STEP_SECONDS)
        if isinstance(action, Trade):
            self._trade(action.who, action.market, self._size(action))
        elif isinstance(action, Close):
            size = self.pos.get((action.who, action.market), (0, 0))[0]
            if size:
                self._trade(action.who, action.market, -size, close=True)
        elif isinstance(action, (Withdraw, Transfer)):
            self._settling_move(action)
        elif isinstance(action, Move):
            base = self.base_prices[action.market]
            price = self.prices[action.market] * (10_000 + action.bps) // 10_000
            low, high = base * (10_000 - PRICE_BAND_BPS) // 10_000, base * (10_000 + PRICE_BAND_BPS) // 10_000
            self.prices[action.market] = min(max(price, low), high)
            self.x.set_price(action.market, self.prices[action.market])
        elif isinstance(action, Poke):
            self.vault.poke(action.market, sender=self.traders[0])

    def _size(self, action: Trade) -> int:
        """The size delta, clamped so the position stays within its cap and the market's skew
        within the pool's backing (narrowing the strategy instead of catching reverts)."""
        m = action.market
        raw = action.size_milli * WAD // 1000 // (20 if m == 1 else 1)
        raw += action.dust if raw > 0 else -action.dust
        current = self.pos.get((action.who, m), (0, 0))[0]
        others = self._skew(m) - current
        share = self.max_pool_exposure[m] * POOL_SHARE // 100
        backed = int(self.vault.pool_balance()) * share // self.prices[m]
        skew_cap = min(SKEW_CAP[m], backed)
        low = max(-POSITION_CAP[m], -skew_cap - others)
        high = min(POSITION_CAP[m], skew_cap - others)
        if low > high:  # the pool's cash shrank below the skew: leave the market alone
            return 0
        return min(max(current + raw, low), high) - current

    def _skew(self, m: int) -> int:
        return sum(size for (_, mm), (size, _) in self.pos.items() if mm == m)

    def _trade(self, who: int, m: int, delta: int, close: bool = False) -> None:
        if delta == 0:
            OBSERVED["skipped_trades"] += 1
            return
        trader, vault = self.traders[who], self.vault
        pool_before = int(vault.pool_balance())
        bound = MAX_UINT256 if delta > 0 else 0
        if close:
            receipt = vault.close_position(0, m, bound, sender=trader)
        else:
            receipt = vault.modify_position(0, m, delta, bound, sender=trader)
        OBSERVED["trades"] += 1
        assert not list(receipt.decode_logs(vault.FundingSettled))  # a trade settles via PositionModified
        [event] = receipt.decode_logs(vault.PositionModified)
        index = int(vault.market_state(m).funding_index)  # accrued by this trade
        funding, fee, pnl = int(event.funding), int(event.fee), int(event.realized_pnl)
        self._settle(who, m, funding, index)
        self.fees += fee
        self.pnl += pnl
        # the pool takes exactly the other side of funding and PnL, and gets the fee
        assert int(vault.pool_balance()) - pool_before == fee - pnl - funding
        size = self.pos.get((who, m), (0, 0))[0] + delta
        on_chain = vault.position(trader, 0, m)
        assert int(event.size) == int(on_chain.size) == size
        if size == 0:
            self.pos.pop((who, m), None)
        else:
            assert int(on_chain.funding_index) == index
            self.pos[(who, m)] = (size, index)

    def _settling_move(self, action: Withdraw | Transfer) -> None:
        trader, vault = self.traders[action.who], self.vault
        amount = min(action.usd * TOKEN, int(vault.withdrawable(trader, 0)))
        if amount == 0:
            return
        pool_before = int(vault.pool_balance())
        if isinstance(action, Withdraw):
            receipt = vault.withdraw(0, amount, sender=trader)
            self.withdrawn += amount * self.token_scale
        else:
            receipt = vault.transfer_margin(0, 1, amount, sender=trader)
        events = {int(e.market): e for e in receipt.decode_logs(vault.FundingSettled)}
        open_markets = sorted(m for (w, m) in self.pos if w == action.who)
        assert set(events) <= set(open_markets)
        total = 0
        for m in open_markets:
            index = int(vault.market_state(m).funding_index)  # accrued by this settlement
            size, snapshot = self.pos[(action.who, m)]
            if m in events:
                e = events[m]
                assert (e.owner, int(e.sub), int(e.funding_index)) == (trader.address, 0, index)
                self._settle(action.who, m, int(e.amount), index)
                total += int(e.amount)
                OBSERVED["withdraw_settlements"] += 1
            else:
                assert index == snapshot  # nothing accrued since the last settlement
            assert int(vault.position(trader, 0, m).funding_index) == index
            self.pos[(action.who, m)] = (size, index)
        assert int(vault.pool_balance()) - pool_before == -total

    def _settle(self, who: int, m: int, amount: int, index: int) -> None:
        """One settlement of funding into collateral: floor of the exact amount."""
        size, snapshot = self.pos.get((who, m), (0, 0))
        exact = Fraction(-size * (index - snapshot), WAD)
        assert amount == math.floor(exact), (who, m, size, snapshot, index, amount)
        self.settled += amount
        self.exact += exact
        if size != 0:
            self.settlements += 1
            OBSERVED["settlements"] += 1
            OBSERVED["max_settlement_loss_wei"] = max(OBSERVED["max_settlement_loss_wei"], exact - amount)
            OBSERVED["max_abs_settlement_wei"] = max(OBSERVED["max_abs_settlement_wei"], abs(amount))

    # ---------------------------------------------------------------- the invariant

    def check(self) -> None:
        vault = self.vault
        OBSERVED["checks"] += 1
        pool_balance = int(vault.pool_balance())
        pool_value_terms = 0
        total, open_total = 0, 0
        for m in (0, 1):
            state = vault.market_state(m)
            _, index = (int(v) for v in vault.funding(m))
            skew = int(state.oi_long) - int(state.oi_short)
            positions = [(who, size, snap) for (who, mm), (size, snap) in self.pos.items() if mm == m]
            assert skew == sum(size for _, size, _ in positions)
            # what traders owe the pool, as _pool_value computes it; funding_sum is exact
            owed = skew * index - int(state.funding_sum)
            assert owed == sum(size * (index - snap) for _, size, snap in positions)
            pool_claim = owed // WAD
            traders = 0
            for who, size, snap in positions:
                accrued = int(self.x.d.lens.accrued_funding(self.traders[who], 0, m))
                assert accrued == (-size * (index - snap)) // WAD
                traders += accrued
            # zero sum up to one floor per party, never in the traders' favour
            assert -len(positions) <= traders + pool_claim <= 0, (m, traders, pool_claim, len(positions))
            total += traders + pool_claim
            open_total += len(positions)
            if int(state.oi_long) + int(state.oi_short) != 0:
                trader_pnl = skew * self.prices[m] - int(state.entry_sum)
                pool_value_terms += (owed - trader_pnl) // WAD
            else:
                assert owed == 0 and int(state.entry_sum) == 0
        # the pool's claim is the funding term of pool_value()
        assert int(vault.pool_value()) == pool_balance + pool_value_terms
        assert -open_total <= total <= 0
        if total < OBSERVED["worst_unsettled_sum_wei"] or (
            total == OBSERVED["worst_unsettled_sum_wei"] and open_total < OBSERVED["open_positions_at_worst"]
        ):
            OBSERVED["worst_unsettled_sum_wei"], OBSERVED["open_positions_at_worst"] = total, open_total
        OBSERVED["max_open_positions"] = max(OBSERVED["max_open_positions"], open_total)

    # ---------------------------------------------------------------- the end

    def close_all_and_check(self) -> None:
        for who, m in sorted(self.pos):
            self._advance(STEP_SECONDS)
            self._trade(who, m, -self.pos[(who, m)][0], close=True)
            self.check()
        assert not self.pos
        for m in (0, 1):
            state = self.vault.market_state(m)
            assert (int(state.oi_long), int(state.oi_short), int(state.entry_sum), int(state.funding_sum)) == (0, 0, 0, 0)
        # the pool's funding gain: its cash movements, less fees, plus the PnL it paid
        pool_gain = int(self.vault.pool_balance()) - self.pool_start - self.fees + self.pnl
        assert self.settled + pool_gain == 0
        # the traders got the exact amount floored: at most it, and under 1 wei less per settlement
        gap = self.exact - self.settled
        assert 0 <= gap
        assert gap < self.settlements or (gap == 0 and self.settlements == 0)
        # and the funding went into their collateral
        collateral = sum(int(self.vault.collateral(t, sub)) for t in self.traders for sub in (0, 1))
        assert collateral == self.deposited - self.withdrawn + self.settled + self.pnl - self.fees
        if gap > OBSERVED["max_total_gap_wei"]:
            OBSERVED["max_total_gap_wei"], OBSERVED["settlements_at_max_gap"] = gap, self.settlements


@pytest.fixture(scope="module")
def report_bounds():
    yield
    o = dict(OBSERVED)
    print(
        "\nfunding zero-sum: {examples} examples, {steps} steps, {trades} trades ({skipped_trades} clamped to "
        "nothing), {settlements} settlements ({withdraw_settlements} by withdraw/transfer), {checks} checks; "
        "zero-sum bound observed: unsettled traders + pool >= {worst_unsettled_sum_wei} wei with "
        "{open_positions_at_worst} open positions (bound -open positions; up to {max_open_positions} open), "
        "settled: worst loss per settlement {loss:.6f} wei, worst total gap {gap:.4f} wei over "
        "{settlements_at_max_gap} settlements (bound: < 1 wei each), largest settlement {big:.2f} USD".format(
            **o,
            loss=float(o["max_settlement_loss_wei"]),
            gap=float(o["max_total_gap_wei"]),
            big=o["max_abs_settlement_wei"] / WAD,
        )
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    opening=st.lists(st.tuples(trades, trades), min_size=4, max_size=4),
    steps=st.lists(actions, min_size=8, max_size=20),
    final_wait=st.integers(0, 2 * DAY),
)
def test_funding__zero_sum_over_random_sequences(
    opening, steps, final_wait, x, trader, trader2, liquidator, attacker, chain, report_bounds
):
    # Ape's chain.isolate() swallows every Exception raised inside it (AssertionError
    # included): keep the failure and raise it once the chain is restored.
    failure: BaseException | None = None
    with chain.isolate():
        try:
            run = ZeroSum(x, [trader, trader2, liquidator, attacker], chain)
            run.check()
            # every trader opens in both markets (random side and size), then the random steps
            opens = [Trade(who, m, t.size_milli, t.dust) for who, pair in enumerate(opening) for m, t in enumerate(pair)]
            for action in opens + steps:
                run.apply(action)
                run.check()
            run._advance(final_wait)
            run._refresh_prices()
            run.check()
            run.close_all_and_check()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failure = exc
    if failure is not None:
        raise failure
    OBSERVED["examples"] += 1
    OBSERVED["steps"] += len(steps)
