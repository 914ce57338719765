"""Price paths the simulation replays, one price per market per block (WAD), seeded and
reproducible: geometric Brownian motion with Poisson jumps, and the named stress shapes.

A path is pure data: `PricePath.prices[block][market]`. Block 0 is the starting price; the
feeder pushes `prices[b]` at block b (splitting moves beyond the oracle's jump limit).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

HOUR = 3600
YEAR = 365 * 24 * HOUR


@dataclass(frozen=True)
class PricePath:
    name: str
    seconds_per_block: int
    prices: tuple[tuple[int, ...], ...]  # [block][market], WAD

    @property
    def blocks(self) -> int:
        return len(self.prices)

    def at(self, block: int) -> dict[int, int]:
        return dict(enumerate(self.prices[block]))

    def series(self, market: int) -> list[int]:
        return [row[market] for row in self.prices]

    def change(self, market: int) -> float:
        """Last price over first, minus one."""
        series = self.series(market)
        return series[-1] / series[0] - 1


def _from_factors(name: str, start: Sequence[int], spb: int, factors: Sequence[Sequence[float]]) -> PricePath:
    """A path whose price at block b is start * factors[b][market]."""
    rows = tuple(tuple(max(1, int(p * f[m])) for m, p in enumerate(start)) for f in factors)
    return PricePath(name, spb, rows)


def gbm(
    start: Sequence[int], blocks: int, seconds_per_block: int, seed: int, volatility: float = 1.2,
    drift: float = 0.0, jumps_per_hour: float = 0.5, jump_mean: float = -0.015, jump_sd: float = 0.02,
    correlation: float = 0.8,
) -> PricePath:
    """Geometric Brownian motion (annual `volatility`, `drift`) with Poisson jumps (log size
    ~ N(jump_mean, jump_sd)); the markets' shocks are correlated, jumps hit every market."""
    rng = random.Random(seed)
    dt = seconds_per_block / YEAR
    jump_probability = 1 - math.exp(-jumps_per_hour * seconds_per_block / HOUR)
    logs = [0.0] * len(start)
    factors = [[1.0] * len(start)]
    for _ in range(blocks - 1):
        common = rng.gauss(0, 1)
        jump = rng.gauss(jump_mean, jump_sd) if rng.random() < jump_probability else 0.0
        for m in range(len(start)):
            z = common if m == 0 else correlation * common + math.sqrt(1 - correlation**2) * rng.gauss(0, 1)
            logs[m] += (drift - volatility**2 / 2) * dt + volatility * math.sqrt(dt) * z + jump
        factors.append([math.exp(v) for v in logs])
    return _from_factors("gbm", start, seconds_per_block, factors)


def _ramp(blocks: int, begin: int, duration_blocks: int, total: float, shape: Callable[[float], float]) -> list[float]:
    """1 until `begin`, then 1 + total * shape(progress) over `duration_blocks`, then flat."""
    out = []
    for b in range(blocks):
        progress = min(1.0, max(0.0, (b - begin) / max(1, duration_blocks)))
        out.append(1 + total * shape(progress))
    return out


def _blocks_in(seconds: int, seconds_per_block: int) -> int:
    return max(1, math.ceil(seconds / seconds_per_block))


def crash(start: Sequence[int], blocks: int, seconds_per_block: int, drop: float = 0.4, over: int = HOUR, begin: int = 3) -> PricePath:
    """Every market falls `drop` (40%) at an even pace over `over` seconds (an hour), from block `begin`."""
    ramp = _ramp(blocks, begin, _blocks_in(over, seconds_per_block), -drop, lambda p: p)
    return _from_factors("crash", start, seconds_per_block, [[f] * len(start) for f in ramp])


def gap(start: Sequence[int], blocks: int, seconds_per_block: int, size: float = 0.2, at: int | None = None) -> PricePath:
    """Flat, then every market gaps down `size` (20%) between two consecutive blocks."""
    at = blocks // 3 if at is None else at
    factors = [[1.0 if b < at else 1 - size] * len(start) for b in range(blocks)]
    return _from_factors("gap", start, seconds_per_block, factors)


def squeeze(start: Sequence[int], blocks: int, seconds_per_block: int, rise: float = 0.35, over: int = HOUR, begin: int = 3) -> PricePath:
    """A short squeeze: the first market rips `rise` (35%) up, accelerating, over `over` seconds;
    the others follow at half the move."""
    ramp = _ramp(blocks, begin, _blocks_in(over, seconds_per_block), rise, lambda p: p * p)
    return _from_factors("squeeze", start, seconds_per_block, [[f] + [1 + (f - 1) / 2] * (len(start) - 1) for f in ramp])


def bleed(start: Sequence[int], blocks: int, seconds_per_block: int, fall: float = 0.12) -> PricePath:
    """A slow bleed: every market declines `fall` (12%) at an even pace over the whole run."""
    ramp = _ramp(blocks, 0, blocks - 1, -fall, lambda p: p)
    return _from_factors("bleed", start, seconds_per_block, [[f] * len(start) for f in ramp])


def max_step(path: PricePath) -> float:
    """The largest relative move between two consecutive blocks of any market."""
    return max(
        abs(b / a - 1) for m in range(len(path.prices[0])) for a, b in zip(path.series(m), path.series(m)[1:])
    ) if path.blocks > 1 else 0.0


def hourly_volatility(prices: Sequence[int], seconds_per_block: int) -> float:
    """Root mean square of the log returns between consecutive prices, scaled to one hour
    (not demeaned: a steady crash counts as volatile). 0 for fewer than two prices."""
    returns = [math.log(b / a) for a, b in zip(prices, prices[1:])]
    if not returns:
        return 0.0
    return math.sqrt(sum(r * r for r in returns) / len(returns) * HOUR / seconds_per_block)


PATHS = {"gbm": gbm, "crash": crash, "gap": gap, "squeeze": squeeze, "bleed": bleed}


def build_path(
    name: str, start: Sequence[int], blocks: int, seconds_per_block: int, seed: int, params: dict[str, Any] | None = None
) -> PricePath:
    """The path `name` (one of PATHS) from `start` prices; `seed` goes to the random ones."""
    if name not in PATHS:
        raise ValueError(f"unknown price path {name!r}: choose one of {', '.join(PATHS)}")
    extra = dict(params or {})
    if name == "gbm":
        extra["seed"] = seed
    return PATHS[name](start, blocks, seconds_per_block, **extra)
