"""The Ape scripts as an Ape user runs them, each a real `ape run` process against an Anvil the
test owns: `ape run deploy` deploys and writes the deployment file, then `ape run keeper
feeder|settler|funding|liquidator` each run one pass and do their job, checked on the chain.

Only the deploy is told where the node is (APE_FOUNDRY_HOST, ape-foundry's own setting); the
keepers find it in the deployment file (its rpc_url), as they find `perpdex devnet`'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ape import accounts, chain

from perpdex.ape_scripts import FOUNDRY_HOST_VARIABLE, attached
from perpdex.chain import DEVNET, connect, move_time
from perpdex.deploy import ROOT
from perpdex.keepers.liquidator import liquidations
from perpdex.model import WAD
from perpdex.processes import Devnet

pytestmark = pytest.mark.anvil

APE = str(Path(sys.executable).with_name("ape"))
PENDING, SETTLED = 1, 2  # OrderRouter's request statuses


def ape_run(*args: str, host: str | None = None) -> list[dict[str, Any]]:
    """`ape run ARGS --network ethereum:local:foundry` from the project root (where `scripts/`
    is); the node is `host` if given, else the deployment file's. Returns its stdout's JSON
    lines (the keepers run with --log-format json: nothing else is on stdout)."""
    env = {k: v for k, v in os.environ.items() if k != FOUNDRY_HOST_VARIABLE}
    if host:
        env[FOUNDRY_HOST_VARIABLE] = host
    done = subprocess.run([APE, "run", *args, "--network", DEVNET], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"ape run {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def keeper(name: str, account: int, deployment: Path, *options: str) -> list[dict[str, Any]]:
    records = ape_run("keeper", name, "--account", f"TEST::{account}", "--deployment", str(deployment),
                      "--log-format", "json", *options)
    assert records[0]["action"] == "started" and records[-1]["action"] == "stopped", records
    assert {r["keeper"] for r in records} == {name}
    return records


def test_ape_scripts__deploy_then_each_keeper_does_its_job(devnet: Devnet, tmp_path: Path):
    deployment = tmp_path / "devnet.json"
    ape_run("deploy", "--account", "TEST::0", "--deployment", str(deployment), host=devnet.url)
    written = json.loads(deployment.read_text())
    assert written["rpc_url"] == devnet.url and written["chain_id"] == 31337

    with connect(DEVNET, host=devnet.url, manage_process=False):
        x = attached(deployment)
        assert len(chain.provider.get_code(x.vault.address)) > 0  # the deployment is on this node, not on a throwaway Anvil
        admin, lp, trader = accounts.test_accounts[0], accounts.test_accounts[9], accounts.test_accounts[2]
        # an attached deployment knows no deployer: the LP's request is settled here by the admin
        lp_request = x.order_id(x.add_liquidity(lp, x.tokens(1_000_000), settle=False))
        x.next_round(feeder=admin)
        x.wait_lp_grace()
        x.settle(lp_request, settler=admin)
        x.deposit(trader, x.tokens(2_000))
        x.fund(trader, x.reward_tokens)
        # 10 ETH on 2,000 USD (15x): committed, not settled; its round is a settlement delay away
        order = x.order_id(x.trade(trader, 0, 10 * WAD, settle=False))
        move_time(int(x.d.router.settlement_delay()))
        round_before = int(x.d.oracle.latest(0)[1])

        # the feeder writes a round (not settling: that is the settler's job here)
        records = keeper("feeder", 0, deployment, "--rounds", "1", "--no-settle")
        assert [r["action"] for r in records] == ["started", "round", "stopped"]
        assert int(x.d.oracle.latest(0)[1]) > round_before
        assert int(x.order(order).status) == PENDING

        # the settler fills the request at that round
        records = keeper("settler", 4, deployment, "--once", "--db", str(tmp_path / "settler.db"))
        assert [r["fields"]["settled"] for r in records if r["action"] == "batch_settled"] == [1]
        assert int(x.order(order).status) == SETTLED and x.position(trader, 0, 0).size == 10 * WAD

        # the funding keeper pokes both markets (any idle time is enough with --max-idle 0)
        accrued = {m: int(x.vault.market_state(m).last_funding_time) for m in x.market_names()}
        records = keeper("funding", 5, deployment, "--once", "--max-idle", "0")
        assert sorted(r["fields"]["market"] for r in records if r["action"] == "poked") == ["BTC-USD", "ETH-USD"]
        assert all(int(x.vault.market_state(m).last_funding_time) > t for m, t in accrued.items())

        # ETH falls to 2,860: the 15x long is below its maintenance margin; the liquidator takes it
        x.set_price(0, 2_860 * WAD, feeder=admin)
        assert [bool(f) for f in x.d.keeper.liquidatable([trader], [0])] == [True]
        keeper("liquidator", 3, deployment, "--once", "--db", str(tmp_path / "liquidator.db"))
        [seen] = liquidations(x)
        assert (seen.owner, seen.sub, seen.keeper) == (trader.address, 0, accounts.test_accounts[3].address)
        assert 0 < x.position(trader, 0, 0).size < 10 * WAD  # the smallest share that restores IM
        assert [bool(f) for f in x.d.keeper.liquidatable([trader], [0])] == [False]
