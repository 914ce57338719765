"""SPEC 14, tokens: every transfer's result is checked, and a deposit credits what the
vault's balance actually grew by. Before, a token that returned false instead of
reverting let a thief with no balance be credited 100,000 USD and withdraw it from an
honest deposit."""

import ape
import pytest

from perpdex.deploy import contracts_project, deploy_system
from perpdex.model import WAD
from perpdex.sdk import Exchange

TOKEN = 10**6
BEHAVES, RETURNS_FALSE, MOVES_NOTHING, TAKES_FEE = 0, 1, 2, 3


@pytest.fixture
def hostile(admin):
    token = contracts_project().HostileUSD.deploy(sender=admin)
    x = Exchange(deploy_system(admin, atomic_trading=True, token={"address": token.address}))
    return token, x


@pytest.mark.parametrize(("mode", "reason"), [(RETURNS_FALSE, "vault: transfer failed"),
                                              (MOVES_NOTHING, "vault: nothing received")])
def test_deposit__token_moves_nothing__nothing_credited(hostile, lp, attacker, mode, reason):
    token, x = hostile
    x.add_liquidity(lp, 1_000_000 * TOKEN)  # an honest deposit the thief would drain
    x.fund(attacker, 0)  # approvals only: the thief holds no token
    token.set_mode(mode, sender=attacker)
    with ape.reverts(reason):
        x.vault.deposit(0, 100_000 * TOKEN, sender=attacker)
    with ape.reverts(reason):
        x.vault.add_liquidity(100_000 * TOKEN, sender=attacker)
    assert x.vault.collateral(attacker, 0) == 0
    assert x.vault.lp_shares(attacker) == 0
    token.set_mode(BEHAVES, sender=attacker)
    with ape.reverts("vault: insufficient collateral"):
        x.vault.withdraw(0, 1, sender=attacker)
    assert token.balanceOf(x.vault) == 1_000_000 * TOKEN


def test_withdraw__token_returns_false__reverts_and_collateral_kept(hostile, trader):
    token, x = hostile
    x.deposit(trader, 1_000 * TOKEN)
    token.set_mode(RETURNS_FALSE, sender=trader)
    with ape.reverts("vault: transfer failed"):
        x.vault.withdraw(0, 1_000 * TOKEN, sender=trader)
    assert x.vault.collateral(trader, 0) == 1_000 * WAD


def test_fee_on_transfer__deposit_and_liquidity_credit_what_arrived(hostile, lp, trader):
    token, x = hostile
    token.set_mode(TAKES_FEE, sender=trader)
    receipt = x.deposit(trader, 10_000 * TOKEN)
    # 1% burned on the way in: 9,900 arrived and 9,900 is credited (and logged)
    assert x.vault.collateral(trader, 0) == 9_900 * WAD
    assert receipt.events.filter(x.vault.Deposit)[0].amount == 9_900 * TOKEN
    shares = x.add_liquidity(lp, 100_000 * TOKEN).return_value
    assert x.vault.pool_value() == 99_000 * WAD
    assert shares == 99_000 * WAD
    # the books match the balance: everything credited can leave
    assert token.balanceOf(x.vault) * 10**12 == x.vault.collateral(trader, 0) + x.vault.pool_balance()
    x.vault.withdraw(0, 9_900 * TOKEN, sender=trader)
    assert x.vault.collateral(trader, 0) == 0


def test_router__fee_on_transfer_token__commit_refused(admin, trader):
    token = contracts_project().HostileUSD.deploy(sender=admin)
    x = Exchange(deploy_system(admin, token={"address": token.address}))
    x.deposit(trader, 1_000 * TOKEN)
    x.fund(trader, 10 * TOKEN)  # the settlement reward the commit escrows
    token.set_mode(TAKES_FEE, sender=trader)
    with ape.reverts("router: token took a fee"):
        x.d.router.commit_order(0, 0, WAD // 100, 10**30, sender=trader)
