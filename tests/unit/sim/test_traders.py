"""Trader behaviours (no chain): the population's mix and each style's decisions."""

from __future__ import annotations

from collections import Counter

from perpdex.conditional import LIMIT, STOP_LOSS, TAKE_PROFIT
from perpdex.model import WAD, Health
from perpdex.sim.traders import (
    LIMIT_EXPIRY, AccountState, Close, Conditional, Deposit, Trade, Trader, decide, leverage_of, population,
)

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


def trader(style: str, legs: tuple[tuple[int, int], ...] = ((0, 1),), leverage: float = 10, opened: bool = True,
           **orders: bool) -> Trader:
    return Trader(0, "owner", 0, style, legs, leverage, 1_000, act_every=5, opened=opened, **orders)  # type: ignore[arg-type]


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


def test_population__some_stop_loss_traders_take_profit_and_enter_with_limits():
    a = population([f"o{i}" for i in range(8)], 50, seed=7, max_leverage=20)
    stops = [t for t in a if t.style == "stop_loss"]
    assert stops[0].take_profit and next(t for t in stops if not t.cross).limit_entry  # the first ones
    assert any(not t.take_profit for t in stops) and any(not t.limit_entry for t in stops)
    assert not any(t.take_profit or t.limit_entry for t in a if t.style != "stop_loss")
    assert not any(t.limit_entry and t.cross for t in a)  # a limit entry opens one leg


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


def test_stop_loss__once_open__a_stop_loss_at_half_the_way_to_a_wipe_out():
    t = trader("stop_loss", leverage=10)  # stop 5% against the entry
    assert decide(t, state(900, {0: 3 * WAD}, eth=int(ETH * 0.96))) == [Conditional(0, STOP_LOSS, 2_850 * WAD)]
    short = trader("stop_loss", legs=((0, -1),), leverage=10)
    assert decide(short, state(900, {0: -3 * WAD})) == [Conditional(0, STOP_LOSS, 3_150 * WAD)]
    t.protected = True
    assert decide(t, state(800, {0: 3 * WAD}, eth=int(ETH * 0.9))) == []  # the order does the rest


def test_stop_loss__take_profit_user__pairs_it_oco_as_far_in_its_favour():
    t = trader("stop_loss", leverage=4, take_profit=True)  # stop 12.5% against, take-profit 25% for
    assert decide(t, state(1_000, {0: WAD})) == [
        Conditional(0, STOP_LOSS, 2_625 * WAD), Conditional(0, TAKE_PROFIT, 3_750 * WAD, oco=True)]
    short = trader("stop_loss", legs=((0, -1),), leverage=4, take_profit=True)
    assert decide(short, state(1_000, {0: -WAD})) == [
        Conditional(0, STOP_LOSS, 3_375 * WAD), Conditional(0, TAKE_PROFIT, 2_250 * WAD, oco=True)]


def test_stop_loss__price_already_past_a_level__market_close_or_no_take_profit():
    t = trader("stop_loss", leverage=10, take_profit=True)
    assert decide(t, state(800, {0: 3 * WAD}, eth=2_850 * WAD)) == [Close(0)]  # at the stop: the router would refuse it
    past_target = decide(t, state(1_300, {0: 3 * WAD}, eth=3_300 * WAD))
    assert past_target == [Conditional(0, STOP_LOSS, 2_850 * WAD)]


def test_stop_loss__cross__a_stop_per_open_leg():
    t = trader("stop_loss", legs=((0, 1), (1, 1)), leverage=5)
    orders = decide(t, state(2_000, {0: WAD, 1: WAD // 100}))
    assert orders == [Conditional(0, STOP_LOSS, 2_700 * WAD), Conditional(1, STOP_LOSS, 54_000 * WAD)]
    assert decide(t, state(2_000, {0: WAD, 1: 0})) == [Conditional(0, STOP_LOSS, 2_700 * WAD)]


def test_limit_entry__below_the_price__then_waits__then_market_after_it_expired():
    t = trader("stop_loss", leverage=10, opened=False, limit_entry=True)
    (order,) = decide(t, state(1_000, {}))
    assert isinstance(order, Conditional) and order.kind == LIMIT and order.expires_in == LIMIT_EXPIRY
    assert order.trigger == 2_985 * WAD  # 0.5% below 3,000
    (market,) = decide(trader("stop_loss", leverage=10, opened=False), state(1_000, {}))
    assert order.size == market.size_delta > 0  # type: ignore[union-attr]  # the market open's size
    t.limits_placed, t.entries_live = True, 1
    assert decide(t, state(1_000, {})) == []  # waiting for its price
    t.entries_live = 0  # expired unfilled
    assert decide(t, state(1_000, {})) == [market]
    short = trader("stop_loss", legs=((0, -1),), leverage=10, opened=False, limit_entry=True)
    (sell,) = decide(short, state(1_000, {}))
    assert sell.trigger == 3_015 * WAD and sell.size < 0  # type: ignore[union-attr]


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
