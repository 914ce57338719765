"""Market simulation: price paths, trader behaviours, the block loop, named scenarios."""

from perpdex.sim.engine import BlockStatus, SimConfig, SimResult, Simulation
from perpdex.sim.scenarios import DEMO, SCENARIOS, scenario, simulate

__all__ = ["BlockStatus", "DEMO", "SCENARIOS", "SimConfig", "SimResult", "Simulation", "scenario", "simulate"]
