"""The liquidator bot on Anvil, as a real separate process (`perpdex keeper liquidator`),
against an Anvil each test starts and owns: a price crash with 200 accounts under water,
an attacker's account in a stale market among 56 underwater ones, kill -9 mid-batch and
restart, the RPC going away for a while, and Anvil restarting."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ape import accounts, chain

from perpdex.bench_live import BOOK_COLLATERAL_USD, BOOK_CRASH_PRICE, BOOK_MARKETS, BOT_ACCOUNT, underwater_book
from perpdex.chain import DEVNET, connect, move_time
from perpdex.deploy import deploy_system
from perpdex.devnet import free_port, host_url, write_deployment
from perpdex.keepers.liquidator import liquidations
from perpdex.model import WAD
from perpdex.processes import Devnet, KeeperProcess, liquidator_process, silverback_liquidator, wait_until
from perpdex.sdk import Exchange

pytestmark = pytest.mark.anvil


# ---------------------------------------------------------------- an Anvil the test owns


def deploy(devnet: Devnet, tmp_path: Path) -> tuple[Exchange, Path]:
    admin, lp = accounts.test_accounts[0], accounts.test_accounts[1]
    d = deploy_system(admin, markets=BOOK_MARKETS)  # the underwater book is one-sided
    x = Exchange(d)
    x.add_liquidity(lp, x.tokens(2_000_000))
    return x, write_deployment(d.to_json(chain.chain_id, chain.blocks.head.number), tmp_path / "devnet.json")


def crash(x: Exchange) -> int:
    """ETH-USD to 2,770 in one update; returns the block it landed in."""
    return int(x.set_price(0, BOOK_CRASH_PRICE).block_number)


def liquidated_counts(x: Exchange) -> Counter[tuple[str, int]]:
    return Counter((seen.owner, seen.sub) for seen in liquidations(x))


def still_liquidatable(x: Exchange, made: list[tuple[str, int]]) -> int:
    """How many of `made` `LiquidationKeeper.liquidatable` still flags (100 per call)."""
    flags = []
    for i in range(0, len(made), 100):
        chunk = made[i : i + 100]
        flags += x.d.keeper.liquidatable([owner for owner, _ in chunk], [sub for _, sub in chunk])
    return sum(bool(flag) for flag in flags)


# ---------------------------------------------------------------- the bot as a process


def keeper_bot(rpc: str, deployment: Path, db: Path, max_batch: int = 50) -> KeeperProcess:
    """`perpdex keeper liquidator`, signing with test account BOT_ACCOUNT."""
    return liquidator_process(rpc, deployment, db, BOT_ACCOUNT, max_batch=max_batch)


def silverback_bot(rpc: str, deployment: Path, db: Path) -> KeeperProcess:
    return silverback_liquidator(rpc, deployment, db, BOT_ACCOUNT)


def bot_sends() -> int:
    """Transactions the bot's account has sent, mined or pending (its pending nonce)."""
    return int(chain.provider.get_nonce(accounts.test_accounts[BOT_ACCOUNT].address, block_id="pending"))


def cleared_rate(output: str) -> str:
    found = re.findall(r"cleared (\d+) account\(s\) in ([\d.]+)s \(([\d.]+) accounts/s\)", output)
    return ", ".join(f"{n} in {s}s ({r}/s)" for n, s, r in found)


# ---------------------------------------------------------------- the scenarios


def test_anvil_bot__200_accounts_under_water__all_liquidated_within_bounded_blocks(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(devnet, tmp_path)
        made = underwater_book(x, per_owner=25)
        assert len(made) == 200
        bot = keeper_bot(devnet.url, deployment, tmp_path / "bot.db")
        bots.append(bot)
        bot.wait_for("tracked 200 | open 200 | liquidatable 0")

        crashed_at = crash(x)
        wait_until(lambda: len(liquidated_counts(x)) == 200, 120, "200 liquidations", bot)
        bot.wait_for("cleared 200 account(s)")
        output = bot.stop()

        seen = liquidations(x)
        assert Counter((s.owner, s.sub) for s in seen) == Counter(made)  # each exactly once
        assert {s.keeper for s in seen} == {accounts.test_accounts[BOT_ACCOUNT].address}
        assert all(0 < s.fraction < WAD for s in seen)  # partial, as the crash price was chosen
        blocks = {s.block for s in seen}
        assert max(blocks) - crashed_at <= 200 // 50 + 2  # 4 batches of 50, one per block
        assert bot_sends() == len({s.tx_hash for s in seen}) == 4  # no wasted or repeated batch
        assert still_liquidatable(x, made) == 0
        assert "liquidated 200 in 4 tx" in output
        print(f"\nliquidator cleared: {cleared_rate(output)}")
        print([line for line in output.splitlines() if "| liquidated 200" in line][-1])


def test_anvil_bot__attacker_in_a_stale_market__skipped_with_reason__the_others_liquidated_in_the_same_round(
        devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(devnet, tmp_path)
        made = underwater_book(x, per_owner=7)  # 56 accounts, 1 ETH long on 300 USD each
        attacker = accounts.test_accounts[3]
        x.deposit(attacker, x.tokens(BOOK_COLLATERAL_USD))
        x.fund(attacker, 2 * x.reward_tokens)  # the router escrows each request's reward from the wallet
        orders = [x.order_id(x.trade(attacker, m, size, settle=False)) for m, size in ((0, WAD), (1, WAD // 1000))]
        x.next_round()
        x.settle(orders)
        assert x.position(attacker, 0, 1).size == WAD // 1000  # it holds BTC: a market about to go stale
        bot = keeper_bot(devnet.url, deployment, tmp_path / "bot.db")
        bots.append(bot)
        bot.wait_for("tracked 57 | open 57 | liquidatable 0")

        move_time(int(x.d.oracle.max_price_age()) + 1)  # every price is stale now...
        crashed_at = crash(x)  # ...but ETH, fed again at the crash price: BTC alone stays stale
        wait_until(lambda: len(liquidated_counts(x)) == 56, 120, "56 liquidations", bot)
        bot.wait_for(f"skipped {attacker.address}/0: oracle: stale price")
        bot.wait_for("cleared 56 account(s)")
        output = bot.stop()

        seen = liquidations(x)
        assert Counter((s.owner, s.sub) for s in seen) == Counter(made)  # everyone but the attacker, once
        assert max(s.block for s in seen) - crashed_at <= 2  # the same round: 2 batches (50 + 7), a block each
        assert bot_sends() == len({s.tx_hash for s in seen}) == 2  # its retries are simulated, never sent
        assert x.d.keeper.liquidatable([attacker], [0])[0]  # still under water: it waits for a fresh BTC price
        assert any("| backed off 1 |" in line for line in output.splitlines())  # shown in the status line
        print(f"\nstale-market attacker: {[line for line in output.splitlines() if 'skipped' in line][:3]}")


def test_anvil_bot__killed_mid_batch_and_restarted__nothing_missed_nothing_sent_twice(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False) as provider:
        x, deployment = deploy(devnet, tmp_path)
        made = underwater_book(x, per_owner=25)
        db = tmp_path / "bot.db"
        first = keeper_bot(devnet.url, deployment, db, max_batch=25)
        bots.append(first)
        first.wait_for("tracked 200 | open 200")
        # blocks every second from now: a sent batch waits in the mempool, so the kill lands
        # between broadcast and receipt
        provider.make_request("evm_setAutomine", [False])
        provider.make_request("evm_setIntervalMining", [1])
        crash(x)
        first.wait_for("sent batch", timeout=60)
        first.kill9()
        in_flight = bot_sends()
        assert in_flight >= 1 and len(liquidated_counts(x)) < 200

        second = keeper_bot(devnet.url, deployment, db, max_batch=25)
        bots.append(second)
        wait_until(lambda: len(liquidated_counts(x)) == 200, 120, "200 liquidations after the restart", second)
        second.wait_for("cleared")
        output = second.stop()

        seen = liquidations(x)
        assert Counter((s.owner, s.sub) for s in seen) == Counter(made)  # nothing missed, nothing twice
        assert bot_sends() == len({s.tx_hash for s in seen}) == 8  # every tx liquidated: none re-sent
        assert "recovered batch" in output  # the restarted bot settled what the killed one sent
        assert "liquidated 200 in 8 tx" in output  # and its journal accounts for all of it


def test_anvil_bot__rpc_down_for_a_while__it_backs_off_and_catches_up(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(devnet, tmp_path)
        made = underwater_book(x, per_owner=5)  # 40 accounts
        with Proxy(devnet.port) as proxy:
            bot = keeper_bot(host_url(proxy.port), deployment, tmp_path / "bot.db")
            bots.append(bot)
            bot.wait_for("tracked 40 | open 40")
            proxy.down()
            crash(x)  # straight to Anvil: the bot cannot see it
            bot.wait_for("error:", timeout=30)
            time.sleep(3)
            assert len(liquidated_counts(x)) == 0
            proxy.up()
            wait_until(lambda: len(liquidated_counts(x)) == 40, 90, "40 liquidations after the RPC came back", bot)
            output = bot.stop()
        assert liquidated_counts(x) == Counter(made)
        assert "retrying in" in output


def test_anvil_bot__anvil_restarted__reset_detected_and_reindexed(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(devnet, tmp_path)
        underwater_book(x, per_owner=2)
        bot = keeper_bot(devnet.url, deployment, tmp_path / "bot.db")
        bots.append(bot)
        bot.wait_for("tracked 16 | open 16")
    devnet.restart()
    with connect(DEVNET, host=devnet.url, manage_process=False):
        again, _ = deploy(devnet, tmp_path)  # same deployer, same nonces: same addresses
        assert again.d.addresses() == x.d.addresses()
        made = underwater_book(again, per_owner=1, first_sub=7)
        bot.wait_for("devnet reset detected", timeout=60)
        crash(again)
        wait_until(lambda: len(liquidated_counts(again)) == 8, 90, "8 liquidations on the new chain", bot)
        bot.wait_for("tracked 8 | open 8")
        output = bot.stop()
        assert liquidated_counts(again) == Counter(made)
    assert "liquidated 8 in 1 tx" in output  # the old chain's 16 accounts are gone from the index


def test_anvil_silverback__same_liquidator_run_by_silverback__liquidates_on_new_blocks(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(devnet, tmp_path)
        made = underwater_book(x, per_owner=2)
        bot = silverback_bot(devnet.url, deployment, tmp_path / "bot.db")
        bots.append(bot)
        bot.wait_for("Startup complete", timeout=90)
        crash(x)  # a new block: Silverback calls the handler, which runs one pass
        wait_until(lambda: len(liquidated_counts(x)) == 16, 90, "16 liquidations by the Silverback bot", bot)
        seen = liquidations(x)
        assert Counter((s.owner, s.sub) for s in seen) == Counter(made)
        assert {s.keeper for s in seen} == {accounts.test_accounts[BOT_ACCOUNT].address}
        bot.wait_for("liquidated 16 in 1 tx")


# ---------------------------------------------------------------- an RPC that can go down


class Proxy:
    """A TCP forwarder to Anvil that the test can take down (connections refused) and up."""

    def __init__(self, target_port: int):
        self.target, self.port = target_port, free_port()
        self.server: socket.socket | None = None
        self.open: list[socket.socket] = []

    def __enter__(self) -> "Proxy":
        self.up()
        return self

    def __exit__(self, *_: Any) -> None:
        self.down()

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        if self.server:
            try:
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in its thread
            except OSError:
                pass
            self.server.close()
            self.server = None
        for conn in self.open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self.open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
