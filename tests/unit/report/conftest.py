"""A small real history on boa, every receipt fed to an EventLog: deposits, trades on both
markets, funding over two hours, a withdrawal (settles funding), then an ETH crash with one
partial and one full liquidation (with bad debt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from perpdex.chain import move_time
from perpdex.model import WAD
from perpdex.report import EventLog, Sampler
from perpdex.sdk import Exchange

CRASH = 2_770 * WAD  # a 1 ETH long on 300 USD: partial; on 200 USD: full, with bad debt


@dataclass
class History:
    x: Exchange
    log: EventLog
    sampler: Sampler
    receipts: list[Any] = field(default_factory=list)
    accounts: list[tuple[Any, int]] = field(default_factory=list)

    def send(self, receipt: Any) -> Any:
        self.receipts.append(receipt)
        self.log.add_receipt(receipt)
        return receipt

    def deposit(self, who: Any, usd: int, sub: int = 0) -> None:
        self.x.fund(who, self.x.tokens(usd))  # mint + approve: token events only, not the deployment's
        self.send(self.x.vault.deposit(sub, self.x.tokens(usd), sender=who))
        if (who, sub) not in self.accounts:
            self.accounts.append((who, sub))

    def trade(self, who: Any, market: int, size: int, sub: int = 0) -> None:
        self.send(self.x.trade(who, market, size, sub=sub))

    def hour(self) -> None:
        move_time(3600)
        self.send(self.x.refresh_prices())
        self.sampler.sample()


@pytest.fixture
def history(x: Exchange, trader: Any, trader2: Any, attacker: Any, liquidator: Any) -> History:
    h = History(x, EventLog(x), Sampler(x))
    h.sampler.sample()
    h.deposit(trader, 10_000)
    h.deposit(trader2, 10_000)
    h.trade(trader, 0, 2 * WAD)
    h.trade(trader, 1, -WAD // 10)
    h.trade(trader2, 0, -WAD // 2)
    h.hour()
    h.trade(trader, 0, WAD // 2)  # settles ETH funding into PositionModified.funding
    h.hour()
    h.send(x.vault.withdraw(0, x.tokens(100), sender=trader2))  # settles funding: FundingSettled
    h.deposit(attacker, 300, sub=0)
    h.deposit(attacker, 200, sub=1)
    h.trade(attacker, 0, WAD, sub=0)
    h.trade(attacker, 0, WAD, sub=1)
    h.sampler.sample()
    h.send(x.set_price(0, CRASH))
    h.send(x.d.keeper.liquidate(attacker, 0, sender=liquidator))
    h.send(x.d.keeper.liquidate(attacker, 1, sender=liquidator))
    h.sampler.sample()
    h.hour()
    return h
