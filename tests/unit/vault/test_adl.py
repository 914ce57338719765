"""SPEC 14, 11.16: the loss waterfall's end. Bad debt beyond the insurance fund goes to the pool
up to its loss cap per 24 h; the rest is booked against the other side of the bankrupt's
markets (size and bankruptcy price), and `deleverage` closes profitable positions there at
that price: the pool gets back what it advanced, an ADL'd account keeps equity >= 0 and gives
up at most the profit it had, and an account without a position never pays."""

import ape
import pytest

from perpdex.deploy import deploy_system
from perpdex.chain import move_time
from perpdex.model import ADL_EXPIRY, ADL_LONGS, ADL_SHORTS, WAD
from perpdex.sdk import Exchange

TOKEN = 10**6
NET_RULE_OFF = {name: {"max_pool_exposure": 10} for name in ("ETH-USD", "BTC-USD")}
DAY = 86_400


def _exchange(admin, lp, loss_cap):
    x = Exchange(deploy_system(
        admin, atomic_trading=True, governance_delay=0, markets=NET_RULE_OFF,
        pool={"reserve_factor": 2.0, "max_exposure_factor": 4.0, "pool_loss_cap": loss_cap},
    ))
    x.add_liquidity(lp, 100_000 * TOKEN)
    return x


@pytest.fixture
def bankrupt_short(admin, lp, trader, trader2, attacker, liquidator, accounts):
    """Three longs (10 ETH at 3,000, 5 and 5 ETH at 3,150), a bystander with no position, and a
    20 ETH short on 3,500 USD that a move to 3,600 leaves ~8,500 USD past its collateral; the
    pool absorbs nothing (pool_loss_cap 0): everything beyond the insurance fund goes to ADL."""
    x = _exchange(admin, lp, loss_cap=0)
    eth = x.d.markets["ETH-USD"]
    bystander, third = accounts[8], accounts[9]
    x.deposit(bystander, 50_000 * TOKEN)
    for who in (trader, trader2, third):
        x.deposit(who, 20_000 * TOKEN)
    x.deposit(attacker, 3_500 * TOKEN)
    x.trade(trader, eth, 10 * WAD)
    x.trade(attacker, eth, -20 * WAD)
    x.set_price(eth, 3_150 * WAD)
    x.trade(trader2, eth, 5 * WAD)
    x.trade(third, eth, 5 * WAD)
    x.set_price(eth, 3_600 * WAD)
    value_before = int(x.vault.pool_value())
    receipt = x.d.keeper.liquidate(attacker, 0, sender=liquidator)
    return x, eth, bystander, receipt, value_before


def test_adl__booked_at_the_bankruptcy_price(bankrupt_short, attacker):
    x, eth, _, receipt, _ = bankrupt_short
    vault = x.vault
    covered = receipt.events.filter(vault.BadDebtCovered)[0]
    assert covered.owner == attacker and covered.bad_debt > 8_000 * WAD
    # nothing from the pool (its loss cap is 0): all of it beyond the insurance fund goes to ADL
    assert covered.from_pool == 0 and covered.to_adl == covered.bad_debt - covered.from_insurance > 0
    booked = receipt.events.filter(vault.DeleverageBooked)[0]
    per_unit = covered.to_adl * WAD // (20 * WAD)
    assert (booked.market, booked.owing_side, booked.size) == (eth, ADL_LONGS, 20 * WAD)
    assert booked.price == 3_600 * WAD - per_unit  # where 20 ETH of longs give up exactly to_adl
    expires = receipt.timestamp + ADL_EXPIRY
    assert tuple(vault.adl_pending(eth, ADL_LONGS)) == (20 * WAD, booked.price, expires)
    assert tuple(vault.adl_pending(eth, ADL_SHORTS)) == (0, 0, 0)  # the shorts owe nothing


def test_adl__refusals(bankrupt_short, admin, trader, attacker, accounts):
    x, eth, bystander, _, _ = bankrupt_short
    vault = x.vault
    with ape.reverts("vault: not the deleverager"):  # the ADL keeper only, never a trader
        vault.deleverage(trader, 0, eth, WAD, sender=attacker)
    with ape.reverts("vault: no position"):  # an account without a position never pays
        vault.deleverage(bystander, 0, eth, WAD, sender=admin)
    late = accounts[7]  # a long opened above the bankruptcy price would give up more than its profit
    x.deposit(late, 10_000 * TOKEN)
    x.trade(late, eth, WAD)
    with ape.reverts("vault: not in profit at the bankruptcy price"):
        vault.deleverage(late, 0, eth, WAD, sender=admin)
    x.deposit(attacker, 10_000 * TOKEN)
    x.trade(attacker, eth, -WAD)  # the shorts owe nothing
    with ape.reverts("vault: nothing to deleverage"):
        vault.deleverage(attacker, 0, eth, WAD, sender=admin)
    with ape.reverts("vault: zero size"):
        vault.deleverage(trader, 0, eth, 0, sender=admin)


def test_adl__partial_then_full__pool_made_whole__bystander_untouched(bankrupt_short, admin, trader, trader2, lp, accounts):
    x, eth, bystander, receipt, value_before = bankrupt_short
    vault, usd = x.vault, x.d.usd
    to_adl = receipt.events.filter(vault.BadDebtCovered)[0].to_adl
    size, price, _ = (int(v) for v in vault.adl_pending(eth, ADL_LONGS))
    mark = 3_600 * WAD
    recovered = 0
    for who, q in ((trader, 4 * WAD), (trader, 100 * WAD), (trader2, 100 * WAD)):
        pos = vault.position(who, 0, eth)
        equity_at_mark = int(vault.equity(who, 0))
        profit_at_mark = int(pos.size) * (mark - int(pos.entry_price)) // WAD
        event = vault.deleverage(who, 0, eth, q, sender=admin).events.filter(vault.Deleveraged)[0]
        closed = min(q, int(pos.size), size)
        assert (event.closed_size, event.size, event.price, event.mark_price) == (
            closed, int(pos.size) - closed, price, mark)
        # paid its profit at the bankruptcy price: never a loss, never more than at the mark
        assert event.realized_pnl == closed * (price - int(pos.entry_price)) // WAD >= 0
        assert event.recovered == closed * (mark - price) // WAD
        # it gave up at most the profit it had, and its equity stays >= 0
        assert equity_at_mark - int(vault.equity(who, 0)) <= profit_at_mark
        assert int(vault.equity(who, 0)) >= 0
        recovered += event.recovered
        size -= closed
        assert tuple(vault.adl_pending(eth, ADL_LONGS))[0] == size
    # 15 of the 20 ETH owed are closed (those two longs hold no more): 15/20 of it is back
    assert size == 5 * WAD and abs(recovered - to_adl * 15 // 20) <= 10**7
    third = accounts[9]
    with ape.reverts("vault: ADL recovery pending"):  # what comes back is the LPs' already in
        x.add_liquidity(accounts[7], 1_000 * TOKEN)
    vault.deleverage(third, 0, eth, 5 * WAD, sender=admin)
    assert tuple(vault.adl_pending(eth, ADL_LONGS)) == (0, 0, 0)
    # the pool is whole: worth what it was before the bankruptcy, at the same price (what it
    # advanced came back; rounding dust and a few seconds of funding aside)
    assert abs(int(vault.pool_value()) - value_before) <= WAD // 100
    # the bystander had no position: all of its collateral leaves with it
    vault.withdraw(0, 50_000 * TOKEN, sender=bystander)
    assert usd.balanceOf(bystander) == 50_000 * TOKEN
    x.add_liquidity(accounts[7], 1_000 * TOKEN)  # nothing owed any more: deposits are open


def test_adl__expires_an_hour_after_its_last_booking__the_pool_keeps_the_rest(bankrupt_short, admin, trader, lp,
                                                                             attacker, liquidator, accounts):
    """Positions opened later had no part in the bankruptcy: an hour after its last booking
    nothing is owed any more (the pool keeps what it advanced as its loss), deposits open
    again, and the next booking starts afresh, with an event for what expired."""
    x, eth, _, receipt, _ = bankrupt_short
    vault = x.vault
    size, price, expires = (int(v) for v in vault.adl_pending(eth, ADL_LONGS))
    with ape.reverts("vault: ADL recovery pending"):
        x.add_liquidity(accounts[7], 1_000 * TOKEN)
    move_time(expires - receipt.timestamp - 1)
    x.refresh_prices()
    assert int(vault.adl_pending(eth, ADL_LONGS)[0]) == size  # still owed a second before
    move_time(1)
    assert tuple(vault.adl_pending(eth, ADL_LONGS)) == (0, 0, 0)
    value = int(vault.pool_value())
    with ape.reverts("vault: nothing to deleverage"):
        vault.deleverage(trader, 0, eth, WAD, sender=admin)
    assert int(vault.pool_value()) == value  # nothing written off at once: the pool had advanced it
    x.add_liquidity(accounts[7], 1_000 * TOKEN)
    again = _liquidated_short(x, attacker, eth, liquidator)
    expired = again.events.filter(vault.DeleverageExpired)[0]
    assert (expired.market, expired.owing_side, expired.size, expired.price) == (eth, ADL_LONGS, size, price)
    booked = again.events.filter(vault.DeleverageBooked)[0]
    assert tuple(vault.adl_pending(eth, ADL_LONGS))[:2] == (booked.size, booked.price)  # afresh: not added to the old


def _liquidated_short(x, who, market, liquidator, collateral=3_100, size=20):
    """`who` opens a short of `size` ETH on `collateral` USD at 3,000; +20% bankrupts it: the
    liquidation's receipt."""
    x.deposit(who, collateral * TOKEN)
    x.set_price(market, 3_000 * WAD)
    x.trade(who, market, -size * WAD)
    x.set_price(market, 3_300 * WAD)
    x.set_price(market, 3_600 * WAD)
    return x.d.keeper.liquidate(who, 0, sender=liquidator)


def _bankrupt(x, who, market, liquidator, collateral=3_100, size=20):
    return _liquidated_short(x, who, market, liquidator, collateral, size).events.filter(x.vault.BadDebtCovered)[0]


def test_loss_cap__pool_absorbs_its_budget_per_24h__the_rest_to_adl(admin, lp, trader, attacker, trader2, liquidator, chain):
    """pool_loss_cap 1%: the first bad debt of a window opens it with 1% of the pool's cash
    (~1,000 USD) as budget; what is beyond goes to ADL; a second bankruptcy in the same
    window goes all to ADL; 24 h later a new window opens."""
    x = _exchange(admin, lp, loss_cap=0.01)
    eth, vault = x.d.markets["ETH-USD"], x.vault
    x.deposit(trader, 50_000 * TOKEN)
    x.trade(trader, eth, 40 * WAD)  # the other side, which owes the ADL
    assert tuple(vault.loss_window()) == (0, 0)
    first = _bankrupt(x, attacker, eth, liquidator)
    start, left = (int(v) for v in vault.loss_window())
    # the budget: 1% of the cash the pool held then, without the loss it books but was never
    # paid: what it holds now (the insurance fund paid its part from outside the pool)
    budget = (int(vault.pool_balance()) - int(vault.unpaid_losses()) + first.from_insurance) * WAD // 100 // WAD
    assert first.from_pool + left == budget and first.from_pool == min(budget, first.bad_debt - first.from_insurance)
    assert first.to_adl == first.bad_debt - first.from_insurance - first.from_pool > 0
    second = _bankrupt(x, trader2, eth, liquidator)  # same window, budget spent
    assert second.from_pool == 0 and second.to_adl == second.bad_debt - second.from_insurance > 0
    assert tuple(vault.loss_window()) == (start, 0)
    assert int(vault.adl_pending(eth, ADL_LONGS)[0]) == 40 * WAD  # both shorts' sizes
    chain.mine(timestamp=int(chain.blocks.head.timestamp) + DAY)
    x.refresh_prices()
    third = _bankrupt(x, attacker, eth, liquidator)  # a new window, a new budget
    assert third.from_pool > 0 and int(vault.loss_window()[0]) > start


def test_adl_keeper__ranks_by_return_on_equity__closes_in_that_order(bankrupt_short, admin, trader, trader2, attacker, accounts):
    """perpdex.keepers.adl: only eligible positions on the owing side are ranked (the short,
    the bystander and a flat account are not), the highest profit per unit of equity first;
    `deleverage_pending` closes them in that order until nothing is owed."""
    from perpdex.keepers.adl import deleverage_pending, pending, rank, readout

    x, eth, bystander, _, _ = bankrupt_short
    everyone = [(trader, 0), (trader2, 0), (accounts[9], 0), (bystander, 0), (attacker, 0)]
    [owed] = pending(x)
    assert (owed.market, owed.side, owed.size) == (eth, ADL_LONGS, 20 * WAD)
    ranked = rank(x, owed, everyone)
    assert {(c.owner, c.sub) for c in ranked} == {(trader.address, 0), (trader2.address, 0), (accounts[9].address, 0)}
    assert ranked[0].owner == trader.address  # 10 ETH from 3,000: the largest return on equity
    assert [c.return_on_equity for c in ranked] == sorted((c.return_on_equity for c in ranked), reverse=True)
    [row] = readout(x, everyone)
    assert (row["market"], row["owing_side"], row["size"]) == ("ETH-USD", "longs", 20.0)
    assert [c["owner"] for c in row["candidates"]] == [c.owner for c in ranked]

    outcomes = deleverage_pending(x, admin, everyone)
    assert [o.candidate for o in outcomes] == ranked and all(o.receipt is not None for o in outcomes)
    assert sum(o.closed for o in outcomes) == 20 * WAD and pending(x) == []


def test_adl_keeper__a_pass_reports_each_close_and_a_refusal_and_goes_on(bankrupt_short, admin, trader, trader2, accounts):
    """`perpdex keeper adl`'s pass (AdlKeeper.step): a position the vault refuses is reported
    with its reason and skipped, the next ones close what is owed, each with a line."""
    from perpdex.keepers.adl import AdlKeeper

    x, eth, _, _, _ = bankrupt_short
    lines: list[str] = []
    keeper = AdlKeeper(x, trader2, lambda: [(trader, 0)], lines.append)  # not the deleverager
    [refused] = keeper.step()
    assert refused.receipt is None and "vault: not the deleverager" in refused.reason
    assert lines[-1].action == "skipped" and "not the deleverager" in lines[-1]
    keeper = AdlKeeper(x, admin, lambda: [(trader, 0), (trader2, 0), (accounts[9], 0)], lines.append)
    done = keeper.step()
    assert [o.closed for o in done] == [10 * WAD, 5 * WAD, 5 * WAD]
    assert [line.action for line in lines[-3:]] == ["deleveraged"] * 3
    assert keeper.step() == []  # nothing owed any more: a pass does nothing


def test_set_deleverager__owner_only_through_the_governance__the_old_one_loses_the_role(
    bankrupt_short, admin, trader, attacker, liquidator,
):
    """Who may deleverage is a role only the owner (the timelocked Governance) sets: an
    attacker cannot give it to itself, and once moved, the old holder is refused."""
    x, eth, _, _, _ = bankrupt_short
    vault = x.vault
    for who in (attacker, admin):  # the deployer too: the Governance owns the vault
        with ape.reverts("ownable: caller is not the owner"):
            vault.set_deleverager(attacker, sender=who)
    receipt = x.d.govern(vault, "set_deleverager", liquidator.address).executed
    assert receipt.events.filter(vault.DeleveragerSet)[0].deleverager == liquidator.address
    with ape.reverts("vault: not the deleverager"):
        vault.deleverage(trader, 0, eth, WAD, sender=admin)
    assert vault.deleverage(trader, 0, eth, WAD, sender=liquidator).events.filter(vault.Deleveraged)[0].closed_size == WAD
