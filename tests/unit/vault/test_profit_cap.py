"""SPEC 14, 11.12: traders are never paid what the pool does not have. While the traders'
profit (summed per market side) is more than max_pnl_factor of the pool's cash, every winner's
profit counts in its equity, and is paid when it closes, at the same pro-rata share; the pool
values only what it will pay; LPs cannot withdraw until the profit is payable in full again;
and nobody without a position pays: a bystander's collateral stays whole."""

import ape

from perpdex.deploy import deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange, model_from_chain

TOKEN = 10**6
NET_RULE_OFF = {name: {"max_pool_exposure": 10} for name in ("ETH-USD", "BTC-USD")}
POOL_USD = 100_000


def _capped_exchange(admin, lp, max_pnl_factor=0.25):
    x = Exchange(deploy_system(
        admin, atomic_trading=True, governance_delay=0, markets=NET_RULE_OFF,
        pool={"reserve_factor": 2.0, "max_exposure_factor": 4.0, "max_pnl_factor": max_pnl_factor},
    ))
    x.add_liquidity(lp, POOL_USD * TOKEN)
    return x


def _raw_profit(x, who, market):
    pos = x.vault.position(who, 0, market)
    return (int(pos.size) * (x.price(market) - int(pos.entry_price))) // WAD


def _close(x, who, market):
    """Close `who`'s position: (the realized PnL paid, the profit at the fill price)."""
    entry = int(x.vault.position(who, 0, market).entry_price)
    size = int(x.vault.position(who, 0, market).size)
    event = x.close(who, market).events.filter(x.vault.PositionModified)[0]
    return int(event.realized_pnl), size * (int(event.fill_price) - entry) // WAD


def test_profit_cap__winners_paid_pro_rata__cash_never_negative__bystander_whole(admin, lp, trader, trader2, accounts):
    x = _capped_exchange(admin, lp)
    vault, usd, eth = x.vault, x.d.usd, x.d.markets["ETH-USD"]
    bystander = accounts[8]
    x.deposit(bystander, 500_000 * TOKEN)  # an honest trader with no position
    for who in (trader, trader2):
        x.deposit(who, 20_000 * TOKEN)
        x.trade(who, eth, 20 * WAD)  # 60k notional each, the pool's side cap is 200k
    for price in (3_600, 4_320):  # +44%, within the oracle's jump bound per update
        x.set_price(eth, price * WAD)

    m = model_from_chain(x, ape.chain.pending_timestamp)
    value, _, _, profit = m.valuation()
    num, den = m.profit_ratio()
    cash = int(vault.pool_balance())
    assert profit * WAD > cash * WAD // 4 and (num, den) == (cash * WAD // 4, profit * WAD)  # the cap binds
    # equity counts the profit at the pro-rata share, the chain and the model alike
    raw_a = _raw_profit(x, trader, eth)
    assert int(vault.account_health(trader, 0).unrealized_pnl) == raw_a * num // den < raw_a
    # the pool values only what it will pay: cash - max_pnl_factor x cash, not cash - profit
    assert int(vault.pool_value()) == value and value > cash - profit
    with ape.reverts("vault: traders' profit locks liquidity"):
        vault.remove_liquidity(vault.lp_shares(lp) // 10, sender=lp)

    # the first winner closes: its profit at the fill is paid at the same share
    paid_a, raw_a = _close(x, trader, eth)
    assert paid_a == raw_a * num // den
    # the second is paid at least the same share (paying one winner never lowers the ratio:
    # the profit left falls faster than the cash), and each payout is at most
    # max_pnl_factor of the cash at the time (plus the fill's price impact, < 1% here)
    assert paid_a <= cash // 4
    cash_b = int(vault.pool_balance())
    paid_b, raw_b = _close(x, trader2, eth)
    assert paid_b * raw_a >= paid_a * raw_b and paid_b < raw_b
    assert paid_b <= cash_b // 4 * 101 // 100
    # SPEC 11.12: pool cash never below zero, nothing owed to it unpaid
    assert int(vault.pool_balance()) >= cash_b - paid_b > 0  # (plus the fee and funding B paid)
    assert int(vault.unpaid_losses()) == 0

    # everyone leaves with what they are owed: the bystander whole, the winners their capped
    # profit, the LP the pool's value; the vault keeps rounding dust only
    vault.withdraw(0, 500_000 * TOKEN, sender=bystander)
    assert usd.balanceOf(bystander) == 500_000 * TOKEN
    for who in (trader, trader2):
        vault.withdraw(0, int(vault.collateral(who, 0)) // 10**12, sender=who)
    owed = int(vault.pool_value()) // 10**12
    assert vault.remove_liquidity(vault.lp_shares(lp), sender=lp).return_value >= owed - 1
    assert usd.balanceOf(vault) <= 2


def test_profit_cap__loose_factor__profit_paid_in_full(admin, lp, trader):
    """The default 0.9 of the pool's cash is far from an ordinary move: a +20% winner is paid
    its whole profit and equity counts all of it."""
    x = _capped_exchange(admin, lp, max_pnl_factor=0.9)
    vault, eth = x.vault, x.d.markets["ETH-USD"]
    x.deposit(trader, 20_000 * TOKEN)
    x.trade(trader, eth, 20 * WAD)
    x.set_price(eth, 3_600 * WAD)
    assert model_from_chain(x, ape.chain.pending_timestamp).profit_ratio() == (1, 1)
    assert int(vault.account_health(trader, 0).unrealized_pnl) == _raw_profit(x, trader, eth)
    paid, raw = _close(x, trader, eth)
    assert paid == raw > 0
