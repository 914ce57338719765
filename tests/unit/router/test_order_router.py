"""OrderRouter (SPEC 13): every request fills at its settlement round, or is cancelled with
its reason; escrow, caps, cancels and the attacks a two-step router must stop."""

from __future__ import annotations

import ape
import pytest

from perpdex import model
from perpdex.chain import move_time
from perpdex.model import WAD
from perpdex.sdk import MAX_UINT256

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

ETH = 0
PENDING, SETTLED, CANCELLED = 1, 2, 3
MAX_PENDING = 4
LP_ACCOUNT = 2**30
CLAMPED_PRICE = 2**96 - 1  # where the router clamps an acceptable price: still no bound


def feed(rx, eth_price: int, step: int = 2) -> int:
    """A round of every market, `step` seconds on (ETH at `eth_price`, BTC unchanged); its time."""
    move_time(step)
    return rx.d.oracle.set_prices([0, 1], [eth_price, rx.price(1)], sender=rx.d.deployer).timestamp


class _Event(dict):
    __getattr__ = dict.__getitem__


def event(rx, receipt, name):
    """The receipt's one `name` event, decoded from the raw log (perpdex.logs)."""
    (found,) = rx.events(receipt, name)
    return _Event(found)


# ------------------------------------------------------------------ the settlement round


def test_settle__fills_at_the_settlement_round__not_the_commit_price_nor_a_later_round(
        rx, router, trader, funded, commit, liquidator):
    funded(trader)
    skew_scale = rx.params(ETH).skew_scale
    order_id = commit(trader, WAD, acceptable=MAX_UINT256)
    assert router.order(order_id).status == PENDING
    feed(rx, 3030 * WAD)  # the settlement round
    feed(rx, 3300 * WAD)  # a later round: never used
    receipt = router.settle(order_id, sender=liquidator)
    fill = model.fill_price(3030 * WAD, 0, WAD, skew_scale)
    ev = event(rx, receipt, "OrderSettled")
    assert (ev.order_id, ev.owner, ev.settler, ev.size_delta, ev.fill_price) == (order_id, trader, liquidator, WAD, fill)
    assert ev.fee == model.trade_fee(WAD, fill, rx.params(ETH).taker_fee)
    pm = event(rx, receipt, "PositionModified")
    assert pm.oracle_price == 3030 * WAD
    assert rx.position(trader, 0, ETH).entry_price == fill
    assert router.order(order_id).status == SETTLED


def test_settle__round_not_yet__reverts_and_changes_nothing(rx, router, trader, funded, commit, usd):
    funded(trader)
    order_id = commit(trader, WAD)
    move_time(1)
    rx.refresh_prices()  # a round, but before committed_at + settlement_delay
    assert not router.settleable(order_id)
    before = usd.balanceOf(router)
    with ape.reverts("router: settlement round not yet"):
        router.settle(order_id, sender=trader)
    assert router.order(order_id).status == PENDING and usd.balanceOf(router) == before
    assert rx.position(trader, 0, ETH).size == 0


def test_settle__twice__reverts(rx, router, trader, funded, commit):
    funded(trader)
    order_id = commit(trader, WAD)
    rx.settle_next(order_id)
    with ape.reverts("router: order not pending"):
        router.settle(order_id, sender=trader)
    assert rx.position(trader, 0, ETH).size == WAD


def test_settle__unknown_id__reverts(router, trader):
    for bad in (0, router.order_count() + 1):
        with ape.reverts("router: unknown order"):
            router.settle(bad, sender=trader)


def test_settle__after_the_deadline__cancels_and_never_fills_late(rx, router, trader, funded, commit, liquidator, usd):
    funded(trader)
    order_id = commit(trader, WAD, acceptable=MAX_UINT256)
    o = router.order(order_id)
    # no round until after the deadline, then one at +10%
    move_time(o.deadline - o.committed_at + 1)
    rx.d.oracle.set_prices([0, 1], [3300 * WAD, rx.price(1)], sender=rx.d.deployer)
    assert not router.settleable(order_id)
    paid = usd.balanceOf(liquidator)
    receipt = router.settle(order_id, sender=liquidator)
    ev = event(rx, receipt, "OrderCancelled")
    assert (ev.reason, ev.caller, ev.reward) == ("router: expired", liquidator, rx.reward_tokens)
    assert usd.balanceOf(liquidator) == paid + rx.reward_tokens
    assert rx.position(trader, 0, ETH).size == 0 and router.order(order_id).status == CANCELLED


def test_settle__round_in_time_but_settled_late__cancels(rx, router, trader, funded, commit):
    funded(trader)
    order_id = commit(trader, WAD)
    feed(rx, 3000 * WAD)
    o = router.order(order_id)
    move_time(o.deadline - o.settle_after + 1)
    receipt = router.settle(order_id, sender=trader)
    assert event(rx, receipt, "OrderCancelled").reason == "router: expired"
    assert rx.position(trader, 0, ETH).size == 0


def test_settle__vault_refuses_at_that_price__cancelled_with_the_reason(rx, router, trader, funded, commit, liquidator):
    funded(trader)
    # a buy bounded at 3010: the settlement round is at 3100
    order_id = commit(trader, WAD, acceptable=3010 * WAD)
    feed(rx, 3100 * WAD)
    receipt = router.settle(order_id, sender=liquidator)
    ev = event(rx, receipt, "OrderCancelled")
    assert ev.reason == "vault: fill above acceptable price"
    assert ev.reward == rx.reward_tokens  # the settler is paid for a cancellation too
    # too big for the margin: cancelled with the vault's margin reason
    big = commit(trader, 100 * WAD, acceptable=MAX_UINT256)
    receipt = rx.settle_next(big)
    assert event(rx, receipt, "OrderCancelled").reason == "vault: below initial margin"
    assert rx.position(trader, 0, ETH).size == 0


def test_settle__fill_that_runs_out_of_gas__reverts_and_never_cancels(rx, router, trader, funded, commit,
                                                                     liquidator, chain):
    """A settler cannot turn a fill into a cancellation by the gas it sends: a fill that fails
    without a reason (out of gas) reverts the settle, and the order stays pending. Run on the
    EVM directly (the boa provider does not apply a transaction's gas limit)."""
    funded(trader)
    order_id = commit(trader, WAD)
    rx.next_round()
    env = chain.provider.env
    data = bytes(router.settle.encode_input(order_id))
    starved = 0
    for gas in range(40_000, 400_000, 10_000):
        computation = env.execute_code(to_address=router.address, sender=liquidator.address, gas=gas, data=data)
        starved += bool(computation.is_error)
        status = router.order(order_id).status
        assert status in (PENDING, SETTLED)
        if status == SETTLED:
            break
    assert starved > 5 and router.order(order_id).status == SETTLED
    assert rx.position(trader, 0, ETH).size == WAD


def test_settle_many__settles_what_is_due_and_skips_the_rest(rx, router, trader, trader2, funded, commit):
    funded(trader)
    funded(trader2)
    first = commit(trader, WAD)
    second = commit(trader2, -WAD)
    rx.next_round()
    late = commit(trader, WAD)  # its round does not exist yet
    done = router.settle_many([first, 0, second, late, first, 10**9], sender=trader2).return_value
    assert done == 2
    assert [router.order(i).status for i in (first, second, late)] == [SETTLED, SETTLED, PENDING]


def test_commit_close__closes_whatever_the_position_is_at_settlement(rx, router, trader, funded, commit):
    funded(trader)
    rx.settle_next(commit(trader, 2 * WAD))
    close_id = rx.order_id(rx.close(trader, ETH, settle=False))
    rx.settle_next(commit(trader, WAD))  # settles before the close: the position is now 3
    feed(rx, 3000 * WAD)
    receipt = router.settle(close_id, sender=trader)
    assert event(rx, receipt, "OrderSettled").size_delta == -3 * WAD
    assert rx.position(trader, 0, ETH).size == 0


def test_commit_close__position_flipped_before_settlement__cancelled_never_opens(rx, router, trader, funded, commit):
    funded(trader)
    rx.settle_next(commit(trader, WAD))
    close_id = rx.order_id(router.commit_close(0, ETH, 0, sender=trader))
    rx.settle_next(commit(trader, -2 * WAD))  # now short 1
    feed(rx, 3000 * WAD)
    receipt = router.settle(close_id, sender=trader)
    assert event(rx, receipt, "OrderCancelled").reason == "router: position closed or flipped"
    assert rx.position(trader, 0, ETH).size == -WAD


# ------------------------------------------------------------------ escrow, reward, cap


def test_escrow__router_holds_each_live_orders_reward_and_pays_the_settler(rx, router, trader, funded, commit,
                                                                          liquidator, usd):
    funded(trader)
    wallet, held = usd.balanceOf(trader), usd.balanceOf(router)
    ids = [commit(trader, WAD), commit(trader, -WAD // 2)]
    assert usd.balanceOf(trader) == wallet - 2 * rx.reward_tokens
    assert usd.balanceOf(router) == held + 2 * rx.reward_tokens
    rx.next_round()
    paid = usd.balanceOf(liquidator)
    router.settle_many(ids, sender=liquidator)
    assert usd.balanceOf(liquidator) == paid + 2 * rx.reward_tokens
    assert usd.balanceOf(router) == held
    assert rx.reward_tokens * rx.token_scale >= router.settlement_reward() > 0


def test_commit__cap_on_pending_requests_per_account(rx, router, trader, funded, commit):
    funded(trader)
    funded(trader, sub=1)
    ids = [commit(trader, WAD // 10) for _ in range(4)]
    assert router.pending_orders(trader, 0) == 4
    with ape.reverts("router: too many pending requests"):
        commit(trader, WAD // 10)
    commit(trader, WAD // 10, sub=1)  # another sub-account is another account
    rx.settle_next(ids[0])
    assert router.pending_orders(trader, 0) == 3
    commit(trader, WAD // 10)


# ------------------------------------------------------------------ cancel


def test_cancel__owner_before_the_settlement_time__refunds_everything(rx, router, trader, funded, commit, usd):
    funded(trader)
    wallet = usd.balanceOf(trader)
    order_id = commit(trader, WAD)
    receipt = router.cancel(order_id, sender=trader)
    ev = event(rx, receipt, "OrderCancelled")
    assert (ev.reason, ev.refund, ev.reward) == ("router: cancelled by owner", rx.reward_tokens, 0)
    assert usd.balanceOf(trader) == wallet and router.order(order_id).status == CANCELLED
    with ape.reverts("router: order not pending"):
        router.cancel(order_id, sender=trader)


def test_cancel__someone_elses_order__reverts(router, trader, attacker, funded, commit):
    funded(trader)
    order_id = commit(trader, WAD)
    with ape.reverts("router: not the owner"):
        router.cancel(order_id, sender=attacker)
    assert router.order(order_id).status == PENDING


def test_cancel__owner_once_the_round_may_exist__refused_so_it_is_no_free_option(rx, router, trader, funded, commit):
    funded(trader)
    order_id = commit(trader, WAD)
    feed(rx, 2900 * WAD)  # the settlement round landed: its price is known
    with ape.reverts("router: order is live"):
        router.cancel(order_id, sender=trader)
    assert router.order(order_id).status == PENDING


def test_cancel__anyone_after_the_deadline__paid_the_reward(rx, router, trader, attacker, funded, commit, usd):
    funded(trader)
    order_id = commit(trader, WAD)
    o = router.order(order_id)
    move_time(o.deadline - o.committed_at + 1)
    paid = usd.balanceOf(attacker)
    receipt = router.cancel(order_id, sender=attacker)
    assert event(rx, receipt, "OrderCancelled").reason == "router: expired"
    assert usd.balanceOf(attacker) == paid + rx.reward_tokens


# ------------------------------------------------------------------ LP requests


def test_add_liquidity__shares_minted_at_the_settlement_rounds_pool_value(rx, router, trader, trader2, funded, commit,
                                                                         lp, usd):
    funded(trader)
    rx.settle_next(commit(trader, 3 * WAD))  # a long: pool value moves against the price
    amount = rx.tokens(100_000)
    rx.fund(trader2, amount + rx.reward_tokens)
    order_id = rx.order_id(router.commit_add_liquidity(amount, sender=trader2))
    assert router.order(order_id).amount == amount
    feed(rx, 3100 * WAD)  # the settlement round
    with ape.reverts("router: settlement round not yet"):  # LP requests wait LP_GRACE after their rounds
        router.settle(order_id, sender=lp)
    move_time(rx.lp_grace - 1)
    assert not router.settleable(order_id)
    move_time(1)
    assert router.settleable(order_id)
    value_at_round, total = rx.vault.pool_value(), rx.vault.total_lp_shares()
    feed(rx, 2500 * WAD, step=0)  # a later round (same second: no funding in between); a lower ETH makes the pool worth more
    assert rx.vault.pool_value() > value_at_round
    receipt = router.settle(order_id, sender=lp)
    expected = model.lp_shares_for_deposit(amount * rx.token_scale, total, value_at_round)
    assert event(rx, receipt, "OrderSettled").amount == expected == rx.vault.lp_shares(trader2)
    assert event(rx, receipt, "LiquidityAdded")["provider"] == trader2


def test_add_liquidity__refused_at_settlement__tokens_come_back(rx, router, admin, trader2, usd):
    amount = rx.tokens(1_000)
    rx.fund(trader2, amount + rx.reward_tokens)
    wallet = usd.balanceOf(trader2)
    order_id = rx.order_id(router.commit_add_liquidity(amount, sender=trader2))
    rx.d.govern(rx.vault, "set_router", "0x0000000000000000000000000000000000000000")  # the kill switch
    rx.next_round()
    rx.wait_lp_grace()
    receipt = router.settle(order_id, sender=admin)
    ev = event(rx, receipt, "OrderCancelled")
    assert (ev.reason, ev.refund) == ("vault: not the order router", amount)
    assert usd.balanceOf(trader2) == wallet - rx.reward_tokens
    with ape.reverts("router: not the vault's router"):
        router.commit_add_liquidity(amount, sender=trader2)


def test_remove_liquidity__paid_at_the_settlement_round(rx, router, lp, usd):
    shares = rx.vault.lp_shares(lp) // 10
    rx.fund(lp, rx.reward_tokens)
    wallet = usd.balanceOf(lp)
    receipt = rx.remove_liquidity(lp, shares)
    paid = event(rx, receipt, "OrderSettled").amount
    assert paid > 0 and usd.balanceOf(lp) == wallet - rx.reward_tokens + paid
    assert rx.vault.lp_shares(lp) == shares * 9


# ------------------------------------------------------------------ bad input: a clear revert, nothing changes


@pytest.mark.parametrize("call, reason", [
    (lambda r, t: r.commit_order(0, ETH, 0, MAX_UINT256, sender=t), "router: zero size"),
    (lambda r, t: r.commit_order(0, 9, WAD, MAX_UINT256, sender=t), "router: unknown market"),
    (lambda r, t: r.commit_order(0, ETH, WAD, 0, sender=t), "router: zero acceptable price"),
    (lambda r, t: r.commit_order(0, ETH, 2**121, MAX_UINT256, sender=t), "router: size out of range"),
    (lambda r, t: r.commit_order(2**30, ETH, WAD, MAX_UINT256, sender=t), "router: sub out of range"),
    (lambda r, t: r.commit_order(5, ETH, WAD, MAX_UINT256, sender=t), "router: no collateral"),
    (lambda r, t: r.commit_close(0, ETH, 0, sender=t), "router: no position"),
    (lambda r, t: r.commit_add_liquidity(0, sender=t), "router: zero amount"),
    (lambda r, t: r.commit_add_liquidity(2**224, sender=t), "router: amount out of range"),
    (lambda r, t: r.commit_remove_liquidity(0, sender=t), "router: zero shares"),
    (lambda r, t: r.commit_remove_liquidity(2**224, sender=t), "router: amount out of range"),
    (lambda r, t: r.commit_remove_liquidity(1, sender=t), "router: insufficient shares"),
])
def test_commit__bad_input__reverts_and_changes_nothing(rx, router, trader, funded, call, reason, usd):
    funded(trader)
    count, wallet = router.order_count(), usd.balanceOf(trader)
    with ape.reverts(reason):
        call(router, trader)
    assert router.order_count() == count and usd.balanceOf(trader) == wallet


def test_commit__without_approving_the_router__reverts(router, trader, rx):
    rx.d.usd.mint(trader, rx.tokens(1_000), sender=trader)
    rx.d.usd.approve(rx.vault, MAX_UINT256, sender=trader)  # the vault only
    rx.vault.deposit(0, rx.tokens(1_000), sender=trader)
    count = router.order_count()
    with ape.reverts():
        router.commit_order(0, ETH, WAD, MAX_UINT256, sender=trader)
    assert router.order_count() == count


# ------------------------------------------------------------------ the vault's door


def test_vault__direct_trading_and_lp_moves__use_the_order_router(rx, trader, funded, lp):
    funded(trader)
    v = rx.vault
    assert not v.atomic_trading()
    for call in (lambda: v.modify_position(0, ETH, WAD, MAX_UINT256, sender=trader),
                 lambda: v.close_position(0, ETH, 0, sender=trader),
                 lambda: v.add_liquidity(1, sender=lp),
                 lambda: v.remove_liquidity(1, sender=lp)):
        with ape.reverts("vault: use the order router"):
            call()


def test_vault__settle_entry_points__only_the_router(rx, attacker, funded):
    funded(attacker)
    with ape.reverts("vault: not the order router"):
        rx.vault.settle_trade(attacker, 0, ETH, WAD, MAX_UINT256, 1, sender=attacker)
    with ape.reverts("vault: not the order router"):
        rx.vault.settle_liquidity(attacker, 1, False, 1, sender=attacker)
    assert rx.position(attacker, 0, ETH).size == 0


def test_set_router__not_owner__reverts(rx, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        rx.vault.set_router(attacker, sender=attacker)


# ------------------------------------------------------------------ the attack it closes


@pytest.mark.parametrize("move_bps", [50, 100, 2_500])
def test_attack__knowing_the_next_round__a_round_trip_gains_nothing(rx, router, attacker, funded, commit, move_bps):
    """SPEC 11.13. On the atomic foundation a round trip around a 1% update took ~0.9% of the
    pool. Here the attacker buys before a known +move update and sells after it: both legs
    fill at their own settlement rounds, so all it can do is pay fees and price impact."""
    funded(attacker, usd=1_000_000)
    start = rx.vault.equity(attacker, 0)
    up = 3000 * WAD * (10_000 + move_bps) // 10_000
    buy = commit(attacker, 100 * WAD, acceptable=MAX_UINT256)
    feed(rx, up)  # the update the attacker saw coming is the buy's settlement round
    assert event(rx, rx.settle(buy), "OrderSettled").size_delta == 100 * WAD
    sell = rx.order_id(rx.close(attacker, ETH, slippage=WAD // 2, settle=False))
    feed(rx, up)
    rx.settle(sell)
    assert rx.position(attacker, 0, ETH).size == 0
    assert rx.vault.equity(attacker, 0) < start


def test_settlement_config__bounds_and_owner_only(rx, router, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        router.set_settlement_config(5, 60, sender=attacker)
    for delay, window, reason in ((0, 60, "delay"), (61, 60, "delay"), (2, 9, "window"), (2, 1_001, "window")):
        with ape.reverts(f"router: bad settlement_{reason}"):
            rx.d.govern(router, "set_settlement_config", delay, window)
    count = router.order_count()
    rx.d.govern(router, "set_settlement_config", 5, 120)
    assert (router.settlement_delay(), router.settlement_window()) == (5, 120)
    # the three share a slot: the extremes of one never leak into the others
    rx.d.govern(router, "set_settlement_config", 60, 1_000)
    assert (router.settlement_delay(), router.settlement_window(), router.order_count()) == (60, 1_000, count)


def test_settlement_config__the_next_order_takes_the_next_id_and_the_new_config(
        rx, router, trader, funded, commit):
    funded(trader)
    first = commit(trader, WAD)
    rx.d.govern(router, "set_settlement_config", 60, 1_000)
    second = commit(trader, WAD)
    assert second == first + 1 == router.order_count()
    o = router.order(second)
    assert (o.settle_after - o.committed_at, o.deadline - o.settle_after) == (60, 1_000)


def test_settlement_config__pending_orders_keep_theirs(rx, router, admin, trader, funded, commit):
    funded(trader)
    order_id = commit(trader, WAD)
    rx.d.govern(router, "set_settlement_config", 30, 600)
    o = router.order(order_id)
    assert (o.settle_after - o.committed_at, o.deadline - o.settle_after) == (2, 60)
    move_time(2)
    rx.refresh_prices()
    router.settle(order_id, sender=admin)
    assert router.order(order_id).status == SETTLED


# ------------------------------------------------------------------ body slots (one per pending request of an account)


def _trade_body(router, order_id):
    o = router.order(order_id)
    return o.size_delta, o.acceptable_price, o.amount


def test_body_slots__never_reused_while_pending__each_order_settles_with_its_own_body(
        rx, router, trader, funded, commit):
    funded(trader)
    # four pending buys with their own sizes and (loose) bounds
    bodies = [(WAD // 10 * (i + 1), 4_000 * WAD + i) for i in range(MAX_PENDING)]
    ids = [commit(trader, size, acceptable=bound) for size, bound in bodies]
    with ape.reverts("router: too many pending requests"):
        commit(trader, WAD // 10)
    rx.settle_next(ids[1])  # frees the second's body slot only
    # a fifth whose bound cancels it (a buy at most 1,000): had it overwritten a pending
    # order's body, that order would cancel too, or fill with the fifth's size
    fifth = commit(trader, 7 * WAD // 10, acceptable=1_000 * WAD)
    assert _trade_body(router, fifth) == (7 * WAD // 10, 1_000 * WAD, 0)
    assert _trade_body(router, ids[1]) == (0, 0, 0)  # the fifth took the second's slot
    for i in (0, 2, 3):
        assert _trade_body(router, ids[i]) == (*bodies[i], 0)
    receipt = rx.settle_next(fifth)
    assert event(rx, receipt, "OrderCancelled").reason == "vault: fill above acceptable price"
    receipt = router.settle_many([ids[0], ids[2], ids[3]], sender=trader)
    filled = {e["order_id"]: e["size_delta"] for e in rx.events(receipt, "OrderSettled")}
    assert filled == {ids[i]: bodies[i][0] for i in (0, 2, 3)}
    assert rx.position(trader, 0, ETH).size == sum(size for size, _ in bodies)
    assert router.pending_orders(trader, 0) == 0


def test_order__a_reused_body_reads_zero__the_head_and_status_stay(rx, router, trader, funded, commit):
    funded(trader)
    old = commit(trader, WAD // 2, acceptable=MAX_UINT256)
    rx.settle_next(old)
    # finished, its body slot not reused yet: the full body is still there
    assert _trade_body(router, old) == (WAD // 2, CLAMPED_PRICE, 0)
    before = router.order(old)
    rx.refresh_prices()
    new = commit(trader, -WAD // 4, acceptable=2_000 * WAD)  # the lowest free slot: the old one's
    o = router.order(old)
    assert (o.size_delta, o.acceptable_price, o.amount) == (0, 0, 0)
    assert o.status == SETTLED
    assert (o.owner, o.sub, o.market, o.kind, o.committed_at, o.settle_after, o.deadline) == (
        before.owner, before.sub, before.market, before.kind, before.committed_at, before.settle_after, before.deadline)
    assert _trade_body(router, new) == (-WAD // 4, 2_000 * WAD, 0)
    # nothing of the old order can be acted on through the reused slot
    for act in (router.settle, router.cancel):
        with ape.reverts("router: order not pending"):
            act(old, sender=trader)
    assert router.order(new).status == PENDING


def test_order__an_old_id_never_reports_a_newer_orders_body(rx, router, trader, funded, commit):
    """The tag (the id's low 32 bits) is checked: every old id of a slot reads zeros once a
    newer order holds it, and each newer one reads exactly its own body."""
    funded(trader)
    ids = []
    for i in range(3):  # three orders in turn through the same slot
        ids.append(commit(trader, WAD // 10 * (i + 1), acceptable=3_500 * WAD + i))
        rx.settle_next(ids[-1])
    assert [_trade_body(router, i) for i in ids] == [(0, 0, 0), (0, 0, 0), (3 * WAD // 10, 3_500 * WAD + 2, 0)]
    assert [router.order(i).status for i in ids] == [SETTLED] * 3
    # an unknown id reads empty, however the slots of address zero look
    assert tuple(router.order(0)) == tuple(router.order(router.order_count() + 1)) == (ZERO_ADDRESS, *[0] * 10)


def test_order__a_cancelled_add_refunds_its_own_amount_after_other_slots_were_reused(rx, router, trader2, usd):
    amounts = [rx.tokens(1_000 * (i + 1)) for i in range(2)]
    rx.fund(trader2, sum(amounts) + 3 * rx.reward_tokens)
    first, second = (rx.order_id(router.commit_add_liquidity(a, sender=trader2)) for a in amounts)
    router.cancel(first, sender=trader2)
    third = rx.order_id(router.commit_add_liquidity(rx.tokens(5), sender=trader2))  # reuses the first's slot
    assert [router.order(i).amount for i in (first, second, third)] == [0, amounts[1], rx.tokens(5)]
    wallet = usd.balanceOf(trader2)
    receipt = router.cancel(second, sender=trader2)
    assert event(rx, receipt, "OrderCancelled").refund == amounts[1] + rx.reward_tokens
    assert usd.balanceOf(trader2) == wallet + amounts[1] + rx.reward_tokens


def test_body_slots__an_owners_lp_and_trade_requests_are_separate_accounts(rx, router, trader, funded, commit):
    funded(trader)
    trades = [commit(trader, WAD // 10 * (i + 1)) for i in range(MAX_PENDING)]
    rx.fund(trader, rx.tokens(10_000))
    adds = [rx.order_id(router.commit_add_liquidity(rx.tokens(100 * (i + 1)), sender=trader))
            for i in range(MAX_PENDING)]
    assert (router.pending_orders(trader, 0), router.pending_orders(trader, LP_ACCOUNT)) == (MAX_PENDING, MAX_PENDING)
    with ape.reverts("router: too many pending requests"):
        router.commit_add_liquidity(rx.tokens(1), sender=trader)
    with ape.reverts("router: too many pending requests"):
        commit(trader, WAD // 10)
    # neither account's bodies overwrote the other's
    assert [router.order(i).size_delta for i in trades] == [WAD // 10 * (i + 1) for i in range(MAX_PENDING)]
    assert [router.order(i).amount for i in adds] == [rx.tokens(100 * (i + 1)) for i in range(MAX_PENDING)]
    rx.settle_next(adds[0])
    assert (router.pending_orders(trader, 0), router.pending_orders(trader, LP_ACCOUNT)) == (MAX_PENDING, MAX_PENDING - 1)
    with ape.reverts("router: too many pending requests"):
        commit(trader, WAD // 10)  # a free LP slot is no free trade slot
