"""The reference model of conditional orders (perpdex/conditional.py, SPEC 15): every kind and
side's trigger to the wei, the two phases, TP/SL sizes after a partial close, reduce-only
never growing or flipping a position (SPEC 11.14), OCO, expiry, pruning, caps, the escrow
(SPEC 11.15) and every refusal of bad input. Pure Python: no chain."""

from __future__ import annotations

import pytest

from perpdex.conditional import (
    CANCELLED, FILLED, LIMIT, MAX_CONDITIONAL, MAX_PER_POSITION, OPEN, STOP, STOP_LOSS, TAKE_PROFIT, TRIGGERED,
    ConditionalBook, fires_below, reduce_size, triggers,
)
from perpdex.config import load_config
from perpdex.model import WAD, MarketParams, ModelRevert, RouterModel, VaultModel

ETH, PRICE = 0, 3_000 * WAD
ANY_BUY = 10**9 * WAD  # an acceptable price no buy reaches


@pytest.fixture
def book() -> ConditionalBook:
    vault = VaultModel(token_scale=10**12, now=1_000)
    params = {k: v for k, v in load_config()["markets"]["ETH-USD"].items() if k != "price"}
    vault.add_market(MarketParams.from_human(params), PRICE)
    vault.pool_balance = vault.total_lp_shares = 10_000_000 * WAD
    for who in ("alice", "bob"):
        vault.deposit(who, 0, 100_000 * 10**6)
    router = RouterModel(vault, reward_tokens=500_000)
    router.record_round(ETH, PRICE, vault.now)
    return ConditionalBook(router)


def _round(book: ConditionalBook, price: int, seconds: int = 3) -> None:
    """Time passes and the feeder writes a round at `price`."""
    book.router.vault.now += seconds
    book.router.record_round(ETH, price, book.now)


def _open(book: ConditionalBook, who: str, size: float) -> None:
    book.router.vault.modify_position(who, 0, ETH, int(size * WAD), ANY_BUY if size > 0 else 0)


def _fill(book: ConditionalBook, order_id: int, price: int):
    """Trigger at the latest round, then settle at the next one (at `price`)."""
    assert book.trigger(order_id).reason == "triggered"
    _round(book, price)
    return book.settle(order_id)


# ------------------------------------------------------------------ the trigger rule


@pytest.mark.parametrize("kind, side, below", [
    (LIMIT, 1, True), (LIMIT, -1, False), (STOP, 1, False), (STOP, -1, True),
    (TAKE_PROFIT, 1, True), (TAKE_PROFIT, -1, False), (STOP_LOSS, 1, False), (STOP_LOSS, -1, True),
])
def test_trigger_rule__every_kind_and_side__fires_at_the_trigger_to_the_wei(kind, side, below):
    assert fires_below(kind, side) is below
    t = 2_800 * WAD
    assert triggers(kind, side, t, t)  # at the trigger price it fires
    assert triggers(kind, side, t, t - 1) is below
    assert triggers(kind, side, t, t + 1) is not below


def test_reduce_size__clamped_to_the_position__never_grows_or_flips():
    assert reduce_size(5 * WAD, -1, 0) == -5 * WAD  # whole position
    assert reduce_size(5 * WAD, -1, 2 * WAD) == -2 * WAD
    assert reduce_size(5 * WAD, -1, 9 * WAD) == -5 * WAD  # clamped: never a flip
    assert reduce_size(-5 * WAD, 1, 9 * WAD) == 5 * WAD
    assert reduce_size(5 * WAD, 1, 2 * WAD) == 0  # the position's own side: nothing to reduce
    assert reduce_size(0, -1, 2 * WAD) == 0


# ------------------------------------------------------------------ kinds, two phases


def test_limit_buy__triggers_below__fills_at_the_settlement_round(book):
    o = book.place("alice", 0, ETH, LIMIT, 2 * WAD, 2_900 * WAD, 2_910 * WAD)
    with pytest.raises(ModelRevert, match="router: trigger price not reached"):
        book.trigger(o.order_id)  # 3,000 > 2,900: a keeper that triggers early reverts
    _round(book, 2_900 * WAD)
    out = _fill(book, o.order_id, 2_905 * WAD)
    assert out.filled and out.size_delta == 2 * WAD and o.status == FILLED
    assert book.router.vault.position("alice", 0, ETH).size == 2 * WAD


def test_stop_loss__gap_through_it__still_fills_at_the_round_after_trigger(book):
    _open(book, "alice", 10)
    sl = book.place("alice", 0, ETH, STOP_LOSS, 0, 2_800 * WAD, 0)  # whole position, any price
    _round(book, 2_500 * WAD)  # a gap straight through 2,800
    out = _fill(book, sl.order_id, 2_450 * WAD)
    assert out.filled and out.size_delta == -10 * WAD  # filled at the round's price, not stranded
    assert book.router.vault.position("alice", 0, ETH).size == 0


def test_stop_loss__acceptable_price_forbids_the_gap__cancelled_with_the_reason(book):
    _open(book, "alice", 10)
    sl = book.place("alice", 0, ETH, STOP_LOSS, 0, 2_800 * WAD, 2_700 * WAD)  # not below 2,700
    _round(book, 2_500 * WAD)
    out = _fill(book, sl.order_id, 2_450 * WAD)
    assert not out.filled and sl.status == CANCELLED and out.reason.startswith("vault:")


def test_settle__before_its_round__nothing__then_at_that_round_not_a_later_one(book):
    o = book.place("bob", 0, ETH, STOP, -WAD, 2_950 * WAD, 0)
    _round(book, 2_940 * WAD)
    book.trigger(o.order_id)
    assert o.status == TRIGGERED and book.settle(o.order_id) is None  # its round is a delay away
    _round(book, 2_930 * WAD)  # the settlement round
    _round(book, 2_000 * WAD)  # a later round the keeper would rather have
    out = book.settle(o.order_id)
    assert out.filled and out.result.fill_price < 2_931 * WAD  # priced at 2,930, not 2,000


def test_whole_position_tp__after_a_partial_close__closes_what_is_left(book):
    _open(book, "alice", 10)
    tp = book.place("alice", 0, ETH, TAKE_PROFIT, 0, 3_200 * WAD, 0)
    _open(book, "alice", -4)  # a partial decrease does not cancel it
    assert tp.status == OPEN
    _round(book, 3_250 * WAD)
    out = _fill(book, tp.order_id, 3_260 * WAD)
    assert out.size_delta == -6 * WAD and book.router.vault.position("alice", 0, ETH).size == 0


def test_fixed_tp__larger_than_the_position__clamped(book):
    _open(book, "alice", 3)
    tp = book.place("alice", 0, ETH, TAKE_PROFIT, 5 * WAD, 3_100 * WAD, 0)
    _round(book, 3_100 * WAD)
    assert _fill(book, tp.order_id, 3_100 * WAD).size_delta == -3 * WAD


def test_tp_after_the_position_flipped__cancelled_never_opens_a_new_one(book):
    _open(book, "alice", 2)
    tp = book.place("alice", 0, ETH, TAKE_PROFIT, 0, 3_100 * WAD, 0)
    sl = book.place("alice", 0, ETH, STOP_LOSS, 0, 2_900 * WAD, 0)
    _open(book, "alice", -5)  # flipped to a 3 ETH short
    assert book.prune(sl.order_id).reason == "router: position closed or flipped"  # dead: anyone prunes it
    _round(book, 3_100 * WAD)
    out = _fill(book, tp.order_id, 3_100 * WAD)  # triggered (no position read), then cancelled at settle
    assert (out.filled, out.reason, tp.status) == (False, "router: position closed or flipped", CANCELLED)
    assert book.router.vault.position("alice", 0, ETH).size == -3 * WAD


def test_triggered_sl__position_closed_before_its_round__cancelled(book):
    _open(book, "alice", 2)
    sl = book.place("alice", 0, ETH, STOP_LOSS, 0, 2_900 * WAD, 0)
    _round(book, 2_890 * WAD)
    book.trigger(sl.order_id)
    _open(book, "alice", -2)  # closed by hand meanwhile
    _round(book, 2_880 * WAD)
    out = book.settle(sl.order_id)
    assert (out.filled, out.reason) == (False, "router: position closed or flipped")
    assert book.router.vault.position("alice", 0, ETH).size == 0


def test_reduce_only_limit__clamped__never_grows(book):
    _open(book, "alice", -2)
    o = book.place("alice", 0, ETH, LIMIT, 5 * WAD, 2_990 * WAD, ANY_BUY, reduce_only=True)
    _round(book, 2_990 * WAD)
    assert _fill(book, o.order_id, 2_990 * WAD).size_delta == 2 * WAD  # closes the short, no long
    assert book.router.vault.position("alice", 0, ETH).size == 0


def test_oco__one_leg_fills__the_other_cancelled(book):
    _open(book, "alice", 10)
    tp = book.place("alice", 0, ETH, TAKE_PROFIT, 0, 3_300 * WAD, 0)
    sl = book.place("alice", 0, ETH, STOP_LOSS, 0, 2_700 * WAD, 0, oco_with=tp.order_id)
    assert (tp.oco, sl.oco) == (sl.order_id, tp.order_id)
    _round(book, 2_650 * WAD)
    assert _fill(book, sl.order_id, 2_640 * WAD).filled
    assert (tp.status, tp.reason) == (CANCELLED, "router: OCO leg filled")


def test_expiry__cannot_trigger_after_it__pruned_by_anyone(book):
    o = book.place("bob", 0, ETH, LIMIT, WAD, 2_900 * WAD, 2_950 * WAD, expiry=book.now + 60)
    with pytest.raises(ModelRevert, match="router: order is live"):
        book.prune(o.order_id)
    _round(book, 2_800 * WAD, seconds=61)
    out = book.prune(o.order_id)
    assert (out.reason, o.status) == ("router: expired", CANCELLED)


def test_escrow__two_rewards_an_open_order__one_once_triggered__none_when_done(book):
    reward = book.router.reward_tokens
    o = book.place("bob", 0, ETH, STOP, WAD, 3_050 * WAD, ANY_BUY)
    p = book.place("bob", 0, ETH, LIMIT, WAD, 2_000 * WAD, 2_100 * WAD)
    assert book.escrow() == 4 * reward
    _round(book, 3_060 * WAD)
    book.trigger(o.order_id)
    assert book.escrow() == 3 * reward
    _round(book, 3_060 * WAD)
    book.settle(o.order_id)
    book.cancel(p.order_id, by="bob")
    assert book.escrow() == 0


# ------------------------------------------------------------------ bad input and caps


@pytest.mark.parametrize("args, reason", [
    (dict(kind=LIMIT, size=WAD, trigger_price=0, acceptable_price=ANY_BUY), "router: zero trigger price"),
    (dict(kind=LIMIT, size=0, trigger_price=WAD, acceptable_price=ANY_BUY), "router: zero size"),
    (dict(kind=LIMIT, size=WAD, trigger_price=WAD, acceptable_price=0), "router: zero acceptable price"),
    (dict(kind=LIMIT, size=WAD, trigger_price=WAD, acceptable_price=ANY_BUY, expiry=1_000), "router: expiry in the past"),
    (dict(kind=STOP_LOSS, size=0, trigger_price=2_000 * WAD, acceptable_price=0), "router: no position to reduce"),
    (dict(kind=LIMIT, size=-WAD, trigger_price=WAD, acceptable_price=0, reduce_only=True), "router: no position to reduce"),
    (dict(kind=9, size=WAD, trigger_price=WAD, acceptable_price=ANY_BUY), "router: unknown order kind"),
])
def test_place__bad_input__refused_with_its_reason(book, args, reason):
    with pytest.raises(ModelRevert, match=reason):
        book.place("bob", 0, ETH, **args)
    assert not book.orders


def test_place__tp_or_sl_on_the_wrong_side_of_the_price__refused(book):
    _open(book, "alice", 1)
    with pytest.raises(ModelRevert, match="router: take-profit at or past the price"):
        book.place("alice", 0, ETH, TAKE_PROFIT, 0, 2_900 * WAD, 0)  # a long's TP below the price
    with pytest.raises(ModelRevert, match="router: stop-loss at or past the price"):
        book.place("alice", 0, ETH, STOP_LOSS, 0, PRICE, 0)  # at the price: would fire at once
    with pytest.raises(ModelRevert, match="router: reduce-only on the position's own side"):
        book.place("alice", 0, ETH, LIMIT, WAD, 2_900 * WAD, ANY_BUY, reduce_only=True)


def test_place__caps__per_account_and_per_position(book):
    _open(book, "alice", 1)
    for i in range(MAX_PER_POSITION):
        book.place("alice", 0, ETH, TAKE_PROFIT, 0, (3_100 + i) * WAD, 0)
    with pytest.raises(ModelRevert, match="router: too many orders on the position"):
        book.place("alice", 0, ETH, STOP_LOSS, 0, 2_000 * WAD, 0)
    for i in range(MAX_CONDITIONAL - MAX_PER_POSITION):
        book.place("alice", 0, ETH, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD)
    with pytest.raises(ModelRevert, match="router: too many conditional orders"):
        book.place("alice", 0, ETH, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD)
    assert len(book.live_orders("alice", 0)) == MAX_CONDITIONAL


def test_cancel__someone_elses_order__refused__owner_may(book):
    o = book.place("bob", 0, ETH, LIMIT, WAD, 2_000 * WAD, 2_000 * WAD)
    with pytest.raises(ModelRevert, match="router: not the owner"):
        book.cancel(o.order_id, by="alice")
    assert book.cancel(o.order_id, by="bob").reason == "router: cancelled by owner" and o.status == CANCELLED


def test_oco__a_leg_of_someone_else_or_a_limit__refused(book):
    _open(book, "alice", 1)
    _open(book, "bob", 1)
    mine = book.place("alice", 0, ETH, TAKE_PROFIT, 0, 3_100 * WAD, 0)
    with pytest.raises(ModelRevert, match="router: bad OCO leg"):
        book.place("bob", 0, ETH, STOP_LOSS, 0, 2_900 * WAD, 0, oco_with=mine.order_id)
    with pytest.raises(ModelRevert, match="router: bad OCO leg"):
        book.place("alice", 0, ETH, LIMIT, -WAD, 3_200 * WAD, 0, oco_with=mine.order_id)
    assert mine.oco == 0 and mine.status == OPEN
