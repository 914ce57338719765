"""LiquidationKeeper.liquidate_many when a liquidation fails: an account whose liquidation
reverts with a reason (a stale price in one of its markets) is skipped with a
LiquidationSkipped log and the batch goes on; one that fails without a reason (out of gas)
reverts the batch, so that no caller can skip an account by starving it of gas."""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex.chain import set_clock
from perpdex.deploy import contracts_project
from perpdex.model import WAD

ETH, BTC = 0, 1
CRASH = 2_860 * WAD  # 10 ETH long on 2,000 USD opened at 3,000 is liquidatable below ~2,874
STALE = "oracle: stale price"


@pytest.fixture
def keeper(system: Any) -> Any:
    return system.keeper


def crash_with_btc_stale(x: Any, oracle: Any) -> None:
    """Let every price age past max_price_age, then feed ETH alone down to CRASH (in steps
    within the jump limit): ETH is fresh, BTC stale."""
    set_clock(int(oracle.latest(BTC)[1]) + int(oracle.max_price_age()) + 1)
    current = x.price(ETH)
    while current != CRASH:
        current = max(CRASH, current * 3 // 4 + 1)
        x.set_price(ETH, current)


def skipped(receipt: Any, keeper: Any) -> list[tuple[str, int, str, str]]:
    return [(e.owner, e.sub, e.keeper, e.reason) for e in receipt.decode_logs(keeper.LiquidationSkipped)]


def test_liquidate_many__stale_market_account_in_the_middle__skipped_with_reason_others_liquidated(
        x, vault, keeper, oracle, open_position, trader, trader2, attacker, liquidator):
    open_position(trader, 10 * WAD, 2_000)
    open_position(attacker, 10 * WAD, 2_000)
    open_position(attacker, WAD // 1000, 0, market=BTC)  # a position in the market about to go stale
    open_position(trader2, 10 * WAD, 2_000)
    crash_with_btc_stale(x, oracle)
    batch = [trader, attacker, trader2]
    assert list(keeper.liquidatable(batch, [0, 0, 0])) == [True, True, True]  # views read the last price

    receipt = keeper.liquidate_many(batch, [0, 0, 0], sender=liquidator)

    assert receipt.return_value == 2  # only real liquidations count
    assert [(e.owner, e.sub) for e in receipt.decode_logs(vault.Liquidation)] == [(trader, 0), (trader2, 0)]
    assert skipped(receipt, keeper) == [(attacker.address, 0, liquidator.address, STALE)]
    assert list(keeper.liquidatable(batch, [0, 0, 0])) == [False, True, False]


def test_liquidate__stale_market__still_reverts_with_the_reason(x, keeper, oracle, open_position, attacker, liquidator):
    open_position(attacker, 10 * WAD, 2_000)
    open_position(attacker, WAD // 1000, 0, market=BTC)
    crash_with_btc_stale(x, oracle)
    with ape.reverts(STALE):
        keeper.liquidate(attacker, 0, sender=liquidator)


def test_liquidate_many__healthy_accounts__neither_counted_nor_reported_as_skipped(
        keeper, open_position, trader, liquidator):
    open_position(trader, WAD, 10_000)
    receipt = keeper.liquidate_many([trader], [0], sender=liquidator)
    assert receipt.return_value == 0 and skipped(receipt, keeper) == []


# ---------------------------------------------------------------- failures the vault never scripts


@pytest.fixture
def scripted(admin: Any, oracle: Any) -> tuple[Any, Any]:
    """(a ScriptedVault, a LiquidationKeeper on it): liquidate fails as scripted per owner."""
    project = contracts_project()
    vault = project.ScriptedVault.deploy(oracle, sender=admin)
    return vault, project.LiquidationKeeper.deploy(vault, sender=admin)


OK, REASON, SILENT, LONG_REASON = 0, 1, 2, 3


def test_liquidate_many__failure_without_a_reason__reverts_the_batch(scripted, trader, trader2, attacker, liquidator):
    vault, keeper = scripted
    vault.set_script(attacker, SILENT, sender=attacker)
    with ape.reverts("keeper: liquidation failed without a reason"):
        keeper.liquidate_many([trader, attacker, trader2], [0, 0, 0], sender=liquidator)
    vault.set_script(attacker, REASON, sender=attacker)
    receipt = keeper.liquidate_many([trader, attacker, trader2], [0, 0, 0], sender=liquidator)
    assert receipt.return_value == 2
    assert skipped(receipt, keeper) == [(attacker.address, 0, liquidator.address, "vault: scripted failure")]


def test_liquidate_many__reason_too_long_to_decode__skipped_with_a_fixed_reason(scripted, trader, attacker, liquidator):
    vault, keeper = scripted
    vault.set_script(attacker, LONG_REASON, sender=attacker)
    receipt = keeper.liquidate_many([attacker, trader], [4, 0], sender=liquidator)
    assert receipt.return_value == 1
    assert skipped(receipt, keeper) == [(attacker.address, 4, liquidator.address, "keeper: revert reason too long")]


def test_liquidate_many__starved_of_gas__reverts_never_skips(x, vault, keeper, open_position, trader, liquidator, chain):
    """Whatever gas the caller sends, the account is liquidated or the batch reverts: a
    liquidation that runs out of gas is never turned into a skip. Run on the EVM directly
    (the boa provider does not apply a transaction's gas limit)."""
    open_position(trader, 10 * WAD, 2_000)
    x.set_price(ETH, CRASH)
    env = chain.provider.env
    data = bytes(keeper.liquidate_many.encode_input([trader], [0]))
    starved = 0
    for gas in range(30_000, 400_000, 5_000):
        computation = env.execute_code(to_address=keeper.address, sender=liquidator.address, gas=gas, data=data)
        starved += bool(computation.is_error)
        # a skip would return 0 without an error, the account still liquidatable
        assert computation.is_error or vault.is_liquidatable(trader, 0) is False
        if not computation.is_error:
            break
    assert starved > 5 and not vault.is_liquidatable(trader, 0)
