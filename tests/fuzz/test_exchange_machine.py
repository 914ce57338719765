"""Stateful invariant fuzzing (SPEC 11): a Hypothesis RuleBasedStateMachine drives every
trader, LP, keeper, oracle and admin action of the exchange against the chain and the Python
reference model (perpdex.model.VaultModel) in lock step, and checks after every step that the
chain equals the model and that the SPEC 11 invariants hold.

Inputs are valid by construction: the strategies (tests/fuzz/strategies.py) draw intents
(a share of the free margin, of a position, of what is withdrawable), and the machine turns
them into exact amounts from the model's state. When the model still refuses an amount (a
cap, the pool's backing, a reduce that would make the account liquidatable), the amount is
halved a few times; if every try is refused, the chain must refuse the first one with the
same reason (and nothing changes on either side).

Profiles: PERPDEX_FUZZ_PROFILE=quick (default) | ci | long | seeded. `pytest -s` prints a summary;
PERPDEX_FUZZ_SUMMARY=FILE also writes it as JSON (with `failed`). `seeded` is `ci` without
shrinking or the example database, so that the steps counted up to a failure are the steps it
took to find it (tests/fuzz/seeded_bugs.py runs it against deliberately broken contracts).

Time: the test clock is stopped (conftest `deterministic_time`); time moves only in the
`wait` rule, by mining a block at a later timestamp (on ape-titanoboa a bare pending
timestamp applies to one transaction only), after which every price is fed again.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import ape
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from perpdex.model import WAD, ModelRevert, VaultModel, accrued_funding, floor_div
from perpdex.sdk import MAX_UINT256

from strategies import (  # tests/fuzz is on sys.path (rootdir-less test dirs, prepend mode)
    MARKETS,
    SUBS,
    TradeIntent,
    Transfer,
    accounts,
    deposit_usd,
    large_jump_bps,
    lp_usd,
    shares,
    small_drift_bps,
    trade_intents,
    transfers,
    wait_seconds,
)

TOKEN = 10**6
PRICE_BAND = (WAD // 2, 2 * WAD)  # prices stay within [0.5x, 2x] of where they started (WAD ratio)
HALVINGS = 6

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("perpdex-quick", max_examples=12, stateful_step_count=25, **_COMMON)
settings.register_profile("perpdex-ci", max_examples=60, stateful_step_count=40, **_COMMON)
settings.register_profile("perpdex-long", max_examples=400, stateful_step_count=80, **_COMMON)
settings.register_profile("perpdex-seeded", settings.get_profile("perpdex-ci"), database=None,
                          phases=(Phase.explicit, Phase.generate))
PROFILE = os.environ.get("PERPDEX_FUZZ_PROFILE", "quick")

SUMMARY: dict[str, Any] = {
    "examples": 0, "steps": 0, "checks": 0, "seconds": 0.0, "check_seconds": 0.0, "rules": {}, "refused": {}, "skipped": {},
    "liquidations": 0, "full_liquidations": 0, "bad_debt_events": 0, "failed": None,
}


def _count(table: str, key: str) -> None:
    SUMMARY[table][key] = SUMMARY[table].get(key, 0) + 1


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self, x: Any, chain: Any, traders: list[Any], lps: list[Any], keeper_caller: Any,
                 model_of: Any) -> None:
        super().__init__()
        self.x, self.vault, self.chain = x, x.vault, chain
        self.traders, self.names = traders, [str(t) for t in traders]
        self.lps, self.keeper_caller = lps, keeper_caller
        self.admin = x.d.deployer
        # Ape 0.8's chain.isolate() swallows exceptions: snapshot here, restore in teardown().
        self.snapshot = chain.snapshot()
        SUMMARY["examples"] += 1
        # a restored snapshot does not rewind the provider's clock: mine now, feed prices again
        self._advance(13)
        self.base = {m: x.price(m) for m in MARKETS}
        self.x.refresh_prices()
        self.m: VaultModel = model_of()
        self.m.now = self.now
        self.m.insurance_fund = int(self.vault.insurance_fund())
        self.m.paused = bool(self.vault.paused())
        for mk in MARKETS:
            self.m.markets[mk].paused = bool(self.vault.market_paused(mk))
        for lp in lps:
            self.m.lp_shares[str(lp)] = int(self.vault.lp_shares(lp))
        self.keeper_start = int(x.d.usd.balanceOf(keeper_caller))
        self.last_funding = {mk: (self.now, (st_.funding_rate, st_.funding_index, st_.last_funding_time))
                             for mk, st_ in enumerate(self.m.markets)}
        self._read_at = -1

    @initialize(opening=st.lists(st.tuples(st.sampled_from([0, 1_000, 5_000, 20_000]), st.sampled_from(MARKETS),
                                           st.integers(0, 1_000)), min_size=3, max_size=3))
    def fund_traders(self, opening):
        """Each trader's sub-account 0 starts funded (or empty) and, if funded, opens a
        position using a random share of its margin (often highly levered), so that trades
        mostly go through and price jumps soon make accounts liquidatable."""
        for who, (usd, mk, share) in enumerate(opening):
            if usd:
                self.x.deposit(self.traders[who], usd * TOKEN, sub=0)
                self.m.deposit(self.names[who], 0, usd * TOKEN)
                if share:
                    self._trade(who, 0, mk, "open", share)

    def teardown(self) -> None:
        self.chain.restore(self.snapshot)

    # ------------------------------------------------------------------ plumbing

    def _step(self, name: str) -> None:
        SUMMARY["steps"] += 1
        _count("rules", name)

    def _advance(self, seconds: int) -> None:
        self.chain.pending_timestamp = int(self.chain.blocks.head.timestamp) + seconds
        self.chain.mine()
        self.now = int(self.chain.blocks.head.timestamp)
        if hasattr(self, "m"):
            self.m.now = self.now

    def _attempt(self, name: str, tries: list[Any], on_model: Any, on_chain: Any) -> Any:
        """Apply the first of `tries` the model accepts to the model, then to the chain.
        If the model refuses all, the chain must refuse the first with the same reason."""
        first_reason = None
        for arg in tries:
            try:
                result = on_model(arg)
            except ModelRevert as exc:
                first_reason = first_reason or exc.reason
                continue
            receipt = on_chain(arg)
            return arg, result, receipt
        _count("refused", f"{name}: {first_reason}")
        if tries:
            with ape.reverts(first_reason):
                on_chain(tries[0])
        return None, None, None

    @staticmethod
    def _halvings(amount: int) -> list[int]:
        out = []
        for _ in range(HALVINGS):
            if amount == 0:
                break
            out.append(amount)
            amount = int(amount / 2)
        return out

    def _free(self, who: int, sub: int) -> int:
        return self.m.health(self.names[who], sub).free_collateral

    # ------------------------------------------------------------------ traders: collateral

    @rule(acct=accounts, usd=deposit_usd)
    def deposit(self, acct, usd):
        self._step("deposit")
        self.x.deposit(self.traders[acct.who], usd * TOKEN, sub=acct.sub)
        self.m.deposit(self.names[acct.who], acct.sub, usd * TOKEN)

    @rule(acct=accounts, share=shares)
    def withdraw(self, acct, share):
        self._step("withdraw")
        name, trader = self.names[acct.who], self.traders[acct.who]
        amount = self.m.withdrawable(name, acct.sub) * share // 1_000
        if amount == 0:
            _count("skipped", "withdraw: nothing withdrawable")
            return
        before = int(self.x.d.usd.balanceOf(trader))
        done, _, _ = self._attempt(
            "withdraw", self._halvings(amount),
            lambda a: self.m.withdraw(name, acct.sub, a),
            lambda a: self.vault.withdraw(acct.sub, a, sender=trader),
        )
        if done:
            assert int(self.x.d.usd.balanceOf(trader)) - before == done
            assert not self.m.health(name, acct.sub).liquidatable  # SPEC 11.5

    @rule(t=transfers())
    def move_collateral(self, t: Transfer):
        self._step("move_collateral")
        name, trader = self.names[t.who], self.traders[t.who]
        amount = self.m.withdrawable(name, t.from_sub) * t.share // 1_000
        if amount == 0:
            _count("skipped", "move_collateral: nothing withdrawable")
            return
        done, _, _ = self._attempt(
            "move_collateral", self._halvings(amount),
            lambda a: self.m.transfer_margin(name, t.from_sub, t.to_sub, a),
            lambda a: self.vault.transfer_margin(t.from_sub, t.to_sub, a, sender=trader),
        )
        if done:
            assert not self.m.health(name, t.from_sub).liquidatable  # SPEC 11.5

    # ------------------------------------------------------------------ traders: positions

    def _risk_size(self, who: int, sub: int, market: int, share: int) -> int:
        """Base units that use `share` per-mille of the free margin at ~19x (under 20x IM)."""
        params, price = self.m.markets[market].params, self.m.prices[market]
        room = self._free(who, sub) - params.min_position_margin - WAD
        if room <= 0:
            return 0
        return room * 19 * share // 1_000 * WAD // price

    def _positions(self) -> list[tuple[int, int, int]]:
        return sorted((self.names.index(o), s, mk) for (o, s, mk), p in self.m.positions.items() if p.size)

    @rule(intent=trade_intents())
    def trade(self, intent: TradeIntent):
        """open / increase on any account (reduce, flip, close fall back to open when flat)."""
        self._trade(intent.account.who, intent.account.sub, intent.market, intent.kind, intent.share)

    @rule(intent=trade_intents())
    def trade_again(self, intent: TradeIntent):
        """The same as `trade`: a second rule doubles how often risk is taken."""
        self._trade(intent.account.who, intent.account.sub, intent.market, intent.kind, intent.share)

    @precondition(lambda self: bool(self._positions()))
    @rule(pick=st.integers(0, 1_000), share=shares)
    def reduce(self, pick, share):
        who, sub, mk = (ps := self._positions())[pick % len(ps)]
        self._trade(who, sub, mk, "reduce", share)

    @precondition(lambda self: bool(self._positions()))
    @rule(pick=st.integers(0, 1_000), share=shares)
    def flip(self, pick, share):
        who, sub, mk = (ps := self._positions())[pick % len(ps)]
        self._trade(who, sub, mk, "flip", share)

    @precondition(lambda self: bool(self._positions()))
    @rule(pick=st.integers(0, 1_000))
    def close(self, pick):
        who, sub, mk = (ps := self._positions())[pick % len(ps)]
        self._trade(who, sub, mk, "close", 1_000)

    def _trade(self, who: int, sub: int, mk: int, kind: str, share: int) -> None:
        name, trader = self.names[who], self.traders[who]
        size = self.m.position(name, sub, mk).size
        if kind in ("reduce", "flip", "close") and size == 0:
            kind = "open"
        if kind == "open" and size != 0:
            kind = "increase"
        if kind == "reduce" and abs(size) == 1:
            kind = "close"
        self._step(f"trade:{kind}")
        sign = (1 if size > 0 else -1) if size else (1 if share % 2 else -1)
        if kind in ("open", "increase"):
            delta = sign * self._risk_size(who, sub, mk, share)
        elif kind == "reduce":
            delta = -sign * min(abs(size) - 1, max(1, abs(size) * share // 1_000))
        elif kind == "flip":
            delta = -size - sign * max(1, self._risk_size(who, sub, mk, share))
        else:
            delta = -size
        if delta == 0:
            _count("skipped", f"trade:{kind}: no room")
            return
        healthy_before = not self.m.health(name, sub).liquidatable

        def on_chain(d: int) -> Any:
            bound = MAX_UINT256 if d > 0 else 0
            if kind == "close" and d == -size:
                return self.vault.close_position(sub, mk, bound, sender=trader)
            return self.vault.modify_position(sub, mk, d, bound, sender=trader)

        done, result, receipt = self._attempt(
            f"trade:{kind}", self._halvings(delta),
            lambda d: self.m.modify_position(name, sub, mk, d, MAX_UINT256 if d > 0 else 0),
            on_chain,
        )
        if done:
            [ev] = receipt.decode_logs(self.vault.PositionModified)
            assert (int(ev.size), int(ev.fee), int(ev.realized_pnl), int(ev.funding)) == (
                result.size, result.fee, result.realized_pnl, result.funding)
            if healthy_before:
                assert not self.m.health(name, sub).liquidatable  # SPEC 11.5

    # ------------------------------------------------------------------ LPs

    @rule(who=st.integers(0, 1), usd=lp_usd)
    def add_liquidity(self, who, usd):
        self._step("add_liquidity")
        lp = self.lps[who]
        self.x.fund(lp, usd * TOKEN)
        done, minted, receipt = self._attempt(
            "add_liquidity", [usd * TOKEN],
            lambda a: self.m.add_liquidity(str(lp), a),
            lambda a: self.vault.add_liquidity(a, sender=lp),
        )
        if done:
            assert receipt.return_value == minted

    @rule(who=st.integers(0, 1), share=shares)
    def remove_liquidity(self, who, share):
        self._step("remove_liquidity")
        lp = self.lps[who]
        amount = self.m.lp_shares.get(str(lp), 0) * share // 1_000
        if amount == 0:
            _count("skipped", "remove_liquidity: no shares")
            return
        before = int(self.x.d.usd.balanceOf(lp))
        done, paid, _ = self._attempt(
            "remove_liquidity", self._halvings(amount),
            lambda s: self.m.remove_liquidity(str(lp), s),
            lambda s: self.vault.remove_liquidity(s, sender=lp),
        )
        if done:
            assert int(self.x.d.usd.balanceOf(lp)) - before == paid

    # ------------------------------------------------------------------ oracle, time, poke

    def _move(self, market: int, bps: int) -> None:
        price = self.m.prices[market]
        new = price + price * bps // 10_000  # |move| <= 25% of the last price: the jump limit
        low, high = (self.base[market] * r // WAD for r in PRICE_BAND)
        if not low <= new <= high:
            new = price - price * bps // 10_000  # bounce back into the band
        self.x.set_price(market, new)
        self.m.prices[market] = new

    @rule(market=st.sampled_from(MARKETS), bps=small_drift_bps)
    def oracle_drift(self, market, bps):
        self._step("oracle_drift")
        self._move(market, bps)

    @rule(market=st.sampled_from(MARKETS), bps=large_jump_bps)
    def oracle_jump(self, market, bps):
        self._step("oracle_jump")
        self._move(market, bps)

    @rule(seconds=wait_seconds)
    def wait(self, seconds):
        self._step("wait")
        self._advance(seconds)
        self.x.refresh_prices()  # the oracle's max price age is an hour

    @rule(market=st.sampled_from(MARKETS))
    def poke(self, market):
        self._step("poke")
        self.vault.poke(market, sender=self.traders[0])
        self.m.poke(market)

    # ------------------------------------------------------------------ keeper

    def _liquidatable(self) -> list[tuple[int, int]]:
        return [(w, s) for w in range(len(self.names)) for s in SUBS
                if self.m.open_markets(self.names[w], s) and self.m.health(self.names[w], s).liquidatable]

    @precondition(lambda self: bool(self._liquidatable()))
    @rule(pick=st.integers(0, 100))
    def liquidate(self, pick):
        self._step("liquidate")
        candidates = self._liquidatable()
        who, sub = candidates[pick % len(candidates)]
        name, owner = self.names[who], self.traders[who]
        assert self.vault.is_liquidatable(owner, sub)
        before = int(self.x.d.usd.balanceOf(self.keeper_caller))
        receipt = self.x.d.keeper.liquidate(owner, sub, sender=self.keeper_caller)
        result = self.m.liquidate(name, sub, str(self.keeper_caller))
        assert result is not None
        SUMMARY["liquidations"] += 1
        SUMMARY["full_liquidations"] += result.full
        SUMMARY["bad_debt_events"] += result.bad_debt > 0
        [ev] = receipt.decode_logs(self.vault.Liquidation)
        assert (int(ev.fraction), int(ev.fee), int(ev.realized_pnl), int(ev.bad_debt), int(ev.insurance_fee)) == (
            result.fraction, result.fee, result.realized_pnl, result.bad_debt, result.insurance_fee)
        paid = int(self.x.d.usd.balanceOf(self.keeper_caller)) - before
        assert paid * self.x.token_scale == result.keeper_reward <= result.fee  # SPEC 11.7
        # SPEC 11.6: afterwards healthy or empty; a shortfall is bad debt, not negative collateral
        h = self.m.health(name, sub)
        assert not h.liquidatable or h.positions == 0
        if h.positions == 0:
            assert self.m.collateral.get((name, sub), 0) >= 0
        # SPEC 11.7: a second liquidation in the same block pays nothing (it is refused)
        with ape.reverts("keeper: account healthy"):
            self.x.d.keeper.liquidate(owner, sub, sender=self.keeper_caller)

    # ------------------------------------------------------------------ admin

    @rule(target_=st.sampled_from(("all",) + MARKETS))
    def pause_unpause(self, target_):
        """The owner toggles the global pause or one market's pause."""
        self._step("pause_unpause")
        if target_ == "all":
            if self.m.paused:
                self.vault.unpause(sender=self.admin)
            else:
                self.vault.pause(sender=self.admin)
            self.m.paused = not self.m.paused
            return
        st_ = self.m.markets[target_]
        if st_.paused:
            self.vault.unpause_market(target_, sender=self.admin)
        else:
            self.vault.pause_market(target_, sender=self.admin)
        st_.paused = not st_.paused

    # ------------------------------------------------------------------ invariants

    def _all_accounts(self) -> list[tuple[int, int]]:
        return [(w, s) for w in range(len(self.names)) for s in SUBS]

    @invariant()
    def chain_equals_model(self):
        """SPEC 11.9 and the differential test: every number the model keeps, on chain."""
        SUMMARY["checks"] += 1
        t0 = time.perf_counter()
        try:
            self._compare()
        finally:
            SUMMARY["check_seconds"] += time.perf_counter() - t0

    def _compare(self) -> None:
        v, m = self.vault, self.m
        assert int(self.chain.blocks.head.timestamp) == int(self.chain.pending_timestamp) == m.now
        for mk in MARKETS:
            assert self.x.price(mk) == m.prices[mk]
            st_, mine = v.market_state(mk), m.markets[mk]
            assert (int(st_.oi_long), int(st_.oi_short), int(st_.entry_sum), int(st_.funding_sum)) == (
                mine.oi_long, mine.oi_short, mine.entry_sum, mine.funding_sum)
            assert (int(st_.funding_rate), int(st_.funding_index), int(st_.last_funding_time)) == (
                mine.funding_rate, mine.funding_index, mine.last_funding_time)
            assert tuple(int(f) for f in v.funding(mk)) == m.funding_now(mk)
            assert bool(v.market_paused(mk)) == mine.paused
        assert int(v.pool_balance()) == m.pool_balance
        assert int(v.pool_value()) == m.pool_value()
        assert int(v.insurance_fund()) == m.insurance_fund
        assert int(v.total_lp_shares()) == m.total_lp_shares
        assert bool(v.paused()) == m.paused
        for lp in self.lps:
            assert int(v.lp_shares(lp)) == m.lp_shares.get(str(lp), 0)
        for w, s in self._all_accounts():
            name, owner = self.names[w], self.traders[w]
            markets = m.open_markets(name, s)
            assert [int(i) for i in v.open_markets(owner, s)] == markets
            assert self.x.health(owner, s) == m.health(name, s)  # collateral, PnL, funding, margins
            assert int(v.withdrawable(owner, s)) == m.withdrawable(name, s)
            for mk in markets:
                assert self.x.position(owner, s, mk) == m.position(name, s, mk)
        paid = int(self.x.d.usd.balanceOf(self.keeper_caller)) - self.keeper_start
        assert paid == m.keeper_paid.get(str(self.keeper_caller), 0)

    @invariant()
    def tokens_back_the_books(self):
        """SPEC 11.1: the vault's tokens are exactly collateral + pool cash + insurance (no
        donations here; fees live in the pool)."""
        m = self.m
        ledger = sum(m.collateral.values()) + m.pool_balance + m.insurance_fund
        held = int(self.x.d.usd.balanceOf(self.vault)) * self.x.token_scale
        assert held == ledger, (held, ledger)

    @invariant()
    def open_interest_is_the_positions(self):
        """SPEC 11.2 (on the model, which the chain equals): OI per side == sum of sizes."""
        for mk in MARKETS:
            sizes = [p.size for (_, _, mm), p in self.m.positions.items() if mm == mk]
            st_ = self.m.markets[mk]
            assert st_.oi_long == sum(s for s in sizes if s > 0)
            assert st_.oi_short == -sum(s for s in sizes if s < 0)
            assert all(s != 0 for s in sizes)

    @invariant()
    def funding_is_zero_sum(self):
        """SPEC 11.3: unsettled funding of all positions plus the pool's claim lies in
        [-open positions, 0]: one floor per party, never in the traders' favour."""
        for mk in MARKETS:
            st_ = self.m.markets[mk]
            _, index = self.m.funding_now(mk)
            positions = [p for (_, _, mm), p in self.m.positions.items() if mm == mk]
            traders = sum(accrued_funding(p.size, index, p.funding_index) for p in positions)
            pool = floor_div(st_.skew * index - st_.funding_sum, WAD)
            assert -len(positions) <= traders + pool <= 0, (mk, traders, pool)

    @invariant()
    def funding_moves_only_with_time(self):
        """SPEC 11.4: the stored funding state (rate, index, time of the last accrual) changes
        only when time has passed since the last accrual, and then is stamped now. (The index *as of now* may: funding for the unaccrued
        interval is priced at the current oracle price, so a price move re-prices it.)"""
        for mk in MARKETS:
            st_ = self.m.markets[mk]
            stored = (st_.funding_rate, st_.funding_index, st_.last_funding_time)
            _, before = self.last_funding[mk]
            if stored != before:  # an accrual: only at a later time than the previous one
                assert stored[2] == self.m.now > before[2], (mk, stored, before)
            self.last_funding[mk] = (self.m.now, stored)

    @invariant()
    def accounts_are_sound(self):
        """No empty account holds negative collateral (a shortfall is bad debt); withdrawable
        never exceeds collateral (plus settled funding) nor equity above IM (SPEC 11.8)."""
        for w, s in self._all_accounts():
            name = self.names[w]
            h = self.m.health(name, s)
            if h.positions == 0:
                assert h.collateral >= 0
            out = self.m.withdrawable(name, s) * self.m.token_scale
            assert out <= max(0, h.collateral + h.funding)
            assert out <= max(0, h.equity - h.initial_margin)


@pytest.fixture(scope="module")
def summary():
    yield
    s = SUMMARY
    rules = ", ".join(f"{k} {v}" for k, v in sorted(s["rules"].items()))
    refused = ", ".join(f"{v} x {k}" for k, v in sorted(s["refused"].items(), key=lambda kv: -kv[1])) or "none"
    skipped = ", ".join(f"{v} x {k}" for k, v in sorted(s["skipped"].items(), key=lambda kv: -kv[1])) or "none"
    rate = s["steps"] / s["seconds"] if s["seconds"] else 0.0
    if os.environ.get("PERPDEX_FUZZ_SUMMARY"):
        with open(os.environ["PERPDEX_FUZZ_SUMMARY"], "w") as out:
            json.dump({**s, "profile": PROFILE, "steps_per_second": rate}, out, indent=1)
    print(
        f"\nexchange machine [{PROFILE}]: {s['examples']} examples, {s['steps']} steps, {s['checks']} invariant "
        f"checks (x6 invariants), {s['seconds']:.1f} s, {rate:.1f} steps/s ({s['check_seconds']:.1f} s reading the chain for checks); liquidations {s['liquidations']} "
        f"({s['full_liquidations']} full, {s['bad_debt_events']} with bad debt)\n  rules hit: {rules}\n"
        f"  refused on both sides (all halvings): {refused}\n  skipped (nothing to do): {skipped}"
    )


def test_exchange_state_machine(x, chain, trader, trader2, attacker, lp, accounts, liquidator, model_of, summary):
    start = time.perf_counter()
    try:
        run_state_machine_as_test(
            lambda: ExchangeMachine(x, chain, [trader, trader2, attacker], [lp, accounts[6]], liquidator, model_of),
            settings=settings.get_profile(f"perpdex-{PROFILE}"),
        )
    except BaseException as exc:
        SUMMARY["failed"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        raise
    finally:
        SUMMARY["seconds"] += time.perf_counter() - start
