"""PriceOracle: every external function, the accepted case next to each refused one."""

import ape
import pytest

from perpdex.chain import move_time
from perpdex.model import WAD

ETH = 0


def test_set_price__feeder__records_price_and_time(oracle, admin, chain):
    receipt = oracle.set_price(ETH, 3100 * WAD, sender=admin)
    price, updated_at = oracle.latest(ETH)
    assert price == 3100 * WAD
    assert updated_at == receipt.timestamp
    event = receipt.events.filter(oracle.PriceUpdated)[0]
    assert (event.market, event.price, event.feeder) == (ETH, 3100 * WAD, admin)


def test_set_price__not_feeder__reverts(oracle, attacker):
    with ape.reverts("oracle: not a feeder"):
        oracle.set_price(ETH, 3100 * WAD, sender=attacker)
    assert oracle.latest(ETH)[0] == 3000 * WAD


def test_set_price__zero__reverts(oracle, admin):
    with ape.reverts("oracle: zero price"):
        oracle.set_price(ETH, 0, sender=admin)
    assert oracle.latest(ETH)[0] == 3000 * WAD


@pytest.mark.parametrize("factor", [1.25, 0.75])
def test_set_price__jump_at_limit__passes(oracle, admin, factor):
    oracle.set_price(ETH, int(3000 * factor) * WAD, sender=admin)
    assert oracle.latest(ETH)[0] == int(3000 * factor) * WAD


@pytest.mark.parametrize("new_price", [3000 * WAD * 125 // 100 + 1, 3000 * WAD * 75 // 100 - 1])
def test_set_price__jump_over_limit__reverts(oracle, admin, new_price):
    with ape.reverts("oracle: price jump too large"):
        oracle.set_price(ETH, new_price, sender=admin)
    assert oracle.latest(ETH)[0] == 3000 * WAD


def test_set_price__first_price_of_a_market__has_no_jump_limit(oracle, admin):
    oracle.set_price(7, 1, sender=admin)
    assert oracle.latest(7)[0] == 1


def test_set_price_at__past_observation__recorded_with_its_time(oracle, admin, chain):
    chain.mine(timestamp=chain.pending_timestamp + 100)
    observed = chain.blocks.head.timestamp - 10
    oracle.set_price_at(ETH, 2900 * WAD, observed, sender=admin)
    assert oracle.latest(ETH) == (2900 * WAD, observed)


def test_set_price_at__older_than_latest__reverts(oracle, admin):
    _, updated_at = oracle.latest(ETH)
    with ape.reverts("oracle: time went back"):
        oracle.set_price_at(ETH, 2900 * WAD, updated_at - 1, sender=admin)
    assert oracle.latest(ETH)[1] == updated_at


def test_set_price_at__future__reverts(oracle, admin, chain):
    with ape.reverts("oracle: timestamp in the future"):
        oracle.set_price_at(ETH, 2900 * WAD, chain.pending_timestamp + 3600, sender=admin)


def test_set_prices__batch__records_each(oracle, admin):
    oracle.set_prices([0, 1], [3100 * WAD, 61_000 * WAD], sender=admin)
    assert oracle.latest(0)[0] == 3100 * WAD
    assert oracle.latest(1)[0] == 61_000 * WAD


def test_set_prices__length_mismatch__reverts(oracle, admin):
    with ape.reverts("oracle: length mismatch"):
        oracle.set_prices([0, 1], [3100 * WAD], sender=admin)


def test_set_prices__one_bad_price__reverts_whole_batch(oracle, admin):
    with ape.reverts("oracle: zero price"):
        oracle.set_prices([0, 1], [3100 * WAD, 0], sender=admin)
    assert oracle.latest(0)[0] == 3000 * WAD


def test_price__fresh__returned(oracle):
    assert oracle.price(ETH) == 3000 * WAD


def test_price__stale__reverts_while_latest_answers(oracle, chain):
    chain.pending_timestamp += oracle.max_price_age() + 1
    chain.mine()
    with ape.reverts("oracle: stale price"):
        oracle.price(ETH)
    assert oracle.latest(ETH)[0] == 3000 * WAD


def test_price__unknown_market__reverts(oracle):
    with ape.reverts("oracle: no price"):
        oracle.price(99)
    assert oracle.latest(99) == (0, 0)


def test_set_feeder__owner__grants_and_revokes(system, oracle, trader):
    receipt = system.govern(oracle, "set_feeder", trader, True).receipt
    assert receipt.events.filter(oracle.FeederSet)[0].allowed
    oracle.set_price(ETH, 3050 * WAD, sender=trader)
    system.govern(oracle, "set_feeder", trader, False)
    with ape.reverts("oracle: not a feeder"):
        oracle.set_price(ETH, 3060 * WAD, sender=trader)


def test_set_feeder__not_owner__reverts(oracle, admin, attacker):
    for who in (attacker, admin):  # the deployer too: Governance owns the oracle
        with ape.reverts("ownable: caller is not the owner"):
            oracle.set_feeder(attacker, True, sender=who)
    assert not oracle.is_feeder(attacker)


def test_set_max_price_age__owner__updates(system, oracle):
    system.govern(oracle, "set_max_price_age", 60)
    assert oracle.max_price_age() == 60


@pytest.mark.parametrize("age", [0, 86_401])
def test_set_max_price_age__out_of_range__reverts(system, oracle, age):
    with ape.reverts("oracle: bad max_price_age"):
        system.govern(oracle, "set_max_price_age", age)


def test_set_max_price_age__not_owner__reverts(oracle, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.set_max_price_age(60, sender=attacker)


def test_set_max_price_jump__owner__updates(system, oracle):
    system.govern(oracle, "set_max_price_jump", WAD // 10)
    assert oracle.max_price_jump() == WAD // 10


@pytest.mark.parametrize("jump", [WAD // 1000 - 1, WAD + 1])
def test_set_max_price_jump__out_of_range__reverts(system, oracle, jump):
    with ape.reverts("oracle: bad max_price_jump"):
        system.govern(oracle, "set_max_price_jump", jump)


def test_set_max_price_jump__not_owner__reverts(oracle, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        oracle.set_max_price_jump(WAD // 10, sender=attacker)


def test_ownership__two_step__new_owner_must_accept(system, oracle, trader):
    system.govern(oracle, "transfer_ownership", trader)
    assert oracle.owner() == system.governance.address
    assert oracle.pending_owner() == trader
    oracle.accept_ownership(sender=trader)
    assert oracle.owner() == trader


def test_ownership__accept_by_stranger__reverts(system, oracle, trader, attacker):
    system.govern(oracle, "transfer_ownership", trader)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        oracle.accept_ownership(sender=attacker)
    assert oracle.owner() == system.governance.address


def test_set_price__above_packed_range__reverts(oracle, admin):
    with ape.reverts("oracle: price out of range"):
        oracle.set_price(7, 2**128, sender=admin)
    oracle.set_price(7, 2**128 - 1, sender=admin)
    assert oracle.latest(7)[0] == 2**128 - 1


# ------------------------------------------------------------------ rounds (SPEC 5, 9)

HISTORY = 64  # PriceOracle.HISTORY


def _write(oracle, admin, chain, prices, step=1):
    """One round per price, each in its own block `step` seconds after the last."""
    times = []
    for p in prices:
        if step:
            move_time(step)
        times.append(oracle.set_price(ETH, p, sender=admin).timestamp)
    return times


def test_rounds__every_write__is_a_numbered_round(oracle, admin, chain):
    first = oracle.latest_round(ETH)
    times = _write(oracle, admin, chain, [3010 * WAD, 3020 * WAD, 3030 * WAD])
    assert oracle.latest_round(ETH) == first + 3
    for i, (p, t) in enumerate(zip([3010, 3020, 3030], times)):
        assert oracle.round_data(ETH, first + 1 + i) == (p * WAD, t)
    receipt = oracle.set_price(ETH, 3040 * WAD, sender=admin)
    assert receipt.events.filter(oracle.PriceUpdated)[0].round_id == first + 4


def test_round_data__future_or_zero_round__reverts(oracle):
    latest = oracle.latest_round(ETH)
    for bad in (0, latest + 1):
        with ape.reverts("oracle: no such round"):
            oracle.round_data(ETH, bad)


def test_round_data__round_left_the_history__reverts(oracle, admin, chain):
    first = oracle.latest_round(ETH)
    _write(oracle, admin, chain, [3000 * WAD + i for i in range(1, HISTORY + 1)], step=0)
    latest = oracle.latest_round(ETH)
    assert oracle.round_data(ETH, latest - HISTORY + 1)[0] == 3000 * WAD + 1
    with ape.reverts("oracle: round expired"):
        oracle.round_data(ETH, first)


def test_price_at__later_rounds_landed__returns_the_first_at_or_after(oracle, admin, chain):
    t1, t2, t3 = _write(oracle, admin, chain, [3010 * WAD, 3100 * WAD, 3300 * WAD], step=5)
    first = oracle.latest_round(ETH) - 2
    assert oracle.price_at(ETH, t1) == (3010 * WAD, first)
    assert oracle.price_at(ETH, t1 + 1) == (3100 * WAD, first + 1)
    assert oracle.price_at(ETH, t2) == (3100 * WAD, first + 1)
    assert oracle.price_at(ETH, t3) == (3300 * WAD, first + 2)


def test_price_at__no_round_yet__reverts(oracle, admin, chain):
    (t,) = _write(oracle, admin, chain, [3010 * WAD])
    with ape.reverts("oracle: no round yet"):
        oracle.price_at(ETH, t + 1)
    with ape.reverts("oracle: no round yet"):
        oracle.price_at(99, 1)


def test_price_at__round_left_the_history__reverts(oracle, admin, chain):
    (t,) = _write(oracle, admin, chain, [3010 * WAD])
    _write(oracle, admin, chain, [3010 * WAD + i for i in range(1, HISTORY + 1)])
    with ape.reverts("oracle: round expired"):
        oracle.price_at(ETH, t)


def test_price_at__stale_round__reverts(oracle, admin, chain):
    (t,) = _write(oracle, admin, chain, [3010 * WAD])
    chain.pending_timestamp += oracle.max_price_age() + 1
    chain.mine()
    with ape.reverts("oracle: stale price"):
        oracle.price_at(ETH, t)


def test_set_prices__market_repeated_past_the_limit__reverts(oracle, admin):
    # each write is within 25% of the one before it, together they are not
    with ape.reverts("oracle: price jump too large"):
        oracle.set_prices([ETH, ETH], [3750 * WAD, 4600 * WAD], sender=admin)
    assert oracle.latest(ETH)[0] == 3000 * WAD


def test_set_prices__market_repeated_within_the_limit__two_rounds(oracle, admin):
    first = oracle.latest_round(ETH)
    oracle.set_prices([ETH, ETH], [3600 * WAD, 3750 * WAD], sender=admin)
    assert oracle.latest_round(ETH) == first + 2
    assert oracle.round_data(ETH, first + 1)[0] == 3600 * WAD
    assert oracle.latest(ETH)[0] == 3750 * WAD


def test_set_prices__back_inside_the_limit__passes(oracle, admin):
    # the reference is the block's opening price: +25% then back down is fine
    oracle.set_prices([ETH, ETH, ETH], [3750 * WAD, 2250 * WAD, 3000 * WAD], sender=admin)
    assert oracle.latest(ETH)[0] == 3000 * WAD


def test_set_price__next_block__limit_restarts_from_the_last_price(oracle, admin, chain):
    oracle.set_price(ETH, 3750 * WAD, sender=admin)
    oracle.set_price(ETH, 3750 * WAD * 125 // 100, sender=admin)
    assert oracle.latest(ETH)[0] == 3750 * WAD * 125 // 100
