"""`perpdex order place / list / cancel` against a devnet (Anvil, a deployment file), as a user
runs them: a TP/SL pair and a limit placed, listed from the router's events (table and
--json), one cancelled by its owner, another's refused with the router's reason; then a
keeper's trigger and settle (made here with the SDK: no orders keeper runs) shown by `list`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from ape import accounts, chain
from click.testing import CliRunner

from perpdex.chain import DEVNET, connect
from perpdex.cli import main
from perpdex.deploy import attach, deploy_system
from perpdex.devnet import read_deployment, write_deployment
from perpdex.model import WAD
from perpdex.processes import Devnet
from perpdex.sdk import Exchange, feed_prices

pytestmark = pytest.mark.anvil


@pytest.fixture
def deployed(devnet: Devnet, tmp_path: Path) -> tuple[Devnet, Path]:
    """A devnet whose trader (test account 1, the CLI's default) holds 2 ETH long; no feeder
    process: the deployer feeds the rounds here."""
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x = Exchange(deploy_system(accounts.test_accounts[0]))
        x.add_liquidity(accounts.test_accounts[9], x.tokens(1_000_000))
        x.deposit(accounts.test_accounts[1], usd=2_000)
        x.trade(accounts.test_accounts[1], "ETH-USD", 2.0)
        path = write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), tmp_path / "devnet.json")
    return devnet, path


def run(node: Devnet, deployment: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--port", str(node.port), "--deployment", str(deployment)])
    return result.exit_code, result.output


def listed(node: Devnet, deployment: Path, *args: str) -> dict[int, dict]:
    code, out = run(node, deployment, "order", "list", "--json", *args)
    assert code == 0, out
    return {row["id"]: row for row in json.loads(out)}


def test_order_place_list_cancel__on_a_devnet(deployed):
    node, deployment = deployed
    trader, other = accounts.test_accounts[1], accounts.test_accounts[2]
    code, out = run(node, deployment, "order", "place", "--kind", "stop-loss", "--market", "ETH-USD", "--trigger", "2800")
    assert code == 0 and "placed" in out, out
    sl = max(listed(node, deployment))
    code, out = run(node, deployment, "order", "place", "--kind", "take-profit", "--market", "ETH-USD", "--trigger", "3300",
                    "--size", "1", "--oco-with", str(sl))
    assert code == 0, out
    code, out = run(node, deployment, "order", "place", "--kind", "limit", "--side", "buy", "--size", "0.5", "--market",
                    "ETH-USD", "--trigger", "2,900", "--expiry", "2h", "--account", "2")
    assert code == 0, out
    rows = listed(node, deployment)
    assert len(rows) == 3
    tp, limit = sl + 1, sl + 2
    assert (rows[sl]["kind"], rows[sl]["side"], rows[sl]["size"], rows[sl]["trigger_usd"], rows[sl]["oco"]) == \
        ("stop-loss", "sell", None, 2_800.0, tp)
    assert (rows[tp]["kind"], rows[tp]["size"], rows[tp]["oco"], rows[tp]["status"]) == ("take-profit", 1.0, sl, "open")
    assert (rows[limit]["owner"], rows[limit]["side"], rows[limit]["acceptable_usd"]) == (other.address, "buy", 2_900.0)
    assert rows[limit]["expiry"] is not None and rows[limit]["triggered_at"] is None
    assert set(listed(node, deployment, "--owner", other.address)) == {limit}

    code, out = run(node, deployment, "order", "cancel", str(limit))  # the trader's account is not its owner
    assert code == 2 and "cancel refused: router: not the owner" in out and "Traceback" not in out, out
    code, out = run(node, deployment, "order", "cancel", str(limit), "--account", "2")
    assert code == 0 and f"order {limit} cancelled: 1.00 USD of escrow back to {other.address}" in out, out

    # a keeper's work, with the SDK: ETH gaps to 2,700, the stop-loss triggers and fills at the next round
    with connect(DEVNET, host=node.url, manage_process=False):
        x = Exchange(replace(attach(read_deployment(deployment)), deployer=accounts.test_accounts[0]))
        feed_prices(x, {0: 2_700 * WAD})
        x.d.router.trigger(sl, sender=accounts.test_accounts[3])
        x.next_round()
        x.settle([sl], settler=accounts.test_accounts[3])
        assert x.position(trader, 0, 0).size == 0
    rows = listed(node, deployment)
    assert rows[sl]["status"] == "filled" and rows[sl]["outcome"]["filled"] == -2.0 and rows[sl]["triggered_at"]
    assert 2_690 < rows[sl]["outcome"]["fill_price_usd"] < 2_710  # the round after the gap, not the 2,800 trigger
    assert rows[tp]["outcome"] == {"cancelled": "router: OCO leg filled", "refund_tokens": 1_000_000}
    assert rows[limit]["outcome"]["cancelled"] == "router: cancelled by owner"
    code, out = run(node, deployment, "order", "list")
    assert code == 0 and "Conditional orders (3, 0 live)" in out and "take-profit" in out and "stop-loss" in out, out
