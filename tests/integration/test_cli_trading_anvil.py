"""The trading commands against a devnet with its price feeder running (as `perpdex devnet`
starts it): deposit, trade, close, LP add and remove, orders, withdraw, each a request that
fills at the feeder's next round; and the one-line errors a user meets."""

from __future__ import annotations

from pathlib import Path
import pytest
from ape import accounts, chain
from click.testing import CliRunner

from perpdex.chain import DEVNET, connect
from perpdex.cli import main
from perpdex.deploy import deploy_system
from perpdex.devnet import write_deployment
from perpdex.model import WAD
from perpdex.processes import Devnet, feeder_process
from perpdex.sdk import Exchange

pytestmark = pytest.mark.anvil


@pytest.fixture
def deployed(devnet: Devnet, tmp_path: Path) -> tuple[Devnet, Path]:
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x = Exchange(deploy_system(accounts.test_accounts[0]))
        x.add_liquidity(accounts.test_accounts[9], x.tokens(2_000_000))
        path = write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), tmp_path / "devnet.json")
    return devnet, path


def run(node: Devnet, deployment: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--port", str(node.port), "--deployment", str(deployment)])
    return result.exit_code, result.output


def test_trading_commands__each_fills_at_the_feeders_next_round(deployed, tmp_path):
    node, deployment = deployed
    feeder = feeder_process(node.url, deployment, tmp_path / "feeder.db", interval=1.0)
    try:
        code, out = run(node, deployment, "deposit", "5,000")
        assert code == 0 and "Positions of" in out and "5,000.00" in out, out
        code, out = run(node, deployment, "trade", "--market", "ETH-USD", "--size", "1.5", "--slippage", "0.5%")
        assert code == 0 and "filled +1.500000 at" in out and "liquidation price" in out, out
        with connect(DEVNET, host=node.url, manage_process=False):
            from perpdex.deploy import attach
            from perpdex.devnet import read_deployment

            x = Exchange(attach(read_deployment(deployment)))
            assert x.position(accounts.test_accounts[1], 0, 0).size == 3 * WAD // 2
        # far more than 5,000 USD can margin: cancelled at its round, with the reason and what to do
        # (60 ETH: 180,000 USD, within the net rule's 10% of the 2 M pool, so margin is the reason)
        code, out = run(node, deployment, "trade", "--market", "ETH-USD", "--size", "60")
        assert code == 1 and "cancelled: vault: below initial margin" in out, out
        assert "perpdex deposit AMOUNT" in out
        code, out = run(node, deployment, "close", "--market", "ETH-USD")
        assert code == 0 and "filled -1.500000 at" in out, out
        code, out = run(node, deployment, "lp", "add", "1000")
        assert code == 0 and "shares minted" in out, out
        code, out = run(node, deployment, "lp", "remove", "all")
        assert code == 0 and "token units paid" in out, out
        code, out = run(node, deployment, "orders")
        assert code == 0 and out.count("settled") >= 4 and "cancelled" in out, out
        code, out = run(node, deployment, "withdraw", "all")
        assert code == 0 and "withdrew" in out, out
    finally:
        feeder.stop()


def test_trading_commands__user_errors_are_one_line(deployed):
    node, deployment = deployed
    code, out = run(node, deployment, "trade", "--market", "DOGE-USD", "--size", "1")
    assert code == 2 and "unknown market 'DOGE-USD'" in out and "Traceback" not in out
    code, out = run(node, deployment, "trade", "--market", "ETH-USD", "--size", "0")
    assert code == 2 and "--size must not be 0" in out
    code, out = run(node, deployment, "trade", "--market", "ETH-USD", "--size", "1", "--slippage", "abc")
    assert code == 2 and "0.5% or 0.005" in out
    code, out = run(node, deployment, "deposit", "0")
    assert code == 2 and "must be more than 0" in out
    code, out = run(node, deployment, "close", "--market", "ETH-USD")
    assert code == 2 and "no ETH-USD position" in out
    # no feeder running: the request is committed, nothing settles it, and the user is told so
    run(node, deployment, "deposit", "1000")
    code, out = run(node, deployment, "trade", "--market", "ETH-USD", "--size", "0.1", "--timeout", "3")
    assert code == 1 and "is the feeder running?" in out and "Traceback" not in out, out


def test_devnet_verbs__faucet_price_set_time_warp_mine(deployed):
    """What a user drives the devnet with: tokens, prices, time and blocks, each one command."""
    node, deployment = deployed
    someone = "0x" + "ab" * 20
    code, out = run(node, deployment, "faucet", "1,000")
    assert code == 0 and "minted 1,000.00 USD" in out, out
    code, out = run(node, deployment, "faucet", "5", "--to", someone)
    assert code == 0 and "its balance is 5.00 USD" in out, out
    code, out = run(node, deployment, "price", "set", "ETH-USD", "2860")
    assert code == 0 and "ETH-USD: 3,000.00 -> 2,860.00 USD in 1 round(s)" in out, out
    code, out = run(node, deployment, "price", "set", "ETH-USD", "5,000")  # +75%: rounds of at most 25%
    assert code == 0 and "-> 5,000.00 USD in 3 round(s)" in out, out
    code, out = run(node, deployment, "price", "set", "ETH-USD", "3000", "--account", "1")
    assert code == 2 and "is not a feeder of the oracle" in out, out
    code, out = run(node, deployment, "price", "set", "DOGE-USD", "1")
    assert code == 2 and "unknown market 'DOGE-USD'" in out, out
    with connect(DEVNET, host=node.url, manage_process=False):
        from perpdex.deploy import attach
        from perpdex.devnet import read_deployment

        x = Exchange(attach(read_deployment(deployment)))
        assert x.price(0) == 5_000 * WAD and int(x.d.usd.balanceOf(someone)) == 5 * 10**6
        start = chain.blocks.head
    warp = CliRunner().invoke(main, ["time", "warp", "1h", "--port", str(node.port)])
    assert warp.exit_code == 0 and "(+3600 s)" in warp.output, warp.output
    mined = CliRunner().invoke(main, ["mine", "3", "--port", str(node.port)])
    assert mined.exit_code == 0 and "mined 3 block(s)" in mined.output, mined.output
    with connect(DEVNET, host=node.url, manage_process=False):
        head = chain.blocks.head
        assert head.number == start.number + 4 and head.timestamp >= start.timestamp + 3_600
    bad = CliRunner().invoke(main, ["time", "warp", "soon", "--port", str(node.port)])
    assert bad.exit_code == 2 and "give it as 90, 90s, 15m, 1h or 2d" in bad.output


def test_read_commands__accounts_events_orders__tables_and_json(deployed):
    """`accounts` ranks every account with a position by its margin ratio (from the events),
    `events` lists the deployment's events, `orders` the router's requests; --json for each."""
    import json
    from dataclasses import replace

    node, deployment = deployed
    with connect(DEVNET, host=node.url, manage_process=False):
        from perpdex.deploy import attach
        from perpdex.devnet import read_deployment

        # the deployer feeds the rounds the trades fill at (no feeder process in this test)
        x = Exchange(replace(attach(read_deployment(deployment)), deployer=accounts.test_accounts[0]))
        bold, careful = accounts.test_accounts[2], accounts.test_accounts[3]
        for who, usd, leverage, market in ((bold, 1_000, 15, 0), (careful, 10_000, 2, 1)):
            x.deposit(who, x.tokens(usd))
            x.fund(who, x.tokens(10))
            x.trade(who, market, usd * leverage * WAD * WAD // x.price(market))  # filled at the next round
    code, out = run(node, deployment, "accounts", "--json")
    assert code == 0, out
    ranked = json.loads(out)
    assert [r["owner"] for r in ranked] == [bold.address, careful.address]  # 15x is closer to liquidation
    assert ranked[0]["margin_ratio"] < ranked[1]["margin_ratio"] and not ranked[0]["liquidatable"]
    assert ranked[0]["positions"][0]["market"] == "ETH-USD" and ranked[0]["positions"][0]["liquidation_price_usd"] > 0
    code, out = run(node, deployment, "accounts")
    assert code == 0 and "closest to liquidation first" in out and "ETH-USD" in out, out
    code, out = run(node, deployment, "events", "--json", "--name", "PositionModified", "--owner", careful.address)
    assert code == 0, out
    [modified] = json.loads(out)
    assert modified["args"]["owner"] == careful.address and modified["args"]["market"] == 1 and modified["args"]["size"] > 0
    code, out = run(node, deployment, "events", "--last", "5")
    assert code == 0 and "Events (5 shown)" in out, out
    code, out = run(node, deployment, "orders", "--json", "--owner", bold.address)
    assert code == 0, out
    [order] = json.loads(out)
    assert (order["kind"], order["market"], order["status"]) == ("trade", "ETH-USD", "settled")


def test_governance_commands__pending_shows_the_call_and_execute_waits_for_the_eta(deployed):
    """An owner call scheduled on the devnet's Governance (1-day delay) is listed with its
    decoded call and eta; executing it early is a one-line error; after `time warp 1d` it runs."""
    import json

    from perpdex.deploy import attach
    from perpdex.devnet import read_deployment

    node, deployment = deployed
    with connect(DEVNET, host=node.url, manage_process=False):
        d = attach(read_deployment(deployment))
        op = d.govern(d.vault, "set_liquidator", d.keeper, 7 * WAD, 5 * WAD, sender=accounts.test_accounts[0])
    code, out = run(node, deployment, "governance", "pending", "--json")
    (row,) = json.loads(out)
    assert code == 0 and row["id"] == op.id and row["target"] == "vault", out
    assert row["call"] == f"set_liquidator({d.keeper.address}, {7 * WAD}, {5 * WAD})" and row["eta"] == op.eta
    assert row["executable"] in ("in 24h 0m", "in 23h 59m"), row
    code, out = run(node, deployment, "governance", "execute", op.id)
    assert code == 2 and "is not ready: executable from" in out and "Traceback" not in out, out
    code, out = run(node, deployment, "governance", "execute", "0x" + "12" * 32)
    assert code == 2 and "no pending operation" in out, out
    assert CliRunner().invoke(main, ["time", "warp", "1d", "--port", str(node.port)]).exit_code == 0
    code, out = run(node, deployment, "governance", "execute", op.id)
    assert code == 0 and "executed" in out and "vault.set_liquidator(" in out, out
    code, out = run(node, deployment, "governance", "pending")
    assert code == 0 and "(0;" in out, out
    with connect(DEVNET, host=node.url, manage_process=False):
        assert int(d.vault.max_keeper_reward()) == 7 * WAD
