"""EventLog.add_range on ethereum:local:test (py-evm has eth_getLogs, boa does not): the
events read from the node's logs equal the ones decoded from the receipts."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from ape import accounts, chain, networks

from perpdex.deploy import deploy_system
from perpdex.model import WAD
from perpdex.report import EventLog
from perpdex.sdk import Exchange


@pytest.fixture
def exact() -> Iterator[tuple[Exchange, EventLog, int]]:
    """A deployment on py-evm, with a few actions' receipts fed to an EventLog."""
    with networks.parse_network_choice("ethereum:local:test"):
        admin, lp, trader, keeper = (accounts.test_accounts[i] for i in (0, 1, 5, 6))
        x = Exchange(deploy_system(admin, atomic_trading=True))
        start = int(chain.blocks.head.number) + 1
        log = EventLog(x)
        log.add_receipt(x.add_liquidity(lp, x.tokens(1_000_000)))
        log.add_receipt(x.deposit(trader, x.tokens(300)))
        log.add_receipt(x.trade(trader, 0, WAD))
        chain.mine(timestamp=int(chain.blocks.head.timestamp) + 600)
        log.add_receipt(x.set_price(0, 2_770 * WAD))
        log.add_receipt(x.d.keeper.liquidate(trader, 0, sender=keeper))
        yield x, log, start


def test_add_range__same_events_as_receipts__and_deduplicated(exact):
    x, by_receipts, start = exact
    by_logs = EventLog(x)
    assert by_logs.add_range(start) == len(by_receipts) > 0
    assert by_logs.events == by_receipts.events
    assert {"LiquidityAdded", "Deposit", "PositionModified", "PriceUpdated", "Liquidation"} <= {
        e.name for e in by_logs.events}
    assert by_logs.add_range(start) == 0  # the same range again adds nothing


def test_add_range__on_boa__clear_error(x: Any):
    with pytest.raises(RuntimeError, match="needs eth_getLogs"):
        EventLog(x).add_range(0)
