"""Stateful fuzzing of two-step settlement (SPEC 11.13-11.15): a Hypothesis state machine
commits trades, closes and LP moves to the OrderRouter, writes price rounds (moves, several
seconds apart), settles in batches and one by one, in any order, early and late, cancels,
waits past deadlines, liquidates, and lets an adversary who knows the next round trade
around it through every entry point; `perpdex.model.RouterModel` (the router and the oracle's
rounds over the VaultModel) predicts every outcome exactly.

After every step: the chain equals the model (every account, market, pool and keeper
figure); the router holds exactly the escrow of the live requests (11.15); every request's
status is the model's (none settles or cancels twice); the vault's tokens equal its books.
Every fill is checked against its settlement round's price (11.13); a close never leaves a
position or flips it (11.14); the adversary's round trips around a round it knew in advance
lose money (11.13: at most fees and price impact are lost).

Profiles follow PERPDEX_FUZZ_PROFILE like the exchange machine's (quick: 10 x 30 steps,
derandomized, in the default run; seeded: the ci size without shrinking or the example
database, for tests/fuzz/seeded_bugs.py; campaign-*: `perpdex fuzz`, tests/fuzz/campaign_profiles.py).
PERPDEX_FUZZ_SUMMARY=FILE writes the run's figures (examples, steps, seconds, the failure) as JSON.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import ape
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from perpdex.chain import move_time, set_clock
from perpdex.conditional import LIMIT, OPEN, STOP, STOP_LOSS, TAKE_PROFIT, TRIGGERED, ConditionalBook, fires_below
from perpdex.deploy import deploy_system
from perpdex.model import (
    KIND_ADD, KIND_CLOSE, KIND_REMOVE, KIND_TRADE, LP_GRACE, PENDING, WAD, ModelRevert, Outcome, RouterModel, TradeResult,
)
from perpdex.sdk import MAX_UINT256, Exchange, model_from_chain

from campaign_profiles import campaign_profiles
from fastchain import FastChain, model_state  # tests/fuzz is on sys.path
from run_summary import recorded

TOKEN = 10**6
SUBS = (0, 1)
MARKETS = (0, 1)
PRICE_BAND = (WAD * 7 // 10, WAD * 13 // 10)  # prices stay within 0.7x-1.3x of the start
UNKNOWN_ORDER = 10**9

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
PROFILES = {
    "quick": settings(max_examples=10, stateful_step_count=30, derandomize=True, **_COMMON),
    "ci": settings(max_examples=100, stateful_step_count=40, **_COMMON),
    "long": settings(max_examples=1_000, stateful_step_count=50, **_COMMON),
    # no shrinking: the seeded-bug runner counts the steps to the first failure, not a minimal example
    "seeded": settings(max_examples=100, stateful_step_count=40, database=None,
                       phases=(Phase.explicit, Phase.generate), **_COMMON),
}
PROFILES.update(campaign_profiles(PROFILES))  # campaign-*: `perpdex fuzz`'s workers
PROFILE = os.environ.get("PERPDEX_FUZZ_PROFILE", "quick")
SUMMARY: dict[str, Any] = {"examples": 0, "steps": 0, "seconds": 0.0, "failed": None, "filled": 0, "cancelled": {},
                           "adversary_trips": 0, "adversary_losses": [], "lp_trips": 0, "rules": {},
                           "conditional": {"placed": 0, "refused": 0, "triggered": 0, "filled": 0, "cancelled": {}}}


def _count(key: str) -> None:
    SUMMARY["rules"][key] = SUMMARY["rules"].get(key, 0) + 1
    SUMMARY["steps"] += 1


@dataclass(frozen=True)
class Roles:
    traders: list[Any]  # the last one is the adversary
    lps: list[Any]
    settler: Any
    keeper: Any


class RouterMachine(RuleBasedStateMachine):
    def __init__(self, x: Exchange, chain: Any, roles: Roles) -> None:
        super().__init__()
        SUMMARY["examples"] += 1
        self.x, self.chain, self.router, self.vault, self.usd = x, chain, x.d.router, x.vault, x.d.usd
        self.traders, self.names = roles.traders, [str(t) for t in roles.traders]
        self.lps, self.settler, self.keeper = roles.lps, roles.settler, roles.keeper
        self.adversary = roles.traders[-1]
        self.snapshot = chain.snapshot()
        move_time(13)  # a restored snapshot does not rewind the clock: mine now
        self.now = int(chain.blocks.head.timestamp)
        self.vm = model_from_chain(x, self.now)
        for lp in self.lps:
            self.vm.lp_shares[str(lp)] = int(self.vault.lp_shares(lp))
        r = self.router
        self.rm = RouterModel(self.vm, reward_tokens=x.reward_tokens, delay=int(r.settlement_delay()),
                              window=int(r.settlement_window()))
        self.base = {m: x.price(m) for m in MARKETS}
        self._round({m: self.base[m] for m in MARKETS})
        self.first_id = int(r.order_count()) + 1
        self.rm.next_id = self.first_id
        self.book = ConditionalBook(self.rm)  # conditional orders (SPEC 15), ids from the same count
        self.fast = FastChain(x)
        self.keeper_start = self._tokens(self.keeper)
        self.settler_paid = self._tokens(self.settler)

    def teardown(self) -> None:
        self.chain.restore(self.snapshot)

    # ------------------------------------------------------------------ plumbing

    def _tokens(self, who: Any) -> int:
        return int(self.fast.call(self.usd, "balanceOf", who))

    def _advance(self, seconds: int) -> None:
        move_time(seconds)
        self.now = int(self.chain.blocks.head.timestamp)
        self.vm.now = self.now

    def _round(self, prices: dict[int, int]) -> None:
        """One round of every market, stamped now (the model records it too)."""
        receipt = self.x.d.oracle.set_prices(list(prices), list(prices.values()), sender=self.x.d.deployer)
        assert int(receipt.timestamp) == self.now
        for m, p in prices.items():
            self.rm.record_round(m, p, self.now)

    def _moved(self, market: int, bps: int) -> int:
        price = self.vm.prices[market]
        new = price + price * bps // 10_000 if bps >= 0 else price - price * -bps // 10_000
        low, high = (self.base[market] * r // WAD for r in PRICE_BAND)
        return min(high, max(low, new))

    def _pending(self) -> list[int]:
        return sorted(i for i, r in self.rm.requests.items() if r.status == PENDING)

    def _commit(self, who: Any, name: str, kind: int, send: Any, **model_args: Any) -> int | None:
        """The model's checks first: a refusal must be the chain's too (nothing changes)."""
        try:
            request = self.rm.commit(name, kind=kind, **model_args)
        except ModelRevert as exc:
            before = self._tokens(who)
            with ape.reverts(exc.reason):
                send()
            assert self._tokens(who) == before
            SUMMARY["cancelled"].setdefault(f"commit refused: {exc.reason}", 0)
            SUMMARY["cancelled"][f"commit refused: {exc.reason}"] += 1
            return None
        order_id = self.x.order_id(send())
        assert order_id == request.order_id
        o = self.router.order(order_id)
        assert (int(o.committed_at), int(o.settle_after), int(o.deadline)) == (
            request.committed_at, request.settle_after, request.deadline)
        return order_id

    def _check_outcome(self, order_id: int, outcome: Outcome, receipt: Any) -> None:
        """The chain did what the model did for `order_id` (SPEC 11.13, 11.14)."""
        if order_id in self.book.orders:
            self._check_conditional(order_id, outcome, receipt)
            return
        r = self.rm.requests[order_id]
        if outcome.filled:
            [ev] = [e for e in self.x.events(receipt, "OrderSettled") if int(e["order_id"]) == order_id]
            SUMMARY["filled"] += 1
            if r.kind < KIND_ADD:
                result = outcome.result
                assert isinstance(result, TradeResult)
                assert (int(ev["size_delta"]), int(ev["fill_price"]), int(ev["fee"])) == (
                    outcome.size_delta, result.fill_price, result.fee)
                # SPEC 11.13: the fill is at the settlement round's price, not the latest
                round_price = self.rm.round_at(r.market, r.settle_after)[1]
                fills = [e for e in self.x.events(receipt, "PositionModified")
                         if e["owner"] == r.owner and int(e["sub"]) == r.sub and int(e["market"]) == r.market]
                assert any(int(e["oracle_price"]) == round_price for e in fills)
                if r.kind == KIND_CLOSE:  # SPEC 11.14
                    assert result.size == 0 and self.vm.position(r.owner, r.sub, r.market).size == 0
            else:
                assert int(ev["amount"]) == outcome.result
        else:
            [ev] = [e for e in self.x.events(receipt, "OrderCancelled") if int(e["order_id"]) == order_id]
            assert ev["reason"] == outcome.reason
            SUMMARY["cancelled"][outcome.reason] = SUMMARY["cancelled"].get(outcome.reason, 0) + 1

    def _settle(self, ids: list[int]) -> None:
        """`settle_many(ids)` on chain and the same in order in the model (requests and
        triggered conditional orders alike)."""
        receipt = self.router.settle_many(ids, sender=self.settler)
        processed = 0
        for order_id in ids:
            outcome = self._model_settle(order_id)
            if outcome is not None:
                processed += 1
                self._check_outcome(order_id, outcome, receipt)
        assert int(receipt.return_value) == processed
        self.settler_paid += processed * self.x.reward_tokens

    def _model_settle(self, order_id: int) -> Outcome | None:
        """What `settle_many` does with one id in the model: None when it skips it."""
        o = self.book.orders.get(order_id)
        if o is not None:
            return self.book.settle(order_id) if o.status == TRIGGERED else None
        r = self.rm.requests.get(order_id)
        if r is None or r.status != PENDING:
            return None
        return self.rm.settle(order_id)

    def _check_conditional(self, order_id: int, outcome: Outcome, receipt: Any) -> None:
        """A conditional order's fill or cancel on chain is the model's: its size, price and
        fee; SPEC 11.14 (a reduce-only fill never grows or flips the position); an OCO
        leg cancelled with it."""
        o, c = self.book.orders[order_id], SUMMARY["conditional"]
        if outcome.filled:
            [ev] = [e for e in self.x.events(receipt, "OrderSettled") if int(e["order_id"]) == order_id]
            result = outcome.result
            assert (int(ev["kind"]), int(ev["size_delta"]), int(ev["fill_price"]), int(ev["fee"])) == (
                4 + o.kind, outcome.size_delta, result.fill_price, result.fee)
            if o.reduce_only:
                before, after = result.size - outcome.size_delta, result.size
                assert before != 0 and (after == 0 or (after > 0) == (before > 0)) and abs(after) < abs(before)
            c["filled"] += 1
            if o.oco and self.book.orders[o.oco].reason == "router: OCO leg filled":
                reasons = {int(e["order_id"]): e["reason"] for e in self.x.events(receipt, "OrderCancelled")}
                assert reasons.get(o.oco) == "router: OCO leg filled"
            return
        [ev] = [e for e in self.x.events(receipt, "OrderCancelled") if int(e["order_id"]) == order_id]
        assert ev["reason"] == outcome.reason, (ev["reason"], outcome.reason)
        c["cancelled"][outcome.reason] = c["cancelled"].get(outcome.reason, 0) + 1

    # ------------------------------------------------------------------ setup

    @initialize(usd=st.lists(st.sampled_from([0, 2_000, 20_000, 20_000]), min_size=3, max_size=3))
    def fund(self, usd):
        for who, amount in enumerate(usd):
            trader = self.traders[who]
            self.x.fund(trader, 1_000 * TOKEN)  # settlement rewards
            if amount:
                self.x.deposit(trader, amount * TOKEN, sub=0, mint=True)
                self.vm.deposit(self.names[who], 0, amount * TOKEN)
        self.x.deposit(self.adversary, 200_000 * TOKEN, sub=1)
        self.vm.deposit(str(self.adversary), 1, 200_000 * TOKEN)
        for lp in self.lps:
            self.x.fund(lp, 10_000_000 * TOKEN)  # LP deposits and rewards

    # ------------------------------------------------------------------ requests

    @rule(who=st.integers(0, 2), sub=st.sampled_from(SUBS), market=st.sampled_from(MARKETS),
          share=st.integers(1, 1_000), long=st.booleans(), bound_bps=st.one_of(st.none(), st.integers(1, 60)))
    def commit_trade(self, who, sub, market, share, long, bound_bps):
        _count("commit_trade")
        name, trader = self.names[who], self.traders[who]
        price, params = self.vm.prices[market], self.vm.markets[market].params
        room = max(0, self.vm.health(name, sub).free_collateral - params.min_position_margin - WAD)
        size = max(1, room * 15 * share // 1_000 * WAD // price)
        delta = size if long else -size
        if bound_bps is None:
            bound = MAX_UINT256 if long else 0
        else:
            bound = price * (10_000 + bound_bps) // 10_000 if long else price * (10_000 - bound_bps) // 10_000
        self._commit(trader, name, KIND_TRADE, lambda: self.router.commit_order(sub, market, delta, bound, sender=trader),
                     sub=sub, market=market, size_delta=delta, acceptable_price=bound)

    @rule(who=st.integers(0, 2), sub=st.sampled_from(SUBS), market=st.sampled_from(MARKETS))
    def commit_close(self, who, sub, market):
        _count("commit_close")
        name, trader = self.names[who], self.traders[who]
        size = self.vm.position(name, sub, market).size
        bound = 0 if size >= 0 else MAX_UINT256
        self._commit(trader, name, KIND_CLOSE, lambda: self.router.commit_close(sub, market, bound, sender=trader),
                     sub=sub, market=market, acceptable_price=bound)

    @rule(who=st.integers(0, 1), usd=st.sampled_from([0, 1, 1_000, 50_000]))
    def commit_add_liquidity(self, who, usd):
        _count("commit_add_liquidity")
        lp = self.lps[who]
        self._commit(lp, str(lp), KIND_ADD, lambda: self.router.commit_add_liquidity(usd * TOKEN, sender=lp),
                     sub=0, market=0, amount=usd * TOKEN)

    @rule(who=st.integers(0, 1), share=st.sampled_from([0, 10, 500, 1_000, 1_001]))
    def commit_remove_liquidity(self, who, share):
        _count("commit_remove_liquidity")
        lp = self.lps[who]
        shares = self.vm.lp_shares.get(str(lp), 0) * share // 1_000
        self._commit(lp, str(lp), KIND_REMOVE, lambda: self.router.commit_remove_liquidity(shares, sender=lp),
                     sub=0, market=0, amount=shares)

    @rule(who=st.integers(0, 2), market=st.sampled_from(MARKETS), long=st.booleans(), bound_bps=st.integers(1, 100),
          past_bps=st.integers(1, 200))
    def commit_then_gap(self, who, market, long, bound_bps, past_bps):
        """A request bounded `bound_bps` from the price now, then a round `past_bps` beyond the
        bound against it: the vault refuses it at that round and it is cancelled with the
        reason, never filled at a better price it did not get."""
        _count("commit_then_gap")
        name, trader = self.names[who], self.traders[who]
        price = self.vm.prices[market]
        if self.vm.health(name, 0).free_collateral < 100 * WAD:
            return
        delta = (1 if long else -1) * 100 * WAD * WAD // price  # about 100 USD of base
        bound = price * (10_000 + bound_bps) // 10_000 if long else price * (10_000 - bound_bps) // 10_000
        order_id = self._commit(trader, name, KIND_TRADE,
                                lambda: self.router.commit_order(0, market, delta, bound, sender=trader),
                                sub=0, market=market, size_delta=delta, acceptable_price=bound)
        if order_id is None:
            return
        self._advance(self.rm.delay)
        move = (bound_bps + past_bps) * (1 if long else -1)
        self._round({m: self._moved(m, move) if m == market else self.vm.prices[m] for m in MARKETS})
        self._settle([order_id])

    @rule(who=st.integers(0, 2), market=st.sampled_from(MARKETS), long=st.booleans(),
          bps=st.lists(st.integers(-300, 300), min_size=2, max_size=4), gaps=st.integers(1, 20))
    def settle_after_later_rounds(self, who, market, long, bps, gaps):
        """A request whose settlement round is followed by more rounds (moves) before anyone
        settles it: it still fills at its own round (SPEC 11.13), whoever settles, whenever."""
        _count("settle_after_later_rounds")
        name, trader = self.names[who], self.traders[who]
        if self.vm.health(name, 1).free_collateral < 100 * WAD:
            self.x.deposit(trader, 1_000 * TOKEN, sub=1)
            self.vm.deposit(name, 1, 1_000 * TOKEN)
        price = self.vm.prices[market]
        delta = (1 if long else -1) * 2_000 * WAD * WAD // price  # about 2,000 USD of base
        bound = MAX_UINT256 if long else 0
        order_id = self._commit(trader, name, KIND_TRADE,
                                lambda: self.router.commit_order(1, market, delta, bound, sender=trader),
                                sub=1, market=market, size_delta=delta, acceptable_price=bound)
        if order_id is None:
            return
        self._advance(self.rm.delay)
        for move in bps:  # the first is the settlement round
            self._round({m: self._moved(m, move) if m == market else self.vm.prices[m] for m in MARKETS})
            self._advance(gaps)
        self._settle([order_id])

    # ------------------------------------------------------------------ rounds and time

    @rule(seconds=st.integers(1, 12), bps0=st.integers(-300, 300), bps1=st.integers(-300, 300))
    def new_round(self, seconds, bps0, bps1):
        _count("new_round")
        self._advance(seconds)
        self._round({0: self._moved(0, bps0), 1: self._moved(1, bps1)})

    @rule(seconds=st.sampled_from([5, 30, 61, 90]))
    def wait(self, seconds):
        """Time passes without a round: requests may pass their deadline."""
        _count("wait")
        self._advance(seconds)
        if any(self.now - self.rm.rounds[m][-1][0] > 3_000 for m in MARKETS):
            self._round({m: self.vm.prices[m] for m in MARKETS})  # keep prices under max_price_age

    # ------------------------------------------------------------------ settle and cancel

    @precondition(lambda self: bool(self._pending()))
    @rule(order=st.permutations(range(8)), size=st.integers(1, 8), extra=st.booleans())
    def settle_batch(self, order, size, extra):
        _count("settle_batch")
        pending = self._pending()
        ids = [pending[i % len(pending)] for i in order[:size]]
        ids = list(dict.fromkeys(ids))
        if extra:  # a finished or unknown id is skipped, not a revert
            done = [i for i, r in self.rm.requests.items() if r.status != PENDING]
            ids.insert(0, done[0] if done else UNKNOWN_ORDER)
        self._settle(ids)

    @precondition(lambda self: bool(self.rm.requests))
    @rule(pick=st.integers(0, 100))
    def settle_one(self, pick):
        _count("settle_one")
        ids = sorted(self.rm.requests)
        order_id = ids[pick % len(ids)]
        r = self.rm.requests[order_id]
        if r.status != PENDING:
            with ape.reverts("router: order not pending"):
                self.router.settle(order_id, sender=self.settler)
            return
        if not self.rm.due(r):
            with ape.reverts("router: settlement round not yet"):
                self.router.settle(order_id, sender=self.settler)
            assert int(self.router.order(order_id).status) == PENDING
            return
        receipt = self.router.settle(order_id, sender=self.settler)
        self._check_outcome(order_id, self.rm.settle(order_id), receipt)
        self.settler_paid += self.x.reward_tokens

    @precondition(lambda self: bool(self._pending()))
    @rule(pick=st.integers(0, 100), by_owner=st.booleans())
    def cancel(self, pick, by_owner):
        _count("cancel")
        pending = self._pending()
        r = self.rm.requests[pending[pick % len(pending)]]
        caller = next(t for t in self.traders + self.lps if str(t) == r.owner) if by_owner else self.keeper
        try:
            outcome = self.rm.cancel(r.order_id, by_owner)
        except ModelRevert as exc:
            with ape.reverts(exc.reason):
                self.router.cancel(r.order_id, sender=caller)
            return
        before = self._tokens(caller)
        receipt = self.router.cancel(r.order_id, sender=caller)
        self._check_outcome(r.order_id, outcome, receipt)
        refund = r.amount if r.kind == KIND_ADD and by_owner else 0
        assert self._tokens(caller) - before == self.x.reward_tokens + refund  # the reward back, or earned
        if caller == self.keeper:
            self.keeper_start += self.x.reward_tokens

    # ------------------------------------------------------------------ conditional orders (SPEC 15)

    def _live_conditionals(self, status: int | None = None) -> list[int]:
        return sorted(i for i, o in self.book.orders.items() if o.live and (status is None or o.status == status))

    @rule(who=st.integers(0, 2), sub=st.sampled_from(SUBS), market=st.sampled_from(MARKETS),
          kind=st.sampled_from((LIMIT, STOP, TAKE_PROFIT, STOP_LOSS)), long=st.booleans(), share=st.integers(0, 1_000),
          trigger_bps=st.integers(-30, 150), bound_bps=st.one_of(st.none(), st.integers(1, 80)),
          reduce_only=st.booleans(), expiry=st.sampled_from((0, 0, 5, 60)), pair=st.booleans())
    def place_conditional(self, who, sub, market, kind, long, share, trigger_bps, bound_bps, reduce_only, expiry, pair):
        """Any kind on either side, its trigger `trigger_bps` from the price on the side it
        waits for (a few past it: refused for a TP/SL), with or without a bound, reduce-only or
        not, an expiry, and an OCO leg when one is open on the position (a TP/SL or reduce-only
        order goes to an account with a position when there is one). The model decides whether
        the router refuses it (the chain must, with the same reason, moving no token)."""
        _count("place_conditional")
        self._place(who, sub, market, kind, long, share, trigger_bps, bound_bps, reduce_only, expiry, pair)

    def _with_position(self, who: int, sub: int, market: int) -> tuple[int, int, int]:
        """(who, sub, market) of an account with a position, picked from `who`; as given if none."""
        held = [(w, s, m) for w, name in enumerate(self.names) for s in SUBS for m in MARKETS
                if self.vm.position(name, s, m).size]
        return held[(who + sub + market) % len(held)] if held else (who, sub, market)

    def _place(self, who: int, sub: int, market: int, kind: int, long: bool, share: int, trigger_bps: int,
               bound_bps: int | None, reduce_only: bool, expiry: int, pair: bool) -> int | None:
        """Place one conditional order in the model and on chain (a refusal must match); its id."""
        if kind in (TAKE_PROFIT, STOP_LOSS) or reduce_only:
            who, sub, market = self._with_position(who, sub, market)
        name, trader = self.names[who], self.traders[who]
        price, position = self.vm.prices[market], self.vm.position(name, sub, market).size
        if kind in (LIMIT, STOP):
            room = max(0, self.vm.health(name, sub).free_collateral)
            size = max(1, room * 10 * share // 1_000 * WAD // price) * (1 if long else -1)
            side = 1 if long else -1
        else:
            size = abs(position) * share // 1_000  # 0: the whole position
            side = -1 if position > 0 else 1
        below = fires_below(kind, side)
        trigger = max(1, price - price * trigger_bps // 10_000 if below else price + price * trigger_bps // 10_000)
        if bound_bps is None:
            bound = MAX_UINT256 if side > 0 else 0
        else:
            bound = trigger * (10_000 + bound_bps) // 10_000 if side > 0 else trigger * (10_000 - bound_bps) // 10_000
        oco = 0
        if pair:
            legs = [i for i in self._live_conditionals(OPEN) if (o := self.book.orders[i]).oco == 0
                    and o.closes_position and (o.owner, o.sub, o.market) == (name, sub, market)]
            oco = legs[0] if legs else UNKNOWN_ORDER
        until = self.now + expiry if expiry else 0
        send = lambda: self.router.place_conditional(sub, market, kind, size, trigger, bound, reduce_only, until, oco,
                                                     sender=trader)
        try:
            o = self.book.place(name, sub, market, kind, size, trigger, bound, reduce_only, until, oco)
        except ModelRevert as exc:
            before = self._tokens(trader)
            with ape.reverts(exc.reason):
                send()
            assert self._tokens(trader) == before
            SUMMARY["conditional"]["refused"] += 1
            return None
        receipt = send()
        [ev] = self.x.events(receipt, "ConditionalPlaced")
        assert int(ev["order_id"]) == o.order_id and int(ev["side"]) == o.side and int(ev["size"]) == o.size
        SUMMARY["conditional"]["placed"] += 1
        return o.order_id

    @rule(who=st.integers(0, 2), market=st.sampled_from(MARKETS), kind=st.sampled_from((LIMIT, STOP, TAKE_PROFIT, STOP_LOSS)),
          long=st.booleans(), past_bps=st.integers(0, 900), bound_bps=st.one_of(st.none(), st.integers(1, 300)))
    def conditional_through_a_gap(self, who, market, kind, long, past_bps, bound_bps):
        """An order 1% from the price, then one round that gaps `past_bps` beyond its trigger,
        the trigger, and the round after: it fills at that round (never stranded by the gap)
        or is cancelled with the vault's reason when its own bound forbids that price."""
        _count("conditional_through_a_gap")
        order_id = self._place(who, 0, market, kind, long, 300, 100, bound_bps, False, 0, False)
        if order_id is None:
            return
        o = self.book.orders[order_id]
        step = o.trigger_price * past_bps // 10_000
        through = o.trigger_price - step if fires_below(o.kind, o.side) else o.trigger_price + step
        self._advance(1)
        # (a TP/SL may have gone to another account's position: its own market moves)
        self._round({m: self._clamped(m, through) if m == o.market else self.vm.prices[m] for m in MARKETS})
        self._trigger(order_id)
        self._advance(self.rm.delay)
        self._round({m: self.vm.prices[m] for m in MARKETS})
        self._settle([order_id])

    def _clamped(self, market: int, price: int) -> int:
        low, high = (self.base[market] * r // WAD for r in PRICE_BAND)
        return min(high, max(low, price))

    @precondition(lambda self: bool(self._live_conditionals(OPEN)))
    @rule(pick=st.integers(0, 100))
    def trigger_conditional(self, pick):
        """The settler triggers an open order: early, it reverts; a dead one is pruned; else
        it is triggered and settles at the round after (SPEC 15)."""
        _count("trigger_conditional")
        ids = self._live_conditionals(OPEN)
        self._trigger(ids[pick % len(ids)])

    def _trigger(self, order_id: int) -> None:
        try:
            outcome = self.book.trigger(order_id)
        except ModelRevert as exc:
            with ape.reverts(exc.reason):
                self.router.trigger(order_id, sender=self.settler)
            return
        receipt = self.router.trigger(order_id, sender=self.settler)
        self.settler_paid += self.x.reward_tokens
        if outcome.reason == "triggered":
            [ev] = self.x.events(receipt, "ConditionalTriggered")
            assert int(ev["triggered_at"]) == self.book.orders[order_id].triggered_at == self.now
            SUMMARY["conditional"]["triggered"] += 1
        else:
            self._check_conditional(order_id, outcome, receipt)

    @precondition(lambda self: bool(self._live_conditionals(OPEN)))
    @rule(prune=st.booleans(), extra=st.booleans())
    def trigger_or_prune_many(self, prune, extra):
        """`trigger_many` (or `prune_many`) over every open order, with an unknown id when
        `extra`: the met ones triggered (the expired pruned), the rest skipped; one transfer of
        one reward per order done."""
        _count("trigger_or_prune_many")
        ids = self._live_conditionals(OPEN) + ([UNKNOWN_ORDER] if extra else [])
        outcomes = self.book.prune_many(ids) if prune else self.book.trigger_many(ids)
        send = self.router.prune_many if prune else self.router.trigger_many
        receipt = send(ids, sender=self.settler)
        assert int(receipt.return_value) == len(outcomes)
        self.settler_paid += len(outcomes) * self.x.reward_tokens
        triggered = {int(e["order_id"]) for e in self.x.events(receipt, "ConditionalTriggered")}
        assert triggered == {i for i, out in outcomes.items() if out.reason == "triggered"}
        for order_id, out in outcomes.items():
            if out.reason != "triggered":
                self._check_conditional(order_id, out, receipt)
        SUMMARY["conditional"]["triggered"] += len(triggered)

    @precondition(lambda self: bool(self._live_conditionals(TRIGGERED)))
    @rule(extra=st.booleans())
    def settle_conditionals(self, extra):
        """Every triggered order in one `settle_many` (with a pending request when `extra`):
        each fills at its own round or waits."""
        _count("settle_conditionals")
        ids = self._live_conditionals(TRIGGERED) + (self._pending()[:1] if extra else [])
        self._settle(ids)

    @precondition(lambda self: bool(self._live_conditionals(OPEN)))
    @rule(pick=st.integers(0, 100), by_owner=st.booleans())
    def cancel_or_prune_conditional(self, pick, by_owner):
        """The owner cancels an open order (everything back), or the keeper prunes one: a live
        one reverts, a dead one (expired, its position gone or flipped) pays it one reward."""
        _count("cancel_or_prune_conditional")
        ids = self._live_conditionals(OPEN)
        o = self.book.orders[ids[pick % len(ids)]]
        owner = next(t for t in self.traders if str(t) == o.owner)
        caller = owner if by_owner else self.keeper
        act = (lambda: self.book.cancel(o.order_id, o.owner)) if by_owner else (lambda: self.book.prune(o.order_id))
        send = (lambda: self.router.cancel(o.order_id, sender=caller)) if by_owner else (
            lambda: self.router.prune(o.order_id, sender=caller))
        try:
            outcome = act()
        except ModelRevert as exc:
            with ape.reverts(exc.reason):
                send()
            return
        before = self._tokens(caller)
        receipt = send()
        self._check_conditional(o.order_id, outcome, receipt)
        assert self._tokens(caller) - before == (2 if by_owner else 1) * self.x.reward_tokens
        if caller == self.keeper:
            self.keeper_start += self.x.reward_tokens

    # ------------------------------------------------------------------ the adversary

    @rule(market=st.sampled_from(MARKETS), bps=st.sampled_from([-2_000, -500, -100, -30, 30, 100, 500, 2_000]),
          share=st.integers(50, 1_000))
    def adversary_round_trip(self, market, bps, share):
        """It knows the next round (a move of `bps`) before it lands: it buys before an up
        move (sells before a down move) and closes after. Both legs fill at their own
        settlement rounds, so it loses the fees and the price impact and gains nothing."""
        _count("adversary_round_trip")
        name, who = str(self.adversary), self.adversary
        if self.rm.pending_count(name, 1) or self.vm.position(name, 1, market).size:
            return
        start = self.vm.health(name, 1).equity
        price = self.vm.prices[market]
        size = max(1, 200_000 * WAD * share // 1_000 * WAD // price)  # up to 200,000 USD at 1x
        delta = size if bps > 0 else -size
        opened = self._commit(who, name, KIND_TRADE, lambda: self.router.commit_order(1, market, delta, MAX_UINT256 if delta > 0 else 0, sender=who),
                              sub=1, market=market, size_delta=delta, acceptable_price=MAX_UINT256 if delta > 0 else 0)
        if opened is None:
            return
        self._advance(self.rm.delay)
        self._round({m: self._moved(m, bps) if m == market else self.vm.prices[m] for m in MARKETS})
        self._settle([opened])
        if self.vm.position(name, 1, market).size == 0:
            return  # refused at its round (caps, the pool's backing): cancelled, nothing gained
        closing = self._commit(who, name, KIND_CLOSE, lambda: self.router.commit_close(1, market, 0 if delta > 0 else MAX_UINT256, sender=who),
                               sub=1, market=market, acceptable_price=0 if delta > 0 else MAX_UINT256)
        self._advance(self.rm.delay)
        self._round({m: self.vm.prices[m] for m in MARKETS})
        self._settle([closing])
        end = self.vm.health(name, 1).equity
        SUMMARY["adversary_trips"] += 1
        SUMMARY["adversary_losses"].append((start - end) / WAD)
        assert end < start, f"the adversary gained {end - start} WAD from a round it knew"

    @rule(bps=st.sampled_from([-1_000, -200, 200, 1_000]), usd=st.sampled_from([10_000, 100_000]))
    def adversary_lp_round_trip(self, bps, usd):
        """An LP who knows the next round deposits before it and withdraws after: the deposit
        is priced at that round, so it takes back at most what it put in."""
        _count("adversary_lp_round_trip")
        lp = self.lps[1]
        if self.rm.pending_count(str(lp), 2**30) or self.vm.lp_shares.get(str(lp), 0):
            return
        before = self._tokens(lp)
        added = self._commit(lp, str(lp), KIND_ADD, lambda: self.router.commit_add_liquidity(usd * TOKEN, sender=lp),
                             sub=0, market=0, amount=usd * TOKEN)
        if added is None:
            return
        self._advance(self.rm.delay)
        self._round({m: self._moved(m, bps) for m in MARKETS})
        self._advance(LP_GRACE)  # LP requests fill LP_GRACE after their round
        self._settle([added])
        shares = self.vm.lp_shares.get(str(lp), 0)
        if shares:
            removed = self._commit(lp, str(lp), KIND_REMOVE, lambda: self.router.commit_remove_liquidity(shares, sender=lp),
                                   sub=0, market=0, amount=shares)
            self._advance(self.rm.delay)
            self._round({m: self.vm.prices[m] for m in MARKETS})
            self._advance(LP_GRACE)
            self._settle([removed])
        SUMMARY["lp_trips"] += 1
        assert self._tokens(lp) <= before, "an LP gained from a round it knew"

    # ------------------------------------------------------------------ keeper

    def _liquidatable(self) -> list[tuple[int, int]]:
        return [(who, sub) for who, name in enumerate(self.names) for sub in SUBS
                if self.vm.open_markets(name, sub) and self.vm.health(name, sub).liquidatable]

    @precondition(lambda self: bool(self._liquidatable()))
    @rule()
    def liquidate(self):
        """Liquidations stay immediate, at the latest price, while requests wait."""
        _count("liquidate")
        for who, sub in self._liquidatable():
            receipt = self.x.d.keeper.liquidate(self.traders[who], sub, sender=self.keeper)
            result = self.vm.liquidate(self.names[who], sub, str(self.keeper))
            assert result is not None and len(self.x.events(receipt, "Liquidation")) == 1

    # ------------------------------------------------------------------ invariants

    @invariant()
    def chain_equals_model(self):
        assert int(self.chain.pending_timestamp) == self.vm.now
        state = self.fast.state(self.traders, SUBS, MARKETS, self.lps, {self.keeper: self.keeper_start})
        assert state == model_state(self.vm, self.names, SUBS, MARKETS, [str(lp) for lp in self.lps], [str(self.keeper)])

    @invariant()
    def router_holds_the_live_escrow(self):
        """SPEC 11.15: the router's tokens are exactly the live requests' escrow; the settler
        was paid one reward per request it settled or cancelled, no more."""
        assert self._tokens(self.router) == self.rm.escrow() + self.book.escrow()
        assert self._tokens(self.settler) == self.settler_paid

    @invariant()
    def every_conditional_order_is_the_models(self):
        """`conditional_order(id)` of every order placed is the model's: status, trigger time,
        OCO leg; live orders per account as the model counts them."""
        for order_id, o in self.book.orders.items():
            c = self.fast.call(self.router, "conditional_order", order_id)
            assert (int(c[12]), int(c[10]), int(c[11]), int(c[5]), int(c[6])) == (
                o.status, o.triggered_at, o.oco, o.size, o.trigger_price), order_id
        for who, name in enumerate(self.names):
            for sub in SUBS:
                assert int(self.fast.call(self.router, "conditional_orders", self.traders[who], sub)) == len(
                    self.book.live_orders(name, sub))

    @invariant()
    def every_request_has_the_models_status_and_body(self):
        """No request settles or is cancelled twice, none is lost; `order(id)` returns its
        body while it is pending, and until a later request of its account reuses the body
        slot (zeros from then on, never another order's body)."""
        for order_id, r in self.rm.requests.items():
            o = self.fast.call(self.router, "order", order_id)
            assert o[10] == r.status, order_id
            assert tuple(int(v) for v in o[4:7]) == self.rm.body_view(order_id), order_id

    @invariant()
    def tokens_back_the_books(self):
        m = self.vm
        ledger = sum(m.collateral.values()) + m.pool_balance + m.insurance_fund
        assert self._tokens(self.vault) * self.x.token_scale == ledger


@pytest.fixture(scope="module")
def routed_exchange(admin: Any, accounts: Any, chain: Any) -> Exchange:
    set_clock(int(chain.blocks.head.timestamp) + 1)  # not at a clock an earlier test left ahead
    x = Exchange(deploy_system(admin))
    x.add_liquidity(accounts[3], x.tokens(2_000_000))
    return x


@recorded(SUMMARY, PROFILE)  # the lambda below keeps its line: it seeds the quick profile
def test_router_state_machine(routed_exchange, chain, accounts, trader, trader2, attacker, liquidator):
    roles = Roles(traders=[trader, trader2, attacker], lps=[accounts[6], accounts[7]], settler=accounts[8],
                  keeper=liquidator)
    run_state_machine_as_test(lambda: RouterMachine(routed_exchange, chain, roles), settings=PROFILES[PROFILE])
    s = SUMMARY
    print(f"\nrouter machine [{PROFILE}]: {s['examples']} examples, {s['steps']} steps; filled {s['filled']}, cancelled {s['cancelled']}; "
          f"adversary round trips {s['adversary_trips']} (each lost USD: min "
          f"{min(s['adversary_losses'], default=0):.4f}, max {max(s['adversary_losses'], default=0):.2f}), "
          f"LP round trips {s['lp_trips']}; conditional orders {s['conditional']}; rules {s['rules']}")
    if PROFILE in ("quick", "ci"):
        assert s["filled"] and s["adversary_trips"] and s["lp_trips"], s
        assert any(reason.startswith("vault:") for reason in s["cancelled"]), s["cancelled"]
        assert "router: expired" in s["cancelled"], s["cancelled"]
        c = s["conditional"]
        assert c["placed"] and c["refused"] and c["triggered"] and c["filled"], c
