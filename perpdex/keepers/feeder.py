"""The price feeder: writes a round of every market every interval, so the devnet always
has fresh prices and every two-step request a settlement round, then settles the requests
that round made due (the same pass, so on the devnet a request fills within a block or two of
its round). Prices come from a source: `hold` (the prices as they are, re-stamped), `gbm`
(a seeded random walk, the simulation's) or `replay` (a file of prices, one row a round).
Every write stays within the oracle's jump limit (a step further away is cut at it).

Two ways to run it: `perpdex keeper feeder` calls `PriceFeeder.step` every interval on a timer
(`run`); the Silverback bot (perpdex.keepers.silverback_feeder) calls `step_if_due` on every
new block, which writes only when `round_due` says an interval of chain time has passed."""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from perpdex.keepers.common import Line, Report, pending_nonce, run_loop
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


def source(kind: str, interval: float, markets: dict[str, int], seed: int = 7,
           replay_file: Path | None = None) -> Source:
    """The price source named `kind` (hold, gbm or replay): the CLI's `--path` and the Silverback
    feeder's PERPDEX_FEEDER_PATH. ValueError for an unknown name or a replay without a good file."""
    if kind == "hold":
        return hold()
    if kind == "gbm":
        return gbm(interval, seed)
    if kind == "replay":
        if replay_file is None:
            raise ValueError("the replay path needs a file: a JSON list of {market name: price} rounds")
        return replay(replay_file, markets)
    raise ValueError(f"unknown price path {kind!r} (one of hold, gbm, replay)")


def check_feeder(x: Exchange, sender: Any) -> None:
    """ValueError unless `sender` may write rounds to the deployment's oracle."""
    if not bool(x.d.oracle.is_feeder(sender)):
        raise ValueError(f"{sender.address} is not a feeder of the oracle {x.d.oracle.address}")


def round_due(last_round_at: int | None, now: int, interval: float) -> bool:
    """Whether a feeder woken at chain time `now` writes a round: none written yet, or its last
    at least `interval` seconds earlier. Woken by every new block, a feeder without this check
    would write a round per block (on an automining node each round is itself the next block,
    so it would never stop); a block older than the last round, delivered late, is never due."""
    return last_round_at is None or now - last_round_at >= interval


@dataclass(frozen=True)
class FeederSettings:
    """What the feeder command takes as --interval, --path, --seed and --file."""

    interval: float = 2.0  # seconds of chain time between the bot's rounds
    path: str = "hold"
    seed: int = 7
    file: Path | None = None


def settings_from_env(env: Mapping[str, str] = os.environ) -> FeederSettings:
    """The feeder's settings from PERPDEX_FEEDER_* (the Silverback bot's: its command line is Silverback's)."""
    interval = float(env.get("PERPDEX_FEEDER_INTERVAL", FeederSettings.interval))
    if not interval > 0:  # 0 would write a round on every block, each of them waking the next
        raise ValueError(f"PERPDEX_FEEDER_INTERVAL must be more than 0 seconds, not {interval:g}")
    file = env.get("PERPDEX_FEEDER_FILE")
    return FeederSettings(interval, env.get("PERPDEX_FEEDER_PATH", FeederSettings.path),
                          int(env.get("PERPDEX_FEEDER_SEED", FeederSettings.seed)), Path(file) if file else None)


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
    last_round_at: int | None = None  # chain time of the block that triggered the last round (step_if_due)

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
        self.report(Line(f"round {self.rounds} in block {receipt.block_number}: {shown}", "round", round=self.rounds,
                         block=int(receipt.block_number), prices_usd={names[m]: p / WAD for m, p in prices.items()}))
        if self.settler is not None:
            self.settler.step()
        return prices

    def step_if_due(self, now: int, interval: float) -> Prices | None:
        """On a new block at chain time `now`: a `step` (a round, then settling what it made due)
        if `round_due`, else nothing. The time is taken before the step, so a failed round is
        tried again an interval later (as `run` backs off), never on every block."""
        if not round_due(self.last_round_at, now, interval):
            return None
        self.last_round_at = now
        return self.step()

    def run(self, interval: float, iterations: int | None = None, max_backoff: float = 30.0) -> None:
        run_loop(self.step, interval, self.report, iterations, max_backoff)
