"""End to end on Anvil (ethereum:local:foundry): deploy, trade, withdraw; and the devnet
lifecycle that `perpdex devnet` runs (start Anvil, deploy, write and re-read the file)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from ape import accounts, networks
from click.testing import CliRunner

from perpdex import devnet
from perpdex.cli import main
from perpdex.deploy import attach, deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange

pytestmark = pytest.mark.anvil
TOKEN = 10**6


def test_anvil__deploy_trade_withdraw():
    with networks.parse_network_choice("ethereum:local:foundry") as provider:
        assert "anvil" in provider.client_version.lower()
        admin, lp, trader = (accounts.test_accounts[i] for i in range(3))
        x = Exchange(deploy_system(admin))  # two-step: each trade fills at the next round
        x.add_liquidity(lp, 500_000 * TOKEN)  # the net rule: 15k of ETH skew fits 10% of it
        x.deposit(trader, 5_000 * TOKEN)
        x.fund(trader, 2 * x.reward_tokens)  # the settlement rewards of its two requests
        x.trade(trader, x.d.markets["ETH-USD"], 5 * WAD)
        assert x.position(trader, 0, 0).size == 5 * WAD
        x.set_price(0, 3_150 * WAD)
        receipt = x.close(trader, 0)
        pnl = x.events(receipt, "PositionModified")[0]["realized_pnl"]
        assert pnl > 700 * WAD
        amount = x.vault.withdrawable(trader, 0)
        assert amount > 5_700 * TOKEN
        x.vault.withdraw(0, amount, sender=trader)
        assert x.d.usd.balanceOf(trader) == amount
        assert receipt.gas_used > 21_000  # real receipts, intrinsic gas included


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def devnet_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`perpdex devnet`'s pid, log and deployment files in tmp_path, not in the checkout's
    .perpdex (a devnet someone runs there uses them: `devnet --stop` reads the pid)."""
    for name, file in (("PID_FILE", "anvil.pid"), ("LOG_FILE", "anvil.log"), ("DEPLOYMENT_FILE", "devnet.json")):
        monkeypatch.setattr(devnet, name, tmp_path / file)
    return tmp_path


def test_devnet__start_deploy_write_attach(devnet_files, tmp_path):
    port = _free_port()
    pid = devnet.start_anvil(port)
    assert pid is not None
    try:
        assert devnet.start_anvil(port) is None  # already running: not started twice
        url = devnet.host_url(port)
        with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": url}) as provider:
            d = deploy_system(accounts.test_accounts[0])
            path = devnet.write_deployment(d.to_json(provider.chain_id, provider.get_block("latest").number), tmp_path / "d.json")
            data = devnet.read_deployment(path)
            assert data["markets"] == {"ETH-USD": 0, "BTC-USD": 1}
            again = attach(data)
            assert again.vault.address == d.vault.address
            assert again.vault.market_count() == 2
    finally:
        assert devnet.stop_anvil()  # the launcher's whole group: the node is its child


def test_devnet_command__block_time__blocks_on_a_clock_and_the_file_says_so__a_running_node_left_alone(devnet_files):
    port = _free_port()
    result = CliRunner().invoke(main, ["devnet", "--port", str(port), "--block-time", "1", "--no-feeder"])
    try:
        assert result.exit_code == 0, result.output
        assert "a block every 1s" in result.output
        data = json.loads((devnet_files / "devnet.json").read_text())
        assert data["block_time"] == 1 and data["automine"] is False
        with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": devnet.host_url(port)}) as provider:
            head = provider.get_block("latest").number
            time.sleep(2.5)  # no transactions: only the clock makes blocks
            assert provider.get_block("latest").number >= head + 2
        # a node already running keeps its mining, and its deployment: attached, not redeployed
        again = CliRunner().invoke(main, ["devnet", "--port", str(port), "--block-time", "3", "--no-feeder"])
        assert again.exit_code == 0, again.output
        assert "--block-time 3 not applied" in again.output and "attached to the deployment" in again.output
        assert json.loads((devnet_files / "devnet.json").read_text()) == data
        # --redeploy: new addresses; the file records no block time it did not set
        fresh = CliRunner().invoke(main, ["devnet", "--port", str(port), "--no-feeder", "--redeploy"])
        assert fresh.exit_code == 0, fresh.output
        redeployed = json.loads((devnet_files / "devnet.json").read_text())
        assert redeployed["addresses"]["vault"] != data["addresses"]["vault"]
        assert redeployed["block_time"] is None and redeployed["automine"] is False
        assert redeployed["rpc_url"] == devnet.host_url(port) and redeployed["chain_id"] == data["chain_id"]
    finally:
        assert devnet.stop_anvil()


def test_devnet_command__seed_accounts__a_funded_pool_and_traders_with_positions(devnet_files):
    port = _free_port()
    result = CliRunner().invoke(main, ["devnet", "--port", str(port), "--seed-accounts", "3", "--no-feeder"])
    try:
        assert result.exit_code == 0, result.output
        assert result.output.count("seeded trader") == 3 and "seeded LP" in result.output
        data = json.loads((devnet_files / "devnet.json").read_text())
        with networks.parse_network_choice("ethereum:local:foundry", provider_settings={"host": devnet.host_url(port)}):
            x = Exchange(attach(data))
            assert int(x.vault.pool_value()) >= 1_000_000 * WAD * 99 // 100
            held = [x.open_markets(accounts.test_accounts[2 + i]) for i in range(3)]
            assert held == [[0], [1], [0]]
            assert x.position(accounts.test_accounts[3], 0, 1).size < 0 < x.position(accounts.test_accounts[2], 0, 0).size
    finally:
        assert devnet.stop_anvil()
