"""The order keeper's decisions (pure: which open orders to prune or trigger, which triggered
ones to settle) and its SQLite index (the events it books, the checkpoint, the send journal).
The keeper itself runs against Anvil in tests/integration/test_order_keeper_anvil.py."""

from __future__ import annotations

import pytest

from perpdex.conditional import CLOSED, EXPIRED, LIMIT, STOP, STOP_LOSS, TAKE_PROFIT, dead_reason
from perpdex.keepers.orders import (
    DONE, OPEN, TRIGGERED, Action, Order, OrderIndex, decide, positions_needed, settleable,
)
from perpdex.model import WAD

ALICE, BOB = "0xA11ce", "0xB0b"
LONG = 10 * WAD


def order(order_id: int, kind: int, side: int, trigger: float, size: int = WAD, reduce_only: bool = False,
          expiry: int = 0, owner: str = ALICE, market: int = 0, settle_after: int = 0) -> Order:
    status = TRIGGERED if settle_after else OPEN
    return Order(order_id, owner, 0, market, kind, side, size, int(trigger * WAD), reduce_only or kind >= TAKE_PROFIT,
                 expiry, status, settle_after)


# ------------------------------------------------------------------ the dead rule


def test_dead_reason__expired_after_its_last_second_not_at_it():
    o = order(1, LIMIT, 1, 2_900, expiry=1_000)
    assert dead_reason(o, 0, now=1_000) == ""
    assert dead_reason(o, 0, now=1_001) == EXPIRED


def test_dead_reason__reduce_only_with_nothing_to_reduce():
    sl = order(1, STOP_LOSS, -1, 2_800, size=0)  # sells: closes a long
    assert dead_reason(sl, LONG, now=0) == ""
    assert dead_reason(sl, 0, now=0) == CLOSED  # closed
    assert dead_reason(sl, -WAD, now=0) == CLOSED  # flipped to its own side
    assert dead_reason(order(2, STOP, 1, 3_100), 0, now=0) == ""  # not reduce-only: no position needed


# ------------------------------------------------------------------ decide


def test_decide__triggers_at_the_trigger_to_the_wei_each_kind_and_side():
    book = [
        order(1, LIMIT, 1, 2_900),        # buys at or below
        order(2, STOP, -1, 2_900),        # sells at or below
        order(3, LIMIT, -1, 2_900),       # sells at or above
        order(4, STOP, 1, 2_900),         # buys at or above
    ]
    at = decide(book, {0: 2_900 * WAD}, {}, now=0)
    assert [a.order_id for a in at] == [1, 2, 3, 4] and {a.verb for a in at} == {"trigger"}
    below = decide(book, {0: 2_900 * WAD - 1}, {}, now=0)
    assert [a.order_id for a in below] == [1, 2]
    above = decide(book, {0: 2_900 * WAD + 1}, {}, now=0)
    assert [a.order_id for a in above] == [3, 4]


def test_decide__a_gap_through_a_stop_triggers_the_sl_not_its_tp():
    tp = order(1, TAKE_PROFIT, -1, 3_300, size=0)  # a long's: sells at or above
    sl = order(2, STOP_LOSS, -1, 2_800, size=0)    # sells at or below
    limit = order(3, LIMIT, 1, 2_000, owner=BOB)
    actions = decide([tp, sl, limit], {0: 2_500 * WAD}, {(ALICE, 0, 0): LONG}, now=0)
    assert actions == [Action(2, "trigger", "stop-loss sell at 2,800.00, price 2,500.00")]


def test_decide__dead_orders_pruned_even_without_a_fresh_price():
    sl = order(1, STOP_LOSS, -1, 2_800, size=0)
    old = order(2, LIMIT, 1, 2_900, expiry=50, owner=BOB)
    live = order(3, STOP, -1, 2_900, owner=BOB)
    actions = decide([sl, old, live], {0: None}, {(ALICE, 0, 0): 0}, now=60)
    assert actions == [Action(1, "prune", CLOSED), Action(2, "prune", EXPIRED)]  # no price: nothing triggers


def test_decide__a_market_without_a_price_triggers_nothing_there():
    eth, btc = order(1, STOP, -1, 2_900), order(2, STOP, -1, 70_000, market=1)
    assert [a.order_id for a in decide([eth, btc], {0: 2_000 * WAD}, {}, now=0)] == [1]


def test_positions_needed__only_reduce_only_orders():
    book = [order(1, STOP_LOSS, -1, 2_800), order(2, STOP, 1, 3_100, owner=BOB), order(3, LIMIT, -1, 3_300, reduce_only=True, market=1)]
    assert positions_needed(book) == {(ALICE, 0, 0), (ALICE, 0, 1)}


# ------------------------------------------------------------------ settle


def test_settleable__round_at_or_after_settle_after_or_deadline_passed():
    triggered = [
        order(1, STOP, -1, 2_900, settle_after=100),            # ETH round at 100: fills
        order(2, STOP, -1, 70_000, market=1, settle_after=100),  # BTC round at 99: not yet
        order(3, STOP, -1, 70_000, market=1, settle_after=10),  # past its deadline (10 + 60): cancels, paid
    ]
    assert settleable(triggered, {0: 100, 1: 99}, now=101, window=60) == [1, 3]
    assert settleable(triggered, {0: 99, 1: 9}, now=70, window=60) == []  # at its deadline: not yet


# ------------------------------------------------------------------ the index


def _placed(order_id: int, kind: int = STOP, side: int = -1, owner: str = ALICE) -> tuple[str, dict]:
    return "ConditionalPlaced", {"order_id": order_id, "owner": owner, "sub": 0, "market": 0, "kind": 4 + kind,
                                 "side": side, "size": WAD, "trigger_price": 2_900 * WAD, "reduce_only": kind >= TAKE_PROFIT,
                                 "expiry": 0}


def test_order_index__books_each_event_and_ignores_requests(tmp_path):
    index = OrderIndex(tmp_path / "o.db")
    index.apply([_placed(1), _placed(2, TAKE_PROFIT), _placed(3), _placed(4),
                 ("ConditionalTriggered", {"order_id": 1, "settle_after": 105}),
                 ("OrderCancelled", {"order_id": 2, "reason": "router: OCO leg filled"}),
                 ("OrderSettled", {"order_id": 3, "kind": 0}),  # a request's fill (kind 0) with a clashing id: ignored
                 ("OrderSettled", {"order_id": 4, "kind": 4 + STOP})], up_to_block=9)
    assert [o.order_id for o in index.orders(OPEN)] == [3]
    [triggered] = index.orders(TRIGGERED)
    assert (triggered.order_id, triggered.settle_after, triggered.trigger_price, triggered.side) == (1, 105, 2_900 * WAD, -1)
    assert [o.order_id for o in index.orders(DONE)] == [2, 4]
    assert index.counts() == {OPEN: 1, TRIGGERED: 1, DONE: 2} and index.last_block() == 9
    # read twice (a range re-read after a crash): the same state; a late trigger never reopens a done order
    index.apply([_placed(2, TAKE_PROFIT), ("ConditionalTriggered", {"order_id": 4, "settle_after": 200})], up_to_block=10)
    assert index.counts() == {OPEN: 1, TRIGGERED: 1, DONE: 2}


def test_order_index__a_crash_mid_range_keeps_nothing_of_it(tmp_path):
    index = OrderIndex(tmp_path / "o.db")
    index.apply([_placed(1)], up_to_block=5)
    with pytest.raises(RuntimeError):
        with index.transaction():
            index.book(*_placed(2))
            raise RuntimeError("killed")
    again = OrderIndex(tmp_path / "o.db")
    assert [o.order_id for o in again.orders(OPEN)] == [1] and again.last_block() == 5


def test_order_index__journal_in_flight_until_concluded_orphaned_by_a_reset(tmp_path):
    index = OrderIndex(tmp_path / "o.db")
    a = index.journal("trigger", [7], nonce=3, tx_hash="0xaa")
    b = index.journal("settle_many", [8, 9], nonce=4, tx_hash="0xbb")
    assert [(s.verb, s.orders, s.nonce) for s in index.in_flight()] == [("trigger", (7,), 3), ("settle_many", (8, 9), 4)]
    index.conclude(a.id, "mined", block=12)
    assert [s.id for s in OrderIndex(tmp_path / "o.db").in_flight()] == [b.id]  # survives a restart
    index.apply([_placed(1)], up_to_block=5)
    index.reset({"chain_id": 1})
    assert index.in_flight() == [] and index.sends() == {"mined": 1, "orphaned": 1}
    assert index.counts() == {OPEN: 0, TRIGGERED: 0, DONE: 0} and index.last_block() == -1
