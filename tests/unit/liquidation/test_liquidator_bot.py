"""The liquidator bot's logic, in process on ethereum:local:test (py-evm: it has eth_getLogs,
which the boa provider does not): indexing from events, the checkpoint surviving a restart,
gas-sized batches, simulation before sending, the send journal after a crash, and a reset.
The same bot as a real process on Anvil: tests/integration/test_liquidator_anvil.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from ape import accounts, chain, networks

from perpdex.deploy import deploy_system
from perpdex.keepers.index import AccountIndex, PositionSeen
from perpdex.keepers.liquidator import Liquidator, liquidations
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
    first = bot(fresh, tmp_path / "i.db", lines)
    assert first.step() == 0
    assert first.metrics.open == 6 and first.metrics.liquidatable == 0
    head = chain.blocks.head.number
    assert first.index.last_block() == head

    restarted = bot(fresh, tmp_path / "i.db", lines)
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
    assert sorted((s.owner, s.sub) for s in seen) == sorted((a.owner, a.sub) for a in liquidator.index.open_accounts())
    assert liquidator.index.totals().liquidated == 6 and liquidator.index.totals().mined == len(sent)
    before = len(lines)
    assert liquidator.step() == 0  # all healthy again: nothing more is sent
    assert not any(line.startswith("sent") for line in lines[before:])


def test_bot__stale_price__simulated_and_not_sent(fresh, tmp_path):
    lines: list[str] = []
    liquidator = bot(fresh, tmp_path / "i.db", lines)
    liquidator.step()
    fresh.set_price(0, CRASH)
    chain.mine(timestamp=chain.blocks.head.timestamp + 2 * 3600)  # the crash price goes stale
    nonce = accounts.test_accounts[2].nonce
    assert liquidator.step() == 0
    assert accounts.test_accounts[2].nonce == nonce  # nothing was sent
    assert any("would revert" in line and "stale" in line for line in lines)


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
    assert len(liquidator.index.open_accounts()) == 7
    liquidator.step()
    assert any("devnet reset detected (head went back" in line for line in lines)
    assert liquidator.metrics.open == 6 and liquidator.index.last_block() == chain.blocks.head.number
