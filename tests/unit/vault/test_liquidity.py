"""add_liquidity / remove_liquidity / lp_shares / pool_value, and the inflation attack."""

import ape

from perpdex import model
from perpdex.deploy import deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange

TOKEN = 10**6


def _share_price(vault):
    return (vault.pool_value() + model.VIRTUAL_ASSETS) * WAD // (vault.total_lp_shares() + model.VIRTUAL_SHARES)


def test_add_liquidity__first_deposit__one_share_per_usd_and_price_unmoved(admin, lp):
    x = Exchange(deploy_system(admin, atomic_trading=True))
    vault = x.vault
    assert _share_price(vault) == WAD
    x.fund(lp, 1_000 * TOKEN)
    receipt = vault.add_liquidity(1_000 * TOKEN, sender=lp)
    assert vault.lp_shares(lp) == 1_000 * WAD
    assert vault.pool_value() == 1_000 * WAD
    assert _share_price(vault) == WAD
    event = receipt.events.filter(vault.LiquidityAdded)[0]
    assert (event.amount, event.shares, event.pool_value) == (1_000 * TOKEN, 1_000 * WAD, 1_000 * WAD)


def test_add_liquidity__zero__reverts(vault, lp):
    with ape.reverts("vault: zero amount"):
        vault.add_liquidity(0, sender=lp)


def test_add_liquidity__priced_at_pool_value_after_fees(x, vault, lp, trader2, trader, open_position):
    open_position(trader, 10 * WAD)
    x.close(trader, 0)  # fees make the pool worth more than its shares
    assert _share_price(vault) > WAD
    shares = x.add_liquidity(trader2, 10_000 * TOKEN).return_value
    assert shares == model.lp_shares_for_deposit(10_000 * WAD, vault.total_lp_shares() - shares, vault.pool_value() - 10_000 * WAD)
    assert shares < 10_000 * WAD


def test_inflation_attack__tiny_first_deposit_then_donation__victim_keeps_value(admin, attacker, trader):
    x = Exchange(deploy_system(admin, atomic_trading=True))
    vault = x.vault
    x.add_liquidity(attacker, 1)  # one token unit
    x.fund(attacker, 1_000_000 * TOKEN)
    x.d.usd.transfer(vault, 1_000_000 * TOKEN, sender=attacker)  # donation: ignored by accounting
    x.add_liquidity(trader, 1_000 * TOKEN)
    shares = vault.lp_shares(trader)
    assert shares > 0
    value = model.lp_value_of_shares(shares, vault.total_lp_shares(), vault.pool_value())
    assert value >= 1_000 * WAD - 1


def test_remove_liquidity__pays_share_of_value(x, vault, usd, lp):
    shares = vault.lp_shares(lp)
    receipt = vault.remove_liquidity(shares // 4, sender=lp)
    assert usd.balanceOf(lp) == 250_000 * TOKEN
    assert vault.lp_shares(lp) == shares - shares // 4
    assert receipt.return_value == 250_000 * TOKEN
    assert receipt.events.filter(vault.LiquidityRemoved)[0].shares == shares // 4


def test_remove_liquidity__zero__reverts(vault, lp):
    with ape.reverts("vault: zero shares"):
        vault.remove_liquidity(0, sender=lp)


def test_remove_liquidity__more_than_owned__reverts(vault, lp, attacker):
    with ape.reverts("vault: insufficient shares"):
        vault.remove_liquidity(1, sender=attacker)
    with ape.reverts("vault: insufficient shares"):
        vault.remove_liquidity(vault.lp_shares(lp) + 1, sender=lp)


def test_remove_liquidity__dust_share__reverts_zero_amount(x, vault, lp):
    with ape.reverts("vault: zero amount"):
        vault.remove_liquidity(10**11, sender=lp)  # worth 1e-7 USD < one token unit


def test_remove_liquidity__cash_backing_open_interest__locked(x, vault, lp, trader, open_position):
    open_position(trader, 150 * WAD, collateral_usd=50_000)  # 450,000 USD of skew needs 900,000 of cash
    with ape.reverts("vault: liquidity locked by open interest"):
        vault.remove_liquidity(vault.lp_shares(lp) // 2, sender=lp)
    vault.remove_liquidity(vault.lp_shares(lp) // 20, sender=lp)


def test_pool_value__moves_against_trader_pnl(x, vault, trader, eth, open_position):
    open_position(trader, 10 * WAD)
    before = vault.pool_value()
    x.set_price(eth, 3_300 * WAD)
    pnl_gain = x.health(trader).unrealized_pnl
    assert pnl_gain > 2_900 * WAD
    drop = before - vault.pool_value()
    assert 2_999 * WAD <= drop <= 3_001 * WAD  # the pool is short what the trader is long


def test_remove_liquidity__last_lp_after_pool_loss__gets_everything_left(admin, lp, trader):
    # a share worth less than one unit: the virtual shares must not promise more than the pool has
    x = Exchange(deploy_system(admin, atomic_trading=True))
    vault = x.vault
    x.add_liquidity(lp, 100_000 * TOKEN)
    x.deposit(trader, x.tokens(10_000))
    x.trade(trader, 0, 3 * WAD)  # 9,000 USD: within the net rule's 10% of the pool's cash
    x.set_price(0, 3_300 * WAD)
    x.close(trader, 0)  # the trader's profit is the pool's loss
    value = vault.pool_value()
    assert value < vault.total_lp_shares()
    paid = vault.remove_liquidity(vault.lp_shares(lp), sender=lp).return_value
    assert paid == value // x.token_scale  # everything, down to the last token unit
    assert vault.total_lp_shares() == 0 and 0 <= vault.pool_balance() < x.token_scale
