"""The liquidator's decisions as pure functions (no chain): the confirmations window, the
order by risk, the dust rule, the backoff of a skipped account and the fees of a replacement.
The same decisions on a chain: test_liquidator_bot.py."""

from __future__ import annotations

from perpdex.keepers.index import Account
from perpdex.keepers.liquidation_policy import (
    WAD, Backoff, Candidate, DustRule, Fees, ScanWindow, bumped, by_risk, gwei, initial_fees, reward_bound,
)


def candidate(owner: str, equity: int, mm: int, notional: int = 1_000 * WAD, bound: int = 5 * WAD) -> Candidate:
    return Candidate(Account(owner, 0), equity, mm, notional, bound)


# ---------------------------------------------------------------- confirmations


def test_scan_window__checkpoint_stays_confirmations_behind_the_head():
    w = ScanWindow.of(last_block=100, head=110, confirmations=3)
    assert (w.start, w.confirmed, w.head) == (101, 107, 110)  # 108..110 are read again next time


def test_scan_window__nothing_confirmed_yet__checkpoint_does_not_move():
    w = ScanWindow.of(last_block=100, head=102, confirmations=3)
    assert (w.start, w.confirmed) == (101, 100)  # an empty confirmed range; 101..102 in the overlay


def test_scan_window__no_confirmations__everything_committed():
    assert ScanWindow.of(last_block=-1, head=5, confirmations=0).confirmed == 5


# ---------------------------------------------------------------- order by risk


def test_by_risk__largest_shortfall_first_then_notional__address_only_breaks_ties():
    whale = candidate("0xff", equity=10_000 * WAD, mm=310_000 * WAD)  # 300,000 short
    dust = candidate("0x00", equity=-1 * WAD, mm=1 * WAD, notional=10 * WAD)  # 2 short, lowest address
    big_tie = candidate("0xcc", equity=0, mm=2 * WAD, notional=50_000 * WAD)  # 2 short, more notional
    twin_a, twin_b = candidate("0xaa", 0, 100 * WAD), candidate("0xbb", 0, 100 * WAD)
    ranked = by_risk([dust, twin_b, big_tie, whale, twin_a])
    assert [c.account.owner for c in ranked] == ["0xff", "0xaa", "0xbb", "0xcc", "0x00"]


# ---------------------------------------------------------------- dust


def test_dust__reward_below_gas_cost__dust_unless_heading_for_bad_debt():
    # 150,000 gas at 10 gwei with ETH at 3,000 USD: 4.5 USD
    rule = DustRule(gas_price=gwei(10), gas_per_account=150_000, gas_token_usd=3_000 * WAD, bad_debt_equity=0)
    assert rule.gas_cost_usd() == 4_500_000_000_000_000_000
    assert rule.is_dust(candidate("0x1", equity=1 * WAD, mm=2 * WAD, bound=4 * WAD))
    assert not rule.is_dust(candidate("0x1", equity=1 * WAD, mm=2 * WAD, bound=5 * WAD))
    assert not rule.is_dust(candidate("0x1", equity=-1, mm=2 * WAD, bound=0))  # bad debt already: liquidate
    careful = DustRule(gwei(10), 150_000, 3_000 * WAD, bad_debt_equity=5 * WAD)
    assert not careful.is_dust(candidate("0x1", equity=4 * WAD, mm=9 * WAD, bound=0))  # below the threshold


def test_dust__gas_price_moves_the_line():
    c = candidate("0x1", equity=1 * WAD, mm=2 * WAD, bound=1 * WAD)
    assert not DustRule(gwei(1), 150_000, 3_000 * WAD, 0).is_dust(c)  # 0.45 USD of gas
    assert DustRule(gwei(3), 150_000, 3_000 * WAD, 0).is_dust(c)  # 1.35 USD of gas


def test_reward_bound__fee_of_closing_everything_capped_by_max_keeper_reward():
    assert reward_bound(7 * WAD, 50 * WAD, equity=100 * WAD) == 7 * WAD
    assert reward_bound(1_500 * WAD, 50 * WAD, equity=10_000 * WAD) == 50 * WAD


def test_reward_bound__only_the_fee_the_account_can_pay__floor_from_insurance():
    assert reward_bound(7 * WAD, 50 * WAD, equity=3 * WAD) == 3 * WAD  # fee collected up to equity
    assert reward_bound(7 * WAD, 50 * WAD, equity=-9 * WAD) == 0  # bankrupt: nothing collected
    # the floor tops up to 5 USD from the insurance fund, as far as the fund holds it
    assert reward_bound(7 * WAD, 50 * WAD, -9 * WAD, min_keeper_reward=5 * WAD, insurance_fund=10 * WAD) == 5 * WAD
    assert reward_bound(7 * WAD, 50 * WAD, 2 * WAD, min_keeper_reward=5 * WAD, insurance_fund=WAD) == 3 * WAD
    assert reward_bound(7 * WAD, 50 * WAD, 100 * WAD, min_keeper_reward=5 * WAD, insurance_fund=0) == 7 * WAD


# ---------------------------------------------------------------- skip and backoff


def test_backoff__doubles_per_failure_up_to_the_cap():
    b = Backoff(base=1, cap=16)
    assert [b.retry_at(100, n) - 100 for n in range(1, 8)] == [1, 2, 4, 8, 16, 16, 16]
    assert Backoff(base=3, cap=1_000).retry_at(10, 3) == 22
    assert Backoff().retry_at(0, 10**6) == 256  # never overflows, never gives up


# ---------------------------------------------------------------- fees


def test_initial_fees__room_for_the_base_fee_to_double__within_the_cap():
    assert initial_fees(base_fee=gwei(10), priority_fee=gwei(1), cap=gwei(100)) == Fees(gwei(21), gwei(1))
    assert initial_fees(gwei(60), gwei(2), cap=gwei(100)) == Fees(gwei(100), gwei(2))
    assert initial_fees(gwei(60), gwei(200), cap=gwei(100)).priority_fee == gwei(100)  # never above the max fee


def test_bumped__both_fees_at_least_12_5_percent_rounded_up__none_past_the_cap():
    new = bumped(Fees(gwei(20), gwei(2)), cap=gwei(100))
    assert new == Fees(gwei(22.5), gwei(2.25))
    odd = bumped(Fees(9, 1), cap=100)
    assert odd == Fees(11, 2)  # ceil(9 * 9/8) = 11; 1 wei: +1 wei at least
    assert odd.max_fee * 8 >= 9 * 9 and odd.priority_fee * 8 >= 9 * 1
    assert bumped(Fees(gwei(90), gwei(2)), cap=gwei(100)) is None  # 101.25 gwei > cap: wait as it is
    assert bumped(Fees(gwei(80), gwei(2)), cap=gwei(90)) == Fees(gwei(90), gwei(2.25))  # exactly at the cap


def test_bumped__repeated_until_the_cap():
    fees, steps = Fees(gwei(2), gwei(1)), 0
    while (next_fees := bumped(fees, cap=gwei(10))) is not None:
        assert next_fees.max_fee * 8 >= fees.max_fee * 9 and next_fees.priority_fee * 8 >= fees.priority_fee * 9
        fees, steps = next_fees, steps + 1
    assert steps == 13 and fees.max_fee <= gwei(10)
