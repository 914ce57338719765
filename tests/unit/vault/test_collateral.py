"""deposit / withdraw / withdrawable / transfer_margin."""

import ape

from perpdex.model import WAD

TOKEN = 10**6  # one USD in token units
SCALE = 10**12  # WAD per token unit


def test_deposit__credits_collateral_in_wad(x, vault, usd, trader):
    x.fund(trader, 500 * TOKEN)
    receipt = vault.deposit(0, 500 * TOKEN, sender=trader)
    assert vault.collateral(trader, 0) == 500 * WAD
    assert usd.balanceOf(trader) == 0
    event = receipt.events.filter(vault.Deposit)[0]
    assert (event.owner, event.sub, event.amount, event.collateral) == (trader, 0, 500 * TOKEN, 500 * WAD)


def test_deposit__zero__reverts(vault, trader):
    with ape.reverts("vault: zero amount"):
        vault.deposit(0, 0, sender=trader)


def test_deposit__above_balance__reverts_and_changes_nothing(x, vault, trader):
    x.fund(trader, 100 * TOKEN)
    with ape.reverts("erc20: transfer amount exceeds balance"):
        vault.deposit(0, 101 * TOKEN, sender=trader)
    assert vault.collateral(trader, 0) == 0


def test_deposit__sub_accounts_are_separate(x, vault, trader):
    x.deposit(trader, 100 * TOKEN, sub=0)
    x.deposit(trader, 200 * TOKEN, sub=7)
    assert vault.collateral(trader, 0) == 100 * WAD
    assert vault.collateral(trader, 7) == 200 * WAD


def test_withdraw__no_position__pays_everything(x, vault, usd, trader):
    x.deposit(trader, 300 * TOKEN)
    assert vault.withdrawable(trader, 0) == 300 * TOKEN
    receipt = vault.withdraw(0, 300 * TOKEN, sender=trader)
    assert usd.balanceOf(trader) == 300 * TOKEN
    assert vault.collateral(trader, 0) == 0
    assert receipt.events.filter(vault.Withdraw)[0].amount == 300 * TOKEN


def test_withdraw__zero__reverts(vault, trader):
    with ape.reverts("vault: zero amount"):
        vault.withdraw(0, 0, sender=trader)


def test_withdraw__above_collateral__reverts(x, vault, trader):
    x.deposit(trader, 300 * TOKEN)
    with ape.reverts("vault: insufficient collateral"):
        vault.withdraw(0, 300 * TOKEN + 1, sender=trader)
    assert vault.collateral(trader, 0) == 300 * WAD


def test_withdraw__unrealized_profit__reverts(x, vault, trader, eth, open_position):
    open_position(trader, 10 * WAD, collateral_usd=10_000)
    x.set_price(eth, 3600 * WAD)  # ~ +6,000 USD unrealized
    collateral = vault.collateral(trader, 0)
    assert vault.equity(trader, 0) > collateral + 5_000 * WAD
    with ape.reverts("vault: unrealized profit not withdrawable"):
        vault.withdraw(0, collateral // SCALE + TOKEN, sender=trader)
    assert vault.collateral(trader, 0) == collateral


def test_withdraw__below_initial_margin__reverts_exact_limit_passes(x, vault, trader, eth, open_position):
    open_position(trader, 10 * WAD, collateral_usd=10_000)
    # In profit, min(collateral, equity) is the collateral: the exact limit does not move
    # with the seconds of funding that accrue between this view and the withdrawal.
    x.set_price(eth, 3_030 * WAD)
    h = x.health(trader)
    assert h.equity > h.collateral
    free = h.collateral - h.initial_margin
    assert vault.withdrawable(trader, 0) == free // SCALE
    with ape.reverts("vault: below initial margin"):
        vault.withdraw(0, free // SCALE + 1, sender=trader)
    vault.withdraw(0, free // SCALE, sender=trader)
    h = x.health(trader)
    assert min(h.collateral, h.equity) >= h.initial_margin
    assert vault.withdrawable(trader, 0) == 0


def test_withdraw__stale_price_with_position__reverts(x, vault, trader, open_position, chain, oracle):
    open_position(trader, WAD)
    chain.pending_timestamp += oracle.max_price_age() + 1
    with ape.reverts("oracle: stale price"):
        vault.withdraw(0, TOKEN, sender=trader)


def test_withdraw__stale_price_without_position__works(x, vault, trader, chain, oracle):
    x.deposit(trader, 10 * TOKEN)
    chain.pending_timestamp += oracle.max_price_age() + 1
    vault.withdraw(0, 10 * TOKEN, sender=trader)
    assert vault.collateral(trader, 0) == 0


def test_withdrawable__unrealized_loss__counts_against_it(x, vault, trader, eth, open_position):
    open_position(trader, 10 * WAD, collateral_usd=10_000)
    before = vault.withdrawable(trader, 0)
    x.set_price(eth, 2900 * WAD)
    assert vault.withdrawable(trader, 0) < before - 900 * TOKEN


def test_transfer_margin__moves_collateral_between_subs(x, vault, trader):
    x.deposit(trader, 100 * TOKEN, sub=0)
    receipt = vault.transfer_margin(0, 1, 40 * TOKEN, sender=trader)
    assert vault.collateral(trader, 0) == 60 * WAD
    assert vault.collateral(trader, 1) == 40 * WAD
    event = receipt.events.filter(vault.MarginTransferred)[0]
    assert (event.from_sub, event.to_sub, event.amount) == (0, 1, 40 * TOKEN)


def test_transfer_margin__zero__reverts(vault, trader):
    with ape.reverts("vault: zero amount"):
        vault.transfer_margin(0, 1, 0, sender=trader)


def test_transfer_margin__same_sub__reverts(x, vault, trader):
    x.deposit(trader, 100 * TOKEN)
    with ape.reverts("vault: same sub-account"):
        vault.transfer_margin(0, 0, TOKEN, sender=trader)


def test_transfer_margin__below_initial_margin__reverts(x, vault, trader, open_position):
    open_position(trader, 10 * WAD, collateral_usd=2_000)
    with ape.reverts("vault: below initial margin"):
        vault.transfer_margin(0, 1, 1_000 * TOKEN, sender=trader)
    assert vault.collateral(trader, 1) == 0


def test_donation__changes_no_account_and_no_share_price(x, vault, usd, attacker, trader, lp):
    x.deposit(trader, 100 * TOKEN)
    value, shares = vault.pool_value(), vault.total_lp_shares()
    x.fund(attacker, 50_000 * TOKEN)
    usd.transfer(vault, 50_000 * TOKEN, sender=attacker)
    assert vault.collateral(trader, 0) == 100 * WAD
    assert vault.pool_value() == value
    assert vault.total_lp_shares() == shares
    assert vault.withdrawable(trader, 0) == 100 * TOKEN
