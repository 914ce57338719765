"""Trader behaviours (no chain): the population's mix and each style's decisions."""

from __future__ import annotations

from collections import Counter

from perpdex.model import WAD, Health
from perpdex.sim.traders import AccountState, Close, Deposit, Trade, Trader, decide, leverage_of, population

ETH = 3_000 * WAD
BTC = 60_000 * WAD


def state(equity_usd: float, sizes: dict[int, int], entries: dict[int, int] | None = None, eth: int = ETH,
          mm_usd: float = 100, volatility: float = 0.01) -> AccountState:
    equity = int(equity_usd * WAD)
    return AccountState(
        health=Health(equity, 0, 0, equity, 0, int(mm_usd * WAD), len(sizes)),
        sizes=sizes, entries=entries or {m: p for m, p in ((0, ETH), (1, BTC)) if m in sizes},
        prices={0: eth, 1: BTC}, max_leverage={0: 20 * WAD, 1: 20 * WAD}, min_position_margin=10 * WAD,
        hourly_volatility=volatility,
    )


def trader(style: str, legs: tuple[tuple[int, int], ...] = ((0, 1),), leverage: float = 10, opened: bool = True) -> Trader:
    return Trader(0, "owner", 0, style, legs, leverage, 1_000, act_every=5, opened=opened)  # type: ignore[arg-type]


def test_population__seeded_mix_of_styles_sides_leverage_and_margin_modes():
    owners = [f"o{i}" for i in range(8)]
    a, b = population(owners, 50, seed=7, max_leverage=20), population(owners, 50, seed=7, max_leverage=20)
    assert [(t.style, t.legs, t.leverage) for t in a] == [(t.style, t.legs, t.leverage) for t in b]
    styles = Counter(t.style for t in a)
    assert set(styles) == {"fixed", "dynamic", "stop_loss", "hedged"}
    assert all(1 <= t.leverage <= 20 for t in a) and max(t.leverage for t in a) >= 15
    assert any(t.cross and t.style != "hedged" for t in a) and any(not t.cross for t in a)
    assert all(t.legs == ((0, 1), (1, -1)) for t in a if t.style == "hedged")
    assert len({t.account for t in a}) == 50  # every trader its own (owner, sub)


def test_population__long_share_sets_the_crowd():
    owners = ["o"]
    shorts = population(owners, 100, seed=1, max_leverage=10, long_share=0.1)
    assert sum(t.is_long(0) or t.is_long(1) for t in shorts if t.style != "hedged") < 25


def test_first_act_opens_at_target_leverage_split_over_the_legs():
    t = trader("fixed", legs=((0, 1), (1, 1)), leverage=10, opened=False)
    orders = decide(t, state(1_000, {}))
    assert [type(o) for o in orders] == [Trade, Trade]
    notional = sum(abs(o.size_delta) * p // WAD for o, p in zip(orders, (ETH, BTC)))  # type: ignore[union-attr]
    assert 0.97 * 9_800 * WAD < notional <= 9_800 * WAD  # 10x on equity less 10 USD per position


def test_opening_stays_within_the_initial_margin():
    t = trader("fixed", leverage=20, opened=False)
    (order,) = decide(t, state(1_000, {}))
    assert abs(order.size_delta) * ETH // WAD <= 990 * 18 * WAD  # type: ignore[union-attr]


def test_fixed__rebalances_only_outside_the_band():
    t = trader("fixed", leverage=10)
    on_target = state(1_000, {0: 3 * WAD})  # 9,000 / 1,000 = 9x: within 25%
    assert decide(t, on_target) == []
    drifted = state(600, {0: 3 * WAD})  # 15x after a loss: reduce
    (order,) = decide(t, drifted)
    assert isinstance(order, Trade) and order.size_delta < 0


def test_stop_loss__closes_at_half_the_way_to_a_wipe_out_then_nothing_before():
    t = trader("stop_loss", leverage=10)  # stop at 5% against
    assert decide(t, state(900, {0: 3 * WAD}, eth=int(ETH * 0.96))) == []
    assert decide(t, state(800, {0: 3 * WAD}, eth=int(ETH * 0.95))) == [Close(0)]
    short = trader("stop_loss", legs=((0, -1),), leverage=10)
    assert decide(short, state(800, {0: -3 * WAD}, eth=int(ETH * 1.05))) == [Close(0)]


def test_dynamic__volatile_and_thin_margin__adds_margin():
    t = trader("dynamic", leverage=10)
    orders = decide(t, state(150, {0: 3 * WAD}, mm_usd=100, volatility=0.1))
    assert orders == [Deposit(250)]


def test_dynamic__volatile_with_margin_to_spare__reduces_size_only():
    t = trader("dynamic", leverage=10)
    s = state(1_000, {0: 3 * WAD}, mm_usd=100, volatility=0.1)  # calmer target: 10 * 0.03 / 0.1 = 3x
    (order,) = decide(t, s)
    assert isinstance(order, Trade) and -3 * WAD < order.size_delta < 0
    assert leverage_of(t, s) == 9.0


def test_liquidated_out__no_orders():
    assert decide(trader("fixed"), state(5, {})) == []
