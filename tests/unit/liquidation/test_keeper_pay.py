"""Keeper pay (SPEC 14, issue 17 attack 6): a liquidation pays its keeper only from the fee
the account actually paid, never from bad debt; a floor (`min_keeper_reward`, 5 USD by
default) is topped up by the insurance fund, never by the pool. Chain and model in lock step.

Default ETH market: 0.5% liquidation fee, 2.5% MM, 20x; caps: reward <= 50 USD, floor 5 USD.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

# The Mirror (chain + model in lock step) and the fixtures of the main liquidation tests.
from test_liquidate import Mirror, event, keeper, mirror  # noqa: F401

from perpdex.model import WAD

FLOOR = 5 * WAD
CAP = 50 * WAD


def fund_insurance(mirror: Mirror, keeper: Any, liquidator: Any, who: Any) -> int:
    """A large partial liquidation (300k USD notional at 2,860) leaves ~890 USD of fee in
    the insurance fund; returns the fund's balance."""
    mirror.open(who, 100 * WAD, 20_000, sub=7)
    mirror.price(0, 2_860 * WAD)
    mirror.liquidate(keeper, liquidator, who, sub=7)
    return int(mirror.x.vault.insurance_fund())


def liquidate_checked(mirror: Mirror, keeper: Any, liquidator: Any, who: Any, sub: int = 0) -> tuple[Any, Any]:
    """Liquidate on chain and in the model; the event's amounts equal the model's."""
    receipt, expected = mirror.liquidate(keeper, liquidator, who, sub)
    liq = event(receipt, mirror.x.vault.Liquidation)
    assert (liq.fee, liq.fee_collected, liq.keeper_reward * mirror.x.token_scale, liq.reward_from_insurance,
            liq.insurance_fee, liq.bad_debt) == (
        expected.fee, expected.fee_collected, expected.keeper_reward, expected.reward_from_insurance,
        expected.insurance_fee, expected.bad_debt)
    # SPEC 11.7: the reward comes out of the collected fee and the insurance-paid floor only
    assert expected.keeper_reward <= expected.fee_collected + expected.reward_from_insurance
    mirror.check(who, sub)
    return receipt, expected


# ---------------------------------------------------------------- the attack


def test_bankrupt_owner_liquidating_itself__paid_nothing__pool_loses_exactly_the_shortfall(
        x, vault, keeper, usd, trader, mirror):
    """Before: the owner was paid 50 USD and the fee it never paid was bad debt on the LPs."""
    assert vault.insurance_fund() == 0
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_400 * WAD)  # equity about -4,000 USD: bankrupt
    shortfall = -x.health(trader).equity
    assert shortfall > 0
    lp_value, tokens = int(vault.pool_value()), usd.balanceOf(trader)
    receipt, expected = liquidate_checked(mirror, keeper, trader, trader)  # the owner is its own keeper
    assert expected.fee > CAP  # 120 USD due: the old rule paid the 50 USD cap
    assert (expected.fee_collected, expected.keeper_reward, receipt.return_value) == (0, 0, 0)
    assert usd.balanceOf(trader) == tokens
    assert expected.bad_debt == shortfall == expected.from_pool  # the uncollected fee is not bad debt
    assert lp_value - int(vault.pool_value()) == shortfall  # the LPs lose the shortfall, not a wei more
    assert vault.insurance_fund() == 0 and vault.collateral(trader, 0) == 0


def test_bankrupt_account__floor_paid_by_the_insurance_fund_after_the_bad_debt__never_the_pool(
        x, vault, keeper, usd, trader, trader2, liquidator, mirror):
    insurance = fund_insurance(mirror, keeper, liquidator, trader2)
    assert insurance > 500 * WAD
    mirror.open(trader, WAD, 200)  # 1 ETH at 2,860 on 200 USD
    mirror.price(0, 2_560 * WAD)  # equity about -100 USD
    shortfall = -x.health(trader).equity
    assert 0 < shortfall < insurance - FLOOR
    lp_value, tokens = int(vault.pool_value()), usd.balanceOf(liquidator)
    receipt, expected = liquidate_checked(mirror, keeper, liquidator, trader)
    assert (expected.fee_collected, expected.reward_from_insurance, expected.keeper_reward) == (0, FLOOR, FLOOR)
    assert (usd.balanceOf(liquidator) - tokens) * x.token_scale == FLOOR
    assert (expected.bad_debt, expected.from_insurance, expected.from_pool) == (shortfall, shortfall, 0)
    assert int(vault.pool_value()) == lp_value  # the LPs pay neither the shortfall nor the floor
    assert vault.insurance_fund() == insurance - shortfall - FLOOR


def test_bad_debt_drains_the_insurance_fund__floor_not_paid__pool_pays_only_the_rest_of_the_shortfall(
        x, vault, keeper, usd, trader, trader2, liquidator, mirror):
    """The waterfall covers the bad debt before the floor, so the floor never makes the pool
    cover more of it."""
    insurance = fund_insurance(mirror, keeper, liquidator, trader2)
    mirror.open(trader, 10 * WAD, 2_000)
    mirror.price(0, 2_400 * WAD)  # about 4,000 USD short: more than the fund holds
    shortfall = -x.health(trader).equity
    assert shortfall > insurance
    lp_value, tokens = int(vault.pool_value()), usd.balanceOf(liquidator)
    _, expected = liquidate_checked(mirror, keeper, liquidator, trader)
    assert (expected.keeper_reward, expected.reward_from_insurance) == (0, 0)
    assert usd.balanceOf(liquidator) == tokens and vault.insurance_fund() == 0
    assert (expected.from_insurance, expected.from_pool) == (insurance, shortfall - insurance)
    assert lp_value - int(vault.pool_value()) == shortfall - insurance


def test_small_fee__empty_insurance_fund__keeper_gets_the_fee_only(x, vault, keeper, trader, liquidator, mirror):
    """A small healthy account pays its whole fee, below the floor; the fund has nothing to add."""
    assert vault.insurance_fund() == 0
    mirror.open(trader, WAD // 10, 30, sub=1)  # 0.1 ETH on 30 USD: a full liquidation's fee is ~1.4 USD
    mirror.price(0, 2_780 * WAD)
    h = x.health(trader, 1)
    assert h.liquidatable and h.equity > 2 * WAD
    _, expected = liquidate_checked(mirror, keeper, liquidator, trader, sub=1)
    assert expected.full and 0 < expected.fee == expected.fee_collected < FLOOR
    assert expected.reward_from_insurance == 0
    assert expected.keeper_reward == expected.fee // x.token_scale * x.token_scale


def test_small_fee__topped_up_to_the_floor_from_insurance(x, vault, keeper, usd, trader, trader2, liquidator, mirror):
    insurance = fund_insurance(mirror, keeper, liquidator, trader2)
    mirror.open(trader, WAD // 10, 30, sub=2)  # 0.1 ETH at 2,860 on 30 USD
    mirror.price(0, 2_640 * WAD)
    lp_value, tokens = int(vault.pool_value()), usd.balanceOf(liquidator)
    _, expected = liquidate_checked(mirror, keeper, liquidator, trader, sub=2)
    assert 0 < expected.fee_collected == expected.fee < FLOOR and expected.bad_debt == 0
    assert expected.keeper_reward == FLOOR == expected.fee_collected + expected.reward_from_insurance
    assert (usd.balanceOf(liquidator) - tokens) * x.token_scale == FLOOR
    assert vault.insurance_fund() == insurance - expected.reward_from_insurance
    # the reward moves none of the LPs' value (the account's loss was already in it)
    assert int(vault.pool_value()) == lp_value


def test_fee_between_floor_and_cap__keeper_paid_the_fee__insurance_untouched(
        x, vault, keeper, usd, trader, liquidator, mirror):
    mirror.open(trader, 2 * WAD, 400)
    mirror.price(0, 2_860 * WAD)  # a partial liquidation: the fee is ~20 USD
    tokens = usd.balanceOf(liquidator)
    _, expected = liquidate_checked(mirror, keeper, liquidator, trader)
    assert not expected.full and FLOOR < expected.fee == expected.fee_collected < CAP
    assert expected.reward_from_insurance == 0
    assert (usd.balanceOf(liquidator) - tokens) * x.token_scale == expected.keeper_reward
    assert vault.insurance_fund() == expected.fee - expected.keeper_reward  # the rounding dust only


# ---------------------------------------------------------------- the owner's setting


def test_set_liquidator__floor_bounds(system, vault, attacker):
    assert (vault.max_keeper_reward(), vault.min_keeper_reward()) == (CAP, FLOOR)  # defaults.toml
    with ape.reverts("vault: bad min_keeper_reward"):
        system.govern(vault, "set_liquidator", system.keeper, 4 * WAD, FLOOR)  # above the cap
    with ape.reverts("vault: bad min_keeper_reward"):
        system.govern(vault, "set_liquidator", system.keeper, 1_000 * WAD, 100 * WAD + 1)  # above 100 USD
    with ape.reverts("ownable: caller is not the owner"):
        vault.set_liquidator(attacker, CAP, 0, sender=attacker)
    op = system.govern(vault, "set_liquidator", system.keeper, 1_000 * WAD, 100 * WAD)
    (ev,) = op.executed.decode_logs(vault.LiquidatorSet)
    assert (ev.max_keeper_reward, ev.min_keeper_reward) == (1_000 * WAD, 100 * WAD)
    assert vault.min_keeper_reward() == 100 * WAD


@pytest.mark.parametrize("floor", [0, FLOOR])
def test_model_mirrors_the_floor_setting(system, vault, model_of, floor):
    system.govern(vault, "set_liquidator", system.keeper, CAP, floor)
    assert model_of().min_keeper_reward == floor
