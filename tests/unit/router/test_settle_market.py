"""Ending a market (SPEC 14): `settle_market(market, price)` (owner: the Governance, so
timelocked) fixes a final price; from then on the market never reads the oracle, its funding
is frozen, new risk is refused, and every position closes at the final price without price
impact or fee — by its owner through the router, or by anyone with `close_settled`. On the
routed deployment (two-step trading, as in production), with the feeder gone."""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex.chain import move_time
from perpdex.checks import everyone_exits
from perpdex.model import WAD
from perpdex.sdk import MAX_UINT256, model_from_chain

ETH, BTC = 0, 1


@pytest.fixture
def book(rx: Any, funded: Any, trader: Any, trader2: Any, attacker: Any) -> list[tuple[Any, int]]:
    """A long and a short in ETH, a long in BTC; then the feeder goes away (every price stale)."""
    for who in (trader, trader2, attacker):
        funded(who, 20_000)
    rx.trade(trader, ETH, 10 * WAD)
    rx.trade(trader2, ETH, -4 * WAD)
    rx.trade(attacker, BTC, WAD // 10)
    move_time(int(rx.d.oracle.max_price_age()) + 1)
    with ape.reverts("oracle: stale price"):
        rx.d.oracle.price(ETH)
    return [(trader, 0), (trader2, 0), (attacker, 0)]


def settle(rx: Any, market: int, price: int) -> Any:
    return rx.d.govern(rx.vault, "settle_market", market, price).executed


def test_settle_market__stale_oracle__owner_price_within_the_jump_bound(rx, book):
    last = int(rx.d.oracle.latest(ETH)[0])
    jump = last * int(rx.d.oracle.max_price_jump()) // WAD
    for bad in (0, last - jump - 1, last + jump + 1):
        with ape.reverts("vault: final price out of range"):
            settle(rx, ETH, bad)
    receipt = settle(rx, ETH, last + jump)
    (ev,) = receipt.decode_logs(rx.vault.MarketSettled)
    assert (ev.market, ev.price) == (ETH, last + jump) and rx.vault.settled_price(ETH) == last + jump
    with ape.reverts("vault: market settled"):  # for good
        settle(rx, ETH, last)


def test_settle_market__fresh_oracle__oracle_price_wins(rx, trader):
    price = int(rx.d.oracle.latest(ETH)[0])
    settle(rx, ETH, price * 11 // 10)  # an owner's price a day old: no free option
    assert rx.vault.settled_price(ETH) == price


def test_settle_market__not_owner__reverts(rx, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        rx.vault.settle_market(ETH, 3_000 * WAD, sender=attacker)
    with ape.reverts("vault: unknown market"):
        settle(rx, 7, 3_000 * WAD)


def test_settled_market__views_at_the_final_price__funding_frozen__no_new_risk(rx, book, trader, router):
    final = int(rx.d.oracle.latest(ETH)[0]) * 9 // 10
    settle(rx, ETH, final)
    settle(rx, BTC, int(rx.d.oracle.latest(BTC)[0]))
    m = model_from_chain(rx, int(rx.vault.market_state(ETH).last_funding_time))
    assert m.settled == {ETH, BTC} and m.prices[ETH] == final
    assert int(rx.vault.pool_value()) == m.pool_value()  # valued at the final prices
    assert rx.d.lens.fill_price(ETH, 1_000 * WAD) == final == rx.d.lens.fill_price(ETH, -WAD)  # no impact
    assert rx.d.lens.predicted_funding_rate(ETH, 24) == 0
    pos = rx.position(trader, 0, ETH)
    assert rx.health(trader).unrealized_pnl == pos.size * (final - pos.entry_price) // WAD
    funding = rx.vault.funding(ETH)
    move_time(30 * 86_400)
    rx.vault.poke(ETH, sender=trader)  # never reads the oracle, changes nothing
    assert rx.vault.funding(ETH) == funding and funding[0] == 0
    # new risk: the request cannot fill; it is cancelled with the vault's reason
    order = rx.order_id(router.commit_order(0, ETH, WAD, MAX_UINT256, sender=trader))
    move_time(int(router.settlement_delay()))
    receipt = router.settle(order, sender=trader)
    assert receipt.decode_logs(router.OrderCancelled)[0].reason == "vault: market settled"


def test_close_settled__anyone__final_price_no_fee__not_before_settlement(rx, book, trader, trader2, attacker):
    with ape.reverts("vault: market not settled"):
        rx.vault.close_settled(trader2, 0, ETH, sender=attacker)
    final = int(rx.d.oracle.latest(ETH)[0]) * 21 // 20
    settle(rx, ETH, final)
    pos = rx.position(trader2, 0, ETH)
    before = int(rx.vault.collateral(trader2, 0))
    receipt = rx.vault.close_settled(trader2, 0, ETH, sender=attacker)
    (ev,) = receipt.decode_logs(rx.vault.PositionModified)
    assert (ev.fill_price, ev.fee, ev.size) == (final, 0, 0)
    assert int(rx.vault.collateral(trader2, 0)) - before == pos.size * (final - pos.entry_price) // WAD + ev.funding
    with ape.reverts("vault: no position"):
        rx.vault.close_settled(trader2, 0, ETH, sender=attacker)


def test_feeder_gone__every_trader_closes_and_withdraws__lps_withdraw(rx, book, router, lp, trader, trader2,
                                                                      attacker):
    """SPEC 11.11 without a feeder: the owner settles both markets at their last prices; a
    trader closes through the router (no round needed), the others are closed by anyone;
    everyone withdraws; the LP leaves through the router; what stays is the insurance fund
    and rounding dust."""
    for market in (ETH, BTC):
        settle(rx, market, int(rx.d.oracle.latest(market)[0]))
    order = rx.order_id(router.commit_close(0, ETH, 0, sender=trader))
    move_time(int(router.settlement_delay()))
    assert router.settleable(order)
    router.settle(order, sender=trader2)
    rx.vault.close_settled(trader2, 0, ETH, sender=trader)
    rx.vault.close_settled(attacker, 0, BTC, sender=attacker)
    for who, sub in book:
        assert rx.open_markets(who, sub) == []
        amount = int(rx.vault.withdrawable(who, sub))
        assert amount > 0 and amount == int(rx.vault.collateral(who, sub)) // rx.token_scale
        rx.vault.withdraw(sub, amount, sender=who)
    shares = int(rx.vault.lp_shares(lp))
    rx.fund(lp, rx.reward_tokens)  # the settler's reward, escrowed by the request
    before = int(rx.d.usd.balanceOf(lp))
    order = rx.order_id(router.commit_remove_liquidity(shares, sender=lp))
    move_time(int(router.settlement_delay()))
    router.settle(order, sender=lp)  # every market settled: no round and no LP_GRACE to wait for
    assert int(rx.vault.lp_shares(lp)) == 0 and int(rx.d.usd.balanceOf(lp)) > before
    left = int(rx.d.usd.balanceOf(rx.vault)) * rx.token_scale
    assert int(rx.vault.insurance_fund()) <= left <= int(rx.vault.insurance_fund()) + 2 * WAD  # dust: virtual shares


def test_settled_market__everyone_exits_check_holds(rx, book, lp, liquidator):
    settle(rx, ETH, int(rx.d.oracle.latest(ETH)[0]) * 4 // 5)  # a 20% drop: the long loses 6,000 USD
    rx.refresh_prices((BTC,))
    result = everyone_exits(rx, book, [lp], liquidator)
    assert result.ok, result.detail + "; ".join(result.problems)
