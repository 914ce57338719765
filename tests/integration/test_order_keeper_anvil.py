"""The order keeper (`perpdex keeper orders`) as a real process on Anvil: a gap through a stop
and a stop-loss triggers both at the price after the gap, they fill at the round after that
(the SL's take-profit leg cancelled by OCO), a limit far away stays open, a stop-loss whose
position was closed is pruned; killed with SIGKILL mid-pass and restarted on its SQLite
index, it triggers every order exactly once and never sends a transaction that does nothing;
`ape run keeper orders` triggers and the Silverback bot settles on the next round's block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ape import accounts, chain

from perpdex.chain import DEVNET, connect
from perpdex.conditional import CANCELLED, FILLED, LIMIT, OPEN, STOP, STOP_LOSS, TAKE_PROFIT, TRIGGERED
from perpdex.deploy import deploy_system
from perpdex.devnet import write_deployment
from perpdex.logs import EventDecoder
from perpdex.model import WAD
from perpdex.processes import orders_process, wait_until
from perpdex.sdk import Exchange

pytestmark = pytest.mark.anvil

KEEPER = 2  # test account of the keeper processes (the deployer, 0, feeds prices)
ETH = 0
GAP = 2_600 * WAD  # from 3,000: through the SL at 2,800 and the stop at 2,900, not the limit at 2,000


def deploy(tmp_path: Path) -> tuple[Exchange, Path]:
    admin, lp = accounts.test_accounts[0], accounts.test_accounts[1]
    x = Exchange(deploy_system(admin))
    x.add_liquidity(lp, x.tokens(2_000_000))
    return x, write_deployment(x.d.to_json(chain.chain_id, chain.blocks.head.number), tmp_path / "devnet.json")


def router_events(x: Exchange, from_block: int, name: str) -> list[dict[str, Any]]:
    decoder = EventDecoder([x.d.router])
    logs = chain.provider.web3.eth.get_logs({"address": str(x.d.router.address), "fromBlock": from_block})
    return [d[1] for log in logs if (d := decoder.decode(log)) is not None and d[0] == name]


def keeper_receipts(from_block: int) -> list[Any]:
    """Every transaction the keeper account sent since `from_block`, as receipts."""
    w3, me = chain.provider.web3, accounts.test_accounts[KEEPER].address
    found = []
    for number in range(from_block, int(w3.eth.block_number) + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] == me:
                found.append(w3.eth.get_transaction_receipt(tx["hash"]))
    return found


def test_order_keeper__gap_through_a_stop__trigger_then_fill_at_the_next_round_oco_and_prune(devnet, tmp_path):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        alice, bob, carol, dave = (accounts.test_accounts[i] for i in (4, 5, 6, 7))
        for who in (alice, bob, carol, dave):
            x.deposit(who, x.tokens(10_000))
        x.trade(alice, ETH, 1.0)
        x.trade(dave, ETH, 1.0)
        tp = x.place_order(alice, ETH, "take-profit", 3_300.0)  # the whole position
        sl = x.place_order(alice, ETH, "stop-loss", 2_800.0, oco_with=tp)
        limit = x.place_order(bob, ETH, "limit", 2_000.0, size=0.5)
        stop = x.place_order(carol, ETH, "stop", 2_900.0, size=-0.5)
        dead = x.place_order(dave, ETH, "stop-loss", 2_500.0)
        x.close(dave, ETH)  # its SL has nothing left to reduce
        start = int(chain.blocks.head.number) + 1
        x.set_price(ETH, GAP)
        db = tmp_path / "orders.db"

        first = orders_process(devnet.url, deployment, db, KEEPER, once=True).finish()
        assert "sent prune_many of order(s) " + str(dead) in first
        assert {int(x.conditional(i).status) for i in (sl, stop)} == {TRIGGERED}
        assert int(x.conditional(dead).status) == CANCELLED
        triggered = {int(e["order_id"]): e for e in router_events(x, start, "ConditionalTriggered")}
        assert set(triggered) == {sl, stop} and {int(e["price"]) for e in triggered.values()} == {GAP}
        assert "open 2 | triggered 2 | done 1" in first  # TP and limit open; SL and stop triggered; the prune

        round_block = int(x.next_round().block_number)  # the settlement round, at the gap's price
        second = orders_process(devnet.url, deployment, db, KEEPER, once=True).finish()
        assert "sent settle_many of order(s) " in second
        assert int(x.conditional(sl).status) == FILLED and int(x.conditional(stop).status) == FILLED
        fills = {int(e["order_id"]): e for e in router_events(x, start, "OrderSettled") if int(e["kind"]) >= 4}
        assert set(fills) == {sl, stop}
        round_time = int(chain.blocks[round_block].timestamp)
        for order_id in (sl, stop):
            assert triggered[order_id]["settle_after"] <= round_time  # filled at the round after the trigger
            assert abs(int(fills[order_id]["fill_price"]) - GAP) < GAP // 100  # its price, with the premium
        assert x.position(alice, 0, ETH).size == 0 and x.position(carol, 0, ETH).size == -WAD // 2
        cancels = {int(e["order_id"]): e["reason"] for e in router_events(x, start, "OrderCancelled")}
        assert cancels == {dead: "router: position closed or flipped", tp: "router: OCO leg filled"}
        assert int(x.conditional(tp).status) == CANCELLED and int(x.conditional(limit).status) == OPEN
        assert "open 1 | triggered 0 | done 4" in second  # the limit open; the rest filled, cancelled, pruned
        assert all(int(r["status"]) == 1 for r in keeper_receipts(start))


def test_order_keeper__killed_mid_pass_and_restarted__each_order_triggered_once(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        owners = [accounts.test_accounts[i] for i in (4, 5, 6)]
        ids = [x.place_order(owners[i % 3], ETH, "stop", 2_900.0, size=-0.1, sub=i // 3) for i in range(24)]
        start = int(chain.blocks.head.number) + 1
        x.set_price(ETH, GAP)
        db = tmp_path / "orders.db"
        first = orders_process(devnet.url, deployment, db, KEEPER, max_batch=2)  # 12 trigger_many of 2
        bots.append(first)
        first.wait_for("sent trigger_many")
        first.kill9()  # mid-pass: some triggers sent, others not yet
        killed_at = len(router_events(x, start, "ConditionalTriggered"))
        second = orders_process(devnet.url, deployment, db, KEEPER, max_batch=2)
        bots.append(second)
        wait_until(lambda: second.saw("open 0 | triggered 24"), 60, "24 triggered", second)
        second.stop()
        triggers = [int(e["order_id"]) for e in router_events(x, start, "ConditionalTriggered")]
        assert sorted(triggers) == sorted(ids)  # each exactly once
        assert killed_at >= 1  # the first process had sent (and Anvil mined) some before its kill
        receipts = keeper_receipts(start)
        assert len(receipts) == 12 and all(int(r["status"]) == 1 for r in receipts)  # no transaction wasted
        assert "(at block -1)" not in second.text()  # it resumed from the index


def test_order_keeper__as_an_ape_script_and_under_silverback(devnet, tmp_path, bots):
    from test_ape_scripts_anvil import ape_run  # tests/integration is on sys.path (rootdir-less test dirs)

    from perpdex.processes import silverback_keeper

    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = deploy(tmp_path)
        carol = accounts.test_accounts[6]
        x.deposit(carol, x.tokens(10_000))
        first, second = (x.place_order(carol, ETH, "stop", 2_900.0, size=-0.5, sub=0) for _ in range(2))
        x.set_price(ETH, GAP)
        # `ape run keeper orders --once`: one pass triggers both (their round does not exist yet)
        records = ape_run("keeper", "orders", "--account", f"TEST::{KEEPER}", "--deployment", str(deployment),
                          "--log-format", "json", "--once", "--db", str(tmp_path / "ape.db"), host=devnet.url)
        assert records[0]["action"] == "started" and records[-1]["action"] == "stopped"
        assert sorted(o for r in records if r["action"] == "mined" for o in r["fields"]["triggered"]) == [first, second]
        assert {int(x.conditional(i).status) for i in (first, second)} == {TRIGGERED}
        # under Silverback (its own index): the next round's block settles both in one settle_many
        bot = silverback_keeper("perpdex.keepers.silverback_orders", devnet.url, deployment, tmp_path / "sb.db", KEEPER)
        bots.append(bot)
        bot.wait_for("Startup complete", timeout=120)
        x.next_round()
        wait_until(lambda: {int(x.conditional(i).status) for i in (first, second)} == {FILLED}, 90,
                   "Silverback's order keeper to settle both", bot)
        assert x.position(carol, 0, ETH).size == -WAD
