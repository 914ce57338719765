"""An LP cannot take cash the vault does not hold (SPEC 11.12, 14): losses an underwater
account realized beyond its collateral are booked to the pool at once, but the vault holds
them only once the account pays or its bad debt is covered. Found by a `perpdex fuzz
--profile long` campaign on revm (160,534 steps): an LP's withdrawal took the pool's cash
including such a loss, and the token refused the transfer."""

import ape

from perpdex.deploy import deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange

TOKEN = 10**6


def test_lp_withdrawal__cash_owed_by_an_underwater_account__stays_until_it_is_paid(admin, lp, trader, trader2, liquidator):
    x = Exchange(deploy_system(admin, atomic_trading=True, governance_delay=0))
    eth, btc = x.d.markets["ETH-USD"], x.d.markets["BTC-USD"]
    vault, usd = x.vault, x.d.usd
    x.add_liquidity(lp, 1_000_000 * TOKEN)
    x.deposit(trader2, 50_000 * TOKEN)  # an honest bystander's collateral
    x.deposit(trader, 10_000 * TOKEN)
    x.trade(trader, eth, 30 * WAD)  # 90k notional (the net rule allows 10% of the pool's cash)
    x.trade(trader, btc, WAD)  # 60k notional, the position that stays open
    x.set_price(eth, 2_600 * WAD)  # -12k on ETH: the account is past its collateral
    assert vault.is_liquidatable(trader, 0)
    x.close(trader, eth)  # a reducing trade is allowed below MM: it realizes the whole loss
    owed = -vault.collateral(trader, 0)
    assert owed > 0 and vault.unpaid_losses() == owed
    # the pool's books count the loss, the vault's tokens do not hold it yet
    assert usd.balanceOf(vault) * 10**12 < vault.pool_balance() + 50_000 * WAD + vault.insurance_fund()
    with ape.reverts("vault: pool cash locked"):
        vault.remove_liquidity(vault.lp_shares(lp), sender=lp)
    # the bystander is never the one who pays
    vault.withdraw(0, 50_000 * TOKEN, sender=trader2)
    assert usd.balanceOf(trader2) == 50_000 * TOKEN

    x.d.keeper.liquidate(trader, 0, sender=liquidator)  # the bad debt is covered: nothing owed
    assert vault.collateral(trader, 0) == 0 and vault.unpaid_losses() == 0
    paid = vault.remove_liquidity(vault.lp_shares(lp), sender=lp).return_value
    assert paid > 0 and usd.balanceOf(vault) * 10**12 >= vault.pool_balance() + vault.insurance_fund()
