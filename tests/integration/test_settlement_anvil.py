"""Two-step settlement on Anvil with the keepers as real processes: the price feeder writes
rounds and settles what each made due; the settler, killed with SIGKILL mid-batch and
restarted, settles everything exactly once; two settlers racing never fill anything twice;
`perpdex devnet`'s feeder starts and stops with the devnet."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ape import accounts, chain

from perpdex.chain import DEVNET, connect
from perpdex.deploy import deploy_system
from perpdex.devnet import start_feeder, stop_feeder, write_deployment
from perpdex.logs import EventDecoder
from perpdex.model import WAD
from perpdex.processes import feeder_process, settler_process, silverback_keeper, wait_until
from perpdex.sdk import Exchange

pytestmark = pytest.mark.anvil

SETTLER = 2  # test account of the settler processes (the feeder is the deployer, 0)
OTHER_SETTLER = 3
SETTLED, CANCELLED = 2, 3


def deploy(tmp_path: Path) -> tuple[Exchange, Path]:
    """A routed deployment (the default) with a funded pool."""
    admin, lp = accounts.test_accounts[0], accounts.test_accounts[1]
    x = Exchange(deploy_system(admin))
    x.add_liquidity(lp, x.tokens(2_000_000))
    return x, write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), tmp_path / "devnet.json")


def commit_book(x: Exchange, count: int) -> list[int]:
    """`count` small buys by traders 4..11 on their sub-accounts, committed, not settled."""
    owners = [accounts.test_accounts[i] for i in range(4, 12)]
    made = [(owners[i % len(owners)], i // len(owners)) for i in range(count)]
    for owner, sub in made:
        x.deposit(owner, x.tokens(2_000), sub=sub)
        x.fund(owner, x.tokens(10))
    return [x.order_id(x.trade(owner, 0, WAD // 10, sub=sub, settle=False)) for owner, sub in made]


def statuses(x: Exchange, ids: list[int]) -> Counter[int]:
    return Counter(int(x.order(i).status) for i in ids)


def settled_events(x: Exchange, from_block: int) -> list[dict[str, Any]]:
    """Every OrderSettled since `from_block`, from the node's logs."""
    decoder = EventDecoder([x.d.router])
    logs = chain.provider.web3.eth.get_logs({"address": str(x.d.router.address), "fromBlock": from_block})
    return [d[1] for log in logs if (d := decoder.decode(log)) is not None and d[0] == "OrderSettled"]


def test_feeder__writes_rounds_and_settles_what_they_made_due(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        start = int(chain.blocks.head.number) + 1
        ids = commit_book(x, 5)
        feeder = feeder_process(devnet.url, deployment, tmp_path / "feeder.db", interval=1.0, source="gbm")
        bots.append(feeder)
        wait_until(lambda: statuses(x, ids)[SETTLED] == 5, 60, "the feeder to settle 5 requests", feeder)
        output = feeder.stop()
        fills = {int(e["order_id"]): e for e in settled_events(x, start)}
        assert set(fills) == set(ids)
        for order_id in ids:
            o = x.order(order_id)
            assert o.status == SETTLED
        # the feeder settled all of them, in one batch or over a few rounds (as they became due)
        batches = re.findall(r"settled (\d+), cancelled (\d+) in block", output)
        assert sum(int(a) for a, _ in batches) == 5 and all(b == "0" for _, b in batches), output
        assert "round 1 in block" in output
        # the fills are at a round the feeder wrote (gbm moves the price every round)
        assert all(int(e["fill_price"]) > 0 for e in fills.values())


def test_settler__killed_mid_batch_and_restarted__everything_settled_once(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        start = int(chain.blocks.head.number) + 1
        ids = commit_book(x, 40)
        x.next_round()  # their settlement round
        db = tmp_path / "settler.db"
        first = settler_process(devnet.url, deployment, db, SETTLER, interval=0.2)
        bots.append(first)
        first.wait_for("sending settle_many")
        first.kill9()  # mid-batch: the batch may or may not have landed
        second = settler_process(devnet.url, deployment, db, SETTLER, interval=0.2)
        bots.append(second)
        wait_until(lambda: statuses(x, ids)[SETTLED] == 40, 60, "40 settled", second)
        second.stop()
        fills = Counter(int(e["order_id"]) for e in settled_events(x, start))
        assert fills == Counter(ids)  # each exactly once


def test_two_settlers_racing__never_fill_twice(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        start = int(chain.blocks.head.number) + 1
        ids = commit_book(x, 30)
        x.next_round()
        for account, name in ((SETTLER, "a.db"), (OTHER_SETTLER, "b.db")):
            bots.append(settler_process(devnet.url, deployment, tmp_path / name, account, interval=0.1))
        wait_until(lambda: statuses(x, ids)[SETTLED] == 30, 60, "30 settled", bots[0])
        for bot in bots:
            bot.stop()
        fills = Counter(int(e["order_id"]) for e in settled_events(x, start))
        assert fills == Counter(ids)
        assert statuses(x, ids) == Counter({SETTLED: 30})


def test_silverback_settler__settles_on_new_blocks(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        start = int(chain.blocks.head.number) + 1
        ids = commit_book(x, 10)
        bot = silverback_keeper("perpdex.keepers.silverback_settler", devnet.url, deployment, tmp_path / "sb.db", SETTLER)
        bots.append(bot)
        bot.wait_for("Startup complete", timeout=120)
        x.next_round()  # a new block with the settlement round: the bot's pass settles them
        wait_until(lambda: statuses(x, ids)[SETTLED] == 10, 90, "Silverback's settler to settle 10", bot)
        assert Counter(int(e["order_id"]) for e in settled_events(x, start)) == Counter(ids)


def test_devnet_feeder__started_with_the_devnet_and_stopped_with_it(devnet, tmp_path):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        pid_file, log = tmp_path / "feeder.pid", tmp_path / "feeder.log"
        start_feeder(devnet.port, deployment, interval=1.0, pid_file=pid_file, log_file=log)
        try:
            rounds = int(x.d.oracle.latest_round(0))
            wait_until(lambda: int(x.d.oracle.latest_round(0)) >= rounds + 2, 60, "two feeder rounds")
            (order_id,) = commit_book(x, 1)
            wait_until(lambda: int(x.order(order_id).status) == SETTLED, 60, "the devnet feeder to settle a request")
        finally:
            assert stop_feeder(pid_file)
        assert not pid_file.exists() and "feeder:" in log.read_text()
        stopped_at = int(x.d.oracle.latest_round(0))
        import time
        time.sleep(3)
        assert int(x.d.oracle.latest_round(0)) <= stopped_at + 1  # no more rounds once stopped
