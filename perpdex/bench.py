"""Gas benchmark: every user action on a realistic state, measured from real receipts.

Run on `ethereum:local:test` (py-evm) or Anvil: the boa provider leaves out the 21,000
intrinsic gas. Between actions time moves a minute, so funding accrual runs as it would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from perpdex.deploy import deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange

TOKEN = 10**6


@dataclass
class GasRow:
    action: str
    gas: int
    target: int | None

    @property
    def ok(self) -> bool:
        return self.target is None or self.gas <= self.target


def gas_rows(progress: Callable[[str], None] = lambda _: None) -> list[GasRow]:
    """Deploy, warm the markets up with other traders, then measure one trader's lifecycle."""
    from ape import accounts, chain

    admin, lp, lp2, other, trader = (accounts.test_accounts[i] for i in range(5))
    x = Exchange(deploy_system(admin))
    progress("deployed")
    rows: list[GasRow] = []

    def measure(action: str, target: int | None, send: Callable[[], Any]) -> None:
        chain.pending_timestamp += 60
        receipt = send()
        rows.append(GasRow(action, int(receipt.gas_used), target))
        progress(action)

    x.add_liquidity(lp, 1_000_000 * TOKEN)
    x.fund(lp2, 100_000 * TOKEN)
    x.deposit(other, 100_000 * TOKEN)
    # A live market: open interest on both markets, funding already accrued, so the
    # market's aggregate slots are non-zero (a first-ever write would cost 17,100 more).
    x.trade(other, 0, 20 * WAD)
    x.trade(other, 1, -WAD)
    chain.pending_timestamp += 600
    x.trade(other, 0, WAD)
    x.trade(other, 1, -WAD // 10)
    x.fund(trader, 20_000 * TOKEN)

    measure("deposit", 70_000, lambda: x.vault.deposit(0, 10_000 * TOKEN, sender=trader))
    measure("open (first position)", 150_000, lambda: x.trade(trader, 0, 10 * WAD))
    measure("increase", 100_000, lambda: x.trade(trader, 0, 5 * WAD))
    measure("reduce", 100_000, lambda: x.trade(trader, 0, -5 * WAD))
    measure("open 2nd market (cross)", 150_000, lambda: x.trade(trader, 1, -WAD // 10))
    measure("close (2 markets open)", 100_000, lambda: x.close(trader, 1))
    measure("close", 100_000, lambda: x.close(trader, 0))
    measure("withdraw", 70_000, lambda: x.vault.withdraw(0, 1_000 * TOKEN, sender=trader))
    measure("deposit (again)", 70_000, lambda: x.vault.deposit(0, 1_000 * TOKEN, sender=trader))
    measure("add liquidity", None, lambda: x.vault.add_liquidity(100_000 * TOKEN, sender=lp2))
    measure("remove liquidity", None, lambda: x.vault.remove_liquidity(x.vault.lp_shares(lp2) // 2, sender=lp2))
    measure("poke (funding accrual)", 30_000, lambda: x.vault.poke(0, sender=other))
    return rows
