"""Property tests: the contract and the reference model, driven with the same random
sequences (trades, deposits, withdrawals, margin transfers, price moves, time, pokes), agree
exactly on fills, fees, entry prices, realized PnL, margins, collateral, open interest, funding
(rate, index, predicted rate, accrued and settled funding) and pool value, and refuse the same
actions for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import ape
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from perpdex import model
from perpdex.model import WAD, ModelRevert
from perpdex.sdk import MAX_UINT256

from strategies import Move, Poke, Wait  # tests/fuzz is on sys.path (prepend import mode)

TOKEN = 10**6
SUBS = (0, 1)
MARKETS = (0, 1)
STEP_SECONDS = 13  # every action but Wait lands in a new block this much later

# What the examples did, printed at the end of the module (pytest -s).
OBSERVED: dict[str, Any] = {"examples": 0, "steps": 0, "checks": 0, "applied": {}, "succeeded": {}, "reverts": {}}


@dataclass(frozen=True)
class Deposit:
    who: int
    sub: int
    usd: int


@dataclass(frozen=True)
class Trade:
    who: int
    sub: int
    market: int
    size_milli: int  # thousandths of a base unit; scaled per market


@dataclass(frozen=True)
class Withdraw:
    who: int
    sub: int
    share: float  # of withdrawable; > 1 asks for more than allowed


@dataclass(frozen=True)
class Transfer:
    who: int
    from_sub: int
    share: float  # of withdrawable


actions = st.one_of(
    st.builds(Deposit, st.integers(0, 1), st.sampled_from(SUBS), st.integers(1, 20_000)),
    st.builds(Trade, st.integers(0, 1), st.sampled_from(SUBS), st.integers(0, 1), st.integers(-40_000, 40_000).filter(bool)),
    st.builds(Withdraw, st.integers(0, 1), st.sampled_from(SUBS), st.sampled_from([0.25, 1.0, 1.01])),
    st.builds(Move, st.integers(0, 1), st.integers(-1_500, 1_500)),
    st.builds(Wait, st.integers(1, 3 * 86_400)),
    st.builds(Poke, st.integers(0, 1)),
    st.builds(Transfer, st.integers(0, 1), st.sampled_from(SUBS), st.sampled_from([0.5, 1.0, 1.01])),
)


def _size(action: Trade) -> int:
    # BTC sizes 20x smaller so both markets see similar notionals
    return action.size_milli * WAD // 1000 // (20 if action.market == 1 else 1)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "revert_message", None) or exc)


class Lockstep:
    """Applies each action to the chain and the model; compares them afterwards.

    Time: the test clock is stopped (conftest `deterministic_time`) and moves only when the
    harness mines a block at a later timestamp (`_advance`). On ape-titanoboa a bare
    `chain.pending_timestamp = t` applies to the next transaction only (the one after it falls
    back to the stopped clock), so every move of time is followed by `chain.mine()`; from then
    on every transaction and every view runs at that block's timestamp, which is `m.now`.
    """

    def __init__(self, x: Any, traders: list[Any], chain: Any, model_of: Any):
        self.x, self.traders, self.chain = x, traders, chain
        self.names = [str(t) for t in traders]
        self.reverts: dict[str, int] = {}
        self.succeeded: dict[str, int] = {}  # trades, withdrawals, transfers that went through
        # A chain snapshot restored by an earlier example does not rewind the provider's clock,
        # and the session's prices were fed long before it: mine a block at the current time
        # and feed every price again before reading the chain into the model.
        self._advance(STEP_SECONDS)
        self._refresh_prices({m: self.x.price(m) for m in MARKETS})
        self.m = model_of()
        self.m.now = self.now
        assert self.m.prices == {m: self.x.price(m) for m in MARKETS}

    def _advance(self, seconds: int) -> None:
        """Mine a block `seconds` later; every later transaction and view sees its time."""
        self.chain.pending_timestamp = int(self.chain.blocks.head.timestamp) + seconds
        self.chain.mine()
        self.now = int(self.chain.blocks.head.timestamp)
        assert int(self.chain.pending_timestamp) == self.now  # the clock stays put
        if hasattr(self, "m"):
            self.m.now = self.now

    def _refresh_prices(self, prices: dict[int, int]) -> None:
        """Feed the same prices again, stamped now, so strict reads do not see them stale."""
        self.x.d.oracle.set_prices(list(prices), [prices[m] for m in prices], sender=self.x.d.deployer)

    def apply(self, action: object) -> None:
        if isinstance(action, Wait):
            self._advance(action.seconds)
            self._refresh_prices(self.m.prices)  # the oracle's max price age is an hour
            return
        self._advance(STEP_SECONDS)
        self.kind = type(action).__name__
        if isinstance(action, Move):
            price = self.m.prices[action.market] * (10_000 + action.bps) // 10_000
            self.x.set_price(action.market, price)
            self.m.prices[action.market] = price
        elif isinstance(action, Deposit):
            self.x.deposit(self.traders[action.who], action.usd * TOKEN, sub=action.sub)
            self.m.deposit(self.names[action.who], action.sub, action.usd * TOKEN)
        elif isinstance(action, Trade):
            self._both(
                lambda: self.x.vault.modify_position(
                    action.sub, action.market, _size(action), MAX_UINT256 if action.size_milli > 0 else 0,
                    sender=self.traders[action.who],
                ),
                lambda: self.m.modify_position(
                    self.names[action.who], action.sub, action.market, _size(action),
                    MAX_UINT256 if action.size_milli > 0 else 0,
                ),
            )
        elif isinstance(action, Withdraw):
            amount = int(self.m.withdrawable(self.names[action.who], action.sub) * action.share) or 1
            self._both(
                lambda: self.x.vault.withdraw(action.sub, amount, sender=self.traders[action.who]),
                lambda: self.m.withdraw(self.names[action.who], action.sub, amount),
            )
        elif isinstance(action, Transfer):
            to_sub = 1 - action.from_sub
            amount = int(self.m.withdrawable(self.names[action.who], action.from_sub) * action.share) or 1
            self._both(
                lambda: self.x.vault.transfer_margin(action.from_sub, to_sub, amount, sender=self.traders[action.who]),
                lambda: self.m.transfer_margin(self.names[action.who], action.from_sub, to_sub, amount),
            )
        elif isinstance(action, Poke):
            self.x.vault.poke(action.market, sender=self.traders[0])
            self.m.poke(action.market)

    def _both(self, on_chain: Any, on_model: Any) -> None:
        try:
            on_model()
            model_reason = None
        except ModelRevert as exc:
            model_reason = exc.reason
        if model_reason is None:
            on_chain()
            kind = self.kind
            self.succeeded[kind] = self.succeeded.get(kind, 0) + 1
        else:
            self.reverts[model_reason] = self.reverts.get(model_reason, 0) + 1
            with ape.reverts(model_reason):
                on_chain()

    def check(self) -> None:
        vault = self.x.vault
        assert int(self.chain.blocks.head.timestamp) == int(self.chain.pending_timestamp) == self.m.now
        for market in MARKETS:  # the strict read: the model's price, and not stale
            assert int(self.x.d.oracle.price(market)) == self.m.prices[market]
        for name, trader in zip(self.names, self.traders):
            for sub in SUBS:
                assert self.x.health(trader, sub) == self.m.health(name, sub)
                assert vault.withdrawable(trader, sub) == self.m.withdrawable(name, sub)
                for market in (0, 1):
                    assert self.x.position(trader, sub, market) == self.m.position(name, sub, market)
                    assert self.x.d.lens.accrued_funding(trader, sub, market) == self.m.accrued_funding(name, sub, market)
        for market in (0, 1):
            on_chain, mine = vault.market_state(market), self.m.markets[market]
            assert (on_chain.oi_long, on_chain.oi_short) == (mine.oi_long, mine.oi_short)
            assert (on_chain.entry_sum, on_chain.funding_sum) == (mine.entry_sum, mine.funding_sum)
            assert tuple(vault.funding(market)) == self.m.funding_now(market)
            assert self.x.d.lens.predicted_funding_rate(market, 8) == self.m.predicted_rate(market, 8)
        assert vault.pool_balance() == self.m.pool_balance
        assert vault.pool_value() == self.m.pool_value()


@pytest.fixture(scope="module")
def report_counts():
    yield
    o = OBSERVED
    reverts = ", ".join(f"{n} x {reason!r}" for reason, n in sorted(o["reverts"].items(), key=lambda kv: -kv[1]))
    succeeded = ", ".join(f"{n} {kind}" for kind, n in sorted(o["succeeded"].items()))
    applied = ", ".join(f"{n} {kind}" for kind, n in sorted(o["applied"].items()))
    print(f"\nmodel vs contract: {o['examples']} examples, {o['steps']} steps ({applied}), {o['checks']} checks; "
          f"went through: {succeeded}; "
          f"reverts (same reason on both sides): {reverts or 'none'}")


@pytest.mark.parametrize("_", [0])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # each trader's sub-account 0 starts funded (0: empty), so that trades are not mostly refused
    opening=st.lists(st.sampled_from([0, 2_000, 20_000]), min_size=2, max_size=2),
    steps=st.lists(actions, min_size=1, max_size=12),
)
# Once failed with "oracle: stale price" on chain vs "below initial margin" in the model: the
# harness moved time without feeding the session's prices again (not a contract bug).
@example(opening=[0, 0], steps=[Trade(0, 0, 0, -1)])
@example(opening=[20_000, 0], steps=[Trade(0, 0, 0, 10_000), Wait(3 * 86_400), Trade(0, 0, 0, -10_000)])
def test_random_sequences__contract_equals_model(
    _, opening, steps, x, trader, trader2, chain, model_of, report_counts
):
    # Not chain.isolate(): in Ape 0.8 it swallows every Exception raised inside it, so no
    # assertion or unexpected revert could ever fail the test.
    snapshot = chain.snapshot()
    try:
        lock = Lockstep(x, [trader, trader2], chain, model_of)
        lock.check()
        for who, usd in enumerate(opening):
            if usd:
                lock.apply(Deposit(who, 0, usd))
                lock.check()
        for action in steps:
            lock.apply(action)
            lock.check()
            OBSERVED["checks"] += 1
    finally:
        chain.restore(snapshot)
    OBSERVED["examples"] += 1
    OBSERVED["steps"] += len(steps)
    for kind, n in lock.succeeded.items():
        OBSERVED["succeeded"][kind] = OBSERVED["succeeded"].get(kind, 0) + n
    for action in steps:
        kind = type(action).__name__
        OBSERVED["applied"][kind] = OBSERVED["applied"].get(kind, 0) + 1
    for reason, n in lock.reverts.items():
        OBSERVED["reverts"][reason] = OBSERVED["reverts"].get(reason, 0) + n


@settings(max_examples=60, deadline=None)
@given(
    price=st.integers(10**15, 10**26),
    skew=st.integers(-(10**24), 10**24),
    delta=st.integers(-(10**23), 10**23).filter(bool),
)
def test_fill_price__model_rounds_against_trader(price, skew, delta):
    scale = 10**25
    fill = model.fill_price(price, skew, delta, scale)
    exact = Fraction(price * (2 * scale + 2 * skew + delta), 2 * scale)
    assert (fill >= exact) if delta > 0 else (fill <= exact)
    assert abs(fill - exact) < 1
