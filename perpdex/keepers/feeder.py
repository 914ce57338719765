"""The price feeder: writes a round of every market every interval, so the devnet always
has fresh prices and every two-step request a settlement round, then settles the requests
that round made due (the same pass, so on the devnet a request fills within a block or two of
its round). Prices come from a source: `hold` (the prices as they are, re-stamped), `gbm`
(a seeded random walk, the simulation's) or `replay` (a file of prices, one row a round).
Every write stays within the oracle's jump limit (a step further away is cut at it)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from perpdex.keepers.common import Report, pending_nonce, run_loop
from perpdex.keepers.settler import Settler
from perpdex.model import WAD
from perpdex.sdk import Exchange, step_toward

YEAR = 365 * 24 * 3600
Prices = dict[int, int]  # market id -> WAD
Source = Callable[[Prices], Prices]  # the current prices -> the next round's targets


def hold() -> Source:
    return lambda current: dict(current)


def gbm(interval: float, seed: int = 7, volatility: float = 1.2) -> Source:
    """Each round moves every market by a seeded lognormal step of `volatility` a year
    (the markets' shocks 80% correlated, as in the simulation's paths)."""
    rng = random.Random(seed)
    sd = volatility * math.sqrt(interval / YEAR)

    def step(current: Prices) -> Prices:
        common = rng.gauss(0, 1)
        out = {}
        for m, p in current.items():
            z = 0.8 * common + 0.6 * rng.gauss(0, 1)
            out[m] = max(1, int(p * math.exp(sd * z - sd * sd / 2)))
        return out

    return step


def replay(path: Path, names: dict[str, int]) -> Source:
    """A JSON file: a list of rounds, each `{"ETH-USD": 3010.5, "BTC-USD": 60100}` (USD);
    markets a row leaves out keep their price; after the last row the prices hold."""
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected a JSON list of {{market name: price}} rounds")
    unknown = {n for r in rows for n in r} - set(names)
    if unknown:
        raise ValueError(f"{path}: unknown markets {sorted(unknown)} (known: {sorted(names)})")
    it: Iterator[dict[str, float]] = iter(rows)

    def step(current: Prices) -> Prices:
        row = next(it, {})
        return {**current, **{names[n]: int(round(float(p) * 1e6)) * WAD // 10**6 for n, p in row.items()}}

    return step


@dataclass
class PriceFeeder:
    """Writes a round of every market from `source`, signed by `sender` (a feeder of the
    oracle); with a `settler`, settles what each round made due."""

    x: Exchange
    sender: Any
    source: Source
    settler: Settler | None = None
    report: Report = print
    rounds: int = 0

    def step(self) -> Prices:
        x = self.x
        current = {m: x.price(m) for m in x.market_names()}
        targets = self.source(current)
        jump = int(x.d.oracle.max_price_jump())
        prices = {m: step_toward(current[m], targets[m], jump) for m in current}
        receipt = x.d.oracle.set_prices(list(prices), list(prices.values()), sender=self.sender,
                                        nonce=pending_nonce(self.sender))
        self.rounds += 1
        names = x.market_names()
        shown = ", ".join(f"{names[m]} {p / WAD:,.2f}" for m, p in prices.items())
        self.report(f"round {self.rounds} in block {receipt.block_number}: {shown}")
        if self.settler is not None:
            self.settler.step()
        return prices

    def run(self, interval: float, iterations: int | None = None, max_backoff: float = 30.0) -> None:
        run_loop(self.step, interval, self.report, iterations, max_backoff)
