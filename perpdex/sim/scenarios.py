"""The demo and the named stress scenarios, as `SimConfig`s, and `simulate` (connect, run).

- `gbm` (the demo): GBM with Poisson jumps, seeded.
- `crash`: every market falls 40% at an even pace over an hour.
- `gap`: a 20% gap in one update, with the oracle's jump limit lowered to 10%: the feeder
  must split it into allowed steps.
- `squeeze`: shorts crowded (80% of traders short), ETH rips 35% up over an hour.
- `bleed`: a slow 12% decline over 20 hours with 85% of traders long; funding is made to bite
  (faster funding velocity, a smaller skew scale), so the longs pay the pool and shorts.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator

from perpdex.chain import DEVNET, EMBEDDED
from perpdex.sim.engine import Progress, SimConfig, SimResult, Simulation

BLEED_MARKETS = {
    "ETH-USD": {"max_funding_velocity": 90, "skew_scale": 200_000},
    "BTC-USD": {"max_funding_velocity": 90, "skew_scale": 10_000},
}

SCENARIOS: dict[str, SimConfig] = {
    "gbm": SimConfig(name="gbm", path="gbm"),
    "crash": SimConfig(name="crash", path="crash", blocks=90, path_params={"drop": 0.4, "over": 3600}),
    "gap": SimConfig(
        name="gap", path="gap", blocks=60, overrides={"oracle": {"max_price_jump": 0.1}}, path_params={"size": 0.2},
    ),
    "squeeze": SimConfig(name="squeeze", path="squeeze", blocks=90, long_share=0.2, path_params={"rise": 0.35, "over": 3600}),
    "bleed": SimConfig(
        name="bleed", path="bleed", blocks=120, seconds_per_block=600, long_share=0.85,
        overrides={"markets": BLEED_MARKETS}, path_params={"fall": 0.12},
    ),
}
After = Callable[[SimResult], None]
DEMO = replace(SCENARIOS["gbm"], name="demo")


def scenario(name: str, **changes: Any) -> SimConfig:
    """The named scenario's config with `changes` (e.g. traders=10, blocks=40)."""
    if name == "demo":
        return replace(DEMO, **changes)
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    return replace(SCENARIOS[name], **changes)


def simulate(
    config: SimConfig, progress: Progress | None = None, workdir: Any = None, then: After | None = None,
) -> SimResult:
    """Connect to `config.network` and run: the embedded chain in-process; Anvil (a fresh
    node on a free port) with the keepers as separate processes (`perpdex.sim.anvil`).
    `then(result)` runs while still connected (to read more of the chain)."""
    if config.network == DEVNET:
        from perpdex.sim.anvil import run_on_anvil

        return run_on_anvil(config, progress, workdir, then)
    if config.network != EMBEDDED:
        raise ValueError(f"network {config.network!r}: the simulation runs on {EMBEDDED} or {DEVNET}")
    from perpdex.chain import frozen_clock

    with embedded_session(), frozen_clock():  # block times from the simulation alone: reproducible
        result = Simulation(config, progress).run()
        if then:
            then(result)
        return result


@contextmanager
def embedded_session() -> Iterator[None]:
    """Connected to the embedded chain for the block: reuses a connection already open (runs
    in one process then share it: reconnecting would give a fresh chain whose snapshot ids
    restart, and a later `chain.restore` could land in the earlier run's state)."""
    from ape import networks

    from perpdex.chain import connect

    if getattr(networks.active_provider, "network_choice", None) == EMBEDDED:
        yield
        return
    with connect(EMBEDDED):
        yield
