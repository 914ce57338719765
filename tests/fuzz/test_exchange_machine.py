"""Stateful invariant fuzzing (SPEC 11): a Hypothesis RuleBasedStateMachine drives every
trader, LP, keeper, oracle and admin action of the exchange against the chain and the Python
reference model (perpdex.model.VaultModel, with RouterModel for requests and rounds) in lock
step, and checks after every step that the chain equals the model and that the SPEC 11
invariants hold.

The exchange is deployed as it runs for real (atomic trading off): every trade, close and LP
move is a two-step request (SPEC 13). `_request` commits it to the OrderRouter, lets the
settlement delay pass, writes a round of every market (the feeder's job) and settles it as a
third party, paid from the request's escrow; the fill must be the model's, at the settlement
round's price (11.13), a close never flips (11.14), the owner pays exactly the escrow (11.15).

Valid rules draw intents (a share of the free margin, of a position, of what is withdrawable),
and the machine turns them into exact amounts from the model's state. When the model refuses
an amount at the settlement round (a cap, the pool's backing, a reduce that would make the
account liquidatable), the amount is halved a few times; if every try is refused, the first is
committed anyway and must be cancelled at its round with the same reason (direct actions:
the chain must refuse it with the same reason, and nothing changes on either side).

Invalid rules (`invalid_*`) each try one action that must fail: the chain must revert with the
exact reason (the model names it where it depends on the state, `ModelRevert.reason`), the
model must not change, the actor's tokens must not move, and `_compare` after the step proves
the chain still equals the model. Invalid trades are requests the router accepts and the vault
refuses at the settlement round: cancelled with the reason, the owner out exactly the reward.
The vault's direct trading entry points refuse everyone ("vault: use the order router").

Liquidations: `crash` / `crash_again` move one market 3-6 times in one direction (each update
within the oracle's jump limit and the price band, seconds apart); `liquidate` by the keeper,
or a rival keeper goes first (either way a second attempt in the same block is refused alone
and pays nothing in a batch), or `liquidate_many` over a batch mixing liquidatable and healthy
accounts. Owners of liquidatable accounts trade too: closing an underwater account leaves
no negative collateral (the shortfall goes through the bad-debt waterfall).

Solvency (SPEC 14) in one step, for what random rules reach too rarely in 50-step examples
(the seeded bugs `adl_at_mark_price`, `loss_cap_ignored`, `profit_not_capped` went uncaught
without them): `bankruptcy_into_adl` sets the pool's loss budget to 0, walks a market past the
liquidation price of a position with another on the other side, liquidates it and deleverages
the owing side; `realize_capped_profit` lowers max_pnl_factor, moves a position's market in its
favour and closes or halves it while its profit is paid pro rata.

SPEC 11.11 (`everyone_can_exit`, and at every teardown) runs perpdex.checks.everyone_exits
unless PERPDEX_FUZZ_EXIT=0 (EXIT_CHECK). A separate Hypothesis test covers the first LP deposit
after the pool emptied (SPEC 11.10).

Profiles: PERPDEX_FUZZ_PROFILE=quick (default: 16 x 28 steps on Ape, 140 x 50 on revm, both
derandomized) | ci (200 x 50; revm 1,400 x 50) | long (2,000 x 50; revm 28,000 x 50: a million
steps) | seeded (ci's Ape size on both) | anvil (tests/integration/test_fuzz_anvil.py) |
campaign-* (`perpdex fuzz`'s workers: tests/fuzz/campaign_profiles.py). `pytest -s` prints a summary
(with the rules never hit); PERPDEX_FUZZ_SUMMARY=FILE also writes it as JSON (with `failed`).
In the quick and ci profiles the test fails when a rule was never hit or nothing was liquidated
(ci: no partial or no full liquidation; quick on Ape, the backend's smoke run, only checks the
liquidation: its few hundred steps leave some rule undrawn whenever the rule list changes). `seeded` is `ci` without
shrinking or the example database, so that the steps counted up to a failure are the steps it
took to find it (tests/fuzz/seeded_bugs.py runs it against deliberately broken contracts).

Time: the test clock is stopped (conftest `deterministic_time`; on Anvil the block timestamp
interval is 0); time moves only in `wait` and the crashes, by mining a block at a later timestamp
(perpdex.chain.move_time), after which every price is fed again.

Backends: PERPDEX_FUZZ_BACKEND=revm runs the machine on revm (perpdex.revm_chain: the same
bytecode, deployed by the test itself, Ape-shaped contracts; about 40x faster), =ape on Ape's
embedded chain (titanoboa's py-evm, the session's `rx` deployment). Unset: the quick profile
runs on both (Ape first), every other profile on revm. The machine is the same on both: it
reaches the chain through the contracts it is given and perpdex.chain's helpers (move_time,
reverts, current_chain), which act on the RevmChain in use. A failure found on revm replays on
Ape: the same command with PERPDEX_FUZZ_BACKEND=ape (the example database is keyed by the
machine's factory, the same on both; or pass the failing run's --hypothesis-seed).
"""

from __future__ import annotations

import copy
import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from perpdex.chain import move_time, reverts, using
from perpdex.checks import everyone_exits
from perpdex.model import (
    ADL_LONGS,
    DAY,
    KIND_ADD,
    KIND_CLOSE,
    KIND_REMOVE,
    KIND_TRADE,
    LP_GRACE,
    VIRTUAL_ASSETS,
    VIRTUAL_SHARES,
    WAD,
    LiquidationResult,
    ModelRevert,
    Outcome,
    RouterModel,
    TradeResult,
    VaultModel,
    accrued_funding,
    ceil_div,
    fill_price,
    floor_div,
)
from perpdex.deploy import deploy_from
from perpdex.governance import encode_call, execute, schedule
from perpdex.revm_chain import RevmChain, RevmProject
from perpdex.sdk import MAX_UINT256, Exchange, liquidation_price_of, model_from_chain, price_steps

from campaign_profiles import register_campaign_profiles
from fastchain import FastChain, model_state  # tests/fuzz is on sys.path
from run_summary import profiled, recording, steps_per_second, write_json
from strategies import (  # tests/fuzz is on sys.path (rootdir-less test dirs, prepend mode)
    MARKETS,
    SUBS,
    Account,
    TradeIntent,
    Transfer,
    accounts,
    crash_legs,
    deposit_usd,
    donation_usd,
    extra_tokens,
    large_jump_bps,
    lp_usd,
    shares,
    small_drift_bps,
    too_large_jump_bps,
    trade_intents,
    transfers,
    wait_seconds,
)

# SPEC 11.11 in a rolled-back snapshot; PERPDEX_FUZZ_EXIT=0 turns it off (it is the slowest check)
EXIT_CHECK = os.environ.get("PERPDEX_FUZZ_EXIT", "1") != "0"
# `remove_liquidity_to_the_caps` (the big LP leaves the pool at the least value its caps allow,
# then prices crash) is on unless PERPDEX_FUZZ_LP_EDGE=0. Before SPEC 14's cap on traders'
# profit it broke SPEC 11.11 within ~2,700 steps (winners owed more than the pool's cash).
LP_EDGE = os.environ.get("PERPDEX_FUZZ_LP_EDGE", "1") == "1"

TOKEN = 10**6
PRICE_BAND = (WAD // 2, 2 * WAD)  # prices stay within [0.5x, 2x] of where they started (WAD ratio)
HALVINGS = 6
NOT_OWNER = "ownable: caller is not the owner"
WITHDRAW_REASONS = ("vault: insufficient collateral", "vault: below initial margin",
                    "vault: unrealized profit not withdrawable")
EXIT_EVERY = 15  # steps between two `everyone_can_exit` checks in one example
MAX_FLOOR_WEI = 8  # the funding index's floors in one step: one wei per accrual, a few accruals a step
CRASH_DIRECTIONS = ("crowd", "crowd", "down", "up")  # mostly against the side with the larger OI

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
# quick is derandomized: Hypothesis' swarm testing turns a random half of the rules off in
# each example, so 16 random examples leave a rule that needs a chain of events (a crash, then
# `liquidate`) unhit about one run in three; the same examples every run keep the every-rule
# check stable (ci / long stay random and large enough for it).
settings.register_profile("perpdex-quick", max_examples=16, stateful_step_count=28, derandomize=True, **_COMMON)
settings.register_profile("perpdex-ci", max_examples=200, stateful_step_count=50, **_COMMON)
settings.register_profile("perpdex-long", max_examples=2_000, stateful_step_count=50, **_COMMON)
settings.register_profile("perpdex-anvil", max_examples=3, stateful_step_count=12, database=None, **_COMMON)
settings.register_profile("perpdex-seeded", settings.get_profile("perpdex-ci"), database=None,
                          phases=(Phase.explicit, Phase.generate))
# On revm (~450 steps/s with every check, against ~5 on Ape + boa) the same names are 50-500x
# larger: quick >= 5,000 steps in well under a minute (the default run), ci >= 50,000, long
# >= 1,000,000 steps (about 40 minutes on one core; `perpdex fuzz --workers N` splits nothing,
# each worker runs the whole profile with its own seed). An example averages ~38 of its 50
# steps (an example ends early when Hypothesis has nothing left to draw), hence 140 / 1,400 /
# 28,000 examples.
settings.register_profile("perpdex-quick-revm", max_examples=140, stateful_step_count=50, derandomize=True, **_COMMON)
settings.register_profile("perpdex-ci-revm", max_examples=1_400, stateful_step_count=50, **_COMMON)
settings.register_profile("perpdex-long-revm", max_examples=28_000, stateful_step_count=50, **_COMMON)
# `seeded` keeps Ape's ci size on revm too (200 x 50, ~8,000 steps): the seeded-bugs runner's
# baseline must pass, and past ~45,000 steps the unmutated exchange fails SPEC 11.11 today
# (the pool insolvent after an LP leaves and a crash: issue 17's solvency work), so a larger
# baseline would hide every mutation behind that one known failure.
register_campaign_profiles("perpdex-")  # perpdex-campaign-*: `perpdex fuzz`'s workers
register_campaign_profiles("perpdex-", "-revm")  # and their revm sizes
PROFILE = os.environ.get("PERPDEX_FUZZ_PROFILE", "quick")
MUST_HIT_EVERY_RULE = ("quick", "ci")
POOL_USD = 1_000_000  # the LP liquidity of the routed deployment (tests/conftest.py), on both backends


def fuzz_backends(profile: str) -> list[str]:
    """The backends the machine runs on: PERPDEX_FUZZ_BACKEND (revm | ape); unset, both for the
    quick profile (Ape first: its session deployment is then made by the module's first test,
    as before) and revm for the others."""
    chosen = os.environ.get("PERPDEX_FUZZ_BACKEND")
    if chosen is None:
        return ["ape", "revm"] if profile == "quick" else ["revm"]
    if chosen not in ("revm", "ape"):
        raise ValueError(f"PERPDEX_FUZZ_BACKEND={chosen!r}: revm or ape")
    return [chosen]


def new_summary() -> dict[str, Any]:
    return {
        "examples": 0, "steps": 0, "checks": 0, "seconds": 0.0, "check_seconds": 0.0, "rules": {}, "kinds": {},
        "refused": {}, "skipped": {}, "liquidations": 0, "partial_liquidations": 0, "full_liquidations": 0,
        "bad_debt_events": 0, "race_refusals": 0, "exit_checks": 0, "donated_tokens": 0, "never_hit": [],
        "requests": 0, "cancelled": 0, "failed": None,
    }


SUMMARY: dict[str, Any] = new_summary()


def _count(table: str, key: str) -> None:
    SUMMARY[table][key] = SUMMARY[table].get(key, 0) + 1


def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Count a rule's calls under its own name (the summary's `rules`, and the hole check)."""

    @functools.wraps(fn)
    def wrapper(self: "ExchangeMachine", *args: Any, **kwargs: Any) -> Any:
        SUMMARY["steps"] += 1
        _count("rules", fn.__name__)
        return fn(self, *args, **kwargs)

    return wrapper


def share_price(m: VaultModel) -> tuple[int, int]:
    """What one LP share is worth, as the vault prices it: (pool_value + VA) / (shares + VS),
    as a (numerator, denominator) pair (compare by cross-multiplying, no rounding)."""
    return m.pool_value() + VIRTUAL_ASSETS, m.total_lp_shares + VIRTUAL_SHARES


@dataclass(frozen=True)
class Roles:
    """Who does what. traders[2] (the attacker) also makes the owner-only and feeder-only
    calls that must fail."""

    traders: list[Any]
    lps: list[Any]
    keeper: Any
    rival_keeper: Any
    donor: Any
    settler: Any  # settles every request (SPEC 13), paid the escrowed reward


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self, x: Exchange, chain: Any, roles: Roles) -> None:
        super().__init__()
        self.x, self.vault, self.chain, self.usd, self.router = x, x.vault, chain, x.d.usd, x.d.router
        self.traders, self.names = roles.traders, [str(t) for t in roles.traders]
        self.lps, self.keeper_caller, self.rival, self.donor = roles.lps, roles.keeper, roles.rival_keeper, roles.donor
        self.attacker = roles.traders[2]
        self.admin = x.d.deployer
        # Ape 0.8's chain.isolate() swallows exceptions: snapshot here, restore in teardown().
        self.snapshot = chain.snapshot()
        SUMMARY["examples"] += 1
        # a restored snapshot does not rewind the provider's clock: mine now, feed prices again
        self._advance(13)
        self.base = {m: x.price(m) for m in MARKETS}
        self.x.refresh_prices()
        self.m: VaultModel = model_from_chain(x, self.now)
        for lp in self.lps:
            self.m.lp_shares[str(lp)] = int(self.vault.lp_shares(lp))
        r = self.router
        self.rm = RouterModel(self.m, reward_tokens=x.reward_tokens, delay=int(r.settlement_delay()),
                              window=int(r.settlement_window()))
        self.rm.next_id = int(r.order_count()) + 1
        for mk in MARKETS:
            self.rm.record_round(mk, self.base[mk], self.now)
        self.settler = roles.settler
        self.fast = FastChain(x)
        self.keepers = (self.keeper_caller, self.rival)
        self.keeper_start = {str(k): self._tokens(k) for k in self.keepers}
        self.settler_paid = self._tokens(self.settler)
        self.donated = 0  # tokens sent straight to the vault (SPEC 11.1, 11.10)
        self.pending_caps: tuple[Any, tuple[int, int, int, int]] | None = None  # scheduled, not executed
        self.steps_since_exit = 0
        self.last_funding = {mk: (st_.funding_rate, st_.funding_index, st_.last_funding_time)
                             for mk, st_ in enumerate(self.m.markets)}

    @initialize(opening=st.lists(st.tuples(st.sampled_from([0, 1_000, 5_000, 20_000]), st.sampled_from(MARKETS),
                                           st.integers(500, 1_000)), min_size=3, max_size=3))
    def fund_traders(self, opening):
        """Each trader's sub-account 0 starts funded (or empty) and, if funded, opens a
        position using half or more of its margin (about 10x-19x), so that trades mostly go
        through and a crash soon makes accounts liquidatable."""
        for holder in self.traders + self.lps:
            self.x.fund(holder, 1_000 * TOKEN)  # the settlement rewards their requests escrow
        for who, (usd, mk, share) in enumerate(opening):
            if usd:
                self.x.deposit(self.traders[who], usd * TOKEN, sub=0)
                self.m.deposit(self.names[who], 0, usd * TOKEN)
                if share:
                    self._trade(who, 0, mk, "open", share)

    def teardown(self) -> None:
        try:
            if EXIT_CHECK:
                self._check_everyone_exits()
        finally:
            self.chain.restore(self.snapshot)

    # ------------------------------------------------------------------ plumbing

    def _advance(self, seconds: int) -> None:
        move_time(seconds)
        self.now = int(self.chain.blocks.head.timestamp)
        if hasattr(self, "m"):
            self.m.now = self.now

    def _tokens(self, who: Any) -> int:
        return int(self.fast.call(self.usd, "balanceOf", who))

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
            with reverts(first_reason):
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

    def _refresh(self) -> None:
        """A round of every market at its current price, stamped now (chain and model)."""
        self.x.refresh_prices()
        for mk in MARKETS:
            self.rm.record_round(mk, self.m.prices[mk], self.now)

    def _in_future(self, on_model: Callable[[VaultModel, Any], Any], arg: Any, wait: int) -> Any:
        """`on_model` on a copy of the model as it will be at the request's settlement: a
        settlement delay later (and `wait` more: an LP request's LP_GRACE), every market fed
        again at today's price (which is what `_request` then does); raises ModelRevert as
        the vault would refuse it there."""
        future = copy.deepcopy(self.m)
        future.now += self.rm.delay + wait
        return on_model(future, arg)

    def _request(self, rule_name: str, tries: list[Any], on_model: Callable[[VaultModel, Any], Any],
                 commit: Callable[[Any], tuple[Any, Any, dict[str, Any]]],
                 at_round: Callable[[], None] | None = None) -> tuple[Any, Outcome | None, Any]:
        """A two-step request (SPEC 13), the way the exchange trades: the first of `tries` that
        the vault will accept at the settlement round (the model decides, on a copy of its
        future) is committed now; then a settlement delay passes, the feeder writes a round of
        every market and the settler settles it. It must fill exactly as the model fills it.
        When the model refuses every try, the first is committed all the same and must be
        cancelled at its round with the model's reason, the settler paid from its escrow.
        `commit(arg)` returns (owner, the chain's commit call, the RouterModel.commit kwargs);
        `at_round()`, if given, runs once the settlement round exists, just before the settle.
        Returns (the argument filled or None, the outcome, the settle receipt); when the router
        refused the commit itself (the chain must refuse it the same way, moving no token):
        (None, a cancelled Outcome with that reason, None)."""
        chosen, first_reason = None, None
        # LP requests fill LP_GRACE after their round (liquidations at its prices land first)
        wait = LP_GRACE if commit(tries[0])[2]["kind"] >= KIND_ADD else 0
        for arg in tries:
            try:
                self._in_future(on_model, arg, wait)
            except ModelRevert as exc:
                first_reason = first_reason or exc.reason
                continue
            chosen = arg
            break
        if chosen is None:
            chosen = tries[0]
        owner, send, kwargs = commit(chosen)
        try:
            request = self.rm.commit(str(owner), **kwargs)
        except ModelRevert as exc:
            self._refused(rule_name, exc.reason, owner, send)
            return None, Outcome(False, exc.reason), None
        tokens = self._tokens(owner)
        assert self.x.order_id(send()) == request.order_id
        assert self._tokens(owner) == tokens - self.rm.escrow_of(request)  # SPEC 11.15
        self._advance(self.rm.delay)
        self._refresh()
        if wait:
            self._advance(wait)
        if at_round is not None:
            at_round()
        receipt = self.router.settle(request.order_id, sender=self.settler)
        outcome = self.rm.settle(request.order_id)
        assert outcome is not None
        self.settler_paid += self.x.reward_tokens
        SUMMARY["requests"] += 1
        if outcome.filled:
            assert first_reason is None or chosen != tries[0], f"{rule_name}: the model refused, the chain filled"
            [ev] = [e for e in self.x.events(receipt, "OrderSettled") if int(e["order_id"]) == request.order_id]
            # SPEC 11.13: a trade fills at its settlement round (every market was fed now)
            if request.kind < KIND_ADD:
                fills = [e for e in self.x.events(receipt, "PositionModified") if int(e["market"]) == request.market]
                assert [int(e["oracle_price"]) for e in fills] == [self.rm.round_at(request.market, request.settle_after)[1]]
            return chosen, outcome, receipt
        [ev] = [e for e in self.x.events(receipt, "OrderCancelled") if int(e["order_id"]) == request.order_id]
        assert ev["reason"] == outcome.reason, (ev["reason"], outcome.reason)
        assert first_reason is not None and chosen == tries[0], f"{rule_name}: cancelled ({outcome.reason})"
        assert outcome.reason == first_reason, (outcome.reason, first_reason)
        _count("refused", f"{rule_name}: {outcome.reason}")
        SUMMARY["cancelled"] += 1
        return None, outcome, receipt

    def _free(self, who: int, sub: int) -> int:
        return self.m.health(self.names[who], sub).free_collateral

    # ------------------------------------------------------------------ traders: collateral

    @rule(acct=accounts, usd=deposit_usd)
    @counted
    def deposit(self, acct, usd):
        self.x.deposit(self.traders[acct.who], usd * TOKEN, sub=acct.sub)
        self.m.deposit(self.names[acct.who], acct.sub, usd * TOKEN)

    @rule(acct=accounts, share=shares)
    @counted
    def withdraw(self, acct, share):
        name, trader = self.names[acct.who], self.traders[acct.who]
        amount = self.m.withdrawable(name, acct.sub) * share // 1_000
        if amount == 0:
            _count("skipped", "withdraw: nothing withdrawable")
            return
        before = self._tokens(trader)
        done, _, _ = self._attempt(
            "withdraw", self._halvings(amount),
            lambda a: self.m.withdraw(name, acct.sub, a),
            lambda a: self.vault.withdraw(acct.sub, a, sender=trader),
        )
        if done:
            assert self._tokens(trader) - before == done
            assert not self.m.health(name, acct.sub).liquidatable  # SPEC 11.5

    @rule(t=transfers())
    @counted
    def move_collateral(self, t: Transfer):
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
    @counted
    def trade(self, intent: TradeIntent):
        """open / increase on any account (reduce, flip, close fall back to open when flat)."""
        self._trade(intent.account.who, intent.account.sub, intent.market, intent.kind, intent.share)

    @rule(intent=trade_intents())
    @counted
    def trade_again(self, intent: TradeIntent):
        """The same as `trade`: a second rule doubles how often risk is taken."""
        self._trade(intent.account.who, intent.account.sub, intent.market, intent.kind, intent.share)

    @precondition(lambda self: bool(self._positions()))
    @rule(pick=st.integers(0, 1_000), share=shares)
    @counted
    def reduce(self, pick, share):
        who, sub, mk = (ps := self._positions())[pick % len(ps)]
        self._trade(who, sub, mk, "reduce", share)

    @precondition(lambda self: bool(self._positions()))
    @rule(pick=st.integers(0, 1_000), share=shares)
    @counted
    def flip(self, pick, share):
        who, sub, mk = (ps := self._positions())[pick % len(ps)]
        self._trade(who, sub, mk, "flip", share)

    @precondition(lambda self: bool(self._positions()))
    @rule(pick=st.integers(0, 1_000))
    @counted
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
        _count("kinds", f"trade:{kind}")
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
        self._trade_delta(who, sub, mk, kind, self._halvings(delta))

    def _trade_delta(self, who: int, sub: int, mk: int, kind: str, deltas: list[int]) -> None:
        """Request the first of `deltas` the model fills (see `_request`) and check the fill."""
        name, trader = self.names[who], self.traders[who]
        size = self.m.position(name, sub, mk).size
        healthy_before = not self.m.health(name, sub).liquidatable

        def commit(d: int) -> tuple[Any, Any, dict[str, Any]]:
            bound = MAX_UINT256 if d > 0 else 0
            where = dict(sub=sub, market=mk, acceptable_price=bound)
            if kind == "close" and d == -size:
                return trader, lambda: self.router.commit_close(sub, mk, bound, sender=trader), dict(
                    kind=KIND_CLOSE, **where)
            return trader, lambda: self.router.commit_order(sub, mk, d, bound, sender=trader), dict(
                kind=KIND_TRADE, size_delta=d, **where)

        done, outcome, receipt = self._request(
            f"trade:{kind}", deltas,
            lambda m, d: m.modify_position(name, sub, mk, d, MAX_UINT256 if d > 0 else 0),
            commit,
        )
        if done:
            result = outcome.result
            assert isinstance(result, TradeResult)
            [ev] = self.x.events(receipt, "PositionModified")
            assert (int(ev["size"]), int(ev["fee"]), int(ev["realized_pnl"]), int(ev["funding"])) == (
                result.size, result.fee, result.realized_pnl, result.funding)
            if kind == "close":  # SPEC 11.14: a close never leaves a position nor flips it
                assert result.size == 0
            if healthy_before:
                assert not self.m.health(name, sub).liquidatable  # SPEC 11.5

    @precondition(lambda self: self._unpaused())
    @rule(acct=accounts, market=st.sampled_from(MARKETS), up=st.booleans(), over=st.booleans(),
          usd=st.integers(1, 5_000))
    @counted
    def trade_to_the_caps(self, acct: Account, market: int, up: bool, over: bool, usd: int):
        """A trade that grows one side's open interest to `usd` inside or past the notional the
        pool's caps allow (SPEC 14: reserve_factor for the side, max_exposure_factor for all):
        past it, the model refuses with a cap's reason and the chain must cancel it with the
        same one; inside, it fills if the account's margin allows."""
        m, name = self.m, self.names[acct.who]
        if m.markets[market].paused:
            market = 1 - market
        sign = self._risk_sign(acct.who, acct.sub, market, up)
        value, gross, _, _ = m.valuation()
        st_, price = m.markets[market], m.prices[market]
        side_oi = st_.oi_long if sign > 0 else st_.oi_short
        side_room = m.reserve_factor * value // WAD - ceil_div(side_oi * price, WAD)
        gross_room = m.max_exposure_factor * value // WAD - gross
        room = min(side_room, gross_room) + (usd if over else -usd) * WAD
        delta = sign * (room * WAD // price) if value > 0 and room > 0 else 0
        if delta == 0:
            _count("skipped", "trade_to_the_caps: no room")
            return
        _count("kinds", f"trade_to_the_caps:{'over' if over else 'inside'}")
        self._trade_delta(acct.who, acct.sub, market, "to the caps", [delta])

    # ------------------------------------------------------------------ LPs

    def _assert_share_price_kept(self, before: tuple[int, int], action: str) -> None:
        """SPEC 11.10: an LP entering or leaving never lowers the price of the others' shares
        (rounding favours the pool)."""
        after = share_price(self.m)
        assert after[0] * before[1] >= before[0] * after[1], f"{action} lowered the share price: {before} -> {after}"

    @rule(who=st.integers(0, 1), usd=lp_usd)
    @counted
    def add_liquidity(self, who, usd):
        lp = self.lps[who]
        self.x.fund(lp, usd * TOKEN)
        # the price the deposit is priced at: the settlement round's (funding accrues meanwhile)
        price_before: list[tuple[int, int]] = []
        done, outcome, receipt = self._request(
            "add_liquidity", [usd * TOKEN],
            lambda m, a: m.add_liquidity(str(lp), a),
            lambda a: (lp, lambda: self.router.commit_add_liquidity(a, sender=lp), dict(kind=KIND_ADD, sub=0, market=0,
                                                                                         amount=a)),
            at_round=lambda: price_before.append(share_price(self.m)),
        )
        if done:
            [ev] = self.x.events(receipt, "LiquidityAdded")
            assert int(ev["shares"]) == outcome.result
            self._assert_share_price_kept(price_before[0], "add_liquidity")

    @rule(who=st.integers(0, 1), share=shares)
    @counted
    def remove_liquidity(self, who, share):
        lp = self.lps[who]
        amount = self.m.lp_shares.get(str(lp), 0) * share // 1_000
        if amount == 0:
            _count("skipped", "remove_liquidity: no shares")
            return
        self._remove_liquidity("remove_liquidity", lp, self._halvings(amount))

    @precondition(lambda self: LP_EDGE)
    @rule(over=st.booleans(), usd=st.integers(1, 5_000), tight=st.booleans())
    @counted
    def remove_liquidity_to_the_caps(self, over, usd, tight):
        """The big LP withdraws to just inside (`usd` short of) or just past the value the pool's
        caps need for its open interest (SPEC 14): past it, the model refuses with a cap's
        reason and the chain must cancel the request with the same one. With `tight`, the
        caps are first set to bind halfway into the room the net rule leaves, so that the
        withdrawal meets a cap and not the net rule (which is checked first, and with the
        default caps and one-sided books binds first nearly always)."""
        lp, m = self.lps[0], self.m
        value, gross, largest, _ = m.valuation()
        # the net rule (pool cash behind each market's skew) may bind first: the payout lowers
        # cash and value alike, so the room is the smaller of the two
        cash_need = max(ceil_div(abs(st_.skew) * m.prices[mk] // WAD * WAD, st_.params.max_pool_exposure)
                        for mk, st_ in enumerate(m.markets))
        if tight:
            self._tighten_caps(value, gross, largest, m.pool_balance - cash_need)
        need = max(ceil_div(largest * WAD, m.reserve_factor), ceil_div(gross * WAD, m.max_exposure_factor))
        held, total = m.lp_shares.get(str(lp), 0), m.total_lp_shares
        room = min(value - need, m.pool_balance - cash_need) - (usd if not over else -usd) * WAD
        if largest == 0 or value <= 0 or room <= 0 or held == 0:
            _count("skipped", "remove_liquidity_to_the_caps: no open interest or no room")
            return
        amount = min(held, room * total // value + (1 if over else 0))
        if amount == 0:
            _count("skipped", "remove_liquidity_to_the_caps: under one share")
            return
        _count("kinds", f"remove_liquidity_to_the_caps:{'over' if over else 'inside'}")
        self._remove_liquidity("remove_liquidity_to_the_caps", lp, [amount])

    def _tighten_caps(self, value: int, gross: int, largest: int, net_room: int) -> None:
        """Set reserve_factor (and max_exposure_factor, if it would bind sooner) so that the
        caps leave an LP half of `net_room`, the pool value the net rule lets go; unchanged
        when there is no open interest or room, or the factor would be out of bounds."""
        left = value - min(value, net_room) // 2
        if largest == 0 or net_room <= 0 or left <= 0:
            return
        reserve = ceil_div(largest * WAD, left)
        exposure = max(self.m.max_exposure_factor, reserve, ceil_div(gross * WAD, left))
        if reserve <= 2 * WAD and exposure <= 4 * WAD:
            _count("kinds", "remove_liquidity_to_the_caps:tightened")
            self._set_pool_caps(reserve, exposure, self.m.max_pnl_factor, self.m.pool_loss_cap)

    def _remove_liquidity(self, rule_name: str, lp: Any, amounts: list[int]) -> None:
        before, price_before = self._tokens(lp), []
        done, outcome, _ = self._request(
            rule_name, amounts,
            lambda m, s: m.remove_liquidity(str(lp), s),
            lambda s: (lp, lambda: self.router.commit_remove_liquidity(s, sender=lp), dict(kind=KIND_REMOVE, sub=0,
                                                                                            market=0, amount=s)),
            at_round=lambda: price_before.append(share_price(self.m)),
        )
        if done:
            assert self._tokens(lp) - before == outcome.result - self.x.reward_tokens
            self._assert_share_price_kept(price_before[0], "remove_liquidity")

    @rule(usd=donation_usd)
    @counted
    def donate(self, usd):
        """Tokens sent straight to the vault (SPEC 11.10) move no book: pool value, shares, the
        share price and every account stay what they were (the model is not told; `_compare`
        proves the chain still equals it); SPEC 11.1 counts them apart."""
        amount = usd * TOKEN
        self.usd.mint(self.donor, amount, sender=self.donor)
        pool_before, shares_before = int(self.vault.pool_value()), int(self.vault.total_lp_shares())
        self.usd.transfer(self.vault, amount, sender=self.donor)
        self.donated += amount
        SUMMARY["donated_tokens"] += amount
        assert (int(self.vault.pool_value()), int(self.vault.total_lp_shares())) == (pool_before, shares_before)

    # ------------------------------------------------------------------ oracle, time, poke

    def _band(self, market: int) -> tuple[int, int]:
        low, high = (self.base[market] * r // WAD for r in PRICE_BAND)
        return low, high

    def _set_price(self, market: int, price: int) -> None:
        self.x.set_price(market, price)
        self.rm.record_round(market, price, self.now)

    def _move(self, market: int, bps: int) -> None:
        price = self.m.prices[market]
        # |move| rounded down: at -2,500 bps, floor division of the negative product would
        # round the move up, one wei past the oracle's 25% (the ci profile found that)
        move = price * abs(bps) // 10_000
        new = price + move if bps > 0 else price - move
        low, high = self._band(market)
        if not low <= new <= high:
            new = price - move if bps > 0 else price + move  # bounce back into the band
        self._set_price(market, new)

    @rule(market=st.sampled_from(MARKETS), bps=small_drift_bps)
    @counted
    def oracle_drift(self, market, bps):
        self._move(market, bps)

    @rule(market=st.sampled_from(MARKETS), bps=large_jump_bps)
    @counted
    def oracle_jump(self, market, bps):
        self._move(market, bps)

    def _crash(self, market: int, direction: str, legs: list[tuple[int, int]]) -> None:
        """A run of 3-6 updates in one direction (each within the jump limit, clamped to the
        band), seconds apart: levered accounts on the wrong side become liquidatable.
        "crowd" moves against the side with the larger open interest."""
        low, high = self._band(market)
        down = direction == "down" or (direction == "crowd" and self.m.markets[market].skew > 0)
        for bps, seconds in legs:
            price = self.m.prices[market]
            new = max(low, price - price * bps // 10_000) if down else min(high, price + price * bps // 10_000)
            if new == price:
                break
            self._advance(seconds)
            self._set_price(market, new)
        self._refresh()  # the other market's price: fresh again, stamped now

    @rule(market=st.sampled_from(MARKETS), direction=st.sampled_from(CRASH_DIRECTIONS), legs=crash_legs)
    @counted
    def crash(self, market, direction, legs):
        self._crash(market, direction, legs)

    @rule(market=st.sampled_from(MARKETS), direction=st.sampled_from(CRASH_DIRECTIONS), legs=crash_legs)
    @counted
    def crash_again(self, market, direction, legs):
        """The same as `crash`: a second rule makes liquidations common."""
        self._crash(market, direction, legs)

    @rule(seconds=wait_seconds)
    @counted
    def wait(self, seconds):
        self._advance(seconds)
        self._refresh()  # the oracle's max price age is an hour

    @rule(market=st.sampled_from(MARKETS))
    @counted
    def poke(self, market):
        """SPEC 11.4: accrual never reverts while the price is fresh (after any idle time)."""
        self.vault.poke(market, sender=self.traders[0])
        self.m.poke(market)

    # ------------------------------------------------------------------ keepers

    def _liquidatable(self) -> list[tuple[int, int]]:
        return [(w, s) for w, s in self._all_accounts()
                if self.m.open_markets(self.names[w], s) and self.m.health(self.names[w], s).liquidatable]

    def _check_liquidation(self, who: int, sub: int, keeper: Any, result: LiquidationResult | None, event: Any) -> None:
        """One liquidation as the model did it: the event's amounts, SPEC 11.6, 11.7."""
        assert result is not None, "the chain liquidated an account the model finds healthy"
        SUMMARY["liquidations"] += 1
        SUMMARY["full_liquidations"] += result.full
        SUMMARY["partial_liquidations"] += not result.full
        SUMMARY["bad_debt_events"] += result.bad_debt > 0
        assert (event.owner, int(event.sub), event.keeper) == (self.traders[who].address, sub, keeper.address)
        assert (int(event.fraction), int(event.fee), int(event.realized_pnl), int(event.bad_debt),
                int(event.insurance_fee), int(event.keeper_reward) * self.x.token_scale, int(event.fee_collected),
                int(event.reward_from_insurance)) == (
            result.fraction, result.fee, result.realized_pnl, result.bad_debt, result.insurance_fee,
            result.keeper_reward, result.fee_collected, result.reward_from_insurance)
        # SPEC 11.7 and 14: paid from the collected fee and the insurance fund's floor only
        assert result.keeper_reward <= result.fee_collected + result.reward_from_insurance
        assert result.fee_collected <= result.fee
        # SPEC 11.6: afterwards healthy or empty; a shortfall is bad debt, not negative collateral
        h = self.m.health(self.names[who], sub)
        assert not h.liquidatable or h.positions == 0
        if h.positions == 0:
            assert h.collateral >= 0

    def _check_bad_debt(self, receipt: Any, results: list[LiquidationResult | None], window: Any) -> None:
        """The waterfall of each bankruptcy (SPEC 14) as the model did it: insurance fund, the
        pool within its loss window's budget, the rest to ADL."""
        chain_ = [(int(e.bad_debt), int(e.from_insurance), int(e.from_pool), int(e.to_adl))
                  for e in receipt.decode_logs(self.vault.BadDebtCovered)]
        model_ = [(r.bad_debt, r.from_insurance, r.from_pool, r.to_adl) for r in results if r is not None and r.bad_debt]
        assert chain_ == model_, (chain_, model_, "model's window, cash and unpaid before:", window)

    def _liquidate_one(self, who: int, sub: int, keeper: Any) -> None:
        name, owner = self.names[who], self.traders[who]
        assert self.vault.is_liquidatable(owner, sub)
        before = self._tokens(keeper)
        receipt = self.x.d.keeper.liquidate(owner, sub, sender=keeper)
        window = (self.m.loss_window_start, self.m.loss_budget, self.m.pool_balance, self.m.unpaid_losses)
        result = self.m.liquidate(name, sub, str(keeper))
        self._check_bad_debt(receipt, [result], window)
        [ev] = receipt.decode_logs(self.vault.Liquidation)
        self._check_liquidation(who, sub, keeper, result, ev)
        assert (self._tokens(keeper) - before) * self.x.token_scale == result.keeper_reward

    def _refuse_second_liquidation(self, who: int, sub: int) -> None:
        """SPEC 11.7 / 8: a second liquidation of the same account in the same block (the
        clock is stopped) pays nothing: refused alone, skipped in a batch."""
        owner, keeper = self.traders[who], self.keeper_caller
        before = self._tokens(keeper)
        with reverts("keeper: account healthy"):
            self.x.d.keeper.liquidate(owner, sub, sender=keeper)
        receipt = self.x.d.keeper.liquidate_many([owner], [sub], sender=keeper)
        assert self.m.liquidate(self.names[who], sub, str(keeper)) is None  # settles funding, as the chain
        assert receipt.return_value == 0 and not receipt.decode_logs(self.vault.Liquidation)
        assert self._tokens(keeper) == before
        SUMMARY["race_refusals"] += 1

    @precondition(lambda self: bool(self._liquidatable() or self._positions()))
    @rule(mode=st.sampled_from(("keeper", "rival first", "batch")), pick=st.integers(0, 100),
          batch=st.permutations(range(len(SUBS) * 3)), size=st.integers(2, len(SUBS) * 3),
          past_bps=st.one_of(st.integers(1, 30), st.integers(1, 30), st.integers(30, 1_500)))
    @counted
    def liquidate(self, mode, pick, batch, size, past_bps):
        """One rule for every way of liquidating (so that swarm testing, which turns rules off
        per example, rarely leaves a crash without a keeper): one account by the keeper; the
        same but a rival keeper's transaction lands first (either way the keeper's second
        attempt in the same block pays nothing); or a batch (`liquidate_many`). When nothing
        is liquidatable, the oracle first walks one position's market to `past_bps` beyond its
        liquidation price (just past it: partial liquidations; far past: full, bad debt)."""
        if not self._liquidatable() and not self._walk_past_liquidation_price(pick, past_bps):
            return
        _count("kinds", f"liquidate:{mode}")
        if mode == "batch":
            self._liquidate_batch(batch, size, pick)
            return
        who, sub = (c := self._liquidatable())[pick % len(c)]
        self._liquidate_one(who, sub, self.rival if mode == "rival first" else self.keeper_caller)
        self._refuse_second_liquidation(who, sub)

    @rule(pick=st.integers(0, 2**16), share=st.sampled_from((1_000, 500, 100)))
    @counted
    def deleverage(self, pick, share):
        """The ADL keeper (the deployer holds the role) closes, at the bankruptcy price, a
        share of a position on a market side that owes ADL (SPEC 14, 11.16). Any position on
        that side may be picked (ranking is the keeper's business): the model decides whether
        the vault must refuse (entry past the bankruptcy price, nothing to recover, equity
        below 0) and the chain agrees to the reason; nobody else's collateral moves."""
        self._deleverage(pick, share)

    def _deleverage(self, pick: int, share: int) -> None:
        owed = sorted(key for key, p in self.m.adl.items() if p.live(self.m.now))
        if not owed:
            _count("skipped", "deleverage: nothing owed")
            return
        mk, side = owed[pick % len(owed)]
        holders = [(w, s) for w, s, m2 in self._positions()
                   if m2 == mk and (self.m.position(self.names[w], s, mk).size > 0) == (side == ADL_LONGS)]
        if not holders:
            _count("skipped", "deleverage: no position on the owing side")
            return
        who, sub = holders[pick % len(holders)]
        name, owner = self.names[who], self.traders[who]
        size = max(abs(self.m.position(name, sub, mk).size) * share // 1_000, 1)
        others = {k: c for k, c in self.m.collateral.items() if k != (name, sub)}
        done, result, receipt = self._attempt(
            "deleverage", [size],
            lambda z: self.m.deleverage(name, sub, mk, z),
            lambda z: self.vault.deleverage(owner, sub, mk, z, sender=self.admin),
        )
        if not done:
            return
        _count("kinds", "deleverage:" + ("all" if result.size == 0 else "part"))
        [ev] = receipt.decode_logs(self.vault.Deleveraged)
        assert (ev.closed_size, ev.size, ev.price, ev.mark_price, ev.realized_pnl, ev.recovered) == (
            result.closed_size, result.size, result.price, result.mark_price, result.realized_pnl, result.recovered)
        assert result.realized_pnl >= 0 and self.m.health(name, sub).equity >= 0
        assert {k: c for k, c in self.m.collateral.items() if k != (name, sub)} == others

    @rule(pick=st.integers(0, 2**16), past_bps=st.integers(300, 1_500), share=st.sampled_from((1_000, 500, 100)))
    @counted
    def bankruptcy_into_adl(self, pick, past_bps, share):
        """The end of the loss waterfall in one step (SPEC 14), which the rules above reach
        only by chance (a bankruptcy beyond the insurance fund and the pool's budget, with a
        winner on the other side: in the seeded profile's 50-step examples, almost never):
        the pool's loss budget is set to 0, the oracle walks one market `past_bps` beyond the
        liquidation price of a position whose market has a position on the other side too,
        the keeper liquidates it (what the insurance fund does not cover is booked as ADL,
        `_check_bad_debt`), and the ADL keeper deleverages a position on the owing side
        (the `deleverage` rule's checks: the Deleveraged event's figures equal the model's)."""
        m = self.m
        both = {mk for mk in MARKETS if m.markets[mk].oi_long and m.markets[mk].oi_short}
        candidates = [i for i, (_, _, mk) in enumerate(self._positions()) if mk in both]
        if not candidates:
            _count("skipped", "bankruptcy_into_adl: no market with both sides held")
            return
        index = candidates[pick % len(candidates)]
        who, sub, _ = self._positions()[index]
        self._set_pool_caps(m.reserve_factor, m.max_exposure_factor, m.max_pnl_factor, 0)
        if not self._walk_past_liquidation_price(index, past_bps) or (who, sub) not in self._liquidatable():
            return
        self._liquidate_one(who, sub, self.keeper_caller)
        _count("kinds", "bankruptcy_into_adl:" + ("booked" if any(p.size for p in m.adl.values()) else "not booked"))
        self._deleverage(pick, share)

    @precondition(lambda self: bool(self._positions()))
    @rule(pick=st.integers(0, 2**16), gain_bps=st.integers(100, 2_000), share=st.sampled_from((1_000, 500)),
          pnl=st.sampled_from((WAD // 100, WAD // 10)))
    @counted
    def realize_capped_profit(self, pick, gain_bps, share, pnl):
        """A winner realizes profit while the traders' profit is past max_pnl_factor of the
        pool's cash (SPEC 14), which random caps and prices reach too rarely for a close to
        land while it binds: max_pnl_factor is lowered to `pnl`, the oracle walks the picked
        position's market `gain_bps` in its favour (within the band), and the position is
        closed or halved: the trade's event must carry the model's pro-rata realized PnL."""
        who, sub, mk = (ps := self._positions())[pick % len(ps)]
        m = self.m
        self._set_pool_caps(m.reserve_factor, m.max_exposure_factor, pnl, m.pool_loss_cap)
        up = m.position(self.names[who], sub, mk).size > 0
        low, high = self._band(mk)
        price = m.prices[mk]
        target = min(high, price + price * gain_bps // 10_000) if up else max(low, price - price * gain_bps // 10_000)
        for step in price_steps(price, target, int(self.x.d.oracle.max_price_jump())):
            self._advance(1)
            self._set_price(mk, step)
        self._refresh()
        num, den = m.profit_ratio()
        _count("kinds", "realize_capped_profit:" + ("pro rata" if num < den else "in full"))
        self._trade(who, sub, mk, "close" if share == 1_000 else "reduce", share)

    def _walk_past_liquidation_price(self, pick: int, past_bps: int) -> bool:
        """Move one market, in updates within the oracle's jump limit a second apart, to
        `past_bps` beyond the liquidation price of the picked position (other prices fixed);
        False (and nothing moved) when that price is outside the band or there is none."""
        who, sub, mk = (ps := self._positions())[pick % len(ps)]
        size = self.m.position(self.names[who], sub, mk).size
        at = liquidation_price_of(self.x, self.traders[who], sub, mk)
        target = None if at is None else at * (10_000 - past_bps if size > 0 else 10_000 + past_bps) // 10_000
        low, high = self._band(mk)
        if target is None or not low <= target <= high:
            _count("skipped", "liquidate: liquidation price outside the band")
            return False
        for price in price_steps(self.m.prices[mk], target, int(self.x.d.oracle.max_price_jump())):
            self._advance(1)
            self._set_price(mk, price)
        self._refresh()  # the other market's price: fresh again, stamped now
        if not self._liquidatable():  # funding accrued over the walk can move it by a few wei
            _count("skipped", "liquidate: still healthy after the walk")
            return False
        return True

    def _liquidate_batch(self, batch: list[int], size: int, pick: int) -> None:
        """`liquidate_many` over accounts in random order, at least one liquidatable, the rest
        whatever they are (healthy ones are skipped: only their funding is settled, in model
        and chain)."""
        every = self._all_accounts()
        chosen = [every[i] for i in batch[:size]]
        liquidatable = self._liquidatable()
        if not any(a in liquidatable for a in chosen):
            chosen[pick % len(chosen)] = liquidatable[pick % len(liquidatable)]
        chosen = list(dict.fromkeys(chosen))
        keeper = self.keeper_caller
        before = self._tokens(keeper)
        receipt = self.x.d.keeper.liquidate_many([self.traders[w] for w, _ in chosen], [s for _, s in chosen],
                                                 sender=keeper)
        window = (self.m.loss_window_start, self.m.loss_budget, self.m.pool_balance, self.m.unpaid_losses)
        results = [(w, s, self.m.liquidate(self.names[w], s, str(keeper))) for w, s in chosen]
        done = [(w, s, r) for w, s, r in results if r is not None]
        self._check_bad_debt(receipt, [r for _, _, r in done], window)
        events = receipt.decode_logs(self.vault.Liquidation)
        assert receipt.return_value == len(done) == len(events) >= 1
        for (w, s, r), ev in zip(done, events):
            self._check_liquidation(w, s, keeper, r, ev)
        assert (self._tokens(keeper) - before) * self.x.token_scale == sum(r.keeper_reward for _, _, r in done)
        assert not any(a in self._liquidatable() for a in chosen)  # the sweep leaves none behind

    # ------------------------------------------------------------------ admin

    @rule(target_=st.sampled_from(("all",) + MARKETS))
    @counted
    def pause_unpause(self, target_):
        """The guardian toggles the global pause or one market's pause (immediate, through the
        Governance that owns the vault)."""
        if target_ == "all":
            self.x.d.guard("unpause_vault" if self.m.paused else "pause_vault", sender=self.admin)
            self.m.paused = not self.m.paused
            return
        st_ = self.m.markets[target_]
        self.x.d.guard("unpause_market" if st_.paused else "pause_market", target_, sender=self.admin)
        st_.paused = not st_.paused

    @rule(reserve=st.sampled_from((WAD // 20, WAD // 10, WAD // 4, WAD, 2 * WAD)),
          extra=st.sampled_from((0, WAD // 20, WAD // 2, 2 * WAD)),
          pnl=st.sampled_from((WAD // 100, WAD // 10, WAD // 2, 9 * WAD // 10, WAD)),
          loss=st.sampled_from((0, WAD // 1000, WAD // 100, WAD)))
    @counted
    def set_pool_caps(self, reserve, extra, pnl, loss):
        """The owner (the Governance) moves the pool's caps (SPEC 14): tight ones make trades
        and LP withdrawals meet `vault: reserve cap` / `vault: exposure cap`; positions already
        over a new cap stay (only growing open interest is checked); a low max_pnl_factor makes
        winners' profit count and pay pro rata, and locks LP withdrawals; a low pool_loss_cap
        sends bad debt to ADL."""
        self._set_pool_caps(reserve, min(reserve + extra, 4 * WAD), pnl, loss)

    def _set_pool_caps(self, reserve: int, exposure: int, pnl: int, loss: int) -> None:
        self.x.d.govern(self.vault, "set_pool_caps", reserve, exposure, pnl, loss, sender=self.admin)
        m = self.m
        m.reserve_factor, m.max_exposure_factor, m.max_pnl_factor, m.pool_loss_cap = reserve, exposure, pnl, loss
        assert tuple(int(f) for f in self.vault.pool_caps()) == (reserve, exposure, pnl, loss)

    @rule(reserve=st.sampled_from((WAD // 10, WAD)), pnl=st.sampled_from((WAD // 100, 9 * WAD // 10)),
          loss=st.sampled_from((0, WAD // 100)), delay=st.sampled_from((600, 3_600, DAY)))
    @counted
    def schedule_pool_caps(self, reserve, pnl, loss, delay):
        """The owner schedules a caps change through the Governance with a real delay (SPEC 14:
        changes that can hurt positions or the pool wait, users see them coming): nothing
        changes until it is executed, and executing it early is refused."""
        if self.pending_caps is not None:
            _count("skipped", "schedule_pool_caps: one already pending")
            return
        caps = (reserve, min(2 * reserve, 4 * WAD), pnl, loss)
        gov = self.x.d.governance
        op = schedule(gov, self.vault, encode_call(self.vault, "set_pool_caps", caps), self.admin, delay=delay)
        self.pending_caps = (op, caps)
        before = tuple(int(f) for f in self.vault.pool_caps())
        with reverts("timelock_controller: operation is not ready"):
            execute(gov, op, self.admin)
        assert tuple(int(f) for f in self.vault.pool_caps()) == before

    @rule()
    @counted
    def execute_pool_caps(self):
        """The scheduled caps change, once its delay has passed (the `wait` rule moves time):
        executed, and only then the model's caps change."""
        if self.pending_caps is None:
            _count("skipped", "execute_pool_caps: nothing scheduled")
            return
        op, caps = self.pending_caps
        if self.now < op.eta:
            _count("skipped", "execute_pool_caps: not ready yet")
            with reverts("timelock_controller: operation is not ready"):
                execute(self.x.d.governance, op, self.admin)
            return
        execute(self.x.d.governance, op, self.admin)
        self.pending_caps = None
        m = self.m
        m.reserve_factor, m.max_exposure_factor, m.max_pnl_factor, m.pool_loss_cap = caps
        assert tuple(int(f) for f in self.vault.pool_caps()) == caps

    # ------------------------------------------------------------------ SPEC 11.11

    def _check_everyone_exits(self) -> None:
        accounts_ = [(t, s) for t in self.traders for s in SUBS]
        result = everyone_exits(self.x, accounts_, self.lps, self.keeper_caller, donations=self.donated)
        SUMMARY["exit_checks"] += 1
        assert result.ok, f"SPEC 11.11: not everyone could exit: {result.detail}"

    @precondition(lambda self: EXIT_CHECK and self.steps_since_exit >= EXIT_EVERY)
    @rule()
    @counted
    def everyone_can_exit(self):
        """SPEC 11.11, in a snapshot that perpdex.checks.everyone_exits rolls back."""
        self._check_everyone_exits()
        self.steps_since_exit = 0

    # ------------------------------------------------------------------ invalid actions

    def _model_state(self) -> Any:
        m = self.m
        return copy.deepcopy((m.markets, m.prices, m.collateral, m.positions, m.pool_balance, m.insurance_fund,
                              m.lp_shares, m.total_lp_shares, m.keeper_paid, m.paused, m.now))

    def _model_refuses(self, action: Callable[[], Any]) -> str:
        """The reason the model gives for refusing `action`; the model must be left as it was."""
        before = self._model_state()
        try:
            action()
        except ModelRevert as exc:
            assert self._model_state() == before, f"the model changed although it refused: {exc.reason}"
            return exc.reason
        raise AssertionError("the model accepted an action this rule means to be invalid")

    def _refused(self, rule_name: str, reason: str, actor: Any, call: Callable[[], Any]) -> None:
        """`call`, made by `actor`, must revert with exactly `reason` and move none of the
        actor's tokens (the model is not told; `_compare` then proves nothing changed)."""
        _count("refused", f"{rule_name}: {reason}")
        tokens = self._tokens(actor)
        with reverts(reason):
            call()
        assert self._tokens(actor) == tokens, f"{rule_name}: tokens moved on a refused call"

    @rule(acct=accounts, extra=extra_tokens)
    @counted
    def invalid_withdraw_too_much(self, acct: Account, extra: int):
        name, trader = self.names[acct.who], self.traders[acct.who]
        amount = self.m.withdrawable(name, acct.sub) + extra
        reason = self._model_refuses(lambda: self.m.withdraw(name, acct.sub, amount))
        assert reason in WITHDRAW_REASONS, reason
        self._refused("invalid_withdraw_too_much", reason, trader,
                      lambda: self.vault.withdraw(acct.sub, amount, sender=trader))

    @rule(acct=accounts, action=st.sampled_from(("deposit", "withdraw", "transfer_margin", "add_liquidity",
                                                 "modify_position", "remove_liquidity", "direct_trade",
                                                 "direct_liquidity")))
    @counted
    def invalid_zero_amount(self, acct: Account, action: str):
        who, sub = self.traders[acct.who], acct.sub
        calls: dict[str, tuple[str, Callable[[], Any]]] = {
            "deposit": ("vault: zero amount", lambda: self.vault.deposit(sub, 0, sender=who)),
            "withdraw": ("vault: zero amount", lambda: self.vault.withdraw(sub, 0, sender=who)),
            "transfer_margin": ("vault: zero amount", lambda: self.vault.transfer_margin(sub, (sub + 1) % len(SUBS), 0,
                                                                                         sender=who)),
            "add_liquidity": ("router: zero amount", lambda: self.router.commit_add_liquidity(0, sender=who)),
            "modify_position": ("router: zero size", lambda: self.router.commit_order(sub, 0, 0, MAX_UINT256,
                                                                                      sender=who)),
            "remove_liquidity": ("router: zero shares", lambda: self.router.commit_remove_liquidity(0, sender=who)),
            # the vault's own trading entry points are the router's alone (no fill at a price
            # everyone sees coming: SPEC 13)
            "direct_trade": ("vault: use the order router", lambda: self.vault.modify_position(sub, 0, WAD, MAX_UINT256,
                                                                                               sender=who)),
            "direct_liquidity": ("vault: use the order router", lambda: self.vault.add_liquidity(TOKEN, sender=who)),
        }
        reason, call = calls[action]
        self._refused("invalid_zero_amount", reason, who, call)

    def _cancelled(self, rule_name: str, who: int, sub: int, market: int, delta: int, bound: int) -> str:
        """A trade request that must not fill: committed, then cancelled at its settlement
        round with the model's reason, or refused at commit by the router. Returns the reason.
        The owner loses exactly the escrowed reward (paid to the settler) or, refused at
        commit, nothing; `_compare` after the step proves nothing else changed."""
        name, trader = self.names[who], self.traders[who]
        tokens = self._tokens(trader)
        done, outcome, receipt = self._request(
            rule_name, [delta], lambda m, d: m.modify_position(name, sub, market, d, bound),
            lambda d: (trader, lambda: self.router.commit_order(sub, market, d, bound, sender=trader),
                       dict(kind=KIND_TRADE, sub=sub, market=market, size_delta=d, acceptable_price=bound)),
        )
        assert done is None and outcome is not None and not outcome.filled, f"{rule_name}: the request filled"
        assert self._tokens(trader) == tokens - (0 if receipt is None else self.x.reward_tokens)
        return outcome.reason

    def _unpaused(self) -> bool:
        return not self.m.paused and not all(s.paused for s in self.m.markets)

    def _risk_sign(self, who: int, sub: int, market: int, up: bool) -> int:
        """The sign of a trade that increases risk: the position's own, or `up` when flat."""
        size = self.m.position(self.names[who], sub, market).size
        return (1 if size > 0 else -1) if size else (1 if up else -1)

    @precondition(lambda self: self._unpaused())
    @rule(acct=accounts, market=st.sampled_from(MARKETS), up=st.booleans())
    @counted
    def invalid_over_max_leverage(self, acct: Account, market: int, up: bool):
        """A new risk whose initial margin alone exceeds the account's equity (+1,000 USD)."""
        if self.m.markets[market].paused:
            market = 1 - market
        name = self.names[acct.who]
        equity, params = self.m.health(name, acct.sub).equity, self.m.markets[market].params
        notional = (max(equity, 0) + 1_000 * WAD) * params.max_leverage // WAD
        delta = self._risk_sign(acct.who, acct.sub, market, up) * (notional * WAD // self.m.prices[market])
        bound = MAX_UINT256 if delta > 0 else 0
        reason = self._cancelled("invalid_over_max_leverage", acct.who, acct.sub, market, delta, bound)
        # the pool's backing, the OI cap or the pool's caps can refuse such a size first: then
        # that is the reason; an account with neither collateral nor a position cannot commit
        assert reason in ("vault: below initial margin", "vault: pool cannot back open interest",
                          "vault: open interest cap", "vault: reserve cap", "vault: exposure cap",
                          "router: no collateral"), reason

    @rule(acct=accounts, market=st.sampled_from(MARKETS), up=st.booleans(), milli=st.integers(1, 1_000))
    @counted
    def invalid_fill_beyond_acceptable(self, acct: Account, market: int, up: bool, milli: int):
        """A trade bounded one wei better than its exact fill."""
        delta = (1 if up else -1) * milli * WAD // 1_000
        state = self.m.markets[market]
        fill = fill_price(self.m.prices[market], state.skew, delta, state.params.skew_scale)
        bound = fill - 1 if up else fill + 1
        reason = self._cancelled("invalid_fill_beyond_acceptable", acct.who, acct.sub, market, delta, bound)
        assert reason in ("vault: fill above acceptable price" if up else "vault: fill below acceptable price",
                          "router: no collateral"), reason

    @rule(acct=accounts, offset=st.integers(0, 5), action=st.sampled_from(("trade", "poke")))
    @counted
    def invalid_unknown_market(self, acct: Account, offset: int, action: str):
        trader, market = self.traders[acct.who], len(self.m.markets) + offset
        if action == "poke":
            reason = self._model_refuses(lambda: self.m.poke(market))
            call = lambda: self.vault.poke(market, sender=trader)  # noqa: E731
            assert reason == "vault: unknown market", reason
            self._refused("invalid_unknown_market", reason, trader, call)
        else:
            reason = self._cancelled("invalid_unknown_market", acct.who, acct.sub, market, WAD, MAX_UINT256)
            assert reason == "router: unknown market", reason

    @rule(acct=accounts, market=st.sampled_from(MARKETS), up=st.booleans(), milli=st.integers(1, 1_000))
    @counted
    def invalid_new_risk_while_paused(self, acct: Account, market: int, up: bool, milli: int):
        """New risk in a paused market (the owner pauses it first when nothing is paused)."""
        if not (self.m.paused or self.m.markets[market].paused):
            self.x.d.guard("pause_market", market, sender=self.admin)
            self.m.markets[market].paused = True
        delta = self._risk_sign(acct.who, acct.sub, market, up) * milli * WAD // 1_000
        bound = MAX_UINT256 if delta > 0 else 0
        reason = self._cancelled("invalid_new_risk_while_paused", acct.who, acct.sub, market, delta, bound)
        assert reason in ("vault: market paused", "router: no collateral"), reason

    @rule(who=st.integers(0, 1), extra=extra_tokens)
    @counted
    def invalid_remove_more_shares_than_owned(self, who: int, extra: int):
        lp = self.lps[who]
        amount = self.m.lp_shares.get(str(lp), 0) + extra
        self._refused("invalid_remove_more_shares_than_owned", "router: insufficient shares", lp,
                      lambda: self.router.commit_remove_liquidity(amount, sender=lp))

    @rule(acct=accounts, amount=st.integers(1, 10**12))
    @counted
    def invalid_transfer_to_same_sub(self, acct: Account, amount: int):
        name, trader = self.names[acct.who], self.traders[acct.who]
        reason = self._model_refuses(lambda: self.m.transfer_margin(name, acct.sub, acct.sub, amount))
        assert reason == "vault: same sub-account", reason
        self._refused("invalid_transfer_to_same_sub", reason, trader,
                      lambda: self.vault.transfer_margin(acct.sub, acct.sub, amount, sender=trader))

    @rule(pick=st.integers(0, 100))
    @counted
    def invalid_liquidate_healthy(self, pick: int):
        """Liquidating a healthy account (one with positions when there is one) is refused."""
        healthy = [(w, s) for w, s in self._all_accounts() if not self.m.health(self.names[w], s).liquidatable]
        with_positions = [a for a in healthy if self.m.open_markets(self.names[a[0]], a[1])]
        who, sub = (with_positions or healthy)[pick % len(with_positions or healthy)]
        self._refused("invalid_liquidate_healthy", "keeper: account healthy", self.keeper_caller,
                      lambda: self.x.d.keeper.liquidate(self.traders[who], sub, sender=self.keeper_caller))

    @rule(market=st.sampled_from(MARKETS), up=st.booleans(), bps=too_large_jump_bps)
    @counted
    def invalid_price_jump(self, market: int, up: bool, bps: int):
        price = self.m.prices[market]
        new = price + price * bps // 10_000 if up else price - price * bps // 10_000
        self._refused("invalid_price_jump", "oracle: price jump too large", self.admin,
                      lambda: self.x.set_price(market, new))

    @rule(market=st.sampled_from(MARKETS), bps=small_drift_bps)
    @counted
    def invalid_price_by_non_feeder(self, market: int, bps: int):
        price = self.m.prices[market]
        self._refused("invalid_price_by_non_feeder", "oracle: not a feeder", self.attacker,
                      lambda: self.x.set_price(market, price + price * bps // 10_000, feeder=self.attacker))

    @rule(action=st.sampled_from(("pause", "unpause", "pause_market", "unpause_market", "set_market_params",
                                  "add_market", "set_liquidator", "oracle_set_max_price_jump")))
    @counted
    def invalid_admin_by_non_owner(self, action: str):
        v, who = self.vault, self.attacker
        params = self.m.markets[0].params.as_tuple()
        calls: dict[str, Callable[[], Any]] = {
            "pause": lambda: v.pause(sender=who),
            "unpause": lambda: v.unpause(sender=who),
            "pause_market": lambda: v.pause_market(0, sender=who),
            "unpause_market": lambda: v.unpause_market(1, sender=who),
            "set_market_params": lambda: v.set_market_params(0, params, sender=who),
            "add_market": lambda: v.add_market(params, sender=who),
            "set_liquidator": lambda: v.set_liquidator(who, 0, 0, sender=who),
            "oracle_set_max_price_jump": lambda: self.x.d.oracle.set_max_price_jump(WAD, sender=who),
        }
        self._refused("invalid_admin_by_non_owner", NOT_OWNER, who, calls[action])

    # ------------------------------------------------------------------ invariants

    def _all_accounts(self) -> list[tuple[int, int]]:
        return [(w, s) for w in range(len(self.names)) for s in SUBS]

    @invariant()
    def chain_equals_model(self):
        """SPEC 11.9 and the differential test: every number the model keeps, on chain."""
        SUMMARY["checks"] += 1
        self.steps_since_exit += 1
        t0 = time.perf_counter()
        try:
            self._compare()
        finally:
            SUMMARY["check_seconds"] += time.perf_counter() - t0

    def _compare(self) -> None:
        """One read of everything through FastChain (no Ape per call on boa), one comparison
        with the same numbers from the model, so a mismatch shows as a readable dict diff."""
        assert int(self.chain.pending_timestamp) == self.m.now
        keepers = {k: self.keeper_start[str(k)] for k in self.keepers}
        on_chain = self.fast.state(self.traders, SUBS, MARKETS, self.lps, keepers)
        in_model = model_state(self.m, self.names, SUBS, MARKETS, [str(lp) for lp in self.lps],
                               [str(k) for k in self.keepers])
        assert on_chain == in_model  # SPEC 11.7 included: each keeper was paid exactly its rewards

    @invariant()
    def tokens_back_the_books(self):
        """SPEC 11.1: the vault holds exactly collateral + pool cash + insurance (fees live in
        the pool) + what was donated, which no book counts."""
        m = self.m
        ledger = sum(m.collateral.values()) + m.pool_balance + m.insurance_fund
        held = self._tokens(self.vault) * self.x.token_scale
        assert held == ledger + self.donated * self.x.token_scale, (held, ledger, self.donated)

    @invariant()
    def pool_cash_is_held(self):
        """SPEC 11.12 (on the model, which the chain equals): the pool's cash never goes below
        what underwater accounts still owe it, so the cash it pays out is always held (no
        winner is paid from another account's collateral), and the chain agrees."""
        assert self.m.pool_balance >= self.m.unpaid_losses, (self.m.pool_balance, self.m.unpaid_losses)

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
        only when time has passed since the last accrual, and then is stamped with a time of
        this step, and by no
        more than the velocity model allows over that time (SPEC 6): the rate by at most
        max_funding_velocity * dt / DAY, the index (floored trapezoids at the price of the
        accrual, which no rule moves after accruing in the same step) by at most the highest
        |rate| the velocity allows in between times dt * P / (DAY * WAD), plus a wei of floor
        per accrual. A step that settles several requests accrues several times, and the rate
        may turn in between (a long fills, then a short), so that highest |rate| is not
        max(|r0|, |r1|) but the peak of the two cones |r0| + v t and |r1| + v (dt - t):
        (|r0| + |r1| + v dt / DAY) / 2 (the long campaign found max(|r0|, |r1|) too tight after
        591,912 steps: three openings in one step, the rate down, then up, then down). (The
        index *as of now* may change without time passing: the unaccrued interval is priced
        at the current oracle price, so a price move re-prices it.)"""
        for mk in MARKETS:
            st_ = self.m.markets[mk]
            stored = (st_.funding_rate, st_.funding_index, st_.last_funding_time)
            before = self.last_funding[mk]
            if stored != before:  # an accrual: only at a later time than the previous one
                # (a step that makes several requests accrues at each settlement, so the last
                # accrual may be earlier in the step than its end)
                assert before[2] < stored[2] <= self.m.now, (mk, stored, before, self.m.now)
                dt, (r0, i0), (r1, i1) = stored[2] - before[2], before[:2], stored[:2]
                v = st_.params.max_funding_velocity
                assert abs(r1 - r0) * DAY <= v * dt, (mk, r0, r1, dt)
                peak_times_2day = (abs(r0) + abs(r1)) * DAY + v * dt  # 2 * DAY * the highest |rate|
                bound = peak_times_2day * dt * self.m.prices[mk] + MAX_FLOOR_WEI * 2 * DAY * DAY * WAD
                assert abs(i1 - i0) * 2 * DAY * DAY * WAD <= bound, (mk, i0, i1, r0, r1, dt)
            self.last_funding[mk] = stored

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


# ---------------------------------------------------------------------- running it


def machine_rules() -> set[str]:
    """Every rule of the machine (the exit rule only when the exit check is on, the LP edge
    rule only when PERPDEX_FUZZ_LP_EDGE is)."""
    names = {r.function.__name__ for r in ExchangeMachine.setup_state().rules}
    off = ({"everyone_can_exit"} if not EXIT_CHECK else set()) | ({"remove_liquidity_to_the_caps"} if not LP_EDGE else set())
    return names - off


def profile_settings(profile: str, backend: str) -> settings:
    """The settings of `profile` on `backend`: `perpdex-<profile>-revm` (the larger sizes) on
    revm where there is one, else `perpdex-<profile>`."""
    if backend == "revm":
        try:
            return settings.get_profile(f"perpdex-{profile}-revm")
        except Exception:  # noqa: BLE001 - hypothesis raises InvalidArgument: no revm size for it
            pass
    return settings.get_profile(f"perpdex-{profile}")


def run_exchange_machine(x: Exchange, chain: Any, roles: Roles, profile: str, backend: str = "ape") -> None:
    """Run the machine under settings profile `profile` (sized for `backend`: profile_settings);
    SUMMARY collects the figures (a failure is recorded in SUMMARY["failed"] and raised)."""
    def never_hit() -> None:
        SUMMARY["never_hit"] = sorted(machine_rules() - set(SUMMARY["rules"]))

    with recording(SUMMARY, after=never_hit), profiled():  # the lambda's line as it was: it seeds quick
        run_state_machine_as_test(lambda: ExchangeMachine(x, chain, roles),
                                  settings=profile_settings(profile, backend))


def print_summary(profile: str, json_path: str | None = None, backend: str | None = None) -> None:
    """Print SUMMARY; also write it as JSON to `json_path` (with the profile and steps/s)."""
    s = SUMMARY
    rules = ", ".join(f"{k} {v}" for k, v in sorted(s["rules"].items()))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["kinds"].items()))
    refused = ", ".join(f"{v} x {k}" for k, v in sorted(s["refused"].items(), key=lambda kv: -kv[1])) or "none"
    skipped = ", ".join(f"{v} x {k}" for k, v in sorted(s["skipped"].items(), key=lambda kv: -kv[1])) or "none"
    rate = steps_per_second(s)
    if json_path:
        write_json(s, profile, json_path)
    print(
        f"\nexchange machine [{profile}{f', {backend}' if backend else ''}]: {s['examples']} examples, {s['steps']} steps, {s['checks']} invariant "
        f"checks (x7 invariants), {s['seconds']:.1f} s, {rate:.1f} steps/s ({s['check_seconds']:.1f} s reading the "
        f"chain for checks)\n  liquidations {s['liquidations']} ({s['partial_liquidations']} partial, "
        f"{s['full_liquidations']} full, {s['bad_debt_events']} with bad debt); {s['race_refusals']} second "
        f"liquidations refused/skipped; {s['exit_checks']} everyone-exits checks"
        f"{'' if EXIT_CHECK else ' (off: PERPDEX_FUZZ_EXIT=0)'}; {s['donated_tokens'] / TOKEN:,.0f} USD donated"
        f"\n  requests through the router: {s['requests']} settled at their round ({s['cancelled']} cancelled there)"
        f"\n  rules hit: {rules}\n  never hit: {', '.join(s['never_hit']) or 'none'}\n  trade kinds: {kinds}"
        f"\n  refused (all halvings / invalid actions): {refused}\n  skipped (nothing to do): {skipped}"
    )


@pytest.fixture
def summary(backend: str):
    """A fresh SUMMARY for each backend's run, printed (and written) after it."""
    SUMMARY.clear()
    SUMMARY.update(new_summary())
    yield
    SUMMARY["backend"] = backend
    print_summary(PROFILE, os.environ.get("PERPDEX_FUZZ_SUMMARY"), backend)


def revm_roles(chain: RevmChain) -> Roles:
    """The same accounts in the same roles as on Ape (conftest: trader 1, trader2 2, attacker 5,
    lp 3, liquidator 4; accounts 6-9), so a failure's owners read the same on both backends."""
    a = chain.accounts
    return Roles(traders=[a[1], a[2], a[5]], lps=[a[3], a[6]], keeper=a[4], rival_keeper=a[7], donor=a[8],
                 settler=a[9])


def run_on_revm(profile: str) -> None:
    """The machine on a fresh RevmChain: the routed deployment (perpdex.deploy's defaults, with
    the governance delay 0 as in the Ape fixture) with the same LP liquidity as the Ape
    fixture's, every perpdex.chain helper acting on it."""
    chain = RevmChain()
    with using(chain):
        x = Exchange(deploy_from(RevmProject(chain), chain.accounts[0], governance_delay=0))
        x.add_liquidity(chain.accounts[3], x.tokens(POOL_USD))
        run_exchange_machine(x, chain, revm_roles(chain), profile, "revm")


@pytest.mark.parametrize("backend", fuzz_backends(PROFILE))
def test_exchange_state_machine(backend, rx, chain, trader, trader2, attacker, lp, accounts, liquidator, summary):
    # the Ape fixtures are asked for on revm too: the session deployment is then made before any
    # test of the module runs (one first made mid-module breaks Ape's snapshots: conftest `routed`)
    if backend == "revm":
        run_on_revm(PROFILE)
    else:
        roles = Roles(traders=[trader, trader2, attacker], lps=[lp, accounts[6]], keeper=liquidator,
                      rival_keeper=accounts[7], donor=accounts[8], settler=accounts[9])
        run_exchange_machine(rx, chain, roles, PROFILE)
    # quick on Ape (16 x 28 steps) is the Ape backend's smoke run: the same machine's every
    # rule is required of quick on revm (6,000 steps), since a few hundred derandomized steps
    # leave some rule undrawn whenever the rule list changes
    if PROFILE in MUST_HIT_EVERY_RULE and not (PROFILE == "quick" and backend == "ape"):
        # every rule, and liquidations; in ci both kinds (partials are rare: with small positions
        # the minimum position margin often leaves no share that restores IM, so all is closed)
        outcomes = ("partial", "full") if PROFILE == "ci" else ()
        holes = list(SUMMARY["never_hit"]) + [f"{kind} liquidation" for kind in outcomes
                                                 if not SUMMARY[f"{kind}_liquidations"]]
        if not SUMMARY["liquidations"]:
            holes.append("a liquidation")
        if holes:
            SUMMARY["failed"] = f"rules or outcomes never hit (a silent hole): {holes}"
            raise AssertionError(SUMMARY["failed"])


# ---------------------------------------------------------------------- SPEC 11.10: first deposit


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(1, 10**6), donation=donation_usd, deposit=st.integers(1, 10**11))
def test_first_lp_deposit__after_a_donation__gets_a_fair_share(rx, chain, lp, attacker, trader, seed, donation,
                                                              deposit):
    """The pool empties (every LP leaves while no position is open), an attacker makes the
    first deposit (`seed` token units) and donates to the vault; a later LP still gets shares
    worth what it paid, less at most one token unit, and the donation moves no share price.
    Every LP move is a request filled at the next round (SPEC 13), as on the real exchange."""
    snap = chain.snapshot()
    try:
        x, v = rx, rx.vault

        def filled(receipt: Any, event: str) -> dict[str, Any]:
            [ev] = x.events(receipt, event)  # settled, not cancelled at its round
            return ev

        for who in (lp, attacker, trader):
            x.fund(who, 10 * TOKEN)  # the settlement rewards their requests escrow
        assert int(v.total_lp_shares()) == int(v.lp_shares(lp)) and not any(
            int(v.market_state(m).oi_long) + int(v.market_state(m).oi_short) for m in MARKETS)
        filled(x.remove_liquidity(lp, int(v.lp_shares(lp))), "LiquidityRemoved")
        empty = model_from_chain(x, int(chain.blocks.head.timestamp))
        assert empty.total_lp_shares == 0
        filled(x.add_liquidity(attacker, seed), "LiquidityAdded")
        first = model_from_chain(x, empty.now)
        assert share_price(first)[0] * share_price(empty)[1] >= share_price(empty)[0] * share_price(first)[1]
        x.fund(attacker, donation * TOKEN)
        x.d.usd.transfer(v, donation * TOKEN, sender=attacker)
        assert model_from_chain(x, empty.now) == first  # the donation moved no book
        shares_ = int(filled(x.add_liquidity(trader, deposit), "LiquidityAdded")["shares"])
        assert shares_ > 0
        paid = int(filled(x.remove_liquidity(trader, shares_), "LiquidityRemoved")["amount"])
        assert deposit - 1 <= paid <= deposit, (deposit, paid)
        left = int(filled(x.remove_liquidity(attacker, int(v.lp_shares(attacker))), "LiquidityRemoved")["amount"])
        assert left <= seed  # no profit
    finally:
        chain.restore(snap)


def test_funding_bound__three_openings_in_one_step__the_rate_turns_between_accruals():
    """Regression: a `perpdex fuzz --profile long` campaign (revm, 2 workers) failed after
    591,912 steps: the opening step settles three requests in one market (a short, a larger
    long, a short), funding accrues at each settlement and the rate turns in between, so the
    index moved more than max(|rate before|, |rate after|) allowed over the step. The bound is
    the velocity model's peak rate now (`funding_moves_only_with_time`); the case, as
    Hypothesis shrank it, must hold every invariant."""
    chain = RevmChain()
    with using(chain):
        x = Exchange(deploy_from(RevmProject(chain), chain.accounts[0], governance_delay=0))
        x.add_liquidity(chain.accounts[3], x.tokens(POOL_USD))
        machine = ExchangeMachine(x, chain, revm_roles(chain))
        try:
            machine.fund_traders(opening=[(1_000, 0, 500), (1_000, 0, 951), (1_000, 0, 500)])
            st_ = machine.m.markets[0]
            assert st_.funding_rate < 0 and st_.oi_long and st_.oi_short  # both sides opened, the rate moved
            machine.accounts_are_sound()
            machine.chain_equals_model()
            machine.funding_is_zero_sum()
            machine.funding_moves_only_with_time()
        finally:
            machine.teardown()
