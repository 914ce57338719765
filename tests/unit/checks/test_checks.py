"""perpdex.checks: the end-of-run invariant checks (ledger, open interest, everyone exits)
on real books, each shown passing and failing."""

from __future__ import annotations

from typing import Any

import pytest

from perpdex.checks import everyone_exits, ledger_check, open_interest_check
from perpdex.model import WAD


@pytest.fixture
def book(x: Any, trader: Any, trader2: Any, attacker: Any, eth: int, btc: int) -> list[tuple[Any, int]]:
    """A cross-margin book over two markets, an isolated 19x long, a short in another
    sub-account, and an empty funded account."""
    x.deposit(trader, x.tokens(20_000), sub=0)
    x.trade(trader, eth, 30 * WAD, sub=0)
    x.trade(trader, btc, -WAD, sub=0)
    x.deposit(trader, x.tokens(3_000), sub=1)
    x.trade(trader, eth, -5 * WAD, sub=1)
    x.deposit(trader2, x.tokens(1_000))
    x.trade(trader2, eth, 6 * WAD)  # 18,000 USD on 1,000: about 18x
    x.deposit(attacker, x.tokens(500), sub=2)
    return [(trader, 0), (trader, 1), (trader2, 0), (attacker, 2)]


def test_checks__healthy_book__all_pass_and_exit_is_rolled_back(x, book, lp, liquidator, trader, eth):
    vault = x.vault
    before = (int(x.d.usd.balanceOf(vault)), int(vault.position(trader, 0, eth).size), int(vault.lp_shares(lp)))

    result = everyone_exits(x, book, [lp], liquidator)

    assert result.ok, result.detail
    assert (result.closed, result.liquidated, result.withdrawn) == (4, 0, 4)
    assert result.tokens_out == result.tokens_in - (int(vault.insurance_fund()) + result.dust) // x.token_scale
    assert 0 <= result.dust < 10 * x.token_scale + 10**18  # a few token units plus the virtual share's part
    assert (int(x.d.usd.balanceOf(vault)), int(vault.position(trader, 0, eth).size), int(vault.lp_shares(lp))) == before
    assert ledger_check(x, book).ok and open_interest_check(x, book).ok


def test_checks__crash_with_bad_debt_and_paused_market__exit_liquidates_first(x, book, lp, liquidator, eth):
    from perpdex.bench import feed_prices

    vault = x.vault
    x.d.guard("pause_market", eth)  # closing never needs the market open
    feed_prices(x, {eth: x.price(eth) * 80 // 100})  # -20%: the 18x long is far under water
    assert vault.is_liquidatable(book[2][0], 0) and vault.equity(book[2][0], 0) < 0

    result = everyone_exits(x, book, [lp], liquidator)

    assert result.ok, result.detail
    assert result.liquidated >= 1 and result.closed >= 2
    assert vault.is_liquidatable(book[2][0], 0)  # rolled back
    assert ledger_check(x, book).ok and open_interest_check(x, book).ok


def test_checks__a_missing_account_or_a_donation_is_caught(x, book, lp, liquidator, attacker):
    oi = open_interest_check(x, book[1:])  # the cross book's positions are left out
    assert not oi.ok and "ETH-USD: OI 36 long / 5 short != positions 6 long / 5 short" in oi.detail  # base units
    assert "BTC-USD" in oi.detail

    x.fund(attacker, x.tokens(7))
    x.d.usd.transfer(x.vault, x.tokens(7), sender=attacker)  # a donation: the books ignore it
    ledger = ledger_check(x, book)
    assert ledger.ok and "= $1,024,500.00 (surplus $7: donations)" in ledger.detail  # USD, not WAD
    stuck = everyone_exits(x, book, [lp], liquidator)
    assert not stuck.ok and "stuck in the vault" in stuck.detail  # nobody can take a donation out
    assert everyone_exits(x, book, [lp], liquidator, donations=x.tokens(7)).ok
    assert ledger_check(x, book + book[:1]).detail == ledger.detail  # an account named twice counts once
