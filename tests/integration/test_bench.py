"""`perpdex bench` in small: trade gas does not grow with the open positions, and every
liquidation row is measured on a liquidation of the kind it names.

On the boa provider receipts leave out the 21,000 intrinsic gas; neither check needs it.
"""

import pytest

from perpdex.bench import BATCH_TARGET, FLAT_TOLERANCE, LIQUIDATION_TARGET, funding_flatness, is_flat, liquidation_rows
from perpdex.bench_live import liquidator_rate


def test_funding_flatness__trade_gas_at_5_positions_within_2_percent_of_1():
    one, five = funding_flatness(counts=(1, 5))

    assert (one.positions, five.positions) == (1, 5)
    assert abs(five.increase_gas - one.increase_gas) <= one.increase_gas * FLAT_TOLERANCE / 100
    assert abs(five.reduce_gas - one.reduce_gas) <= one.reduce_gas * FLAT_TOLERANCE / 100
    assert one.poke_gas > 0 and five.poke_gas > 0
    assert is_flat([one, five])


def test_liquidation_rows__every_kind_measured__the_batch_liquidates_all_3():
    # liquidation_rows raises when a liquidation is not of the kind its row names
    # (partial, full, 2 markets, bad debt covered by insurance) or the batch skips an account
    rows = {row.action: row for row in liquidation_rows(batch=3)}

    assert list(rows) == [
        "liquidate: partial (1 position)",
        "liquidate_many: 3 partial (total)",
        "liquidate_many: 3 partial (per account)",
        "liquidate: full (1 position)",
        "liquidate: full, cross-margin (2 markets)",
        "liquidate: bad debt (insurance covers)",
    ]
    assert all(row.gas > 21_000 for row in rows.values())
    total, per_account = rows["liquidate_many: 3 partial (total)"], rows["liquidate_many: 3 partial (per account)"]
    assert total.liquidated == per_account.liquidated == 3 and per_account.gas == total.gas // 3
    assert (total.target, per_account.target) == (None, BATCH_TARGET)
    assert rows["liquidate: full, cross-margin (2 markets)"].gas > rows["liquidate: full (1 position)"].gas
    assert rows["liquidate: partial (1 position)"].target == LIQUIDATION_TARGET


@pytest.mark.anvil
def test_liquidator_rate__16_accounts_on_anvil__all_cleared_in_one_batch():
    rate = liquidator_rate(per_owner=2)

    assert rate.accounts == 16 and rate.transactions == 1  # one liquidate_many of 16
    assert rate.seconds > 0 and rate.per_second == pytest.approx(16 / rate.seconds, rel=0.05)
    assert "liquidated 16 in 1 tx" in rate.status


def test_router_rows__commit_settle_and_a_batch_measured__vault_keeps_its_room():
    from perpdex.bench import SIZE_LIMIT, VAULT_ROOM, contract_sizes, router_rows

    rows = {row.action: row for row in router_rows(batch=3)}

    assert list(rows) == [
        "commit_order", "settle (one trade)", "commit + settle", "commit_add_liquidity",
        "settle (add liquidity)", "place_conditional (take-profit)", "trigger (stop-loss)",
        "settle (triggered stop-loss)", "prune (dead take-profit)", "trigger_many: 20 (per order)",
        "prune_many: 20 (per order)", "settle_many: 3 trades (total)", "settle_many: 3 trades (per order)",
    ]
    assert rows["commit + settle"].gas == rows["commit_order"].gas + rows["settle (one trade)"].gas
    # a batch shares the call's 21,000 and the reward's transfer: cheaper per order than one alone
    assert rows["trigger_many: 20 (per order)"].gas < rows["trigger (stop-loss)"].gas
    assert rows["prune_many: 20 (per order)"].gas < rows["prune (dead take-profit)"].gas
    assert rows["settle_many: 3 trades (per order)"].gas == rows["settle_many: 3 trades (total)"].gas // 3
    sizes = contract_sizes()
    assert SIZE_LIMIT - sizes["MarginVault"] >= VAULT_ROOM  # SPEC 16: 2 KB free in the vault
    assert all(0 < size <= SIZE_LIMIT for size in sizes.values())
