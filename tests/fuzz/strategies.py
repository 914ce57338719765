"""Hypothesis strategies for the exchange state machine (tests/fuzz/test_exchange_machine.py),
and the action types the sequence tests share.

Every strategy draws an *intent* in bounded, valid ranges; the machine turns it into exact
amounts from the reference model's current state (a share of what is withdrawable, a share of
the free margin, a share of the position), so the chain only ever sees inputs the model
accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

TRADERS = 3  # trader, trader2, attacker
SUBS = (0, 1, 2)
MARKETS = (0, 1)
MAX_JUMP_BPS = 2_500  # the oracle's max_price_jump (25%) in basis points
TRADE_KINDS = ("open", "increase")  # reduce / flip / close pick an open position (own rules)


@dataclass(frozen=True)
class Account:
    who: int
    sub: int


@dataclass(frozen=True)
class TradeIntent:
    account: Account
    market: int
    kind: str  # one of TRADE_KINDS
    share: int  # per-mille of the room (free margin for risk, position for reductions)


@dataclass(frozen=True)
class Transfer:
    who: int
    from_sub: int
    to_sub: int
    share: int  # per-mille of what is withdrawable


accounts = st.builds(Account, st.integers(0, TRADERS - 1), st.sampled_from(SUBS))
shares = st.integers(1, 1_000)  # per-mille


@st.composite
def trade_intents(draw: st.DrawFn) -> TradeIntent:
    kind = draw(st.sampled_from(TRADE_KINDS))
    # risk-taking trades are skewed towards high leverage so that liquidations happen
    share = draw(st.one_of(shares, st.integers(800, 1_000))) if kind in ("open", "increase", "flip") else draw(shares)
    return TradeIntent(draw(accounts), draw(st.sampled_from(MARKETS)), kind, share)


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    from_sub, to_sub = draw(st.lists(st.sampled_from(SUBS), min_size=2, max_size=2, unique=True))
    return Transfer(draw(st.integers(0, TRADERS - 1)), from_sub, to_sub, draw(shares))


deposit_usd = st.one_of(st.integers(1, 500), st.integers(500, 20_000))
small_drift_bps = st.integers(-100, 100).filter(bool)
large_jump_bps = st.one_of(st.integers(-MAX_JUMP_BPS, -500), st.integers(500, MAX_JUMP_BPS))
wait_seconds = st.one_of(st.integers(1, 600), st.integers(600, 3_600), st.integers(3_600, 3 * 86_400))
lp_usd = st.integers(1, 200_000)
donation_usd = st.one_of(st.integers(1, 1_000), st.integers(1_000, 500_000))
# a crash: 3-6 oracle updates in one direction, each within the jump limit, seconds apart
crash_legs = st.lists(st.tuples(st.integers(300, MAX_JUMP_BPS - 100), st.integers(1, 120)), min_size=3, max_size=6)
too_large_jump_bps = st.integers(MAX_JUMP_BPS + 1, 9_000)  # past the oracle's jump limit
extra_tokens = st.one_of(st.integers(1, 10), st.integers(10, 10**12))  # beyond what is allowed, token units


# ---- actions shared by the sequence tests (test_model_vs_contract, test_funding_zero_sum)


@dataclass(frozen=True)
class Move:
    market: int
    bps: int  # price change, basis points (within the oracle's jump limit)


@dataclass(frozen=True)
class Wait:
    seconds: int


@dataclass(frozen=True)
class Poke:
    market: int
