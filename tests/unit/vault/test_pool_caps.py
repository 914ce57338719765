"""SPEC 14: open interest is tied to the pool's value (reserve_factor per market and side,
max_exposure_factor across all of them), on trades and on LP withdrawals; and the hedged
straddle that drained the pool before the caps."""

import ape
from perpdex.deploy import deploy_system
from perpdex.keepers.adl import deleverage_pending
from perpdex.model import WAD, ceil_div
from perpdex.sdk import Exchange

TOKEN = 10**6
ETH_PRICE = 3_000 * WAD


# the net rule (|skew| * price <= max_pool_exposure x pool cash) lifted out of the way, so
# that one-sided books meet the gross caps under test
NET_RULE_OFF = {name: {"max_pool_exposure": 10} for name in ("ETH-USD", "BTC-USD")}


def _fresh(admin, lp, pool_usd=1_000_000, **overrides):
    x = Exchange(deploy_system(admin, atomic_trading=True, governance_delay=0, markets=NET_RULE_OFF, **overrides))
    x.add_liquidity(lp, pool_usd * TOKEN)
    return x


def _side_cap_size(x, market):
    """The largest long (in WAD base units) the reserve cap admits from a flat market: the
    model's arithmetic, with the fill's premium and fee moving the pool value a little."""
    reserve = x.vault.pool_caps()[0]
    return reserve * x.vault.pool_value() // x.price(market)


def test_pool_caps__defaults_and_bounds(system, vault, admin, attacker):
    assert vault.pool_caps() == (WAD, 3 * WAD // 2, 9 * WAD // 10, 5 * WAD // 1000)
    for who in (attacker, admin):  # the deployer too: the Governance owns the vault
        with ape.reverts("ownable: caller is not the owner"):
            vault.set_pool_caps(WAD, WAD, WAD, 0, sender=who)
    for reserve, exposure, pnl, loss, reason in [
        (0, WAD, WAD, 0, "vault: bad reserve_factor"),
        (2 * WAD + 1, 4 * WAD, WAD, 0, "vault: bad reserve_factor"),
        (WAD, WAD - 1, WAD, 0, "vault: bad max_exposure_factor"),  # below the per-side factor
        (WAD, 4 * WAD + 1, WAD, 0, "vault: bad max_exposure_factor"),
        (WAD, WAD, 0, 0, "vault: bad max_pnl_factor"),  # traders would never be paid
        (WAD, WAD, WAD + 1, 0, "vault: bad max_pnl_factor"),  # more than the pool's cash
        (WAD, WAD, WAD, WAD + 1, "vault: bad pool_loss_cap"),  # more than the pool's cash a day
    ]:
        with ape.reverts(reason):
            system.govern(vault, "set_pool_caps", reserve, exposure, pnl, loss)
    receipt = system.govern(vault, "set_pool_caps", WAD // 2, 2 * WAD, WAD // 2, 0).executed
    event = receipt.events.filter(vault.PoolCapsSet)[0]
    assert (event.reserve_factor, event.max_exposure_factor, event.max_pnl_factor, event.pool_loss_cap) == (
        WAD // 2, 2 * WAD, WAD // 2, 0)
    assert vault.pool_caps() == (WAD // 2, 2 * WAD, WAD // 2, 0)


def test_reserve_cap__one_side_at_the_cap_fills__one_unit_more_reverts(admin, lp, trader, trader2):
    x = _fresh(admin, lp, pool={"reserve_factor": 0.3, "max_exposure_factor": 1.0})
    eth = x.d.markets["ETH-USD"]
    x.deposit(trader, 5_000_000 * TOKEN)
    cap = _side_cap_size(x, eth)
    # a long just above what the pool's value allows on one side: refused with the reason
    with ape.reverts("vault: reserve cap"):
        x.trade(trader, eth, cap + WAD)
    # well inside it fills, and the reserve rule holds on chain afterwards
    x.trade(trader, eth, cap * 9 // 10)
    state = x.vault.market_state(eth)
    assert ceil_div(state.oi_long * x.price(eth), WAD) * WAD <= 3 * WAD // 10 * x.vault.pool_value()
    # the other side has its own room: a short of the same size fills
    x.deposit(trader2, 5_000_000 * TOKEN)
    x.trade(trader2, eth, -(cap * 9 // 10))


def test_exposure_cap__both_markets_together__the_last_opening_reverts(admin, lp, trader):
    # per side 0.8 of the pool, all together 1.0: each market alone fits, both do not
    x = _fresh(admin, lp, pool={"reserve_factor": 0.8, "max_exposure_factor": 1.0})
    eth, btc = x.d.markets["ETH-USD"], x.d.markets["BTC-USD"]
    x.deposit(trader, 5_000_000 * TOKEN)
    x.trade(trader, eth, 200 * WAD)  # 600k USD long
    with ape.reverts("vault: exposure cap"):
        x.trade(trader, btc, -10 * WAD)  # 600k USD short: 1.2M gross against a ~1M pool
    x.trade(trader, btc, -6 * WAD)  # 360k: 960k gross fits


def test_reducing_over_the_cap__always_allowed(admin, lp, trader):
    x = _fresh(admin, lp)
    eth = x.d.markets["ETH-USD"]
    x.deposit(trader, 5_000_000 * TOKEN)
    x.trade(trader, eth, 300 * WAD)  # 900k of a 1M pool's reserve
    x.d.govern(x.vault, "set_pool_caps", WAD // 10, WAD // 10, WAD, WAD // 100)  # now far over the caps
    with ape.reverts("vault: reserve cap"):
        x.trade(trader, eth, WAD)
    x.trade(trader, eth, -100 * WAD)  # reducing is never refused by the caps
    x.close(trader, eth)
    assert x.position(trader, 0, eth).size == 0


def test_lp_withdrawal__cannot_leave_open_interest_over_the_caps(admin, lp, trader, trader2):
    x = _fresh(admin, lp)
    eth = x.d.markets["ETH-USD"]
    vault = x.vault
    for t in (trader, trader2):
        x.deposit(t, 2_000_000 * TOKEN)
    # a balanced book: 240 ETH each way (720k USD a side, 1.44M gross): net exposure is 0,
    # so only the gross caps keep the pool's value behind it
    x.trade(trader, eth, 240 * WAD)
    x.trade(trader2, eth, -240 * WAD)
    shares = vault.lp_shares(lp)
    with ape.reverts("vault: reserve cap"):  # 720k a side against 500k of value left
        vault.remove_liquidity(shares // 2, sender=lp)
    with ape.reverts("vault: exposure cap"):  # 720k a side fits 800k, 1.44M gross does not fit 1.2M
        vault.remove_liquidity(shares // 5, sender=lp)
    # a small withdrawal that keeps 1.44M <= 1.5 x value passes
    paid = vault.remove_liquidity(shares // 100, sender=lp).return_value
    assert paid > 0
    _, gross, _, _ = _valuation_from_chain(x)
    assert gross * WAD <= vault.pool_caps()[1] * vault.pool_value()


def _valuation_from_chain(x):
    from perpdex.sdk import model_from_chain

    return model_from_chain(x, 0).valuation()


def test_straddle_attack__blocked_by_the_caps__honest_trader_and_lps_made_whole(admin, lp, attacker, trader):
    """SPEC 14's measured attack: 20x long in sub 1 and 20x short in sub 2, opened in
    alternating chunks so the net skew stays ~0, then one +10% update. Before the caps
    10,000 ETH a side went in against a 1M pool, pool cash fell to -612k and an honest
    trader's 500k could not be withdrawn. Default parameters."""
    x = Exchange(deploy_system(admin, atomic_trading=True))
    x.add_liquidity(lp, 1_000_000 * TOKEN)
    eth = x.d.markets["ETH-USD"]
    vault, usd = x.vault, x.d.usd
    x.deposit(trader, 500_000 * TOKEN)  # the honest trader, no position
    for sub in (1, 2):  # 20x: 5% of the notional the caps let in, plus a little
        x.deposit(attacker, 60_000 * TOKEN, sub=sub)
    chunk = 30 * WAD  # 90k USD: the skew between the legs stays within the net rule (10% of the cash)
    opened = 0
    refused = None
    while opened < 10_000 * WAD:
        try:
            x.trade(attacker, eth, chunk, sub=1)
            x.trade(attacker, eth, -chunk, sub=2)
        except ape.exceptions.ContractLogicError as err:
            refused = str(err)
            break
        opened += chunk
    # the caps stop the straddle at about the pool's value a side, not 30M USD
    assert refused is not None and "cap" in refused
    assert opened * ETH_PRICE // WAD <= 1_000_000 * WAD
    lp_value_before = vault.pool_value()

    x.set_price(eth, ETH_PRICE * 110 // 100)  # the gap: +10%
    # the bankrupt short is liquidated: beyond the insurance fund, the pool takes at most its
    # loss cap (0.5% of its cash a day); the rest is owed by the longs, and the ADL keeper closes
    # the most profitable one at the bankruptcy price: the attacker's own winning leg
    receipt = x.d.keeper.liquidate(attacker, 2, sender=admin)
    covered = receipt.events.filter(vault.BadDebtCovered)[0]
    assert covered.to_adl > 0 and tuple(vault.loss_window())[1] == 0  # the day's budget is spent
    assert covered.from_pool < vault.pool_balance() // 100  # 0.5% of the pool's cash
    outcomes = deleverage_pending(x, admin, [(trader, 0), (attacker, 1), (attacker, 2)])
    assert [(o.candidate.owner, o.candidate.sub) for o in outcomes] == [(attacker.address, 1)]
    assert abs(outcomes[0].recovered - covered.to_adl) <= WAD // 10**9  # the pool got it back
    assert int(vault.position(attacker, 1, eth).size) == 0  # all of it: the short was as big
    assert vault.pool_balance() >= vault.unpaid_losses()  # SPEC 11.12: pool cash never below zero
    for sub in (1, 2):
        if (left := int(vault.collateral(attacker, sub)) // 10**12) > 0:
            vault.withdraw(sub, left, sender=attacker)
    # the attacker gains at most what the pool's loss cap let through
    assert usd.balanceOf(attacker) <= 120_000 * TOKEN + covered.from_pool // 10**12

    # the honest trader and the LPs can withdraw everything they are owed
    x.d.vault.withdraw(0, 500_000 * TOKEN, sender=trader)
    assert usd.balanceOf(trader) >= 500_000 * TOKEN
    owed = vault.pool_value() // 10**12
    paid = vault.remove_liquidity(vault.lp_shares(lp), sender=lp).return_value
    assert paid >= owed - 1
    # what the attack cost the LPs is what the pool's loss cap let through (plus fees' dust)
    assert lp_value_before - paid * 10**12 <= covered.from_pool + 10 * WAD
