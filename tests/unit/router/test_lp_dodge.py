"""Issue 17, attack 5 (the LP dodge): pool_value counts an unliquidated account's whole loss,
more than it will ever pay. An LP who sees such an account and leaves before the liquidation
books the bad debt would take its share of that bad debt out of the LPs who stay. LP requests
fill only OrderRouter.LP_GRACE seconds after their settlement rounds, so the liquidation lands
first and the leaver pays its part like everyone else."""

import ape

from perpdex.deploy import deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange


def test_lp_dodge__leaving_before_a_pending_liquidation__pays_the_same_share_of_its_bad_debt(
    admin, lp, attacker, trader, liquidator
):
    x = Exchange(deploy_system(admin, governance_delay=0))
    eth, vault, router = x.d.markets["ETH-USD"], x.vault, x.d.router
    for who in (lp, attacker):
        x.add_liquidity(who, x.tokens(500_000))
    shares = int(vault.lp_shares(attacker))
    assert shares == int(vault.lp_shares(lp))
    x.deposit(trader, usd=10_000)
    x.trade(trader, eth, 30.0)  # 90k notional on 10k: 9x (the net rule allows 10% of the pool's cash)
    x.set_price(eth, 2_400 * WAD)  # -18k: 8k beyond its collateral, not liquidated yet
    assert int(vault.equity(trader, 0)) < 0
    value_before = int(vault.pool_value())  # counts the whole 18k loss as the pool's

    order = x.order_id(x.remove_liquidity(attacker, shares, settle=False))
    x.next_round()  # the settlement round exists, at the same price
    with ape.reverts("router: settlement round not yet"):  # not before the liquidations it calls for
        router.settle(order, sender=attacker)
    covered = x.d.keeper.liquidate(trader, 0, sender=liquidator).events.filter(vault.BadDebtCovered)[0]
    assert covered.bad_debt > 7_000 * WAD and covered.from_pool > 0
    x.wait_lp_grace()
    dodger = _paid(x, router.settle(order, sender=attacker))

    # what leaving at value_before would have paid: half of the pool's loss more
    would_have = value_before * shares // int(vault.total_lp_shares() + shares) // x.token_scale
    assert would_have - dodger >= int(covered.from_pool) // 2 // x.token_scale - 1
    # the LP who stayed gets as much for the same shares: the leaver took nothing from it
    order = x.order_id(x.remove_liquidity(lp, shares, settle=False))
    x.next_round()
    x.wait_lp_grace()
    stayer = _paid(x, router.settle(order, sender=lp))
    assert abs(stayer - dodger) <= x.tokens(1)


def _paid(x, receipt) -> int:
    """Tokens an LP request paid out (the settler's reward apart)."""
    [removed] = x.events(receipt, "LiquidityRemoved")
    return int(removed["amount"])
