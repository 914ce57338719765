"""The simulation on Anvil at a tiny size: keeper bots as real separate processes
(`perpdex keeper liquidator`, `perpdex keeper funding`), prices and trades from the test,
the report's events read back with eth_getLogs."""

from __future__ import annotations

from pathlib import Path

import pytest
from ape import accounts

from perpdex.chain import DEVNET
from perpdex.sim import scenario
from perpdex.sim.anvil import run_on_anvil

pytestmark = pytest.mark.anvil


def test_anvil__crash__the_liquidator_process_liquidates__books_match_the_chain(tmp_path: Path):
    # the demo's engine on the crash path (a GBM demo this small may see no liquidation)
    result = run_on_anvil(scenario("crash", network=DEVNET, traders=8, blocks=30, seconds_per_block=120), workdir=tmp_path)
    report = result.report
    print(f"anvil: {result.blocks_per_second:.2f} blocks/s (under load)")
    keeper_process = accounts.test_accounts[2].address
    assert report.liquidations and {r.keeper for r in report.liquidations} == {keeper_process}
    assert "liquidated" in result.keeper_logs["liquidator"]
    passed = {c.name for c in report.checks if c.ok}
    assert {"vault balance == ledger", "open interest == positions", "funding is zero-sum", "everyone can exit"} <= passed
    assert report.ok, "\n".join(f"{c.name}: {c.detail}" for c in report.failed)
    compared = [c for c in report.checks if c.name.startswith("simulator == chain")]
    assert len(compared) == 7 and all(c.ok for c in compared)  # liquidations: the process kept its own books
