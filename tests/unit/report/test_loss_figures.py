"""The report's loss-waterfall figures (issue 17, SPEC 14) from events alone: bad debt split
between the insurance fund, the pool (within its loss cap) and ADL; ADL'd notional and what
it recovered and what it did not; profit the pool's pro-rata share cut and payments capped at
its cash; and the check that LPs bear at most 1% of the pool (absorbed within the loss cap,
plus advanced to ADL and not recovered). Synthetic events with round numbers, so every
expected figure is worked out by hand."""

from __future__ import annotations

from typing import Any

from perpdex.checks import pool_loss_check
from perpdex.model import WAD
from perpdex.report.events import ChainEvent
from perpdex.report.figures import Tally, tally

ALICE, BOB = "0xA11ce", "0xB0b"


def event(name: str, tx: str = "0x1", **args: Any) -> ChainEvent:
    return ChainEvent(block=1, timestamp=0, tx=tx, log_index=0, name=name, args=args)


def modified(owner: str, delta: int, size: int, entry: int, fill: int, pnl: int = 0, market: int = 0) -> ChainEvent:
    """A PositionModified in whole units and whole USD (scaled to WAD)."""
    return event("PositionModified", owner=owner, sub=0, market=market, size_delta=delta * WAD, size=size * WAD,
                 entry_price=entry * WAD, fill_price=fill * WAD, oracle_price=fill * WAD, fee=0,
                 realized_pnl=pnl * WAD, funding=0, collateral=0)


def run(*events: ChainEvent) -> Tally:
    return tally(list(events), [0, 1])


def test_bad_debt__split_insurance_pool_adl__summed_apart() -> None:
    covered = [(100, 60, 40, 0), (500, 0, 200, 300)]  # (bad debt, from insurance, from pool, to ADL)
    t = run(*(event("BadDebtCovered", owner=ALICE, sub=0, bad_debt=b * WAD, from_insurance=i * WAD,
                    from_pool=p * WAD, to_adl=a * WAD) for b, i, p, a in covered))
    assert (t.bad_debt_from_insurance, t.bad_debt_from_pool, t.bad_debt_to_adl) == (60 * WAD, 240 * WAD, 300 * WAD)


def test_deleveraged__notional_at_the_bankruptcy_price__recovered__position_booked() -> None:
    t = run(
        modified(BOB, 3, 3, 1_000, 1_000),
        event("DeleverageBooked", market=0, owing_side=0, size=2 * WAD, price=1_150 * WAD, recover=300 * WAD),
        event("Deleveraged", owner=BOB, sub=0, market=0, closed_size=2 * WAD, size=WAD, price=1_150 * WAD,
              mark_price=1_300 * WAD, realized_pnl=300 * WAD, recovered=300 * WAD),
        modified(BOB, -1, 0, 0, 1_300, pnl=300),  # closes the 1 left: the log knew the ADL close
    )
    assert (t.adl_closes, t.adl_notional, t.adl_recovered, t.adl_booked) == (1, 2_300 * WAD, 300 * WAD, 300 * WAD)
    assert t.gaps == [] and t.open_positions == {}
    assert t.profit_capped == 0  # both closes paid their PnL in full


def test_profit_cut_by_share__trade_close__full_pnl_from_the_entry_minus_realized() -> None:
    t = run(
        modified(ALICE, 2, 2, 1_000, 1_000),
        modified(ALICE, -1, 1, 1_000, 1_100, pnl=80),  # 100 in full, 80 at the share
        modified(ALICE, -2, -1, 900, 900, pnl=-100),  # a loss is never cut
        modified(BOB, -1, -1, 1_000, 1_000, market=1),
        modified(BOB, 1, 0, 0, 990, pnl=10, market=1),  # a short's profit in full: nothing cut
    )
    assert t.profit_capped == 20 * WAD and t.pnl_capped == 20 * WAD


def test_profit_cut_by_share__liquidation__positions_before_the_share_minus_the_accounts_after() -> None:
    t = run(
        event("PositionLiquidated", owner=ALICE, sub=0, market=0, closed_size=WAD, size=0, price=WAD,
              realized_pnl=50 * WAD),
        event("PositionLiquidated", owner=ALICE, sub=0, market=1, closed_size=WAD, size=0, price=WAD,
              realized_pnl=-30 * WAD),
        event("Liquidation", owner=ALICE, sub=0, keeper=BOB, fraction=WAD, fee=0, keeper_reward=0,
              insurance_fee=0, bad_debt=0, realized_pnl=10 * WAD),  # 50 at the share is 40, -30
    )
    assert t.profit_capped == 10 * WAD and t.liquidations == 1 and t.liquidated_pnl == {}


def test_payment_capped__owed_minus_paid__not_counted_again_as_a_share_cut() -> None:
    t = run(
        modified(BOB, 2, 2, 1_000, 1_000),
        event("TraderPaymentCapped", tx="0x2", owner=BOB, sub=0, owed=180 * WAD, paid=50 * WAD),
        event("Deleveraged", tx="0x2", owner=BOB, sub=0, market=0, closed_size=2 * WAD, size=0,
              price=1_100 * WAD, mark_price=1_200 * WAD, realized_pnl=50 * WAD, recovered=200 * WAD),
    )
    # 200 in full at the bankruptcy price, 180 at the share (cut 20), 50 of it paid (capped 130)
    assert (t.profit_capped, t.payments_capped, t.pnl_capped) == (20 * WAD, 130 * WAD, 150 * WAD)


def test_payment_capped__another_transaction__deleverage_counts_its_own_pnl() -> None:
    t = run(
        modified(BOB, 2, 2, 1_000, 1_000),
        event("TraderPaymentCapped", tx="0x2", owner=BOB, sub=0, owed=180 * WAD, paid=50 * WAD),
        event("Deleveraged", tx="0x3", owner=BOB, sub=0, market=0, closed_size=2 * WAD, size=0,
              price=1_100 * WAD, mark_price=1_200 * WAD, realized_pnl=50 * WAD, recovered=200 * WAD),
    )
    assert (t.profit_capped, t.payments_capped) == (150 * WAD, 130 * WAD)


def test_pool_loss_check__at_one_percent_passes__a_wei_more_fails() -> None:
    pool = 5_000_000 * WAD
    at = pool_loss_check(50_000 * WAD, 0, pool, "beyond the loss cap $0.00 to ADL")
    assert at.ok and at.name == "bad debt to LPs <= 1% of the pool"
    assert at.detail == ("LPs bear $50,000.00 of bad debt ($50,000.00 absorbed by the pool within its loss cap, "
                         "$0.00 advanced to ADL and not recovered): 1.0000% of the pool's value at the start, "
                         "$5,000,000.00 (limit 1%: $50,000.00); beyond the loss cap $0.00 to ADL")
    assert not pool_loss_check(50_000 * WAD + 1, 0, pool).ok
    assert pool_loss_check(0, 0, 0).ok and not pool_loss_check(1, 0, 0).ok


def test_pool_loss_check__adl_not_recovered__counts_as_the_lps_loss() -> None:
    # the gap before issue 17's fix: 45,200 absorbed (within 1% alone) and 40,384 advanced to
    # ADL that no eligible position could give back: 1.71% of the pool reaches its LPs
    pool = 5_000_000 * WAD
    check = pool_loss_check(45_200 * WAD, 40_384 * WAD, pool)
    assert not check.ok
    assert "LPs bear $85,584.00 of bad debt" in check.detail and "1.7117%" in check.detail
    assert pool_loss_check(45_200 * WAD, 4_800 * WAD, pool).ok
    assert not pool_loss_check(45_200 * WAD, 4_800 * WAD + 1, pool).ok


def test_adl_unrecovered__booked_minus_recovered__lps_bear_it_with_the_pools_loss() -> None:
    covered = event("BadDebtCovered", owner=ALICE, sub=0, bad_debt=1_000 * WAD, from_insurance=100 * WAD,
                    from_pool=200 * WAD, to_adl=700 * WAD)
    recovered = event("Deleveraged", owner=BOB, sub=0, market=0, closed_size=2 * WAD, size=WAD, price=1_150 * WAD,
                      mark_price=1_300 * WAD, realized_pnl=300 * WAD, recovered=300 * WAD)
    t = run(modified(BOB, 3, 3, 1_000, 1_000), covered, recovered)
    assert (t.adl_unrecovered, t.bad_debt_to_lps) == (400 * WAD, 600 * WAD)  # 700 - 300; 200 + 400
    t = run(covered)  # nothing recovered yet: all 700 is still the pool's
    assert (t.adl_unrecovered, t.bad_debt_to_lps) == (700 * WAD, 900 * WAD)
    assert run().bad_debt_to_lps == 0
