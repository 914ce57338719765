"""Liquidations (SPEC 8) through the LiquidationKeeper, checked against the reference model:
partial vs full, the fee split, the bad-debt waterfall, and the awkward cases (paused market,
second call in the same block, a 1-wei top-up, dust)."""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex import model
from perpdex.model import WAD
from perpdex.sdk import MAX_UINT256, liquidation_price_of


@pytest.fixture
def keeper(system: Any) -> Any:
    return system.keeper


class Mirror:
    """Drives the chain and the model with the same actions (the test clock is stopped, so
    no funding accrues between them)."""

    def __init__(self, x: Any, m: model.VaultModel) -> None:
        self.x, self.m = x, m

    def open(self, who: Any, size: int, collateral_usd: int, market: int = 0, sub: int = 0) -> None:
        self.x.deposit(who, self.x.tokens(collateral_usd), sub=sub)
        self.m.deposit(str(who), sub, self.x.tokens(collateral_usd))
        bound = MAX_UINT256 if size > 0 else 0
        self.x.vault.modify_position(sub, market, size, bound, sender=who)
        self.m.modify_position(str(who), sub, market, size, bound)

    def price(self, market: int, price: int) -> None:
        """Move the oracle in steps within its jump limit."""
        current = self.x.price(market)
        while current != price:
            step = max(min(price, current * 5 // 4), current * 3 // 4 + 1)
            self.x.set_price(market, step)
            current = step
        self.m.prices[market] = price

    def liquidate(self, keeper: Any, liquidator: Any, who: Any, sub: int = 0) -> tuple[Any, model.LiquidationResult]:
        receipt = keeper.liquidate(who, sub, sender=liquidator)
        result = self.m.liquidate(str(who), sub, str(liquidator))
        assert result is not None
        return receipt, result

    def check(self, who: Any, sub: int = 0) -> None:
        name = str(who)
        assert self.x.health(who, sub) == self.m.health(name, sub)
        for market in (0, 1):
            assert self.x.position(who, sub, market) == self.m.position(name, sub, market)
            st, mine = self.x.vault.market_state(market), self.m.markets[market]
            assert (st.oi_long, st.oi_short, st.entry_sum, st.funding_sum) == (
                mine.oi_long, mine.oi_short, mine.entry_sum, mine.funding_sum)
        assert self.x.vault.insurance_fund() == self.m.insurance_fund
        assert self.x.vault.pool_balance() == self.m.pool_balance


@pytest.fixture
def mirror(x: Any, model_of: Any) -> Mirror:
    return Mirror(x, model_of())


def event(receipt: Any, kind: Any) -> Any:
    (found,) = receipt.decode_logs(kind)
    return found


# ---------------------------------------------------------------- who may liquidate whom


def test_liquidate__healthy_account__reverts(keeper, trader, liquidator, mirror):
    mirror.open(trader, 10 * WAD, 5_000)
    with ape.reverts("keeper: account healthy"):
        keeper.liquidate(trader, 0, sender=liquidator)


def test_vault_liquidate__not_the_keeper__reverts(vault, trader, attacker):
    with ape.reverts("vault: not liquidator"):
        vault.liquidate(trader, 0, attacker, sender=attacker)


# ---------------------------------------------------------------- partial and full


def test_partial__closes_the_smallest_share_that_restores_initial_margin(x, vault, keeper, trader, liquidator, mirror):
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_860 * WAD)  # liquidatable below ~2,874, fully below ~2,837
    h = x.health(trader)
    assert h.liquidatable and h.equity * 2 >= h.maintenance_margin
    receipt, expected = mirror.liquidate(keeper, liquidator, trader)
    assert not expected.full and 0 < expected.fraction < WAD
    liq = event(receipt, vault.Liquidation)
    assert (liq.fraction, liq.notional_closed, liq.fee, liq.realized_pnl, liq.bad_debt) == (
        expected.fraction, expected.notional_closed, expected.fee, expected.realized_pnl, 0)
    mirror.check(trader)
    after = x.health(trader)
    assert after.equity >= after.initial_margin - 2 and not after.liquidatable  # restored, rounding only
    assert x.position(trader, 0, 0).size == 10 * WAD - model.closed_size(10 * WAD, expected.fraction)


def test_full__below_half_maintenance_margin__closes_everything(x, vault, keeper, trader, liquidator, mirror, lens):
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_830 * WAD)
    h = x.health(trader)
    assert 0 < h.equity and h.equity * 2 < h.maintenance_margin
    receipt, expected = mirror.liquidate(keeper, liquidator, trader)
    assert expected.full and event(receipt, vault.Liquidation).fraction == WAD
    assert x.position(trader, 0, 0).size == 0 and list(lens.open_markets(trader, 0)) == []
    assert vault.collateral(trader, 0) == expected.equity - expected.fee > 0  # the rest stays the trader's
    mirror.check(trader)


def test_cross_margin__every_market_closed_by_the_same_share(x, vault, keeper, trader, liquidator, mirror):
    mirror.open(trader, 10 * WAD, 3_000)
    x.vault.modify_position(0, 1, -WAD // 4, 0, sender=trader)
    mirror.m.modify_position(str(trader), 0, 1, -WAD // 4, 0)
    mirror.price(0, 2_800 * WAD)
    mirror.price(1, 61_500 * WAD)
    assert x.health(trader).liquidatable
    receipt, expected = mirror.liquidate(keeper, liquidator, trader)
    closed = {e.market: e.closed_size for e in receipt.decode_logs(vault.PositionLiquidated)}
    assert closed == {0: model.closed_size(10 * WAD, expected.fraction), 1: model.closed_size(-WAD // 4, expected.fraction)}
    mirror.check(trader)


# ---------------------------------------------------------------- fee split and waterfall


def test_fee_split__reward_capped_to_the_caller__rest_to_insurance(x, vault, keeper, usd, trader, liquidator, mirror):
    mirror.open(trader, 100 * WAD, 20_000)  # 300k notional: 0.5% fee is far above the 50 USD cap
    mirror.price(0, 2_860 * WAD)
    before = usd.balanceOf(liquidator)
    receipt, expected = mirror.liquidate(keeper, liquidator, trader)
    liq = event(receipt, vault.Liquidation)
    assert expected.fee > 50 * WAD
    assert liq.keeper_reward == 50 * 10**6 == usd.balanceOf(liquidator) - before
    assert liq.insurance_fee == expected.fee - 50 * WAD == vault.insurance_fund()
    mirror.check(trader)


def test_bad_debt__insurance_fund_first_then_pool(x, vault, keeper, trader, trader2, liquidator, mirror):
    # an earlier liquidation funds the insurance fund
    mirror.open(trader2, 100 * WAD, 20_000, sub=1)
    mirror.price(0, 2_860 * WAD)
    mirror.liquidate(keeper, liquidator, trader2, sub=1)
    insurance = vault.insurance_fund()
    assert insurance > 0
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_400 * WAD)  # deep under water: the account owes more than it has
    receipt, expected = mirror.liquidate(keeper, liquidator, trader)
    assert expected.full and expected.bad_debt > 0
    debt = event(receipt, vault.BadDebtCovered)
    assert (debt.bad_debt, debt.from_insurance, debt.from_pool) == (
        expected.bad_debt, expected.from_insurance, expected.from_pool)
    assert debt.from_insurance == min(insurance + expected.insurance_fee, expected.bad_debt)
    assert vault.collateral(trader, 0) == 0  # no hidden negative collateral
    mirror.check(trader)


def test_underwater_owner_closes_last_position__shortfall_is_bad_debt_not_negative_collateral(
        x, vault, keeper, trader, trader2, liquidator, mirror):
    # SPEC 11.6: an owner who closes their own underwater position before a keeper gets there
    # leaves an empty account; what it cannot pay goes through the same waterfall
    mirror.open(trader2, 100 * WAD, 20_000, sub=1)
    mirror.price(0, 2_860 * WAD)
    mirror.liquidate(keeper, liquidator, trader2, sub=1)  # funds the insurance fund
    insurance = vault.insurance_fund()
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_400 * WAD)
    assert x.health(trader).equity < 0
    receipt = vault.modify_position(0, 0, -10 * WAD, 0, sender=trader)
    mirror.m.modify_position(str(trader), 0, 0, -10 * WAD, 0)
    debt = event(receipt, vault.BadDebtCovered)
    assert debt.bad_debt > 0 and debt.from_insurance == min(insurance, debt.bad_debt)
    assert debt.from_pool == debt.bad_debt - debt.from_insurance
    assert vault.collateral(trader, 0) == 0 and event(receipt, vault.PositionModified).collateral == 0
    assert not vault.is_liquidatable(trader, 0)
    mirror.check(trader)


# ---------------------------------------------------------------- awkward cases


def test_liquidation__works_while_paused(x, vault, keeper, trader, liquidator, mirror):
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_860 * WAD)
    x.d.guard("pause_vault")
    x.d.guard("pause_market", 0)
    mirror.liquidate(keeper, liquidator, trader)
    mirror.check(trader)


def test_second_liquidation_in_the_same_block__pays_nothing(x, vault, keeper, usd, trader, liquidator, attacker, mirror):
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_860 * WAD)
    mirror.liquidate(keeper, liquidator, trader)
    with ape.reverts("keeper: account healthy"):
        keeper.liquidate(trader, 0, sender=attacker)
    receipt = keeper.liquidate_many([trader], [0], sender=attacker)
    assert usd.balanceOf(attacker) == 0
    assert not list(receipt.decode_logs(vault.Liquidation))


def test_one_wei_top_up__does_not_block(x, vault, keeper, usd, trader, liquidator, mirror):
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_860 * WAD)
    x.deposit(trader, 1)  # the front-run
    mirror.m.deposit(str(trader), 0, 1)
    mirror.liquidate(keeper, liquidator, trader)
    mirror.check(trader)


def test_liquidate_many__skips_healthy_and_liquidates_the_rest(x, vault, keeper, trader, trader2, attacker, liquidator, mirror):
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.open(trader2, 10 * WAD, 2_000)
    mirror.open(attacker, 1 * WAD, 2_000)  # healthy
    mirror.price(0, 2_860 * WAD)
    assert list(keeper.liquidatable([trader, attacker, trader2], [0, 0, 0])) == [True, False, True]
    receipt = keeper.liquidate_many([trader, attacker, trader2, trader], [0, 0, 0, 0], sender=liquidator)
    assert len(receipt.decode_logs(vault.Liquidation)) == 2
    assert list(keeper.liquidatable([trader, attacker, trader2], [0, 0, 0])) == [False, False, False]


# ---------------------------------------------------------------- transparency


def test_liquidation_price__matches_model_and_reality(x, vault, keeper, trader, mirror):
    mirror.open(trader, 10 * WAD, 2_000)
    liq = vault.liquidation_price(trader, 0, 0)
    assert liq == keeper.liquidation_price(trader, 0, 0) == liquidation_price_of(x, trader, 0, 0)
    x.set_price(0, liq + 10**12)  # a millionth of a dollar above: still healthy
    assert not vault.is_liquidatable(trader, 0)
    x.set_price(0, liq - 10**12)
    assert vault.is_liquidatable(trader, 0)


def test_liquidation_price__short_and_no_position(x, vault, trader, mirror):
    assert vault.liquidation_price(trader, 0, 0) == 0
    mirror.open(trader, -10 * WAD, 2_000)
    liq = vault.liquidation_price(trader, 0, 0)
    assert liq > x.price(0) and liq == liquidation_price_of(x, trader, 0, 0)
    x.set_price(0, liq - 10**12)
    assert not vault.is_liquidatable(trader, 0)
    x.set_price(0, liq + 10**12)
    assert vault.is_liquidatable(trader, 0)


def test_health_breakdown__margin_ratio(x, keeper, trader, mirror):
    mirror.open(trader, 10 * WAD, 2_000)
    b = keeper.health(trader, 0)
    h = x.health(trader)
    assert (b.collateral, b.unrealized_pnl, b.funding, b.equity, b.initial_margin, b.maintenance_margin) == (
        h.collateral, h.unrealized_pnl, h.funding, h.equity, h.initial_margin, h.maintenance_margin)
    assert b.margin_ratio == h.equity * WAD // h.maintenance_margin and not b.liquidatable
