"""The Governance timelock (SPEC 14): owner calls wait the delay, the guardian pauses at once.

The attack it closes: an owner who sets harsh margin parameters in one block can liquidate a
healthy account through the keeper and collect the fee. With the default 1-day delay the
change is only announced; the trader sees it and closes first.
"""

from typing import Any

import ape
import pytest

from perpdex.chain import move_time
from perpdex.deploy import Deployment, deploy_system
from perpdex.governance import ZERO32, describe, encode_call, pending_operations, when
from perpdex.logs import EventDecoder
from perpdex.model import WAD, MarketParams
from perpdex.sdk import Exchange

DAY = 86_400
MISSING_ROLE = "access_control: account is missing role"
NOT_READY = "timelock_controller: operation is not ready"


@pytest.fixture
def tx(admin: Any, lp: Any) -> Exchange:
    """A deployment with the default governance delay (1 day) and 1,000,000 USD in the pool;
    atomic trading, so that the trader's moves are one call each. Made inside each test (the
    snapshot around it removes it): the session deployments use delay 0."""
    x = Exchange(deploy_system(admin, atomic_trading=True))
    x.add_liquidity(lp, x.tokens(1_000_000))
    return x


def harsh(x: Exchange, market: int) -> MarketParams:
    """1x leverage and a 99% maintenance margin: a 3x account is instantly liquidatable."""
    return MarketParams(**{**x.params(market).__dict__, "max_leverage": WAD,
                           "maintenance_margin_ratio": 99 * WAD // 100, "liquidation_fee_ratio": WAD // 100})


def open_10k(x: Exchange, trader: Any) -> None:
    x.deposit(trader, x.tokens(10_000))
    x.trade(trader, 0, 10 * WAD)  # 30,000 USD of ETH on 10,000 USD: 3x, far from MM (760 USD)


def governance_events(d: Deployment, receipt: Any) -> list[tuple[str, dict[str, Any]]]:
    decoder = EventDecoder([d.governance])
    return [found for log in receipt.logs if (found := decoder.decode(log)) is not None]


def test_default_deployment__governance_owns_everything_with_a_day_of_delay(tx):
    d = tx.d
    assert int(d.governance.get_minimum_delay()) == DAY == d.config["governance_delay"]
    for owned in (d.vault, d.oracle, d.router):
        assert owned.owner() == d.governance.address
    for role in ("PROPOSER_ROLE", "EXECUTOR_ROLE", "CANCELLER_ROLE", "GUARDIAN_ROLE"):
        assert d.governance.hasRole(getattr(d.governance, role)(), d.deployer)
    assert not d.governance.hasRole(d.governance.DEFAULT_ADMIN_ROLE(), d.deployer)  # roles change only by timelock


def test_attack__harsh_margin_is_announced_and_the_trader_closes_before_it_applies(tx, trader, liquidator):
    d, vault = tx.d, tx.vault
    open_10k(tx, trader)
    before = vault.market_params(0)
    op = d.govern(vault, "set_market_params", 0, harsh(tx, 0).as_tuple())

    # right after scheduling nothing changed: same params, healthy, the keeper gets nothing
    assert op.executed is None and op.eta == op.scheduled.timestamp + DAY
    assert vault.market_params(0) == before
    assert not vault.is_liquidatable(trader, 0)
    with ape.reverts("keeper: account healthy"):
        d.keeper.liquidate(trader, 0, sender=liquidator)
    with ape.reverts(NOT_READY):
        d.execute(op)

    # the pending change is public: the event decodes to the call and its eta
    (pending,) = pending_operations(governance_events(d, op.scheduled))
    assert pending.id == op.id
    target, call = describe(pending, d.contracts())
    assert target == "vault" and call.startswith("set_market_params(0, (1000000000000000000, 990000000000000000,")
    assert when(op.eta, op.scheduled.timestamp)[1] == "in 24h 0m"

    # an hour before the eta the trader closes and takes the money out
    move_time(DAY - 3_600)
    tx.refresh_prices()
    with ape.reverts(NOT_READY):
        d.execute(op)
    tx.close(trader, 0)
    vault.withdraw(0, vault.withdrawable(trader, 0), sender=trader)
    assert tx.position(trader, 0, 0).size == 0
    assert vault.collateral(trader, 0) < WAD // 10**6  # less than a token unit of rounding dust is left

    # after the delay the change applies, to nobody's harm
    move_time(3_600)
    executed = d.execute(op)
    assert executed.executed.events.filter(vault.MarketParamsSet)[0].market == 0
    assert vault.market_params(0).maintenance_margin_ratio == 99 * WAD // 100
    assert not vault.is_liquidatable(trader, 0)
    assert pending_operations(governance_events(d, op.scheduled) + governance_events(d, executed.executed)) == []


def test_attack__a_trader_who_ignores_the_announcement_is_liquidatable_after_the_eta(tx, trader, liquidator):
    """The delay is the whole protection: once executed, the harsh parameters bite."""
    open_10k(tx, trader)
    op = tx.d.govern(tx.vault, "set_market_params", 0, harsh(tx, 0).as_tuple())
    move_time(DAY)
    tx.refresh_prices()
    tx.d.execute(op)
    assert tx.vault.is_liquidatable(trader, 0)
    tx.d.keeper.liquidate(trader, 0, sender=liquidator)


def test_schedule__non_proposer__reverts(tx, attacker):
    payload = encode_call(tx.vault, "set_market_params", (0, harsh(tx, 0).as_tuple()))
    with ape.reverts(MISSING_ROLE):
        tx.d.governance.schedule(tx.vault, 0, payload, ZERO32, ZERO32, DAY, sender=attacker)


def test_schedule__shorter_than_the_delay__reverts(tx, admin):
    payload = encode_call(tx.vault, "set_liquidator", (admin, 0, 0))
    with ape.reverts("timelock_controller: insufficient delay"):
        tx.d.governance.schedule(tx.vault, 0, payload, ZERO32, ZERO32, DAY - 1, sender=admin)


def test_execute__non_executor__reverts_even_when_ready(tx, attacker):
    op = tx.d.govern(tx.vault, "set_liquidator", attacker, 0, 0)
    move_time(DAY)
    with ape.reverts(MISSING_ROLE):
        tx.d.execute(op, sender=attacker)
    assert tx.vault.liquidator() == tx.d.keeper.address


def test_cancel__a_cancelled_operation_never_executes(tx, attacker):
    op = tx.d.govern(tx.vault, "set_liquidator", attacker, 0, 0)
    with ape.reverts(MISSING_ROLE):
        tx.d.governance.cancel(op.id, sender=attacker)
    tx.d.governance.cancel(op.id, sender=tx.d.deployer)
    move_time(DAY)
    with ape.reverts(NOT_READY):
        tx.d.execute(op)
    assert tx.vault.liquidator() == tx.d.keeper.address


def test_owner_calls__no_longer_direct_for_the_deployer(tx, admin):
    with ape.reverts("ownable: caller is not the owner"):
        tx.vault.set_liquidator(admin, 0, 0, sender=admin)
    with ape.reverts("ownable: caller is not the owner"):
        tx.d.oracle.set_feeder(admin, False, sender=admin)


def test_same_call_twice__gets_a_fresh_salt(tx):
    """A repeated call (the same parameters again) is a new operation, not a clash."""
    params = tx.params(0).as_tuple()
    first = tx.d.govern(tx.vault, "set_market_params", 0, params)
    second = tx.d.govern(tx.vault, "set_market_params", 0, params)
    assert first.id != second.id and int.from_bytes(second.salt, "big") == 1


@pytest.mark.parametrize("action,args,flag", [("pause_vault", (), "paused"), ("pause_market", (0,), "market_paused")])
def test_guardian__pauses_at_once_and_unpauses_at_once(tx, action, args, flag):
    receipt = tx.d.guard(action, *args)
    assert getattr(tx.vault, flag)(*args)
    assert governance_events(tx.d, receipt)[0][0] in ("VaultPaused", "MarketPaused")
    tx.d.guard("un" + action, *args)
    assert not getattr(tx.vault, flag)(*args)


@pytest.mark.parametrize("action,args", [("pause_vault", ()), ("unpause_vault", ()), ("pause_market", (0,)),
                                         ("unpause_market", (0,))])
def test_guardian__non_guardian__reverts(tx, attacker, action, args):
    with ape.reverts(MISSING_ROLE):
        tx.d.guard(action, *args, sender=attacker)
    assert not tx.vault.paused() and not tx.vault.market_paused(0)


def test_guardian__granted_only_through_the_timelock(tx, admin, attacker):
    gov = tx.d.governance
    with ape.reverts(MISSING_ROLE):  # no admin account: only the timelock itself grants roles
        gov.grantRole(gov.GUARDIAN_ROLE(), attacker, sender=admin)
    op = tx.d.govern(gov, "grantRole", gov.GUARDIAN_ROLE(), attacker)
    move_time(DAY)
    tx.d.execute(op)
    tx.d.guard("pause_vault", sender=attacker)
    assert tx.vault.paused()


def test_accept_ownership_of__only_completes_a_started_transfer(tx, attacker):
    with ape.reverts("ownable_2step: caller is not the new owner"):
        tx.d.governance.accept_ownership_of(tx.d.router, sender=attacker)


def test_update_delay__itself_waits_the_delay(tx):
    op = tx.d.govern(tx.d.governance, "update_delay", 0)
    assert int(tx.d.governance.get_minimum_delay()) == DAY
    move_time(DAY)
    tx.d.execute(op)
    assert int(tx.d.governance.get_minimum_delay()) == 0


def test_delay_zero__executes_at_once(system, vault):
    """The session deployment (governance_delay=0): govern schedules and executes in one go."""
    op = system.govern(vault, "set_liquidator", system.keeper, 7 * WAD, 5 * WAD)
    assert op.executed is not None and vault.max_keeper_reward() == 7 * WAD
