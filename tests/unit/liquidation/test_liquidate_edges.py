"""Liquidation edge cases (SPEC 7 and 8), chain and reference model in lock step:

- exactly at the maintenance threshold (equity == MM is healthy: liquidatable iff equity < MM)
  and one wei of oracle price worse;
- exactly at the full-liquidation threshold (equity == MM / 2 is still partial) and one wei worse;
- the dust rule: a partial whose remainder would hold less than DUST_MARGIN of initial margin
  closes everything, one wei of price better stays partial;
- dust positions (1 wei of size) never block a liquidation, and an account made only of dust
  positions that becomes liquidatable (through min_position_margin) is closed fully;
- a keeper batch mixing healthy, liquidatable, already-liquidated and dust-only accounts.

The thresholds are found by bisection over the oracle price, 1 wei at a time, in the model;
the chain must then agree at both sides of each. After every liquidation the books are checked:
the vault's tokens equal the ledger (collateral + pool cash + insurance fund) exactly, each
market's open interest equals the sum of the positions, an empty account holds no negative
collateral (bad debt zeroes it), and a liquidated account is healthy or empty.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import ape
import pytest

# The Mirror (chain + model in lock step) and the fixtures of the main liquidation tests.
from test_liquidate import Mirror, event, keeper, mirror  # noqa: F401

from perpdex import model
from perpdex.model import DUST_MARGIN, FULL_LIQUIDATION_RATIO, WAD, MarketParams
from perpdex.sdk import MAX_UINT256

ETH, BTC = 0, 1
MARKETS = (ETH, BTC)
# Partial liquidations leave equity >= IM of what remains up to rounding: the fee of each
# market is rounded up and the closed size too (test_liquidate allows 2 wei for one market).
IM_ROUNDING = 2 * len(MARKETS)


# ---------------------------------------------------------------- helpers


def trade(mirror: Mirror, who: Any, market: int, size: int, sub: int = 0) -> None:
    """A market order on both sides, without a new deposit (Mirror.open always deposits)."""
    bound = MAX_UINT256 if size > 0 else 0
    mirror.x.vault.modify_position(sub, market, size, bound, sender=who)
    mirror.m.modify_position(str(who), sub, market, size, bound)


def set_min_position_margin(mirror: Mirror, market: int, usd: int) -> None:
    params = MarketParams.from_chain(mirror.x.vault.market_params(market))
    new = MarketParams(**{**params.__dict__, "min_position_margin": usd * WAD})
    mirror.x.d.govern(mirror.x.vault, "set_market_params", market, new.as_tuple())
    mirror.m.markets[market].params = new


def model_health(mirror: Mirror, who: Any, sub: int = 0) -> model.Health:
    return mirror.m.health(str(who), sub)


def preview(mirror: Mirror, who: Any, sub: int = 0) -> model.LiquidationResult | None:
    """What the model's liquidation would do now, without doing it."""
    return copy.deepcopy(mirror.m).liquidate(str(who), sub, "preview")


def raw_fraction(mirror: Mirror, who: Any, sub: int = 0) -> tuple[int, int]:
    """(f, I): the share the partial rule asks for before the full/dust overrides, and the
    notional part of the initial margin it applies to (model.liquidation_fraction's inputs)."""
    m, name = mirror.m, str(who)
    h = m.health(name, sub)
    markets = m.open_markets(name, sub)
    mins = sum(m.markets[k].params.min_position_margin for k in markets)
    fee_full = sum(
        model.ceil_div(model.notional(m.positions[(name, sub, k)].size, m.prices[k])
                       * m.markets[k].params.liquidation_fee_ratio, WAD)
        for k in markets
    )
    im_notional = h.initial_margin - mins
    return model.ceil_div((h.initial_margin - h.equity) * WAD, im_notional - fee_full), im_notional


def edge(mirror: Mirror, market: int, good: int, bad: int, holds: Callable[[], bool]) -> tuple[int, int]:
    """Bisect the model's oracle price of `market` between `good` (where `holds()` is true)
    and `bad` (false) down to adjacent prices: returns (last good, first bad), 1 wei apart."""
    m = mirror.m
    saved = m.prices[market]

    def at(price: int) -> bool:
        m.prices[market] = price
        return holds()

    assert at(good) and not at(bad)
    while abs(good - bad) > 1:
        mid = (good + bad) // 2
        if at(mid):
            good = mid
        else:
            bad = mid
    m.prices[market] = saved
    return good, bad


def check_books(mirror: Mirror, usd: Any, accounts: list[tuple[Any, int]], keepers: tuple[Any, ...] = ()) -> None:
    """Chain == model for every account; tokens == ledger; OI == sum of positions; no empty
    account holds negative collateral; each keeper holds exactly the rewards the model paid."""
    x, m, vault = mirror.x, mirror.m, mirror.x.vault
    collateral_sum = 0
    for who, sub in accounts:
        mirror.check(who, sub)
        collateral = int(vault.collateral(who, sub))
        assert collateral == m.collateral.get((str(who), sub), 0)
        assert x.open_markets(who, sub) == m.open_markets(str(who), sub)
        if not m.open_markets(str(who), sub):
            assert collateral >= 0  # a shortfall is bad debt, never hidden negative collateral
        collateral_sum += collateral
    # SPEC 11.1: every token the vault holds is somebody's, to the wei (nothing donated here)
    ledger = collateral_sum + int(vault.pool_balance()) + int(vault.insurance_fund())
    assert int(usd.balanceOf(vault)) * x.token_scale == ledger
    # SPEC 11.2: open interest equals the positions, side by side
    for market in MARKETS:
        sizes = [x.position(who, sub, market).size for who, sub in accounts]
        st = vault.market_state(market)
        assert st.oi_long == sum(s for s in sizes if s > 0) == m.markets[market].oi_long
        assert st.oi_short == -sum(s for s in sizes if s < 0) == m.markets[market].oi_short
    for k in keepers:
        assert usd.balanceOf(k) == m.keeper_paid.get(str(k), 0)


def liquidate(mirror: Mirror, keeper: Any, liquidator: Any, who: Any, sub: int = 0) -> tuple[Any, model.LiquidationResult]:
    """Liquidate through the keeper (single) on both sides; check the event and that the
    account ends healthy (equity back at IM of the rest, up to rounding) or empty."""
    vault = mirror.x.vault
    receipt, expected = mirror.liquidate(keeper, liquidator, who, sub)
    assert receipt.return_value == expected.keeper_reward // mirror.x.token_scale
    liq = event(receipt, vault.Liquidation)
    assert (liq.owner, liq.sub, liq.equity, liq.maintenance_margin, liq.fraction, liq.notional_closed,
            liq.realized_pnl, liq.fee, liq.insurance_fee, liq.bad_debt) == (
        who, sub, expected.equity, expected.maintenance_margin, expected.fraction, expected.notional_closed,
        expected.realized_pnl, expected.fee, expected.insurance_fee, expected.bad_debt)
    assert_liquidated(mirror, who, sub, expected)
    return receipt, expected


def assert_liquidated(mirror: Mirror, who: Any, sub: int, expected: model.LiquidationResult) -> None:
    """SPEC 11.6: afterwards the account is healthy or empty, any shortfall is bad debt."""
    vault = mirror.x.vault
    h = mirror.x.health(who, sub)
    assert h == model_health(mirror, who, sub)
    if expected.full:
        assert mirror.x.open_markets(who, sub) == [] and h.positions == 0
        assert vault.collateral(who, sub) >= 0
        if expected.bad_debt:
            assert vault.collateral(who, sub) == 0
    else:
        assert h.positions > 0 and not h.liquidatable and not vault.is_liquidatable(who, sub)
        assert h.equity >= h.initial_margin - IM_ROUNDING
        assert expected.bad_debt == 0


# ---------------------------------------------------------------- exactly at the thresholds


@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
def test_maintenance_threshold__equity_equal_to_mm_is_healthy__one_wei_worse_liquidates(
        x, vault, keeper, usd, trader, liquidator, mirror, side):
    # 1 ETH: equity moves 1 wei per wei of price and MM by 0 or 1, so equity == MM is reachable
    mirror.open(trader, side * WAD, 200)

    def healthy() -> bool:
        h = model_health(mirror, trader)
        return h.equity >= h.maintenance_margin

    at, past = edge(mirror, ETH, x.price(ETH), x.price(ETH) - side * 500 * WAD, healthy)
    assert past == at - side

    mirror.price(ETH, at)
    h = x.health(trader)
    assert h == model_health(mirror, trader)
    assert h.equity == h.maintenance_margin and not h.liquidatable  # exactly on it: strict <
    assert not vault.is_liquidatable(trader, 0)
    assert list(keeper.liquidatable([trader], [0])) == [False]
    b = keeper.health(trader, 0)
    assert b.margin_ratio == WAD and not b.liquidatable
    with ape.reverts("keeper: account healthy"):
        keeper.liquidate(trader, 0, sender=liquidator)
    receipt = keeper.liquidate_many([trader], [0], sender=liquidator)
    assert receipt.return_value == 0 and not list(receipt.decode_logs(vault.Liquidation))
    assert mirror.m.liquidate(str(trader), 0, str(liquidator)) is None
    check_books(mirror, usd, [(trader, 0)], (liquidator,))

    mirror.price(ETH, past)  # one wei worse
    h = x.health(trader)
    assert h == model_health(mirror, trader)
    assert h.equity < h.maintenance_margin and h.liquidatable
    assert h.maintenance_margin - h.equity <= 2  # 1 wei of price moves equity 1 wei, MM 0 or 1
    assert vault.is_liquidatable(trader, 0) and list(keeper.liquidatable([trader], [0])) == [True]
    assert keeper.health(trader, 0).margin_ratio < WAD
    # the advertised liquidation price is this first liquidatable price, to the wei
    assert vault.liquidation_price(trader, 0, ETH) == past
    _, expected = liquidate(mirror, keeper, liquidator, trader)
    assert not expected.full and 0 < expected.fraction < WAD  # right at MM: partial
    check_books(mirror, usd, [(trader, 0)], (liquidator,))


@pytest.mark.parametrize("past", [0, 1], ids=["at_half_mm", "one_wei_below"])
@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
def test_full_threshold__equity_at_half_mm_is_partial__one_wei_worse_is_full(
        x, vault, keeper, usd, trader, liquidator, mirror, side, past):
    mirror.open(trader, side * WAD, 200)

    def at_least_half() -> bool:
        h = model_health(mirror, trader)
        return h.equity * WAD >= h.maintenance_margin * FULL_LIQUIDATION_RATIO

    at, below = edge(mirror, ETH, x.price(ETH), x.price(ETH) - side * 500 * WAD, at_least_half)
    assert below == at - side
    mirror.m.prices[ETH] = at
    h = model_health(mirror, trader)
    assert 2 * h.equity == h.maintenance_margin  # reachable exactly with 200 USD of collateral
    f_half, _ = raw_fraction(mirror, trader)  # the partial share exactly at MM / 2
    # one wei worse it is the ratio that forces the full close: the partial rule alone would not
    mirror.m.prices[ETH] = below
    f, im_notional = raw_fraction(mirror, trader)
    assert f < WAD and (WAD - f) * im_notional >= DUST_MARGIN * WAD

    mirror.price(ETH, below if past else at)
    h = x.health(trader)
    assert h == model_health(mirror, trader) and h.liquidatable
    assert (2 * h.equity < h.maintenance_margin) == bool(past)
    receipt, expected = liquidate(mirror, keeper, liquidator, trader)
    assert expected.full == bool(past)
    if past:
        assert event(receipt, vault.Liquidation).fraction == WAD and x.position(trader, 0, ETH).size == 0
    else:
        assert expected.fraction == f_half < WAD
        assert x.position(trader, 0, ETH).size == side * WAD - model.closed_size(side * WAD, expected.fraction)
    check_books(mirror, usd, [(trader, 0)], (liquidator,))


# ---------------------------------------------------------------- the dust rule


@pytest.mark.parametrize("past", [0, 1], ids=["remainder_above_dust", "remainder_dust"])
@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
def test_dust_rule__remainder_below_one_usd_of_margin_closes_everything(
        x, vault, keeper, usd, trader, liquidator, mirror, side, past):
    # 0.1 ETH on 30 USD: the 10 USD min_position_margin dominates, so the share the partial
    # rule asks for gets close to 1 while equity is still above MM / 2
    size = side * WAD // 10
    mirror.open(trader, size, 30)

    def partial() -> bool:
        result = preview(mirror, trader)
        return result is None or not result.full

    safe, dust = edge(mirror, ETH, x.price(ETH), x.price(ETH) - side * 300 * WAD, partial)
    assert dust == safe - side
    for price, is_dust in ((safe, False), (dust, True)):
        mirror.m.prices[ETH] = price
        h = model_health(mirror, trader)
        assert h.liquidatable and 2 * h.equity >= h.maintenance_margin  # not the ratio rule
        f, im_notional = raw_fraction(mirror, trader)
        assert f < WAD  # nor "f >= 1": the remainder rule decides
        assert ((WAD - f) * im_notional < DUST_MARGIN * WAD) == is_dust
    price = dust if past else safe
    mirror.m.prices[ETH] = price
    f, im_notional = raw_fraction(mirror, trader)

    mirror.price(ETH, price)
    assert x.health(trader) == model_health(mirror, trader)
    receipt, expected = liquidate(mirror, keeper, liquidator, trader)
    closed = {e.market: e.closed_size for e in receipt.decode_logs(vault.PositionLiquidated)}
    if past:
        assert expected.full and expected.fraction == WAD and closed == {ETH: size}
        assert x.position(trader, 0, ETH).size == 0 and vault.collateral(trader, 0) > 0
    else:
        assert not expected.full and expected.fraction == f
        assert closed == {ETH: model.closed_size(size, f)}
        left = x.position(trader, 0, ETH).size
        assert left == size - model.closed_size(size, f) != 0
        # what remains holds DUST_MARGIN of notional initial margin, give or take the margin
        # of one wei of size (the closed size rounds up: the short side ends 134 wei short)
        h, params = x.health(trader), x.params(ETH)
        rest_im = h.initial_margin - params.min_position_margin
        one_wei = model.initial_margin(1, price, params) - params.min_position_margin
        assert abs(rest_im - DUST_MARGIN) <= one_wei
    check_books(mirror, usd, [(trader, 0)], (liquidator,))


# ---------------------------------------------------------------- dust positions


@pytest.mark.parametrize("dust", [1, -1], ids=["dust_long", "dust_short"])
@pytest.mark.parametrize("eth_price", [2_860 * WAD, 2_500 * WAD], ids=["partial", "full_bad_debt"])
def test_dust_position_in_another_market__does_not_block(
        x, vault, keeper, usd, trader, liquidator, mirror, dust, eth_price):
    mirror.open(trader, 10 * WAD, 2_010)  # the extra 10 USD pays the dust's min_position_margin
    trade(mirror, trader, BTC, dust)  # 1 wei of BTC
    assert x.position(trader, 0, BTC).size == dust
    mirror.price(ETH, eth_price)
    assert x.health(trader) == model_health(mirror, trader) and x.health(trader).liquidatable
    receipt, expected = liquidate(mirror, keeper, liquidator, trader)
    closed = {e.market: e.closed_size for e in receipt.decode_logs(vault.PositionLiquidated)}
    # |1 wei| * fraction rounds up to the whole wei: the dust goes with any liquidation
    assert closed[BTC] == dust and x.position(trader, 0, BTC).size == 0
    assert x.open_markets(trader, 0) == ([] if expected.full else [ETH])
    if expected.full:
        assert closed[ETH] == 10 * WAD and expected.bad_debt > 0 and vault.collateral(trader, 0) == 0
    else:
        assert closed[ETH] == model.closed_size(10 * WAD, expected.fraction) < 10 * WAD
    check_books(mirror, usd, [(trader, 0)], (liquidator,))


def test_dust_only_account__liquidatable_through_min_position_margin__closed_fully(
        x, vault, keeper, usd, trader, liquidator, mirror):
    mirror.open(trader, 1, 21, market=ETH)  # 1 wei of ETH: IM = 10 USD + 150 wei
    trade(mirror, trader, BTC, -1)  # and 1 wei short of BTC: IM 20 USD + 3,150 wei in all
    assert not x.health(trader).liquidatable
    set_min_position_margin(mirror, BTC, 20)  # MM now 30 USD + dust > 21 USD of equity
    h = x.health(trader)
    assert h == model_health(mirror, trader) and h.liquidatable
    assert 2 * h.equity >= h.maintenance_margin  # above the ratio: the share rule must say "all"
    f, _ = raw_fraction(mirror, trader)
    assert f >= WAD
    before = vault.collateral(trader, 0)
    receipt, expected = liquidate(mirror, keeper, liquidator, trader)
    closed = {e.market: e.closed_size for e in receipt.decode_logs(vault.PositionLiquidated)}
    assert expected.full and closed == {ETH: 1, BTC: -1}
    # fees of 15 + 300 wei: nothing for the keeper (less than a token unit), all to insurance
    assert expected.fee == 315 and receipt.return_value == 0 and vault.insurance_fund() == 315
    assert vault.collateral(trader, 0) == before + expected.realized_pnl - 315 > 0
    check_books(mirror, usd, [(trader, 0)], (liquidator,))
    with ape.reverts("keeper: account healthy"):  # empty now: nothing left to liquidate
        keeper.liquidate(trader, 0, sender=liquidator)


# ---------------------------------------------------------------- a mixed batch


def test_liquidate_many__healthy_liquidatable_already_liquidated_and_dust_only(
        x, vault, keeper, usd, trader, trader2, liquidator, attacker, mirror):
    healthy, doomed, raced, dusty = (trader, 5), (trader, 0), (trader2, 1), (trader2, 2)
    mirror.open(trader, 1 * WAD, 2_000, sub=5)  # healthy: another sub-account of the same owner
    mirror.open(trader, 10 * WAD, 2_000, sub=0)
    mirror.open(trader2, 10 * WAD, 2_000, sub=1)
    mirror.open(trader2, 1, 21, market=ETH, sub=2)  # only dust: 1 wei of ETH, 1 wei short of BTC
    trade(mirror, trader2, BTC, -1, sub=2)
    set_min_position_margin(mirror, BTC, 20)  # only the dusty account holds BTC
    mirror.price(ETH, 2_860 * WAD)
    everyone = [healthy, doomed, raced, dusty]
    assert list(keeper.liquidatable([a for a, _ in everyone], [s for _, s in everyone])) == [False, True, True, True]

    liquidate(mirror, keeper, attacker, *raced)  # a competitor gets there first, same block
    check_books(mirror, usd, everyone, (attacker, liquidator))
    untouched = (x.health(*healthy), x.position(*healthy, ETH), vault.collateral(*healthy))

    batch = [healthy, doomed, raced, dusty, doomed]
    owners, subs = [a for a, _ in batch], [s for _, s in batch]
    receipt = keeper.liquidate_many(owners, subs, sender=liquidator)
    results = [mirror.m.liquidate(str(a), s, str(liquidator)) for a, s in batch]
    assert [r is not None for r in results] == [False, True, False, True, False]
    assert receipt.return_value == 2
    logs = list(receipt.decode_logs(vault.Liquidation))
    assert [(e.owner, e.sub) for e in logs] == [doomed, dusty]
    for e, r in zip(logs, [results[1], results[3]]):
        assert (e.fraction, e.notional_closed, e.realized_pnl, e.fee, e.insurance_fee, e.bad_debt) == (
            r.fraction, r.notional_closed, r.realized_pnl, r.fee, r.insurance_fee, r.bad_debt)
        assert e.keeper == liquidator
    assert not results[1].full and results[3].full
    assert_liquidated(mirror, *doomed, results[1])
    assert_liquidated(mirror, *dusty, results[3])
    assert (x.health(*healthy), x.position(*healthy, ETH), vault.collateral(*healthy)) == untouched
    assert list(keeper.liquidatable([a for a, _ in everyone], [s for _, s in everyone])) == [False] * 4
    check_books(mirror, usd, everyone, (attacker, liquidator))
