"""Conditional orders on the OrderRouter (SPEC 15, issue 18): place, trigger, settle, cancel,
prune. Every kind fills at the round after its trigger, never at a round a keeper picks; a
TP/SL never opens a new position; escrow is exact; every refusal has its reason. The fills
are checked against the reference model (perpdex/conditional.py) where it decides."""

from __future__ import annotations

import ape
import pytest

from perpdex.chain import move_time
from perpdex.conditional import (
    CANCELLED, FILLED, LIMIT, MAX_CONDITIONAL, MAX_PER_POSITION, OPEN, STOP, STOP_LOSS, TAKE_PROFIT, TRIGGERED,
)
from perpdex.model import WAD

from test_order_router import event, feed  # tests/unit/router is on sys.path (rootdir-less test dirs)

ETH = 0
ANY_BUY = 10**9 * WAD


@pytest.fixture
def place(rx, router):
    """place(account, kind, size, trigger, acceptable=0, ...) -> order id."""

    def _place(who, kind, size, trigger, acceptable=0, reduce_only=False, expiry=0, oco=0, sub=0, market=ETH):
        receipt = router.place_conditional(sub, market, kind, size, trigger, acceptable, reduce_only, expiry, oco, sender=who)
        return int(event(rx, receipt, "ConditionalPlaced").order_id)

    return _place


@pytest.fixture
def long10(rx, funded, trader):
    """The trader holds a 10 ETH long (30,000 USD on 10,000: 3x) and wallet tokens for rewards."""
    funded(trader)
    rx.trade(trader, ETH, 10 * WAD)
    return trader


def _settle_next(rx, router, order_id, eth_price, settler):
    """Feed the round after the trigger and settle the order at it."""
    feed(rx, eth_price)
    return router.settle(order_id, sender=settler)


# ------------------------------------------------------------------ kinds and phases


def test_limit_buy__triggers_at_or_below__fills_at_the_round_after(rx, router, funded, trader, trader2, place, usd):
    funded(trader)
    wallet = usd.balanceOf(trader)
    order = place(trader, LIMIT, 2 * WAD, 2_900 * WAD, 2_950 * WAD)
    assert usd.balanceOf(trader) == wallet - 2 * rx.reward_tokens  # two rewards escrowed
    with ape.reverts("router: trigger price not reached"):  # a keeper that triggers early
        router.trigger(order, sender=trader2)
    feed(rx, 2_900 * WAD + 1)
    with ape.reverts("router: trigger price not reached"):  # one wei above
        router.trigger(order, sender=trader2)
    feed(rx, 2_900 * WAD)  # at the trigger it fires
    paid = usd.balanceOf(trader2)
    receipt = router.trigger(order, sender=trader2)
    assert usd.balanceOf(trader2) == paid + rx.reward_tokens
    assert event(rx, receipt, "ConditionalTriggered").price == 2_900 * WAD
    assert router.conditional_order(order).status == TRIGGERED
    with ape.reverts("router: settlement round not yet"):
        router.settle(order, sender=trader2)
    settled = event(rx, _settle_next(rx, router, order, 2_920 * WAD, trader2), "OrderSettled")
    assert (settled.kind, settled.size_delta) == (4 + LIMIT, 2 * WAD)
    assert 2_920 * WAD <= settled.fill_price <= 2_921 * WAD  # the round after the trigger, with its premium
    assert router.conditional_order(order).status == FILLED
    assert rx.position(trader, 0, ETH).size == 2 * WAD
    assert router.conditional_orders(trader, 0) == 0


def test_stop_loss__gap_through_it__fills_at_the_round_after_never_stranded(rx, router, long10, trader2, place):
    sl = place(long10, STOP_LOSS, 0, 2_800 * WAD)  # whole position, any price
    feed(rx, 2_500 * WAD)  # a gap straight through 2,800
    router.trigger(sl, sender=trader2)
    settled = event(rx, _settle_next(rx, router, sl, 2_450 * WAD, trader2), "OrderSettled")
    assert settled.size_delta == -10 * WAD and settled.fill_price < 2_451 * WAD
    assert rx.position(long10, 0, ETH).size == 0


def test_stop_loss__acceptable_price_forbids_the_gap__cancelled_with_the_vaults_reason(rx, router, long10, trader2, place,
                                                                                    usd):
    sl = place(long10, STOP_LOSS, 0, 2_800 * WAD, 2_700 * WAD)
    feed(rx, 2_500 * WAD)
    router.trigger(sl, sender=trader2)
    paid = usd.balanceOf(trader2)
    cancelled = event(rx, _settle_next(rx, router, sl, 2_450 * WAD, trader2), "OrderCancelled")
    assert cancelled.reason.startswith("vault:") and cancelled.reward == rx.reward_tokens
    assert usd.balanceOf(trader2) == paid + rx.reward_tokens
    assert router.conditional_order(sl).status == CANCELLED and rx.position(long10, 0, ETH).size == 10 * WAD


def test_settle__at_the_first_round_after_the_trigger__not_a_later_one(rx, router, long10, trader2, place):
    """A keeper who waits for a better round cannot pick it: the fill is at the first round at
    or after triggered_at + settlement_delay, whatever came after."""
    sl = place(long10, STOP_LOSS, 0, 2_900 * WAD)
    feed(rx, 2_890 * WAD)
    router.trigger(sl, sender=trader2)
    feed(rx, 2_880 * WAD)  # the settlement round
    feed(rx, 2_400 * WAD)  # a later one (within the oracle's largest jump)
    settled = event(rx, router.settle(sl, sender=trader2), "OrderSettled")
    assert 2_879 * WAD <= settled.fill_price <= 2_881 * WAD


def test_whole_position_tp__after_a_partial_close__closes_what_is_left(rx, router, long10, trader2, place):
    tp = place(long10, TAKE_PROFIT, 0, 3_200 * WAD)
    rx.trade(long10, ETH, -4 * WAD)  # a partial decrease cancels nothing
    assert router.conditional_order(tp).status == OPEN
    feed(rx, 3_200 * WAD)
    router.trigger(tp, sender=trader2)
    assert event(rx, _settle_next(rx, router, tp, 3_210 * WAD, trader2), "OrderSettled").size_delta == -6 * WAD
    assert rx.position(long10, 0, ETH).size == 0


def test_fixed_tp__larger_than_the_position__clamped(rx, router, long10, trader2, place):
    tp = place(long10, TAKE_PROFIT, 25 * WAD, 3_100 * WAD)
    feed(rx, 3_100 * WAD)
    router.trigger(tp, sender=trader2)
    assert event(rx, _settle_next(rx, router, tp, 3_100 * WAD, trader2), "OrderSettled").size_delta == -10 * WAD


def test_tp_after_a_flip__pruned__or_cancelled_at_its_settle__never_opens_a_new_position(rx, router, long10, trader2,
                                                                                      place, usd):
    tp = place(long10, TAKE_PROFIT, 0, 3_100 * WAD)
    sl = place(long10, STOP_LOSS, 0, 2_900 * WAD)
    rx.trade(long10, ETH, -13 * WAD)  # now a 3 ETH short
    owner, caller = usd.balanceOf(long10), usd.balanceOf(trader2)
    cancelled = event(rx, router.prune(sl, sender=trader2), "OrderCancelled")
    assert cancelled.reason == "router: position closed or flipped"
    assert (usd.balanceOf(long10) - owner, usd.balanceOf(trader2) - caller) == (rx.reward_tokens, rx.reward_tokens)
    feed(rx, 3_100 * WAD)
    router.trigger(tp, sender=trader2)  # a trigger reads no position: its settle finds none to reduce
    cancelled = event(rx, _settle_next(rx, router, tp, 3_100 * WAD, trader2), "OrderCancelled")
    assert cancelled.reason == "router: position closed or flipped"
    assert rx.position(long10, 0, ETH).size == -3 * WAD


def test_triggered_sl__position_closed_before_its_round__cancelled_not_filled(rx, router, long10, trader2, place):
    sl = place(long10, STOP_LOSS, 0, 2_950 * WAD)
    feed(rx, 2_940 * WAD)
    router.trigger(sl, sender=trader2)
    rx.trade(long10, ETH, -10 * WAD, settle=True)  # closed by hand meanwhile
    cancelled = event(rx, router.settle(sl, sender=trader2), "OrderCancelled")
    assert cancelled.reason == "router: position closed or flipped" and rx.position(long10, 0, ETH).size == 0


def test_reduce_only_stop__clamped_to_the_position__never_flips(rx, router, long10, trader2, place):
    stop = place(long10, STOP, -30 * WAD, 2_950 * WAD, 0, reduce_only=True)
    feed(rx, 2_950 * WAD)
    router.trigger(stop, sender=trader2)
    assert event(rx, _settle_next(rx, router, stop, 2_950 * WAD, trader2), "OrderSettled").size_delta == -10 * WAD
    assert rx.position(long10, 0, ETH).size == 0


def test_oco__the_stop_loss_fills__the_take_profit_cancelled_its_escrow_back(rx, router, long10, trader2, place, usd):
    tp = place(long10, TAKE_PROFIT, 0, 3_300 * WAD)
    sl = place(long10, STOP_LOSS, 0, 2_700 * WAD, oco=tp)
    assert (router.conditional_order(tp).oco, router.conditional_order(sl).oco) == (sl, tp)
    feed(rx, 2_650 * WAD)
    router.trigger(sl, sender=trader2)
    owner = usd.balanceOf(long10)
    receipt = _settle_next(rx, router, sl, 2_640 * WAD, trader2)
    cancelled = event(rx, receipt, "OrderCancelled")
    assert (cancelled.order_id, cancelled.reason, cancelled.refund) == (tp, "router: OCO leg filled", 2 * rx.reward_tokens)
    assert usd.balanceOf(long10) == owner + 2 * rx.reward_tokens
    assert router.conditional_order(tp).status == CANCELLED and router.conditional_orders(long10, 0) == 0


def test_expiry__pruned_by_anyone_after_it__not_before(rx, router, funded, trader, attacker, place):
    funded(trader)
    order = place(trader, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD, expiry=int(ape.chain.pending_timestamp) + 60)
    with ape.reverts("router: order is live"):
        router.prune(order, sender=attacker)
    move_time(61)
    cancelled = event(rx, router.prune(order, sender=attacker), "OrderCancelled")
    assert (cancelled.reason, cancelled.reward, cancelled.refund) == ("router: expired", rx.reward_tokens, rx.reward_tokens)


def test_cancel__the_owner_gets_everything_back__nobody_else_may__not_once_triggered(rx, router, funded, long10, trader,
                                                                                   attacker, place, usd):
    order = place(trader, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD)
    with ape.reverts("router: not the owner"):
        router.cancel(order, sender=attacker)
    wallet = usd.balanceOf(trader)
    router.cancel(order, sender=trader)
    assert usd.balanceOf(trader) == wallet + 2 * rx.reward_tokens
    sl = place(trader, STOP_LOSS, 0, 2_990 * WAD)
    feed(rx, 2_990 * WAD)
    router.trigger(sl, sender=attacker)
    with ape.reverts("router: order not open"):  # once triggered it belongs to the settlers: no free option
        router.cancel(sl, sender=trader)


def test_escrow__the_router_holds_exactly_what_live_orders_escrow(rx, router, long10, trader2, place, usd):
    held = usd.balanceOf(router)
    a = place(long10, TAKE_PROFIT, 0, 3_300 * WAD)
    b = place(long10, STOP_LOSS, 0, 2_900 * WAD)
    assert usd.balanceOf(router) == held + 4 * rx.reward_tokens
    feed(rx, 2_900 * WAD)
    router.trigger(b, sender=trader2)
    assert usd.balanceOf(router) == held + 3 * rx.reward_tokens
    _settle_next(rx, router, b, 2_900 * WAD, trader2)
    router.prune(a, sender=trader2)  # its position is gone
    assert usd.balanceOf(router) == held


# ------------------------------------------------------------------ bad input and caps


@pytest.mark.parametrize("args, reason", [
    ((LIMIT, WAD, 0, ANY_BUY, False, 0, 0), "router: zero trigger price"),
    ((LIMIT, 0, WAD, ANY_BUY, False, 0, 0), "router: zero size"),
    ((LIMIT, WAD, WAD, 0, False, 0, 0), "router: zero acceptable price"),
    ((LIMIT, WAD, WAD, ANY_BUY, False, 1, 0), "router: expiry in the past"),
    ((LIMIT, 2**121, WAD, ANY_BUY, False, 0, 0), "router: size out of range"),
    ((LIMIT, WAD, 2**96, ANY_BUY, False, 0, 0), "router: trigger price out of range"),
    ((STOP_LOSS, 0, 2_000 * WAD, 0, False, 0, 0), "router: no position to reduce"),
    ((LIMIT, -WAD, WAD, 0, True, 0, 0), "router: no position to reduce"),
    ((4, WAD, WAD, ANY_BUY, False, 0, 0), "router: unknown order kind"),
    ((TAKE_PROFIT, -WAD, 3_300 * WAD, 0, False, 0, 0), "router: a TP/SL size is unsigned"),
    ((LIMIT, WAD, WAD, ANY_BUY, False, 0, 999), "router: bad OCO leg"),
])
def test_place__bad_input__refused_with_its_reason(router, funded, trader, args, reason):
    funded(trader)
    with ape.reverts(reason):
        router.place_conditional(0, ETH, *args, sender=trader)


def test_place__tp_or_sl_at_or_past_the_price__or_reduce_only_on_its_own_side__refused(router, long10):
    with ape.reverts("router: take-profit at or past the price"):
        router.place_conditional(0, ETH, TAKE_PROFIT, 0, 2_900 * WAD, 0, False, 0, 0, sender=long10)
    with ape.reverts("router: stop-loss at or past the price"):
        router.place_conditional(0, ETH, STOP_LOSS, 0, 3_000 * WAD, 0, False, 0, 0, sender=long10)
    with ape.reverts("router: reduce-only on the position's own side"):
        router.place_conditional(0, ETH, LIMIT, WAD, 2_900 * WAD, ANY_BUY, True, 0, 0, sender=long10)
    with ape.reverts("router: unknown market"):
        router.place_conditional(0, 9, LIMIT, WAD, 2_900 * WAD, ANY_BUY, False, 0, 0, sender=long10)
    with ape.reverts("router: sub out of range"):
        router.place_conditional(2**30, ETH, LIMIT, WAD, 2_900 * WAD, ANY_BUY, False, 0, 0, sender=long10)


def test_place__caps__per_position_then_per_account(router, long10, place):
    for i in range(MAX_PER_POSITION):
        place(long10, TAKE_PROFIT, 0, (3_100 + i) * WAD)
    with ape.reverts("router: too many orders on the position"):
        router.place_conditional(0, ETH, STOP_LOSS, 0, 2_000 * WAD, 0, False, 0, 0, sender=long10)
    for _ in range(MAX_CONDITIONAL - MAX_PER_POSITION):
        place(long10, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD)
    with ape.reverts("router: too many conditional orders"):
        router.place_conditional(0, ETH, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD, False, 0, 0, sender=long10)
    assert router.conditional_orders(long10, 0) == MAX_CONDITIONAL == router.MAX_CONDITIONAL()


def test_oco__someone_elses_leg_or_a_limit__refused(router, long10, funded, trader2, place):
    funded(trader2)
    mine = place(long10, TAKE_PROFIT, 0, 3_100 * WAD)
    with ape.reverts("router: bad OCO leg"):
        router.place_conditional(0, ETH, LIMIT, -WAD, 3_200 * WAD, 0, False, 0, mine, sender=long10)
    with ape.reverts("router: bad OCO leg"):
        router.place_conditional(0, ETH, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD, False, 0, mine, sender=trader2)
    assert router.conditional_order(mine).oco == 0


def test_ids__shared_with_requests__settle_and_views_tell_them_apart(rx, router, long10, commit, place):
    request = commit(long10, WAD)
    order = place(long10, STOP_LOSS, 0, 2_000 * WAD)
    assert order == request + 1 == router.order_count()
    assert router.order(order).status == 0 and router.conditional_order(request).status == 0
    with ape.reverts("router: order not triggered"):
        router.settle(order, sender=long10)
    with ape.reverts("router: unknown order"):
        router.trigger(request, sender=long10)


def test_sdk_place_order__names_and_human_units__sane_default_bounds(rx, router, long10, funded, trader2):
    sl = rx.place_order(long10, "ETH-USD", "stop-loss", 2_800.0)  # the whole position, no bound
    o = rx.conditional(sl)
    assert (o.kind, o.size, o.trigger_price, o.acceptable_price, o.reduce_only) == (STOP_LOSS, 0, 2_800 * WAD, 0, True)
    funded(trader2)
    limit = rx.conditional(rx.place_order(trader2, "ETH-USD", "limit", 2_900.0, size=1.5))
    assert (limit.side, limit.size, limit.acceptable_price) == (1, 3 * WAD // 2, 2_900 * WAD)  # at or below its limit
    stop = rx.conditional(rx.place_order(trader2, 0, "stop", 3_100.0, size=1.0))
    assert stop.acceptable_price == 2**96 - 1  # a buying stop: no bound unless given
    with pytest.raises(ValueError, match="unknown order kind 'stop-limit'"):
        rx.place_order(trader2, 0, "stop-limit", 3_100.0, size=1.0)


def test_trigger_many__met_triggered__expired_pruned__others_skipped__one_transfer(rx, router, long10, trader2, place,
                                                                                  usd):
    met = place(long10, STOP_LOSS, 0, 2_990 * WAD)
    unmet = place(long10, TAKE_PROFIT, 0, 3_300 * WAD)
    expiring = place(long10, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD, expiry=int(ape.chain.pending_timestamp) + 5)
    move_time(10)
    feed(rx, 2_990 * WAD)
    paid = usd.balanceOf(trader2)
    receipt = router.trigger_many([met, unmet, expiring, 10**9], sender=trader2)
    assert receipt.return_value == 2 and usd.balanceOf(trader2) == paid + 2 * rx.reward_tokens
    assert [int(router.conditional_order(i).status) for i in (met, unmet, expiring)] == [TRIGGERED, OPEN, CANCELLED]
    assert event(rx, receipt, "OrderCancelled").reason == "router: expired"


def test_prune_many__dead_ones_only(rx, router, long10, trader2, place):
    dead = [place(long10, TAKE_PROFIT, 0, 3_100 * WAD), place(long10, STOP_LOSS, 0, 2_900 * WAD)]
    rx.trade(long10, ETH, -10 * WAD)  # closed: both have nothing left to reduce
    rx.fund(long10, rx.tokens(10))
    rx.trade(long10, ETH, -WAD)  # a short now: a limit buy that reduces it is live
    live = place(long10, LIMIT, WAD, 2_900 * WAD, 2_900 * WAD, reduce_only=True)
    assert router.prune_many(dead + [live], sender=trader2).return_value == 2
    assert [int(router.conditional_order(i).status) for i in dead + [live]] == [CANCELLED, CANCELLED, OPEN]
    with ape.reverts("router: expiry out of range"):
        router.place_conditional(0, ETH, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD, False, 2**32, 0, sender=long10)


# ------------------------------------------------------------------ attacks


def test_attack__duplicate_ids_in_batches__paid_once_per_order(rx, router, long10, attacker, place, usd):
    """A keeper who repeats an id in trigger_many / prune_many / settle_many is paid once for it:
    the second time the order is no longer open (or triggered) and is skipped."""
    sl = place(long10, STOP_LOSS, 0, 2_990 * WAD)
    tp = place(long10, TAKE_PROFIT, 0, 3_300 * WAD)
    feed(rx, 2_990 * WAD)
    wallet = usd.balanceOf(attacker)
    assert router.trigger_many([sl, sl, sl], sender=attacker).return_value == 1
    feed(rx, 2_990 * WAD)
    assert router.settle_many([sl, sl], sender=attacker).return_value == 1  # the SL closes the position
    assert router.prune_many([tp, tp], sender=attacker).return_value == 1
    assert usd.balanceOf(attacker) == wallet + 3 * rx.reward_tokens  # trigger, settle, prune: once each


def test_attack__a_live_order_cannot_be_pruned_or_its_escrow_taken(rx, router, long10, attacker, place, usd):
    tp = place(long10, TAKE_PROFIT, 0, 3_300 * WAD)
    wallet, held = usd.balanceOf(attacker), usd.balanceOf(router)
    assert router.prune_many([tp], sender=attacker).return_value == 0
    with ape.reverts("router: order is live"):
        router.prune(tp, sender=attacker)
    with ape.reverts("router: not the owner"):
        router.cancel(tp, sender=attacker)
    assert (usd.balanceOf(attacker), usd.balanceOf(router)) == (wallet, held)


def test_attack__an_oco_leg_paired_twice__or_a_stale_price_trigger__refused(rx, router, long10, attacker, place):
    tp = place(long10, TAKE_PROFIT, 0, 3_300 * WAD)
    place(long10, STOP_LOSS, 0, 2_700 * WAD, oco=tp)
    with ape.reverts("router: bad OCO leg"):  # a leg belongs to one group
        router.place_conditional(0, ETH, STOP_LOSS, 0, 2_600 * WAD, 0, False, 0, tp, sender=long10)
    sl = place(long10, STOP_LOSS, 0, 2_990 * WAD)
    feed(rx, 2_980 * WAD)
    move_time(int(rx.d.oracle.max_price_age()) + 1)  # the round that met it went stale
    with ape.reverts("oracle: stale price"):
        router.trigger(sl, sender=attacker)
    assert router.trigger_many([sl], sender=attacker).return_value == 0  # a batch skips it


def test_place__on_a_router_the_vault_no_longer_uses__refused(rx, router, long10):
    rx.d.govern(rx.vault, "set_router", "0x0000000000000000000000000000000000000000")  # the kill switch
    with ape.reverts("router: not the vault's router"):
        router.place_conditional(0, ETH, STOP_LOSS, 0, 2_800 * WAD, 0, False, 0, 0, sender=long10)
