"""The funding keeper: pokes every market whose funding has not been accrued for a while.

Funding accrues lazily on every trade; a quiet market still needs its index brought up to
date now and then so that views, events and indexers see a fresh rate. The keeper keeps no
state of its own: every decision is read from the chain (`last_funding_time`, the oracle's
`updated_at`), so a restart resumes exactly where it left off, and two keepers running at
once cannot do harm: each re-reads the market and simulates the poke just before sending,
and a poke that lands in the same block as another one changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perpdex.keepers.common import Line, Report, pending_nonce, run_loop
from perpdex.sdk import Exchange


@dataclass(frozen=True)
class Poked:
    market: int
    name: str
    idle: int  # seconds since the last accrual
    gas: int
    rate: int  # funding rate per day after the poke (WAD)


@dataclass
class FundingKeeper:
    """Pokes markets idle for at least `max_idle` seconds, signed by `sender`."""

    x: Exchange
    sender: Any
    max_idle: int = 3600
    report: Report = print
    poked: list[Poked] = field(default_factory=list)
    skipped_stale: int = 0

    def now(self) -> int:
        from ape import chain

        return int(chain.blocks.head.timestamp)

    def idle(self, market: int) -> int:
        return self.now() - int(self.x.vault.market_state(market).last_funding_time)

    def price_fresh(self, market: int) -> bool:
        _, updated_at = self.x.d.oracle.latest(market)
        return self.now() - int(updated_at) <= int(self.x.d.oracle.max_price_age())

    def due(self) -> list[int]:
        """Markets idle for at least `max_idle` whose price is fresh enough to poke."""
        markets = []
        for market in self.x.market_names():
            if self.idle(market) < self.max_idle:
                continue
            if not self.price_fresh(market):
                self.skipped_stale += 1
                name = self.x.market_names()[market]
                self.report(Line(f"skip {name}: oracle price stale (no feeder running?)", "skip_stale", market=name))
                continue
            markets.append(market)
        return markets

    def poke(self, market: int) -> Poked | None:
        """Re-check, simulate, then send one poke; None when another keeper got there first."""
        idle = self.idle(market)
        if idle < self.max_idle:
            return None
        vault = self.x.vault
        vault.poke.estimate_gas_cost(market, sender=self.sender)  # simulates: raises, sends nothing, if it would revert
        receipt = vault.poke(market, sender=self.sender, nonce=pending_nonce(self.sender))
        done = Poked(market, self.x.market_names()[market], idle, int(receipt.gas_used), int(vault.funding(market)[0]))
        self.poked.append(done)
        self.report(Line(f"poked {done.name} after {idle}s idle: rate {done.rate / 1e18:+.6%}/day, gas {done.gas:,}", "poked",
                         market=done.name, idle_s=idle, rate_per_day=done.rate / 1e18, gas=done.gas,
                         tx=str(receipt.txn_hash)))
        return done

    def step(self) -> list[Poked]:
        return [p for market in self.due() if (p := self.poke(market)) is not None]

    def run(self, interval: float, iterations: int | None = None, max_backoff: float = 60.0) -> None:
        """Loop: step, sleep. RPC errors are reported and retried with exponential backoff."""
        run_loop(self.step, interval, self.report, iterations, max_backoff)
