"""End-of-run invariant checks on a live deployment (SPEC 11.1, 11.2, 11.11), shared by the
fuzz suite, the simulation's report and the stress tests; and `pool_loss_check` (issue 17:
the bad debt LPs bear, absorbed by the pool or advanced to ADL and not recovered, stays
within 1% of the pool), from figures the report has summed.

Each check reads the chain only. `everyone_exits` changes it, inside a snapshot that it
always rolls back: it liquidates what is liquidatable, closes every position (paused markets
included: closing never needs the market open), pays every trader and LP out, and checks that
what stays in the vault is the insurance fund plus rounding dust kept by the protocol. Closes
and LP exits go through the OrderRouter, as a user's would (two-step, filled at the next
round): they work the same on a deployment with atomic trading on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from perpdex.chain import current_chain, move_time, set_clock
from perpdex.model import WAD
from perpdex.money import tokens_usd, units_text, usd_text, wad_usd, wad_usd_text
from perpdex.sdk import MAX_UINT256, Exchange

Account = tuple[Any, int]  # (owner: an Ape account or address, sub-account)


@dataclass(frozen=True)
class Check:
    """One invariant check, as reports and tests show it."""

    name: str
    ok: bool
    detail: str


def _unique(accounts: Iterable[Account]) -> list[Account]:
    seen: dict[tuple[str, int], Account] = {}
    for owner, sub in accounts:
        seen.setdefault((str(owner), int(sub)), (owner, int(sub)))
    return list(seen.values())


def ledger_check(x: Exchange, accounts: Iterable[Account]) -> Check:
    """SPEC 11.1: the vault's tokens (in WAD) cover the accounts' collateral + pool cash +
    insurance fund. Equal unless someone sent tokens straight to the vault (a donation,
    which the books ignore); `accounts` must name every account that holds collateral."""
    vault = x.vault
    collateral = sum(int(vault.collateral(owner, sub)) for owner, sub in _unique(accounts))
    pool, insurance = int(vault.pool_balance()), int(vault.insurance_fund())
    held = int(x.d.usd.balanceOf(vault)) * x.token_scale
    ledger = collateral + pool + insurance
    detail = (f"vault holds {wad_usd(held)}; collateral {wad_usd(collateral)} + pool cash {wad_usd(pool)} + insurance "
              f"{wad_usd(insurance)} = {wad_usd(ledger)}")
    if held > ledger:
        detail += f" (surplus {wad_usd_text(held - ledger)}: donations)"
    elif held < ledger:
        detail += f" (SHORT by {wad_usd_text(ledger - held)})"
    return Check("vault balance == ledger", held >= ledger, detail)


def open_interest_check(x: Exchange, accounts: Iterable[Account]) -> Check:
    """SPEC 11.2: per market, open interest long/short == the sums of the accounts' long and
    short sizes (`accounts` must name every account that holds a position)."""
    vault, wrong = x.vault, []
    listed = _unique(accounts)
    for market, name in x.market_names().items():
        sizes = [int(vault.position(owner, sub, market).size) for owner, sub in listed]
        longs, shorts = sum(s for s in sizes if s > 0), -sum(s for s in sizes if s < 0)
        state = vault.market_state(market)
        if (int(state.oi_long), int(state.oi_short)) != (longs, shorts):
            wrong.append(f"{name}: OI {units_text(int(state.oi_long))} long / {units_text(int(state.oi_short))} short "
                         f"!= positions {units_text(longs)} long / {units_text(shorts)} short")
    detail = "; ".join(wrong) or f"{len(x.market_names())} markets, {len(listed)} accounts: OI == sum of positions"
    return Check("open interest == positions", not wrong, detail)


POOL_LOSS_LIMIT = WAD // 100  # issue 17: LPs absorb at most 1% of the pool's starting value


def pool_loss_check(from_pool: int, adl_unrecovered: int, pool_start: int, beyond: str = "",
                    limit: int = POOL_LOSS_LIMIT) -> Check:
    """The bad debt that reaches LPs is at most `limit` (a WAD share) of the pool's value at
    the start (`pool_start`, WAD USD). It is what the pool kept as its loss (`from_pool`:
    BadDebtCovered.from_pool summed) plus what it advanced to ADL and ADL did not give back
    (`adl_unrecovered`: to_adl - Deleveraged.recovered; ADL still pending expires to the pool,
    so it counts as lost). WAD USD. `beyond`: what the detail adds (the ADL figures)."""
    lost = from_pool + adl_unrecovered
    bound = max(pool_start, 0) * limit // WAD
    share = f"{lost * 100 / pool_start:.4f}%" if pool_start > 0 else "all"
    detail = (f"LPs bear {wad_usd(lost)} of bad debt ({wad_usd(from_pool)} absorbed by the pool within its loss cap, "
              f"{wad_usd(adl_unrecovered)} advanced to ADL and not recovered): {share} of the pool's value at the "
              f"start, {wad_usd(pool_start)} (limit {limit * 100 / WAD:g}%: {wad_usd(bound)})"
              + (f"; {beyond}" if beyond else ""))
    return Check(f"bad debt to LPs <= {limit * 100 / WAD:g}% of the pool", lost <= bound, detail)


@dataclass(frozen=True)
class ExitResult:
    """What `everyone_exits` saw (token units unless named WAD)."""

    ok: bool
    detail: str
    tokens_in: int  # in the vault before everyone left
    tokens_out: int  # paid to traders, LPs and the keeper while they left
    dust: int  # WAD left in the vault beyond the insurance fund
    closed: int  # positions closed by their owners
    liquidated: int  # accounts a keeper had to liquidate first
    withdrawn: int  # accounts that withdrew collateral
    problems: tuple[str, ...] = field(default=())

    def check(self) -> Check:
        return Check("everyone can exit", self.ok, self.detail)


def everyone_exits(x: Exchange, accounts: Iterable[Account], lps: Iterable[Any], keeper: Any,
                   feeder: Any | None = None, donations: int = 0) -> ExitResult:
    """SPEC 11.11, in a snapshot that is rolled back whatever happens: every position can be
    closed, then every trader and LP can withdraw everything, and the tokens that stay are
    the insurance fund plus dust of less than one token unit per payout (plus the pool's
    virtual-share remainder, which protects the share price from inflation). `donations`:
    token units sent straight to the vault, which nobody can take out (they stay too).
    On the chain in use (perpdex.chain.current_chain: Ape's, or a RevmChain)."""
    chain = current_chain()
    clock = int(chain.pending_timestamp)
    snapshot = chain.snapshot()
    try:
        return _exit_all(x, _unique(accounts), list(dict.fromkeys(lps)), keeper, feeder or x.d.deployer, donations)
    finally:
        chain.restore(snapshot)
        # the exit moves time (requests settle at later rounds); the embedded chains do not
        # rewind their clock on restore (Anvil's snapshot does), so the caller's clock is put back
        if chain.provider.name != "foundry" and int(chain.pending_timestamp) != clock:
            set_clock(clock)


def _exit_all(x: Exchange, accounts: list[Account], lps: list[Any], keeper: Any, feeder: Any,
              donations: int) -> ExitResult:
    vault, token = x.vault, x.d.usd
    held_before, decimals = int(token.balanceOf(vault)), int(token.decimals())
    # every request still pending passes its deadline: none can fill any more
    router = x.d.router
    move_time(int(router.settlement_delay()) + int(router.settlement_window()) + 1)
    x.refresh_prices(feeder=feeder)
    problems: list[str] = []
    _fund_requests(x, [owner for owner, _ in accounts] + lps, ROUNDS_PER_ACCOUNT * len(x.market_names()) + 2)
    closed, liquidated = _close_all(x, accounts, keeper, feeder, problems)
    withdrawn = 0
    for owner, sub in accounts:
        amount = int(vault.withdrawable(owner, sub))
        if amount and _sent(problems, f"{str(owner)[:10]}/{sub}: withdraw {amount}", vault.withdraw, sub, amount,
                            sender=owner):
            withdrawn += 1
        left = int(vault.collateral(owner, sub))
        if not 0 <= left < x.token_scale:
            problems.append(f"{str(owner)[:10]}/{sub}: {wad_usd_text(left)} of collateral left after withdrawing")
    bound = _lp_dust_bound(x)
    exits = {}
    for lp in lps:
        shares = int(vault.lp_shares(lp))
        if shares:
            exits[x.order_id(router.commit_remove_liquidity(shares, sender=lp))] = f"LP {str(lp)[:10]}: remove {shares} shares"
    for order_id, reason in _settle_round(x, list(exits), keeper, feeder, lp=True).items():
        if reason is not None:
            problems.append(f"{exits[order_id]} refused: {reason}")
    held_after = int(token.balanceOf(vault))
    dust = (held_after - donations) * x.token_scale - int(vault.insurance_fund())
    bound += (len(accounts) + len(lps)) * x.token_scale
    if dust < 0:
        problems.append(f"the vault holds {wad_usd_text(-dust)} less than the insurance fund")
    elif dust > bound:
        problems.append(f"{wad_usd_text(dust)} stuck in the vault (dust bound {wad_usd_text(bound)})")
    if int(vault.total_lp_shares()):
        problems.append(f"{int(vault.total_lp_shares())} LP shares not redeemed")
    detail = "; ".join(problems) or (
        f"{closed} positions closed, {liquidated} accounts liquidated first, {withdrawn} withdrew, {len(lps)} LPs out; "
        f"{usd_text(tokens_usd(held_before - held_after, decimals))} of {usd_text(tokens_usd(held_before, decimals))} "
        f"paid out, insurance fund and {wad_usd_text(dust)} of rounding dust stay")
    return ExitResult(not problems, detail, held_before, held_before - held_after, dust, closed, liquidated,
                      withdrawn, tuple(problems))


def _sent(problems: list[str], what: str, send: Any, *args: Any, sender: Any) -> bool:
    """Send one transaction; a revert is recorded in `problems` instead of raised."""
    from ape.exceptions import ContractLogicError

    try:
        send(*args, sender=sender)
        return True
    except ContractLogicError as exc:
        problems.append(f"{what} refused: {exc}")
        return False


ROUNDS_PER_ACCOUNT = 2  # close attempts per market an account holds (then one more)


def _fund_requests(x: Exchange, owners: list[Any], requests: int) -> None:
    """Wallet tokens (devnet token: public mint) for the settlement reward of `requests`
    requests per owner, and the router approved."""
    for owner in {str(o): o for o in owners}.values():
        x.fund(owner, requests * x.reward_tokens)


def _settle_round(x: Exchange, order_ids: list[int], keeper: Any, feeder: Any, lp: bool = False) -> dict[int, str | None]:
    """Feed the next round and settle `order_ids` at it (one `settle_many` per 100; `lp`: LP
    requests, after their LP_GRACE): each id's outcome, None when it filled, else the reason
    it was cancelled."""
    outcomes: dict[int, str | None] = {}
    if not order_ids:
        return outcomes
    x.next_round(feeder)
    if lp:
        x.wait_lp_grace()
    for start in range(0, len(order_ids), 100):
        receipt = x.settle(order_ids[start:start + 100], keeper)
        outcomes |= {int(e["order_id"]): None for e in x.events(receipt, "OrderSettled")}
        outcomes |= {int(e["order_id"]): str(e["reason"]) for e in x.events(receipt, "OrderCancelled")}
    return outcomes


def _close_all(x: Exchange, accounts: list[Account], keeper: Any, feeder: Any,
               problems: list[str]) -> tuple[int, int]:
    """Close every open position of every account: (positions closed, liquidations needed).
    Each round, liquidatable accounts are liquidated first (by `keeper`), every other account
    requests one close (a market its earlier refusals did not name first: a close that would
    leave the account liquidatable is refused, and another market goes first next time), and
    the round settles them all. What cannot be closed at all is recorded in `problems`."""
    vault, router = x.vault, x.d.router
    closed = liquidated = 0
    refused: dict[Account, list[str]] = {a: [] for a in accounts}
    for _ in range(ROUNDS_PER_ACCOUNT * len(x.market_names()) + 1):
        holding = {a: m for a in accounts if (m := x.open_markets(*a))}
        if not holding:
            break
        requests: dict[int, tuple[Account, int]] = {}
        for (owner, sub), markets in holding.items():
            if bool(vault.is_liquidatable(owner, sub)):
                x.d.keeper.liquidate(owner, sub, sender=keeper)
                liquidated += 1
                continue
            k = len(refused[(owner, sub)]) % len(markets)
            market = (markets[k:] + markets[:k])[0]
            bound = 0 if int(vault.position(owner, sub, market).size) > 0 else MAX_UINT256
            requests[x.order_id(router.commit_close(sub, market, bound, sender=owner))] = ((owner, sub), market)
        for order_id, reason in _settle_round(x, list(requests), keeper, feeder).items():
            account, market = requests[order_id]
            if reason is None:
                closed += 1
            else:
                refused[account].append(f"close market {market} refused: {reason}")
    for (owner, sub), why in refused.items():
        if left := x.open_markets(owner, sub):
            problems.append(f"{str(owner)[:10]}/{sub}: cannot close markets {left}: {'; '.join(why)}")
    return closed, liquidated


def _lp_dust_bound(x: Exchange) -> int:
    """What the last LP cannot take out: the virtual shares' part of the pool (WAD)."""
    vault = x.vault
    virtual = 10**18  # VIRTUAL_SHARES == VIRTUAL_ASSETS in MarginVault.vy
    value = max(0, int(vault.pool_value()))
    return (value + virtual) * virtual // (int(vault.total_lp_shares()) + virtual) + 1
