"""Gas benchmarks on a realistic state, measured from real receipts.

`gas_rows`: every user action. `funding_flatness`: a trade and a `poke` with 1, 100 and
1,000 positions open in a market, to show that funding accrual is O(1).

Run on `ethereum:local:test` (py-evm) or Anvil: the boa provider leaves out the 21,000
intrinsic gas. Time moves a minute before every measured action, so funding accrual runs
as it would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from perpdex.deploy import deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange

TOKEN = 10**6
POOL_TOKENS = 1_000_000 * TOKEN
STEP = 60  # seconds of chain time before every measured action
POKE_TARGET = 30_000  # gas on ethereum:local:test, 21,000 of which is the base cost

Progress = Callable[[str], None]


@dataclass
class GasRow:
    action: str
    gas: int
    target: int | None

    @property
    def ok(self) -> bool:
        return self.target is None or self.gas <= self.target


def move_time(seconds: int) -> None:
    """Move chain time `seconds` on for every later transaction. py-evm mines a block to
    get there; boa (and Anvil) only stamp the next block with the new time, and boa's later
    transactions would go back to its clock: an empty block makes the new time stick."""
    from ape import chain

    head = chain.blocks.head.number
    chain.pending_timestamp += seconds
    if chain.blocks.head.number == head:
        chain.mine()


def gas_after(send: Callable[[], Any], seconds: int = STEP) -> int:
    """Move chain time `seconds` on, send one transaction, return the gas its receipt used."""
    move_time(seconds)
    return int(send().gas_used)


def pooled_exchange(admin: Any, lp: Any) -> Exchange:
    """A fresh deployment with 1,000,000 USD of LP liquidity."""
    x = Exchange(deploy_system(admin))
    x.add_liquidity(lp, POOL_TOKENS)
    return x


def gas_rows(progress: Progress = lambda _: None) -> list[GasRow]:
    """Deploy, warm the markets up with other traders, then measure one trader's lifecycle."""
    from ape import accounts

    admin, lp, lp2, other, trader = (accounts.test_accounts[i] for i in range(5))
    x = pooled_exchange(admin, lp)
    progress("deployed")
    rows: list[GasRow] = []

    def measure(action: str, target: int | None, send: Callable[[], Any]) -> None:
        rows.append(GasRow(action, gas_after(send), target))
        progress(action)

    x.fund(lp2, 100_000 * TOKEN)
    x.deposit(other, 100_000 * TOKEN)
    # A live market: open interest on both markets, funding already accrued, so the
    # market's aggregate slots are non-zero (a first-ever write would cost 17,100 more).
    x.trade(other, 0, 20 * WAD)
    x.trade(other, 1, -WAD)
    move_time(600)
    x.trade(other, 0, WAD)
    x.trade(other, 1, -WAD // 10)
    x.fund(trader, 20_000 * TOKEN)

    measure("deposit", 70_000, lambda: x.vault.deposit(0, 10_000 * TOKEN, sender=trader))
    measure("open (first position)", 150_000, lambda: x.trade(trader, 0, 10 * WAD))
    measure("increase", 100_000, lambda: x.trade(trader, 0, 5 * WAD))
    measure("reduce", 100_000, lambda: x.trade(trader, 0, -5 * WAD))
    measure("withdraw (1 position: settles funding)", 70_000, lambda: x.vault.withdraw(0, 100 * TOKEN, sender=trader))
    measure("open 2nd market (cross)", 150_000, lambda: x.trade(trader, 1, -WAD // 10))
    measure("close (2 markets open)", 100_000, lambda: x.close(trader, 1))
    measure("close", 100_000, lambda: x.close(trader, 0))
    measure("withdraw", 70_000, lambda: x.vault.withdraw(0, 1_000 * TOKEN, sender=trader))
    measure("deposit (again)", 70_000, lambda: x.vault.deposit(0, 1_000 * TOKEN, sender=trader))
    measure("add liquidity", None, lambda: x.vault.add_liquidity(100_000 * TOKEN, sender=lp2))
    measure("remove liquidity", None, lambda: x.vault.remove_liquidity(x.vault.lp_shares(lp2) // 2, sender=lp2))
    measure("poke (funding accrual)", POKE_TARGET, lambda: x.vault.poke(0, sender=other))
    return rows


# ------------------------------------------------------------------ funding accrual is O(1)

FLAT_TOLERANCE = 2.0  # percent: every figure within this of the 1-position figure
MEASURED_SIZE = WAD  # the measuring trader's position: 1 ETH long (the skew stays > 0)
MEASURED_DELTA = WAD // 2  # its measured trade: +0.5 ETH, then -0.5 ETH
FILLER_SIZE = WAD // 100  # 0.01 ETH per other position, alternately short and long
FILLER_TOKENS = 50 * TOKEN  # per filler sub-account: IM is 1.50 + 10 USD minimum margin
FEED_EVERY = 200  # filler positions between oracle re-feeds (max price age 3600 s)
PROGRESS_EVERY = 50


@dataclass(frozen=True)
class FlatnessRow:
    positions: int  # open in the market, the measuring trader's included
    increase_gas: int
    reduce_gas: int
    poke_gas: int
    build_seconds: float  # wall time spent opening positions up to this count

    def deviations(self, base: FlatnessRow) -> tuple[float, float, float]:
        """Increase, reduce and poke gas vs `base`, in percent."""
        return (
            percent_change(self.increase_gas, base.increase_gas),
            percent_change(self.reduce_gas, base.reduce_gas),
            percent_change(self.poke_gas, base.poke_gas),
        )


def percent_change(gas: int, base: int) -> float:
    return 100.0 * (gas - base) / base


def max_deviation(rows: Sequence[FlatnessRow]) -> float:
    """The largest |deviation| (percent) of any figure from the first row's."""
    return max(abs(d) for row in rows for d in row.deviations(rows[0]))


def is_flat(rows: Sequence[FlatnessRow], tolerance: float = FLAT_TOLERANCE) -> bool:
    return max_deviation(rows) <= tolerance


@dataclass(frozen=True)
class _Market:
    """One market, its (constant) price and fixed slippage bounds: calldata never varies."""

    x: Exchange
    id: int
    price: int

    def feed(self) -> Any:
        """Re-feed the same price, so that it is never stale."""
        return self.x.set_price(self.id, self.price)

    def trade(self, account: Any, sub: int, size: int) -> Any:
        bound = 2 * self.price if size > 0 else self.price // 2
        return self.x.vault.modify_position(sub, self.id, size, bound, sender=account)


def funding_flatness(
    counts: Sequence[int] = (1, 100, 1000), progress: Progress = lambda _: None
) -> list[FlatnessRow]:
    """Deploy, open the measuring trader's position, let funding accrue; then grow the
    number of open ETH-USD positions to each of `counts` (filler positions: one account,
    one sub-account each) and at each count measure the trader's increase and reduce
    and a `poke`, time moving STEP seconds before each."""
    from ape import accounts

    assert counts and min(counts) >= 1, "counts: the measuring trader's position is one"
    admin, lp, filler, trader = (accounts.test_accounts[i] for i in range(4))
    x = pooled_exchange(admin, lp)
    eth = x.d.markets["ETH-USD"]
    m = _Market(x, eth, x.price(eth))
    x.deposit(trader, 10_000 * TOKEN)
    m.trade(trader, 0, MEASURED_SIZE)
    # Funding accrues, then the trader trades once unmeasured: the funding index, the
    # position's funding snapshot and the market's funding_sum are non-zero from here on
    # (a first write to a zero slot costs 17,100 more, which no later trade pays).
    move_time(10 * STEP)
    _round_trip(m, trader)
    x.fund(filler, max(counts) * FILLER_TOKENS)
    progress("deployed, trader's position open")

    rows: list[FlatnessRow] = []
    fillers, building = 0, 0.0
    for count in sorted(counts):
        started = time.monotonic()
        fillers = _open_fillers(m, filler, fillers, count - 1, progress)
        building += time.monotonic() - started
        rows.append(_measure(m, trader, count, building))
        progress(f"measured at {count:,} positions")
    return rows


def _open_fillers(m: _Market, owner: Any, start: int, stop: int, progress: Progress) -> int:
    """Open filler positions in `owner`'s sub-accounts start..stop-1; return `stop`."""
    for sub in range(start, stop):
        if sub % FEED_EVERY == 0:
            m.feed()
        if sub % PROGRESS_EVERY == 0:
            progress(f"opening positions: {sub + 1:,} of {stop + 1:,} open")
        m.x.vault.deposit(sub, FILLER_TOKENS, sender=owner)
        m.trade(owner, sub, FILLER_SIZE if sub % 2 else -FILLER_SIZE)
    return max(start, stop)


def _round_trip(m: _Market, trader: Any) -> tuple[int, int]:
    """Re-feed the price; the trader's increase and reduce, STEP seconds apart: their gas."""
    m.feed()
    increase = gas_after(lambda: m.trade(trader, 0, MEASURED_DELTA))
    reduce = gas_after(lambda: m.trade(trader, 0, -MEASURED_DELTA))
    return increase, reduce


def _measure(m: _Market, trader: Any, count: int, building: float) -> FlatnessRow:
    increase, reduce = _round_trip(m, trader)
    poke = gas_after(lambda: m.x.vault.poke(m.id, sender=trader))
    return FlatnessRow(count, increase, reduce, poke, building)
