"""The stateful exchange machine (tests/fuzz/test_exchange_machine.py) on Anvil: the same rules,
invariants and chain == model comparison against a real node, on a system deployed here.

Anvil's block timestamps are frozen (`anvil_setBlockTimestampInterval 0`) so that, as on the
embedded chain, time moves only when the machine mines a later block (perpdex.chain.move_time):
the model must know the timestamp of every transaction to accrue funding exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ape import accounts, chain

from perpdex.chain import DEVNET, connect
from perpdex.deploy import deploy_system
from perpdex.sdk import Exchange

sys.path.insert(0, str(Path(__file__).parents[1] / "fuzz"))
import test_exchange_machine as machine  # noqa: E402  (the machine, its profiles and summary)

pytestmark = pytest.mark.anvil
POOL_USD = 1_000_000


def test_anvil__exchange_machine__chain_equals_model_and_invariants_hold(devnet):
    with connect(DEVNET, host=devnet.url, manage_process=False) as provider:  # an Anvil the test owns
        provider.make_request("anvil_setBlockTimestampInterval", [0])
        role = accounts.test_accounts
        x = Exchange(deploy_system(role[0], governance_delay=0))
        x.add_liquidity(role[3], x.tokens(POOL_USD))
        roles = machine.Roles(traders=[role[1], role[2], role[5]], lps=[role[3], role[6]], keeper=role[4],
                              rival_keeper=role[7], donor=role[8], settler=role[9])
        machine.SUMMARY.clear()
        machine.SUMMARY.update(machine.new_summary())
        try:
            machine.run_exchange_machine(x, chain, roles, "anvil")
        finally:
            machine.print_summary("anvil")
        summary = machine.SUMMARY
        assert summary["examples"] >= 3 and summary["steps"] >= 3 * 12 // 2
        assert summary["checks"] >= summary["steps"]  # the chain was compared with the model after every step
