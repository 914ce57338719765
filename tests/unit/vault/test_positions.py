"""modify_position / close_position against the reference model, and every refusal."""

import ape
import pytest

from perpdex import model
from perpdex.model import WAD
from perpdex.sdk import MAX_UINT256

TOKEN = 10**6


def _event(receipt, vault):
    return receipt.events.filter(vault.PositionModified)[0]


def test_open_long__fill_fee_entry_match_model(x, vault, trader, eth, open_position, model_of):
    m = model_of()
    m.deposit(str(trader), 0, 10_000 * TOKEN)
    expected = m.modify_position(str(trader), 0, eth, 10 * WAD, MAX_UINT256)
    ev = _event(open_position(trader, 10 * WAD), vault)
    assert (ev.fill_price, ev.fee, ev.size, ev.entry_price) == (
        expected.fill_price, expected.fee, 10 * WAD, expected.fill_price
    )
    assert ev.fill_price > 3000 * WAD  # growing the skew pays a premium
    assert vault.collateral(trader, 0) == m.collateral[(str(trader), 0)]
    assert x.health(trader) == m.health(str(trader), 0)


def test_open_short__fill_below_oracle(x, vault, trader, open_position):
    ev = _event(open_position(trader, -10 * WAD), vault)
    assert ev.fill_price < 3000 * WAD
    assert x.position(trader, 0, 0).size == -10 * WAD


def test_trade_shrinking_skew__gets_a_discount(x, vault, trader, trader2, open_position):
    open_position(trader, 100 * WAD, collateral_usd=20_000)
    ev = _event(open_position(trader2, -10 * WAD), vault)
    assert ev.fill_price > 3000 * WAD  # a sell into a long skew fills above the oracle


def test_increase__entry_is_size_weighted(x, vault, trader, eth, open_position, model_of):
    open_position(trader, 10 * WAD)
    first = x.position(trader, 0, eth)
    x.set_price(eth, 3300 * WAD)
    ev = _event(x.trade(trader, eth, 5 * WAD), vault)
    expected = model.trade_pnl_and_entry(first.size, first.entry_price, 5 * WAD, ev.fill_price)
    assert expected[0] == 0
    assert x.position(trader, 0, eth).entry_price == expected[1] == ev.entry_price
    assert 3000 * WAD < ev.entry_price < 3300 * WAD


def test_reduce__realizes_pnl_into_collateral(x, vault, trader, eth, open_position):
    open_position(trader, 10 * WAD)
    entry = x.position(trader, 0, eth).entry_price
    x.set_price(eth, 3300 * WAD)
    before = vault.collateral(trader, 0)
    ev = _event(x.trade(trader, eth, -4 * WAD), vault)
    assert ev.realized_pnl == model.floor_div(4 * WAD * (ev.fill_price - entry), WAD)
    assert ev.realized_pnl > 1_100 * WAD
    assert vault.collateral(trader, 0) == before + ev.realized_pnl - ev.fee
    assert x.position(trader, 0, eth) == model.Position(6 * WAD, entry, 0)


def test_flip__closes_then_opens_remainder_at_fill(x, vault, trader, eth, open_position):
    open_position(trader, 10 * WAD)
    ev = _event(x.trade(trader, eth, -15 * WAD), vault)
    pos = x.position(trader, 0, eth)
    assert pos.size == -5 * WAD
    assert pos.entry_price == ev.fill_price
    st = vault.market_state(eth)
    assert (st.oi_long, st.oi_short) == (0, 5 * WAD)


def test_close__everything_back_and_oi_zero(x, vault, trader, eth, open_position, lens):
    open_position(trader, 10 * WAD)
    ev = _event(x.close(trader, eth), vault)
    assert ev.size == 0
    assert x.position(trader, 0, eth) == model.Position()
    st = vault.market_state(eth)
    assert (st.oi_long, st.oi_short, st.entry_sum) == (0, 0, 0)
    assert lens.open_markets(trader, 0) == []


def test_close__no_position__reverts(vault, trader, eth):
    with ape.reverts("vault: no position"):
        vault.close_position(0, eth, 0, sender=trader)


def test_modify__zero_size__reverts(x, vault, trader, eth):
    x.deposit(trader, 100 * TOKEN)
    with ape.reverts("vault: zero size"):
        vault.modify_position(0, eth, 0, MAX_UINT256, sender=trader)


@pytest.mark.parametrize("size", [-(2**255), 2**255 - 1, 2**120 + 1, -(2**120) - 1])
def test_modify__huge_size__reverts(x, vault, trader, eth, size):
    x.deposit(trader, 100 * TOKEN)
    with ape.reverts("vault: size out of range"):
        vault.modify_position(0, eth, size, MAX_UINT256 if size > 0 else 0, sender=trader)


def test_modify__unknown_market__reverts(x, vault, trader):
    x.deposit(trader, 100 * TOKEN)
    with ape.reverts("vault: unknown market"):
        vault.modify_position(0, 2, WAD, MAX_UINT256, sender=trader)


def test_modify__stale_price__reverts(x, vault, trader, eth, chain, oracle, lens):
    x.deposit(trader, 10_000 * TOKEN)
    chain.pending_timestamp += oracle.max_price_age() + 1
    with ape.reverts("oracle: stale price"):
        vault.modify_position(0, eth, WAD, MAX_UINT256, sender=trader)
    assert lens.open_markets(trader, 0) == []


def test_modify__buy_fill_above_bound__reverts(x, vault, trader, eth, lens):
    x.deposit(trader, 10_000 * TOKEN)
    quote = lens.fill_price(eth, WAD)
    with ape.reverts("vault: fill above acceptable price"):
        vault.modify_position(0, eth, WAD, quote - 1, sender=trader)
    vault.modify_position(0, eth, WAD, quote, sender=trader)
    assert x.position(trader, 0, eth).size == WAD


def test_modify__sell_fill_below_bound__reverts(x, vault, trader, eth, lens):
    x.deposit(trader, 10_000 * TOKEN)
    quote = lens.fill_price(eth, -WAD)
    with ape.reverts("vault: fill below acceptable price"):
        vault.modify_position(0, eth, -WAD, quote + 1, sender=trader)
    vault.modify_position(0, eth, -WAD, quote, sender=trader)
    assert x.position(trader, 0, eth).size == -WAD


def _max_size_at_leverage(x, eth, collateral_wad):
    """Largest long the model accepts on a fresh account: binary search on the model."""
    params, price = x.params(eth), x.price(eth)
    lo, hi = 0, collateral_wad * params.max_leverage // price
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fill = model.fill_price(price, 0, mid, params.skew_scale)
        fee = model.trade_fee(mid, fill, params.taker_fee)
        equity = collateral_wad - fee + model.unrealized_pnl(mid, fill, price)
        if equity >= model.initial_margin(mid, price, params):
            lo = mid
        else:
            hi = mid - 1
    return lo


def test_leverage__just_below_max_passes_just_above_reverts(x, vault, trader, eth):
    x.deposit(trader, 1_000 * TOKEN)
    size = _max_size_at_leverage(x, eth, 1_000 * WAD)
    assert size > 6 * WAD  # ~20x of 1,000 USD at 3,000 minus the min position margin
    with ape.reverts("vault: below initial margin"):
        vault.modify_position(0, eth, size + 1, MAX_UINT256, sender=trader)
    vault.modify_position(0, eth, size, MAX_UINT256, sender=trader)
    h = x.health(trader)
    assert 0 <= h.equity - h.initial_margin < WAD // 100


def test_open_interest__over_cap__reverts(x, vault, trader, eth):
    params = x.params(eth)
    tight = model.MarketParams(**{**params.__dict__, "max_open_interest": 5 * WAD})
    x.d.govern(vault, "set_market_params", eth, tight.as_tuple())
    x.deposit(trader, 100_000 * TOKEN)
    with ape.reverts("vault: open interest cap"):
        x.trade(trader, eth, 5 * WAD + 1)
    x.trade(trader, eth, 5 * WAD)
    assert vault.market_state(eth).oi_long == 5 * WAD


def test_open_interest__more_than_pool_can_back__reverts(admin, trader, lp):
    from perpdex.deploy import deploy_system
    from perpdex.sdk import Exchange

    x = Exchange(deploy_system(admin, atomic_trading=True))
    x.add_liquidity(lp, 100_000 * TOKEN)  # the default 10% of 100,000 USD backs 10,000 USD of skew
    x.deposit(trader, 100_000 * TOKEN)
    with ape.reverts("vault: pool cannot back open interest"):
        x.trade(trader, 0, 4 * WAD)
    x.trade(trader, 0, 3 * WAD)
    assert x.position(trader, 0, 0).size == 3 * WAD


def test_pause_market__blocks_new_risk_not_reduction(x, vault, trader, eth, btc, open_position):
    open_position(trader, 10 * WAD)
    receipt = x.d.guard("pause_market", eth)  # the guardian: immediate, through Governance
    assert receipt.events.filter(vault.MarketPauseSet)[0].paused
    with ape.reverts("vault: market paused"):
        x.trade(trader, eth, WAD)
    with ape.reverts("vault: market paused"):
        x.trade(trader, eth, -11 * WAD)  # a flip opens new risk
    x.trade(trader, btc, WAD // 10)  # other markets trade
    x.trade(trader, eth, -4 * WAD)
    x.close(trader, eth)
    assert x.position(trader, 0, eth).size == 0
    x.d.guard("unpause_market", eth)
    x.trade(trader, eth, WAD)


def test_pause__global__blocks_new_risk_everywhere(x, vault, trader, eth, btc, open_position):
    open_position(trader, 10 * WAD)
    x.d.guard("pause_vault")
    assert vault.paused()
    for market, size in ((eth, WAD), (btc, WAD // 100)):
        with ape.reverts("vault: market paused"):
            x.trade(trader, market, size)
    x.close(trader, eth)
    vault.withdraw(0, vault.withdrawable(trader, 0), sender=trader)
    x.d.guard("unpause_vault")
    assert not vault.paused()


def test_reduce__below_initial_margin__still_allowed(x, vault, trader, eth, open_position):
    open_position(trader, 60 * WAD, collateral_usd=10_000)
    x.set_price(eth, 2_950 * WAD)
    h = x.health(trader)
    assert h.maintenance_margin <= h.equity < h.initial_margin
    x.trade(trader, eth, -10 * WAD)
    assert x.position(trader, 0, eth).size == 50 * WAD


def test_reduce__that_would_make_account_liquidatable__reverts(x, vault, trader, eth, open_position):
    # Equity just above MM; a 5% fee on reducing costs more than the 2.5% of MM it frees.
    open_position(trader, 60 * WAD, collateral_usd=10_000)
    params = x.params(eth)
    x.d.govern(vault, "set_market_params", eth, model.MarketParams(**{**params.__dict__, "taker_fee": WAD // 20}).as_tuple())
    price = 3000 * WAD
    while True:  # walk the price down until equity is within 0.5% of notional above MM
        h = x.health(trader)
        if h.equity - h.maintenance_margin < 60 * price // 200:
            break
        price -= 10 * WAD
        x.set_price(eth, price)
    assert not vault.is_liquidatable(trader, 0)
    with ape.reverts("vault: trade would make account liquidatable"):
        x.trade(trader, eth, -30 * WAD)
    assert x.position(trader, 0, eth).size == 60 * WAD


def test_close__liquidatable_account__may_close_itself(x, vault, trader, eth, open_position):
    open_position(trader, 60 * WAD, collateral_usd=10_000)
    x.set_price(eth, 2_850 * WAD)
    assert vault.is_liquidatable(trader, 0)
    x.close(trader, eth)
    assert x.position(trader, 0, eth).size == 0


def test_cross_margin__positions_share_collateral(x, vault, trader, eth, btc, open_position, lens):
    open_position(trader, 10 * WAD, collateral_usd=5_000)
    x.trade(trader, btc, -WAD // 2)
    assert lens.open_markets(trader, 0) == [eth, btc]
    h = x.health(trader)
    assert h.positions == 2
    assert h.initial_margin == model.initial_margin(10 * WAD, 3000 * WAD, x.params(eth)) + model.initial_margin(
        -WAD // 2, 60_000 * WAD, x.params(btc)
    )


def test_isolated_margin__other_sub_unaffected(x, vault, trader, eth, open_position):
    open_position(trader, 60 * WAD, collateral_usd=10_000, sub=1)
    x.deposit(trader, 1_000 * TOKEN, sub=2)
    x.set_price(eth, 2_850 * WAD)
    assert vault.is_liquidatable(trader, 1)
    assert not vault.is_liquidatable(trader, 2)
    assert vault.withdrawable(trader, 2) == 1_000 * TOKEN


def test_too_many_positions__ninth_market__reverts(x, vault, admin, oracle, trader, lens):
    params = x.params(0)
    for m in range(2, 9):
        x.d.govern(vault, "add_market", params.as_tuple())
        oracle.set_price(m, 100 * WAD, sender=admin)
    x.deposit(trader, 100_000 * TOKEN)
    for m in range(8):
        x.trade(trader, m, WAD // 100)
    with ape.reverts("vault: too many positions"):
        x.trade(trader, 8, WAD // 100)
    assert len(lens.open_markets(trader, 0)) == 8
