"""Owner-only market management (through the Governance, which owns the vault: delay 0 in these
fixtures), pausing and two-step ownership."""

import ape
import pytest

from perpdex.model import WAD, MarketParams


@pytest.fixture
def params(x, eth):
    return x.params(eth)


def test_add_market__owner__gets_next_id_and_event(system, vault, params):
    receipt = system.govern(vault, "add_market", params.as_tuple()).receipt
    assert vault.market_count() == 3
    assert MarketParams.from_chain(vault.market_params(2)) == params
    assert receipt.events.filter(vault.MarketAdded)[0].market == 2


def test_add_market__not_owner__reverts(vault, admin, attacker, params):
    for who in (attacker, admin):  # the deployer too: Governance owns the vault
        with ape.reverts("ownable: caller is not the owner"):
            vault.add_market(params.as_tuple(), sender=who)
    assert vault.market_count() == 2


BAD = [
    ("max_leverage", WAD - 1, "vault: bad max_leverage"),
    ("max_leverage", 1001 * WAD, "vault: bad max_leverage"),
    ("maintenance_margin_ratio", 0, "vault: bad maintenance_margin_ratio"),
    ("maintenance_margin_ratio", WAD // 20, "vault: bad maintenance_margin_ratio"),  # = imr at 20x
    ("taker_fee", WAD // 10 + 1, "vault: bad taker_fee"),
    ("skew_scale", 0, "vault: bad skew_scale"),
    ("max_funding_velocity", 100 * WAD + 1, "vault: bad max_funding_velocity"),
    ("max_open_interest", 0, "vault: bad max_open_interest"),
    ("max_open_interest", 2_000_000 * WAD, "vault: bad max_open_interest"),  # above skew_scale
    ("liquidation_fee_ratio", WAD // 40, "vault: bad liquidation_fee_ratio"),  # = mmr
    ("liquidation_fee_ratio", WAD // 100 + 1, "vault: bad liquidation_fee_ratio"),  # SPEC 14: at most 1%
    ("min_position_margin", 1_000_001 * WAD, "vault: bad min_position_margin"),
    ("max_pool_exposure", 0, "vault: bad max_pool_exposure"),
]


@pytest.mark.parametrize("field,value,reason", BAD)
def test_add_market__bad_param__reverts(system, vault, params, field, value, reason):
    bad = MarketParams(**{**params.__dict__, field: value})
    with ape.reverts(reason):
        system.govern(vault, "add_market", bad.as_tuple())


def test_liquidation_fee_ratio__one_percent__accepted(system, vault, params, eth):
    """The hard bound is inclusive: 1% with a 2.5% maintenance margin is a valid market."""
    system.govern(vault, "set_market_params", eth, MarketParams(**{**params.__dict__, "liquidation_fee_ratio": WAD // 100}).as_tuple())
    assert vault.market_params(eth).liquidation_fee_ratio == WAD // 100


def test_set_market_params__owner__replaces_and_logs(system, vault, params, eth):
    new = MarketParams(**{**params.__dict__, "max_leverage": 10 * WAD})
    receipt = system.govern(vault, "set_market_params", eth, new.as_tuple()).receipt
    assert vault.market_params(eth).max_leverage == 10 * WAD
    assert receipt.events.filter(vault.MarketParamsSet)[0].market == eth


def test_set_market_params__not_owner__reverts(vault, attacker, params, eth):
    with ape.reverts("ownable: caller is not the owner"):
        vault.set_market_params(eth, params.as_tuple(), sender=attacker)


def test_set_market_params__unknown_market__reverts(system, vault, params):
    with ape.reverts("vault: unknown market"):
        system.govern(vault, "set_market_params", 5, params.as_tuple())


def test_set_market_params__bad_param__reverts(system, vault, params, eth):
    with ape.reverts("vault: bad taker_fee"):
        system.govern(vault, "set_market_params", eth, MarketParams(**{**params.__dict__, "taker_fee": WAD}).as_tuple())


@pytest.mark.parametrize("fn", ["pause", "unpause"])
def test_global_pause__not_owner__reverts(vault, attacker, fn):
    with ape.reverts("ownable: caller is not the owner"):
        getattr(vault, fn)(sender=attacker)


@pytest.mark.parametrize("fn", ["pause_market", "unpause_market"])
def test_market_pause__not_owner__reverts(vault, attacker, fn):
    with ape.reverts("ownable: caller is not the owner"):
        getattr(vault, fn)(0, sender=attacker)


@pytest.mark.parametrize("fn", ["pause_market", "unpause_market"])
def test_market_pause__unknown_market__reverts(system, fn):
    with ape.reverts("vault: unknown market"):
        system.guard(fn, 9)


def test_pause__emits_events(system, vault):
    assert system.guard("pause_vault").events.filter(vault.GlobalPauseSet)[0].paused
    assert not system.guard("unpause_vault").events.filter(vault.GlobalPauseSet)[0].paused


def test_ownership__two_step_transfer(system, vault, trader, attacker):
    system.govern(vault, "transfer_ownership", trader)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        vault.accept_ownership(sender=attacker)
    vault.accept_ownership(sender=trader)
    assert vault.owner() == trader
    with ape.reverts("ownable: caller is not the owner"):  # the guardian's pause needs ownership
        system.guard("pause_vault")
