"""Funding index (SPEC 6): velocity, trapezoid accrual, views, settlement, zero sum.

Every figure is checked twice: against the reference model and, where the formula is short,
against the formula written out in the test.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex import model
from perpdex.chain import move_time
from perpdex.model import DAY, WAD

HOUR = 3600
YEAR = 365 * DAY


def warp(chain: Any, seconds: int) -> None:
    move_time(seconds)


def wait(chain: Any, x: Any, seconds: int, markets: tuple[int, ...] = (0, 1)) -> None:
    """Let time pass, then feed the same prices again so trading does not see them stale."""
    move_time(seconds)
    x.refresh_prices(markets)


def skewed_market(x: Any, trader: Any, eth: int, size: int = 100 * WAD, collateral_usd: int = 100_000) -> None:
    x.deposit(trader, x.tokens(collateral_usd))
    x.trade(trader, eth, size)


# ---------------------------------------------------------------- rate and index


@pytest.mark.parametrize("side", [1, -1])
def test_rate__moves_with_velocity_in_the_skews_direction(x, vault, trader, eth, chain, side):
    skewed_market(x, trader, eth, side * 100 * WAD)
    rate0, _ = vault.funding(eth)
    wait(chain, x, DAY)
    vault.poke(eth, sender=trader)
    rate1, _ = vault.funding(eth)
    velocity = model.funding_velocity(side * 100 * WAD, x.params(eth))
    assert velocity * side > 0
    assert rate1 - rate0 == velocity  # exactly one day of velocity
    assert (rate1 > 0) == (side > 0)


def test_rate__flat_at_zero_skew(x, vault, trader, trader2, eth, chain, lens):
    skewed_market(x, trader, eth, 50 * WAD)
    skewed_market(x, trader2, eth, -50 * WAD)
    assert vault.market_state(eth).oi_long == vault.market_state(eth).oi_short
    before = tuple(vault.funding(eth))
    wait(chain, x, 7 * DAY)
    vault.poke(eth, sender=trader)
    assert tuple(vault.funding(eth)) == before == (0, 0)
    assert lens.accrued_funding(trader, 0, eth) == lens.accrued_funding(trader2, 0, eth) == 0


def test_poke__dt_zero_changes_nothing(x, vault, trader, eth, chain):
    skewed_market(x, trader, eth)
    wait(chain, x, HOUR)
    vault.poke(eth, sender=trader)
    state = vault.market_state(eth)
    receipt = vault.poke(eth, sender=trader)  # same block time (the test clock is stopped)
    assert vault.market_state(eth) == state
    assert not list(receipt.decode_logs(vault.FundingAccrued))


def test_poke__one_year_idle__no_revert_and_matches_model(x, vault, trader, eth, chain, model_of):
    skewed_market(x, trader, eth, 150 * WAD)
    m = model_of()
    wait(chain, x, YEAR)
    m.now = chain.pending_timestamp
    vault.poke(eth, sender=trader)
    assert tuple(vault.funding(eth)) == m.funding_now(eth)


def test_poke__stale_price__reverts(x, vault, trader, eth, chain, oracle):
    warp(chain, oracle.max_price_age() + 1)
    with ape.reverts("oracle: stale price"):
        vault.poke(eth, sender=trader)


def test_accrual__one_year_at_the_extreme_parameters__does_not_overflow(admin, trader, chain):
    """The largest velocity the vault accepts, at a full skew, for a year, then a trade."""
    from perpdex.deploy import deploy_system
    from perpdex.sdk import Exchange

    d = deploy_system(
        admin, atomic_trading=True,
        markets={"ETH-USD": {"max_funding_velocity": 100, "skew_scale": 1000, "max_open_interest": 1000,
                             "max_pool_exposure": 10}},
    )
    x2 = Exchange(d)
    x2.add_liquidity(admin, x2.tokens(10_000_000))
    x2.deposit(trader, x2.tokens(5_000_000))  # the fill is 50% above the oracle at full skew
    x2.trade(trader, 0, 1000 * WAD, slippage=WAD)
    for _ in range(2):
        wait(chain, x2, YEAR, markets=(0,))
        d.vault.poke(0, sender=trader)
    rate, index = d.vault.funding(0)
    assert rate == 2 * 365 * 100 * WAD  # clamped velocity: 100 per day, for two years
    assert index > 0
    x2.close(trader, 0, slippage=WAD)  # settles a huge loss; the account is simply in debt


def test_accrual__price_change_between_touches__trapezoid_at_the_new_price(x, vault, trader, eth, chain):
    skewed_market(x, trader, eth)
    wait(chain, x, DAY)
    vault.poke(eth, sender=trader)
    r0, i0 = vault.funding(eth)
    warp(chain, 8 * HOUR)
    new_price = 3_300 * WAD
    x.set_price(eth, new_price)
    receipt = vault.poke(eth, sender=trader)
    r1, i1 = vault.funding(eth)
    dt = receipt.decode_logs(vault.FundingAccrued)[0].elapsed
    assert 8 * HOUR <= dt <= 8 * HOUR + 5
    assert r1 == r0 + model.funding_velocity(100 * WAD, x.params(eth)) * dt // DAY
    assert i1 - i0 == (r0 + r1) * dt * new_price // (2 * DAY * WAD)  # at the price of the touch
    event = receipt.decode_logs(vault.FundingAccrued)[0]
    assert (event.funding_rate, event.funding_index, event.price, event.elapsed, event.skew) == (
        r1, i1, new_price, dt, 100 * WAD
    )


# ---------------------------------------------------------------- views


def test_views__current_and_predicted_rate_and_accrued_funding_match_model(x, vault, trader, trader2, eth, chain, model_of, lens):
    skewed_market(x, trader, eth, 120 * WAD)
    skewed_market(x, trader2, eth, -20 * WAD)
    warp(chain, 5 * HOUR)  # not yet accrued: the views must include it
    m = model_of()
    m.now = chain.blocks.head.timestamp
    rate, index = m.funding_now(eth)
    assert lens.funding_rate(eth) == rate and lens.funding_index(eth) == index
    for hours in (0, 1, 8, 24):
        assert lens.predicted_funding_rate(eth, hours) == m.predicted_rate(eth, hours)
    assert lens.predicted_funding_rate(eth, 24) > lens.predicted_funding_rate(eth, 1) > rate > 0
    for who, size in ((trader, 120 * WAD), (trader2, -20 * WAD)):
        snapshot = x.position(who, 0, eth).funding_index
        assert lens.accrued_funding(who, 0, eth) == model.accrued_funding(size, index, snapshot)
    assert lens.accrued_funding(trader, 0, eth) < 0 < lens.accrued_funding(trader2, 0, eth)
    assert lens.accrued_funding(trader, 0, 1) == 0  # no position


def test_views__unknown_market__revert(vault, trader, lens):
    for call in (lambda: vault.funding(7), lambda: lens.predicted_funding_rate(7, 1),
                 lambda: lens.accrued_funding(trader, 0, 7)):
        with ape.reverts("vault: unknown market"):
            call()
    with ape.reverts("vault: unknown market"):
        vault.poke(7, sender=trader)


# ---------------------------------------------------------------- settlement


def test_trade__settles_funding_into_collateral(x, vault, trader, eth, chain, lens):
    skewed_market(x, trader, eth)
    wait(chain, x, 2 * DAY)
    owed = lens.accrued_funding(trader, 0, eth)
    assert owed < 0
    collateral, pool = vault.collateral(trader, 0), vault.pool_balance()
    receipt = x.trade(trader, eth, -10 * WAD)
    event = receipt.decode_logs(vault.PositionModified)[0]
    assert event.funding == owed  # nothing accrued since: the clock is stopped
    assert vault.collateral(trader, 0) == collateral + event.funding + event.realized_pnl - event.fee
    assert vault.pool_balance() == pool - event.funding - event.realized_pnl + event.fee
    assert lens.accrued_funding(trader, 0, eth) == 0
    assert x.position(trader, 0, eth).funding_index == lens.funding_index(eth)


def test_withdraw__settles_funding_first__event_and_pool_take_the_other_side(x, vault, trader, eth, chain, lens):
    skewed_market(x, trader, eth)
    wait(chain, x, 3 * DAY)
    owed = lens.accrued_funding(trader, 0, eth)
    equity, collateral, pool = vault.equity(trader, 0), vault.collateral(trader, 0), vault.pool_balance()
    receipt = vault.withdraw(0, x.tokens(1), sender=trader)
    settled = receipt.decode_logs(vault.FundingSettled)
    assert [(e.owner, e.sub, e.market, e.amount) for e in settled] == [(trader.address, 0, eth, owed)]
    assert settled[0].funding_index == lens.funding_index(eth) == x.position(trader, 0, eth).funding_index
    assert vault.collateral(trader, 0) == collateral + owed - x.tokens(1) * x.token_scale
    assert vault.pool_balance() == pool - owed
    assert vault.equity(trader, 0) == equity - x.tokens(1) * x.token_scale  # settling moves no value
    assert lens.accrued_funding(trader, 0, eth) == 0


def test_received_funding__withdrawable_before_settlement(x, vault, trader, trader2, eth, chain, lens):
    skewed_market(x, trader, eth, 150 * WAD)
    x.deposit(trader2, x.tokens(10_000))
    x.trade(trader2, eth, -10 * WAD)
    x.deposit(trader2, x.tokens(10_000), sub=1)  # a second account, no position
    before = vault.withdrawable(trader2, 0)
    wait(chain, x, 3 * DAY)
    received = lens.accrued_funding(trader2, 0, eth)
    assert received > 0
    assert vault.collateral(trader2, 0) == x.health(trader2).collateral  # nothing settled yet
    assert vault.withdrawable(trader2, 0) >= before + received // x.token_scale - 1
    amount = vault.withdrawable(trader2, 0)
    vault.withdraw(0, amount, sender=trader2)  # all of it, including the funding received
    assert vault.withdrawable(trader2, 0) == 0


def test_transfer_margin__settles_the_source(x, vault, trader, eth, chain, lens):
    skewed_market(x, trader, eth)
    wait(chain, x, DAY)
    owed = lens.accrued_funding(trader, 0, eth)
    receipt = vault.transfer_margin(0, 1, x.tokens(100), sender=trader)
    assert [e.amount for e in receipt.decode_logs(vault.FundingSettled)] == [owed]
    assert lens.accrued_funding(trader, 0, eth) == 0


def test_settlement__nothing_accrued__no_event(x, vault, trader, eth):
    skewed_market(x, trader, eth)
    receipt = vault.withdraw(0, x.tokens(1), sender=trader)
    assert not list(receipt.decode_logs(vault.FundingSettled))


# ---------------------------------------------------------------- zero sum


def test_zero_sum__longs_pay_shorts_receive_pool_takes_the_skew(x, vault, trader, trader2, lp, eth, chain, lens):
    skewed_market(x, trader, eth, 120 * WAD)
    skewed_market(x, trader2, eth, -40 * WAD)
    value_before = vault.pool_value()
    wait(chain, x, 2 * DAY)
    vault.poke(eth, sender=lp)
    long_f, short_f = lens.accrued_funding(trader, 0, eth), lens.accrued_funding(trader2, 0, eth)
    _, index = vault.funding(eth)
    snap_long, snap_short = x.position(trader, 0, eth).funding_index, x.position(trader2, 0, eth).funding_index
    assert long_f < 0 < short_f
    # longs pay index * OI_long, shorts receive index * OI_short, the pool gets index * skew
    pool_f = vault.pool_value() - value_before  # prices unchanged: only funding moved it
    assert pool_f == (120 * WAD * (index - snap_long) - 40 * WAD * (index - snap_short)) // WAD
    assert -2 <= long_f + short_f + pool_f <= 0  # one floor per position, against the traders
