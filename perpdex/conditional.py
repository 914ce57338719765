"""Conditional orders (SPEC 15, issue 18): the reference model, before the contract.

Kinds: a **limit** buys at or below / sells at or above its trigger price; a **stop** buys at or
above / sells at or below it (a market order once the price crosses); a **take-profit** and a
**stop-loss** close (part of) a position: always reduce-only, on the side opposite the
position, the take-profit once the price moves in the position's favour to the trigger, the
stop-loss once it moves against it. Any kind may be reduce-only; TP/SL size 0 means the whole
position at settlement (it resizes with the position), else a fixed size clamped to it. A
TP and an SL on one position may form an OCO group: one filling cancels the other.

Two phases (SPEC 15): `trigger` checks the latest round against the trigger price and records
when; the order then settles like a market order at its settlement round (the first round at
or after `triggered_at + delay`, OrderRouter's rule), bounded by its own acceptable price. A
gap through a stop still fills at that round (or is cancelled with the vault's reason when
its acceptable price forbids it): it is never stranded. A TP/SL (or a reduce-only order)
whose position was closed or flipped is cancelled, never executed into a new position; a
partial decrease does not cancel it.

Escrow: two settler rewards per order, one for the trigger and one for the settle; an owner's
cancel refunds both; a prune (anyone, of an expired or dead order) pays the pruner one and
refunds the other. The contract (OrderRouter.place_conditional, trigger, settle, cancel,
prune, conditional_order) is tested against this model; its revert reasons are the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from perpdex.model import (
    KIND_TRADE, MAX_ABS_SIZE, MAX_ACCEPTABLE_PRICE, MAX_SUB, ModelRevert, Outcome, Request, RouterModel, require,
)

LIMIT, STOP, TAKE_PROFIT, STOP_LOSS = 0, 1, 2, 3
KIND_NAMES = {LIMIT: "limit", STOP: "stop", TAKE_PROFIT: "take-profit", STOP_LOSS: "stop-loss"}
OPEN, TRIGGERED, FILLED, CANCELLED = 1, 2, 3, 4
MAX_CONDITIONAL = 8  # open (or triggered) conditional orders per account (owner, sub)
MAX_PER_POSITION = 4  # of them, TP/SL orders on one position (owner, sub, market)
REWARDS_ESCROWED = 2  # settler rewards escrowed per order: the trigger's and the settle's
EXPIRED, CLOSED = "router: expired", "router: position closed or flipped"  # why an order is dead


@dataclass
class ConditionalOrder:
    order_id: int
    owner: str
    sub: int
    market: int
    kind: int
    side: int  # +1 buys, -1 sells
    size: int  # base units (WAD), > 0; 0 for a TP/SL on the whole position
    trigger_price: int
    acceptable_price: int  # the worst fill price the order takes (0 for a sell: any)
    reduce_only: bool
    expiry: int  # 0: none; else the last second the order may trigger
    placed_at: int
    oco: int = 0  # the other leg of its OCO group
    triggered_at: int = 0
    delay: int = 0  # the router's settlement delay and window when it triggered (it keeps them)
    window: int = 0
    status: int = OPEN
    reason: str = ""  # why it was cancelled

    @property
    def live(self) -> bool:
        return self.status in (OPEN, TRIGGERED)

    @property
    def closes_position(self) -> bool:
        return self.kind in (TAKE_PROFIT, STOP_LOSS)


def fires_below(kind: int, side: int) -> bool:
    """Whether the order triggers when the price is at or below its trigger (else at or above):
    a buying limit, a selling stop, a buying take-profit (it closes a short) and a selling
    stop-loss (it closes a long)."""
    return (kind in (LIMIT, TAKE_PROFIT)) == (side > 0)


def triggers(kind: int, side: int, trigger_price: int, price: int) -> bool:
    """The trigger rule, to the wei: at the trigger price it fires."""
    return price <= trigger_price if fires_below(kind, side) else price >= trigger_price


class Prunable(Protocol):
    """What the dead rule reads of an order (the model's ConditionalOrder, the keeper's Order)."""

    @property
    def expiry(self) -> int: ...

    @property
    def reduce_only(self) -> bool: ...

    @property
    def side(self) -> int: ...

    @property
    def size(self) -> int: ...


def dead_reason(o: Prunable, position: int, now: int) -> str:
    """OrderRouter._dead_reason: why an open order can only be pruned ("" when it is alive):
    expired (after its last second), or reduce-only with nothing left to reduce in
    `position`."""
    if o.expiry and now > o.expiry:
        return EXPIRED
    if o.reduce_only and reduce_size(position, o.side, o.size) == 0:
        return CLOSED
    return ""


def reduce_size(position: int, side: int, size: int) -> int:
    """The signed size a reduce-only order trades against `position`: at most the position, on
    the other side (`size` 0: all of it); 0 when there is nothing to reduce (no position, or
    one on the order's own side)."""
    if position == 0 or (position > 0) == (side > 0):
        return 0
    held = abs(position)
    return side * (held if size == 0 else min(size, held))


@dataclass
class ConditionalBook:
    """The conditional orders of one OrderRouter, over its RouterModel (rounds, delay, window,
    the vault)."""

    router: RouterModel  # its next_id is the ids' count: requests and conditional orders share it
    orders: dict[int, ConditionalOrder] = field(default_factory=dict)

    @property
    def now(self) -> int:
        return self.router.vault.now

    def escrow(self) -> int:
        """Tokens the book holds: REWARDS_ESCROWED rewards per live order, one once triggered."""
        reward = self.router.reward_tokens
        return sum(reward * (REWARDS_ESCROWED if o.status == OPEN else 1) for o in self.orders.values() if o.live)

    def live_orders(self, owner: str, sub: int, market: int | None = None) -> list[ConditionalOrder]:
        return [o for o in self.orders.values()
                if o.live and o.owner == owner and o.sub == sub and (market is None or o.market == market)]

    # ---- place
    def place(self, owner: str, sub: int, market: int, kind: int, size: int, trigger_price: int,
              acceptable_price: int, reduce_only: bool = False, expiry: int = 0, oco_with: int = 0) -> ConditionalOrder:
        """OrderRouter.place_conditional's checks (its revert reasons), then the order, open.
        `size`: signed for a limit or stop (> 0 buys); for a TP/SL unsigned, 0 for the whole
        position (its side is the position's opposite)."""
        v = self.router.vault
        require(kind in KIND_NAMES, "router: unknown order kind")
        require(sub <= MAX_SUB, "router: sub out of range")
        require(market < len(v.markets), "router: unknown market")
        require(trigger_price != 0, "router: zero trigger price")
        require(trigger_price <= MAX_ACCEPTABLE_PRICE, "router: trigger price out of range")
        require(-MAX_ABS_SIZE <= size <= MAX_ABS_SIZE, "router: size out of range")
        require(expiry == 0 or expiry > self.now, "router: expiry in the past")
        require(expiry < 2**32, "router: expiry out of range")
        position = v.position(owner, sub, market).size
        side = self._side(kind, size, position, trigger_price, v.prices[market])
        if reduce_only or kind in (TAKE_PROFIT, STOP_LOSS):
            require(position != 0, "router: no position to reduce")
            require((position > 0) != (side > 0), "router: reduce-only on the position's own side")
        require(side < 0 or acceptable_price != 0, "router: zero acceptable price")
        require(len(self.live_orders(owner, sub)) < MAX_CONDITIONAL, "router: too many conditional orders")
        if kind in (TAKE_PROFIT, STOP_LOSS):
            on_position = [o for o in self.live_orders(owner, sub, market) if o.closes_position]
            require(len(on_position) < MAX_PER_POSITION, "router: too many orders on the position")
        order = ConditionalOrder(self.router.next_id, owner, sub, market, kind, side, abs(size), trigger_price,
                                 min(acceptable_price, MAX_ACCEPTABLE_PRICE), reduce_only or kind in (TAKE_PROFIT, STOP_LOSS),
                                 expiry, self.now)
        if oco_with:
            self._pair(order, oco_with)
        self.orders[order.order_id] = order
        self.router.next_id += 1
        return order

    def _side(self, kind: int, size: int, position: int, trigger_price: int, price: int) -> int:
        """The order's side; a TP/SL's is the position's opposite, and its trigger must lie on
        the side of the price it waits for (one at or past the price would fire at once)."""
        if kind in (LIMIT, STOP):
            require(size != 0, "router: zero size")
            return 1 if size > 0 else -1
        require(size >= 0, "router: a TP/SL size is unsigned")
        require(position != 0, "router: no position to reduce")
        side = -1 if position > 0 else 1
        waiting = trigger_price < price if fires_below(kind, side) else trigger_price > price
        require(waiting, f"router: {KIND_NAMES[kind]} at or past the price")
        return side

    def _pair(self, order: ConditionalOrder, other_id: int) -> None:
        other = self.orders.get(other_id)
        require(other is not None and other.status == OPEN and other.oco == 0 and other.closes_position
                and order.closes_position and (other.owner, other.sub, other.market) == (order.owner, order.sub, order.market),
                "router: bad OCO leg")
        order.oco, other.oco = other.order_id, order.order_id  # type: ignore[union-attr]

    # ---- trigger, settle
    def dead_reason(self, o: ConditionalOrder) -> str:
        """The dead rule (`dead_reason`) against the account's position now."""
        return dead_reason(o, self.router.vault.position(o.owner, o.sub, o.market).size, self.now)

    def trigger(self, order_id: int) -> Outcome:
        """OrderRouter.trigger: the latest round against the trigger price. An expired order is
        cancelled (pruned) instead; one whose price is not reached reverts. A reduce-only order
        with nothing left to reduce still triggers (no position is read): its settle cancels it."""
        o = self._open(order_id)
        if o.expiry and self.now > o.expiry:
            return self._cancel(o, EXPIRED)
        price = self.router.vault.prices[o.market]
        require(triggers(o.kind, o.side, o.trigger_price, price), "router: trigger price not reached")
        o.status, o.triggered_at, o.delay, o.window = TRIGGERED, self.now, self.router.delay, self.router.window
        return Outcome(False, "triggered")

    def trigger_many(self, order_ids: list[int]) -> dict[int, Outcome]:
        """OrderRouter.trigger_many: each open order that `trigger` would not revert on, in
        order; the others skipped. The outcome of each one triggered or pruned."""
        done: dict[int, Outcome] = {}
        for order_id in order_ids:
            o = self.orders.get(order_id)
            if o is None or o.status != OPEN:
                continue
            try:
                done[order_id] = self.trigger(order_id)
            except ModelRevert:
                continue
        return done

    def prune_many(self, order_ids: list[int]) -> dict[int, Outcome]:
        """OrderRouter.prune_many: each open order `prune` accepts, in order; the others skipped."""
        done: dict[int, Outcome] = {}
        for order_id in order_ids:
            o = self.orders.get(order_id)
            if o is not None and o.status == OPEN and self.dead_reason(o):
                done[order_id] = self.prune(order_id)
        return done

    def settle(self, order_id: int) -> Outcome | None:
        """OrderRouter.settle of a triggered order: at its settlement round, like a market order
        (None while that round does not exist); its size resolved then against the position;
        the other OCO leg cancelled when it fills."""
        o = self.orders[order_id]
        require(o.status == TRIGGERED, "router: order not triggered")
        r = self.router
        settle_after, deadline = o.triggered_at + o.delay, o.triggered_at + o.delay + o.window
        if self.now > deadline:
            return self._cancel(o, EXPIRED)
        if not (r.rounds.get(o.market) and r.rounds[o.market][-1][0] >= settle_after):
            return None
        delta = o.side * o.size
        if o.reduce_only:
            delta = reduce_size(r.vault.position(o.owner, o.sub, o.market).size, o.side, o.size)
            if delta == 0:
                return self._cancel(o, CLOSED)
        fill = Request(o.order_id, o.owner, o.sub, o.market, KIND_TRADE, delta, o.acceptable_price, 0,
                       o.triggered_at, settle_after, deadline)
        try:
            result = r._at_rounds(fill, delta)
        except ModelRevert as exc:
            return self._cancel(o, exc.reason)
        o.status = FILLED
        if o.oco and self.orders[o.oco].live:
            self._cancel(self.orders[o.oco], "router: OCO leg filled")
        return Outcome(True, result=result, size_delta=delta)

    # ---- cancel, prune
    def cancel(self, order_id: int, by: str) -> Outcome:
        """The owner's cancel of an open order (everything escrowed comes back)."""
        o = self._open(order_id)
        require(by == o.owner, "router: not the owner")
        return self._cancel(o, "router: cancelled by owner")

    def prune(self, order_id: int) -> Outcome:
        """Anyone's cancel of a dead open order (the pruner is paid one reward)."""
        o = self._open(order_id)
        reason = self.dead_reason(o)
        require(reason != "", "router: order is live")
        return self._cancel(o, reason)

    def _open(self, order_id: int) -> ConditionalOrder:
        o = self.orders.get(order_id)
        require(o is not None, "router: unknown order")
        require(o.status == OPEN, "router: order not open")  # type: ignore[union-attr]
        return o  # type: ignore[return-value]

    def _cancel(self, o: ConditionalOrder, reason: str) -> Outcome:
        o.status, o.reason = CANCELLED, reason
        return Outcome(False, reason)
