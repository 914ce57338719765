"""Chain state over time: one `Sample` row per `Sampler.sample()` call, read from views only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perpdex.sdk import Exchange


@dataclass(frozen=True)
class MarketSample:
    price: int  # WAD USD
    oi_long: int  # WAD base units
    oi_short: int
    funding_rate: int  # WAD per day, + = longs pay
    funding_index: int  # WAD USD per unit, accrued to now


@dataclass(frozen=True)
class Sample:
    block: int
    timestamp: int
    markets: dict[int, MarketSample]
    pool_value: int  # WAD USD
    pool_balance: int  # WAD USD (pool cash)
    insurance_fund: int  # WAD USD
    vault_tokens: int  # token units held by the vault


@dataclass
class Sampler:
    x: Exchange
    rows: list[Sample] = field(default_factory=list)

    def sample(self) -> Sample:
        """Reads one row of chain state now (at the head block) and keeps it."""
        from ape import chain

        head = chain.blocks.head
        vault = self.x.vault
        row = Sample(
            block=int(head.number),
            timestamp=int(head.timestamp),
            markets={m: _market(self.x, m) for m in self.x.market_names()},
            pool_value=int(vault.pool_value()),
            pool_balance=int(vault.pool_balance()),
            insurance_fund=int(vault.insurance_fund()),
            vault_tokens=int(self.x.d.usd.balanceOf(vault)),
        )
        self.rows.append(row)
        return row


def _market(x: Exchange, market: int) -> MarketSample:
    st: Any = x.vault.market_state(market)
    rate, index = x.vault.funding(market)
    return MarketSample(x.price(market), int(st.oi_long), int(st.oi_short), int(rate), int(index))
