"""The liquidator bot's logic, in process on ethereum:local:test (py-evm: it has eth_getLogs,
which the boa provider does not): indexing from events, the checkpoint surviving a restart,
the confirmations window across a reorg, gas-sized batches, an account of a stale market
skipped and backed off while the others are liquidated, ordering by risk, the dust rule, the
send journal after a crash, and a reset. The same bot as a real process on Anvil:
tests/integration/test_liquidator_anvil.py; its pure decisions: test_liquidation_policy.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from ape import accounts, chain, networks

from perpdex.deploy import deploy_system
from perpdex.keepers.index import Account, AccountIndex, PositionSeen
from perpdex.keepers.liquidator import Liquidator, liquidations
from perpdex.keepers.liquidation_policy import gwei
from perpdex.model import WAD
from perpdex.sdk import Exchange

CRASH = 2_770 * WAD  # 1 ETH long on 300 USD: partial liquidation


@pytest.fixture
def fresh() -> Iterator[Exchange]:
    """A deployment on py-evm with 6 accounts (3 owners x 2 subs), each 1 ETH long on 300 USD."""
    with networks.parse_network_choice("ethereum:local:test"):
        admin, lp = accounts.test_accounts[0], accounts.test_accounts[1]
        x = Exchange(deploy_system(admin, atomic_trading=True))
        x.add_liquidity(lp, x.tokens(1_000_000))
        for owner in accounts.test_accounts[5:8]:
            for sub in (0, 1):
                x.deposit(owner, x.tokens(300), sub=sub)
                x.trade(owner, 0, WAD, sub=sub)
        yield x


def bot(x: Exchange, db: Path, lines: list[str], **kw: Any) -> Liquidator:
    return Liquidator(x, accounts.test_accounts[2], AccountIndex(db), report=lines.append, **kw)


def test_bot__indexes_from_events__checkpoint_survives_a_restart(fresh, tmp_path):
    lines: list[str] = []
    first = bot(fresh, tmp_path / "i.db", lines, confirmations=0)
    assert first.step() == 0
    assert first.metrics.open == 6 and first.metrics.liquidatable == 0
    head = chain.blocks.head.number
    assert first.index.last_block() == head

    restarted = bot(fresh, tmp_path / "i.db", lines, confirmations=0)
    assert restarted.scan() == 0  # nothing new: it resumed from the checkpoint
    assert len(restarted.index.open_accounts()) == 6
    fresh.close(accounts.test_accounts[5], 0, sub=0)  # a close is an event too
    assert restarted.scan() == 1
    assert len(restarted.index.open_accounts()) == 5


def test_bot__liquidates_in_batches_sized_by_gas(fresh, tmp_path):
    lines: list[str] = []
    liquidator = bot(fresh, tmp_path / "i.db", lines, gas_budget=400_000)  # ~3 liquidations a batch
    liquidator.step()
    fresh.set_price(0, CRASH)
    assert liquidator.step() == 6
    sent = [line for line in lines if line.startswith("sent batch")]
    assert len(sent) >= 2  # split: one batch of 6 would be over the budget
    seen = liquidations(fresh)
    assert sorted((s.owner, s.sub) for s in seen) == sorted((a.owner, a.sub) for a in liquidator.open_accounts())
    assert liquidator.index.totals().liquidated == 6 and liquidator.index.totals().mined == len(sent)
    before = len(lines)
    assert liquidator.step() == 0  # all healthy again: nothing more is sent
    assert not any(line.startswith("sent") for line in lines[before:])


def test_bot__confirmations__checkpoint_stays_behind__a_reorged_tail_leaves_nothing(fresh, tmp_path):
    lines: list[str] = []
    liquidator = bot(fresh, tmp_path / "i.db", lines, confirmations=3)
    liquidator.step()
    assert liquidator.index.last_block() == chain.blocks.head.number - 3
    assert liquidator.metrics.open == 6  # the unconfirmed blocks' positions count (the overlay)
    before_fork = chain.snapshot()
    newcomer = accounts.test_accounts[8]
    fresh.deposit(newcomer, fresh.tokens(300))
    fresh.trade(newcomer, 0, WAD)
    liquidator.step()
    assert liquidator.metrics.open == 7
    chain.restore(before_fork)  # the newcomer's blocks are reorged out...
    chain.mine(3)  # ...by a longer fork without them
    liquidator.step()
    assert liquidator.metrics.open == 6 and Account(newcomer.address, 0) not in liquidator.open_accounts()
    assert not any("reset detected" in line for line in lines)  # within the window: no re-index


def attacker_in_a_stale_market(x: Exchange) -> Account:
    """An account 1 ETH long and a little BTC long on 300 USD, then every price ages past
    max_price_age and only ETH is fed again (at CRASH): BTC is stale, every account liquidatable."""
    attacker = accounts.test_accounts[8]
    x.deposit(attacker, x.tokens(300))
    x.trade(attacker, 0, WAD)
    x.trade(attacker, 1, WAD // 1000)
    chain.mine(timestamp=chain.blocks.head.timestamp + int(x.d.oracle.max_price_age()) + 1)
    x.set_price(0, CRASH)
    return Account(attacker.address, 0)


def test_bot__account_in_a_stale_market__skipped_with_reason__others_liquidated__backed_off(fresh, tmp_path):
    lines: list[str] = []
    liquidator = bot(fresh, tmp_path / "i.db", lines, confirmations=0)
    liquidator.step()
    attacker = attacker_in_a_stale_market(fresh)
    assert liquidator.step() == 6  # the round went on past the attacker
    assert len(liquidations(fresh)) == 6
    skip = liquidator.index.skips()[attacker]
    assert (skip.reason, skip.failures) == ("oracle: stale price", 1)
    assert any(line.startswith(f"skipped {attacker.owner}/0: oracle: stale price (failure 1") for line in lines)

    nonce = accounts.test_accounts[2].nonce
    liquidator.step()  # its backoff has not run out: not tried, nothing sent
    assert accounts.test_accounts[2].nonce == nonce and liquidator.metrics.backed_off == 1
    chain.mine(skip.retry_at - chain.blocks.head.number)
    liquidator.step()  # simulated alone (free), still failing: skipped again, twice as long to wait
    again = liquidator.index.skips()[attacker]
    assert again.failures == 2 and again.retry_at == chain.blocks.head.number + 2  # 1, 2, 4, ... blocks
    assert accounts.test_accounts[2].nonce == nonce  # the retry cost no transaction
    assert any(line.startswith(f"skipped {attacker.owner}/0: oracle: stale price (failure 2") for line in lines)

    chain.mine(again.retry_at - chain.blocks.head.number)
    fresh.set_price(1, fresh.price(1))  # BTC fed again
    assert liquidator.step() == 1  # its backoff over and its liquidation working: sent
    assert attacker not in liquidator.index.skips()  # a liquidation clears the record


def test_bot__liquidates_the_largest_shortfall_first(fresh, tmp_path):
    lines: list[str] = []
    liquidator = bot(fresh, tmp_path / "i.db", lines)
    liquidator.step()
    fresh.set_price(0, CRASH)
    by_address = sorted(liquidator.open_accounts(), key=lambda a: (a.owner, a.sub))
    # the lower the address, the larger the top-up (6 USD down to 1; each is ~10.75 USD short)
    for i, a in enumerate(by_address):
        fresh.deposit(next(o for o in accounts.test_accounts if o.address == a.owner), fresh.tokens(6 - i), sub=a.sub)
    assert liquidator.step() == 6
    assert [Account(s.owner, s.sub) for s in liquidations(fresh)] == by_address[::-1]


def test_bot__dust__not_worth_its_gas__left_alone_unless_heading_for_bad_debt(fresh, tmp_path):
    lines: list[str] = []
    # at 10,000 gwei, 150,000 gas cost ~4,000 USD: more than any of these liquidations pays (~14 USD)
    liquidator = bot(fresh, tmp_path / "i.db", lines, gas_price=gwei(10_000))
    liquidator.step()
    fresh.set_price(0, CRASH)
    nonce = accounts.test_accounts[2].nonce
    assert liquidator.step() == 0 and accounts.test_accounts[2].nonce == nonce
    assert liquidator.metrics.dust == 6 and sum(line.startswith("dust: not liquidating") for line in lines) == 6
    liquidator.step()
    assert sum(line.startswith("dust: not liquidating") for line in lines) == 6  # reported once each
    liquidator.bad_debt_equity = 1_000 * WAD  # every equity (~60 USD) is below it: liquidated at a loss
    assert liquidator.step() == 6


def test_bot__crash_after_journal_before_broadcast__dropped_then_sent_once(fresh, tmp_path, monkeypatch):
    lines: list[str] = []
    crashing = bot(fresh, tmp_path / "i.db", lines)
    crashing.step()
    fresh.set_price(0, CRASH)

    class Killed(BaseException):
        pass

    def die(*_: Any) -> None:
        raise Killed()

    monkeypatch.setattr(type(crashing.w3.eth), "send_raw_transaction", die)
    with pytest.raises(Killed):
        crashing.step()
    monkeypatch.undo()
    assert len(crashing.index.in_flight()) == 1  # journalled, never broadcast

    nonce = accounts.test_accounts[2].nonce
    restarted = bot(fresh, tmp_path / "i.db", lines)
    assert restarted.step() == 6
    assert any("never broadcast (dropped)" in line for line in lines)
    assert len(liquidations(fresh)) == 6 and accounts.test_accounts[2].nonce == nonce + 1  # one batch, once


def test_bot__chain_went_back__index_rebuilt(fresh, tmp_path):
    lines: list[str] = []
    liquidator = bot(fresh, tmp_path / "i.db", lines)
    liquidator.step()
    ghost = ("0x" + "11" * 20, 3)
    # the index remembers an account and blocks from a longer chain than this one (as after a
    # snapshot revert or a devnet restarted with the same genesis)
    liquidator.index.record_positions([PositionSeen(ghost[0], ghost[1], 0, WAD)], chain.blocks.head.number + 50)
    assert len(liquidator.open_accounts()) == 7
    liquidator.step()
    assert any("devnet reset detected (head went back" in line for line in lines)
    assert liquidator.metrics.open == 6 and liquidator.index.last_block() == chain.blocks.head.number - 2


def test_bot__json_log__every_action_a_line_with_its_fields(fresh, tmp_path):
    """`perpdex keeper liquidator --log-format json`: the same report, each line a JSON object."""
    import json

    from perpdex.keepers.common import json_report

    records: list[dict[str, Any]] = []
    report = json_report("liquidator", lambda text: records.append(json.loads(text)))
    liquidator = Liquidator(fresh, accounts.test_accounts[2], AccountIndex(tmp_path / "i.db"), report=report)
    liquidator.step()
    fresh.set_price(0, CRASH)
    assert liquidator.step() == 6
    actions = [r["action"] for r in records]
    assert actions[0] == "index_new" and "batch_sent" in actions and "batch_mined" in actions
    assert {r["keeper"] for r in records} == {"liquidator"}
    sent = next(r["fields"] for r in records if r["action"] == "batch_sent")
    mined = next(r["fields"] for r in records if r["action"] == "batch_mined")
    assert len(sent["accounts"]) == 6 and sent["simulated_gas"] > 0 and mined["tx"] == sent["tx"]
    assert mined["status"] == "mined" and mined["liquidated"] == 6 and mined["gas"] > 0
    status = [r["fields"] for r in records if r["action"] == "status"][-1]
    assert status["liquidated"] == 6 and status["transactions"] == 1 and status["rewards_usd"] > 0
