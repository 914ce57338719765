"""The ADL keeper (SPEC 14, the end of the loss waterfall).

When a bankruptcy leaves more bad debt than the insurance fund and the pool's loss cap cover,
the vault books it against the other side of the bankrupt's markets: a size to close and the
bankruptcy price to close it at (`MarginVault.adl_pending(market, side)`). This keeper closes
that size with `deleverage`, taking the most profitable positions first:

- **Eligible**: a position on the owing side whose close at the bankruptcy price realizes no
  loss (a long's entry at or below it, a short's at or above): it gives up at most the profit
  it had against the mark. Accounts without a position in the market are never touched.
- **Rank** (highest first): profit at the mark per unit of the account's equity, i.e. the
  position's return on equity, which grows with both its profit and its leverage (Bybit and
  Hyperliquid rank by PnL% x leverage, the same order for one position). Ties: the larger
  profit, then owner and sub-account, so two keepers agree.
- **Skip and go on**: a position the vault refuses (its equity would go below 0, a price is
  stale) is reported with the reason; the next one is tried.

Accounts come from the caller: the simulator's traders, or every account with a position
found from the vault's events (`perpdex keeper adl`, `perpdex adl`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from perpdex.keepers.common import Line, Report, run_loop
from perpdex.model import ADL_LONGS, ADL_SHORTS, WAD

SIDE_NAMES = {ADL_LONGS: "longs", ADL_SHORTS: "shorts"}


@dataclass(frozen=True)
class AdlCandidate:
    owner: str
    sub: int
    market: int
    size: int  # signed, base units (WAD)
    entry_price: int
    profit: int  # at the mark, USD (WAD)
    equity: int  # USD (WAD)

    @property
    def return_on_equity(self) -> float:
        """Profit at the mark per unit of equity (the ranking key); infinite for equity <= 0."""
        return self.profit / self.equity if self.equity > 0 else float("inf")


@dataclass(frozen=True)
class Pending:
    market: int
    side: int  # the side that owes: ADL_LONGS or ADL_SHORTS
    size: int  # base units (WAD) still to close
    price: int  # the bankruptcy price (WAD)
    expires_at: int = 0  # when what is left stops being owed (the pool keeps it as its loss)


@dataclass(frozen=True)
class AdlOutcome:
    """One `deleverage` sent (`receipt` set) or refused (`reason` set)."""

    candidate: AdlCandidate
    receipt: Any = None
    closed: int = 0
    recovered: int = 0
    reason: str = ""


def pending(x: Any) -> list[Pending]:
    """Every market side that owes ADL now."""
    found = []
    for market in range(int(x.vault.market_count())):
        for side in (ADL_LONGS, ADL_SHORTS):
            size, price, expires = (int(v) for v in x.vault.adl_pending(market, side))
            if size:
                found.append(Pending(market, side, size, price, expires))
    return found


def eligible(side: int, size: int, entry: int, bankruptcy: int) -> bool:
    """On the owing side, and closing at the bankruptcy price realizes no loss."""
    if side == ADL_LONGS:
        return size > 0 and entry <= bankruptcy
    return size < 0 and entry >= bankruptcy


def rank(x: Any, owed: Pending, accounts: Iterable[tuple[Any, int]]) -> list[AdlCandidate]:
    """The eligible positions among `accounts`, the most profitable per unit of equity first."""
    mark = x.price(owed.market)
    found = []
    for owner, sub in accounts:
        pos = x.vault.position(owner, sub, owed.market)
        size, entry = int(pos.size), int(pos.entry_price)
        if not eligible(owed.side, size, entry, owed.price):
            continue
        profit = size * (mark - entry) // WAD
        found.append(AdlCandidate(str(owner), int(sub), owed.market, size, entry, profit, int(x.vault.equity(owner, sub))))
    return sorted(found, key=lambda c: (-c.return_on_equity, -c.profit, c.owner, c.sub))


def deleverage_pending(
    x: Any, sender: Any, accounts: list[tuple[Any, int]], report: Callable[[AdlOutcome], None] | None = None,
) -> list[AdlOutcome]:
    """Close what every market side owes, best-ranked positions first; returns what was sent
    and what was refused (with the vault's reason)."""
    outcomes = []
    for owed in pending(x):
        left = owed.size
        for candidate in rank(x, owed, accounts):
            if left == 0:
                break
            outcome = _deleverage(x, sender, candidate, left)
            left -= outcome.closed
            outcomes.append(outcome)
            if report:
                report(outcome)
    return outcomes


def _deleverage(x: Any, sender: Any, c: AdlCandidate, size: int) -> AdlOutcome:
    from ape.exceptions import ContractLogicError

    try:
        receipt = x.vault.deleverage(c.owner, c.sub, c.market, size, sender=sender)
    except ContractLogicError as err:
        return AdlOutcome(c, reason=str(err))
    event = x.events(receipt, "Deleveraged")[0]
    return AdlOutcome(c, receipt, closed=abs(int(event["closed_size"])), recovered=int(event["recovered"]))


def readout(x: Any, accounts: list[tuple[Any, int]]) -> list[dict[str, Any]]:
    """What `perpdex adl` shows: each market side that owes ADL, with its ranked candidates
    (human units)."""
    names = x.market_names()
    return [{
        "market": names[owed.market], "owing_side": SIDE_NAMES[owed.side], "size": owed.size / WAD,
        "bankruptcy_price_usd": owed.price / WAD, "mark_price_usd": x.price(owed.market) / WAD,
        "expires_at": owed.expires_at,
        "candidates": [{"rank": i + 1, "owner": c.owner, "sub": c.sub, "size": c.size / WAD,
                        "entry_price_usd": c.entry_price / WAD, "profit_usd": c.profit / WAD,
                        "equity_usd": c.equity / WAD,
                        "return_on_equity": c.return_on_equity if c.equity > 0 else None}
                       for i, c in enumerate(rank(x, owed, accounts))],
    } for owed in pending(x)]


def outcome_line(x: Any, o: AdlOutcome) -> Line:
    c, market = o.candidate, x.market_names()[o.candidate.market]
    if o.receipt is None:
        return Line(f"skipped {c.owner} sub {c.sub} {market}: {o.reason}", "skipped",
                    owner=c.owner, sub=c.sub, market=market, reason=o.reason)
    return Line(f"deleveraged {c.owner} sub {c.sub} {market}: {o.closed / WAD:g} closed, {o.recovered / WAD:,.2f} USD "
                f"back to the pool", "deleveraged", owner=c.owner, sub=c.sub, market=market, closed=o.closed / WAD,
                recovered_usd=o.recovered / WAD, tx=str(getattr(o.receipt, "txn_hash", "")))


@dataclass
class AdlKeeper:
    """`perpdex keeper adl`: each pass, close what every market side owes (accounts from
    `accounts()`, e.g. every account with a position in the vault's events). Stateless: safe
    to restart or run twice (the vault refuses a second close of what is no longer owed)."""

    x: Any
    sender: Any
    accounts: Callable[[], list[tuple[Any, int]]]
    report: Report

    def step(self) -> list[AdlOutcome]:
        if not pending(self.x):
            return []
        return deleverage_pending(self.x, self.sender, self.accounts(), lambda o: self.report(outcome_line(self.x, o)))

    def run(self, interval: float, iterations: int | None = None) -> None:
        run_loop(self.step, interval, self.report, iterations)
