"""Funding at a glance: per-market rates, predictions and what positions will pay.

The figures come from the vault's views (rate, index, predicted rate, accrued funding); the
"next day" projections use `perpdex.model` (the same trapezoid the vault accrues with), at
today's skew and price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpdex import model
from perpdex.model import DAY
from perpdex.sdk import Exchange

HORIZONS = (1, 8, 24)  # hours, for predicted rates


@dataclass(frozen=True)
class MarketFunding:
    market: int
    name: str
    price: int
    skew: int
    skew_scale: int
    rate: int  # per day, WAD; > 0: longs pay shorts
    index: int
    predicted: dict[int, int]  # hours -> rate per day
    long_unit_day: int  # what a 1-unit long receives (+) or pays (-) over the next day, USD WAD

    @property
    def rate_per_hour(self) -> int:
        return self.rate // 24

    @property
    def apr(self) -> int:
        return self.rate * 365


@dataclass(frozen=True)
class PositionFunding:
    market: int
    name: str
    size: int
    accrued: int  # not yet settled, USD WAD
    next_day: int  # over the next 24 h at today's skew and price, USD WAD


def market_funding(x: Exchange, market: int) -> MarketFunding:
    vault = x.vault
    rate, index = (int(v) for v in vault.funding(market))
    st, params, price = vault.market_state(market), x.params(market), x.price(market)
    skew = int(st.oi_long) - int(st.oi_short)
    return MarketFunding(
        market=market,
        name=x.market_names()[market],
        price=price,
        skew=skew,
        skew_scale=params.skew_scale,
        rate=rate,
        index=index,
        predicted={h: int(x.d.lens.predicted_funding_rate(market, h)) for h in HORIZONS},
        long_unit_day=model.funding_over(model.WAD, rate, skew, price, DAY, params),
    )


def funding_overview(x: Exchange) -> list[MarketFunding]:
    return [market_funding(x, m) for m in x.market_names()]


def position_funding(x: Exchange, owner: Any, sub: int) -> list[PositionFunding]:
    rows = []
    for m in x.open_markets(owner, sub):
        market = int(m)
        f = market_funding(x, market)
        size = x.position(owner, sub, market).size
        rows.append(
            PositionFunding(
                market=market,
                name=f.name,
                size=size,
                accrued=int(x.d.lens.accrued_funding(owner, sub, market)),
                next_day=model.funding_over(size, f.rate, f.skew, f.price, DAY, x.params(market)),
            )
        )
    return rows
