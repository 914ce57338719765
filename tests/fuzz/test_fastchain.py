"""FastChain (tests/fuzz/fastchain.py): its reads equal Ape's and the model's on a populated
book, and on boa they really bypass Ape."""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

import ape
import pytest

from fastchain import FastChain, State, model_state  # tests/fuzz is on sys.path (prepend mode)
from perpdex.chain import move_time
from perpdex.model import WAD, VaultModel
from perpdex.sdk import MAX_UINT256, Exchange

SUBS = (0, 1)
MARKETS = (0, 1)
# (trader index, sub, market, size) opened on a fresh book; trader 2 stays empty
BOOK = ((0, 0, 0, 2 * WAD), (0, 0, 1, -WAD // 20), (1, 0, 1, WAD // 10), (1, 1, 0, -3 * WAD))
DEPOSITS = ((0, 0, 20_000), (1, 0, 15_000), (1, 1, 10_000), (2, 1, 500))


@pytest.fixture
def book(x: Exchange, trader: Any, trader2: Any, attacker: Any, model_of: Any) -> tuple[list[Any], VaultModel]:
    """Three traders (one only with collateral), positions in both markets on two subs, the LP
    pool, a day of funding and a price move; the model driven through the same actions."""
    traders, m = [trader, trader2, attacker], model_of()
    for who, sub, usd in DEPOSITS:
        x.deposit(traders[who], x.tokens(usd), sub=sub)
        m.deposit(str(traders[who]), sub, x.tokens(usd))
    for who, sub, mk, size in BOOK:
        bound = MAX_UINT256 if size > 0 else 0
        m.now = int(ape.chain.pending_timestamp)
        m.modify_position(str(traders[who]), sub, mk, size, bound)
        x.vault.modify_position(sub, mk, size, bound, sender=traders[who])
    move_time(86_400)
    x.refresh_prices()
    new_price = x.price(0) * 103 // 100
    x.set_price(0, new_price)
    m.now, m.prices[0], m.prices[1] = int(ape.chain.blocks.head.timestamp), new_price, x.price(1)
    return traders, m


def ape_state(x: Exchange, traders: list[Any], lps: list[Any], keeper: Any) -> State:
    """The same numbers as FastChain.state, read through Ape's contract handles."""
    v = x.vault

    def account(owner: Any, sub: int) -> State:
        markets = x.open_markets(owner, sub)
        return {"open_markets": markets, "health": astuple(x.health(owner, sub)),
                "withdrawable": int(v.withdrawable(owner, sub)),
                "positions": {mk: astuple(x.position(owner, sub, mk)) for mk in markets}}

    return {
        "time": int(ape.chain.blocks.head.timestamp),
        "markets": {mk: {"price": x.price(mk), "state": tuple(int(f) for f in v.market_state(mk)),
                         "funding": tuple(int(f) for f in v.funding(mk)), "paused": bool(v.market_paused(mk)),
                         "adl": [tuple(int(f) for f in v.adl_pending(mk, side)) for side in (0, 1)]}
                    for mk in MARKETS},
        "pool": {"balance": int(v.pool_balance()), "value": int(v.pool_value()),
                 "insurance_fund": int(v.insurance_fund()), "total_lp_shares": int(v.total_lp_shares()),
                 "paused": bool(v.paused()), "unpaid_losses": int(v.unpaid_losses()),
                 "loss_window": tuple(int(f) for f in v.loss_window())},
        "lp_shares": [int(v.lp_shares(lp)) for lp in lps],
        "accounts": {(w, s): account(owner, s) for w, owner in enumerate(traders) for s in SUBS},
        "keeper_paid": [0],
    }


def fast_state(fc: FastChain, traders: list[Any], lps: list[Any], keeper: Any) -> State:
    return fc.state(traders, SUBS, MARKETS, lps, {keeper: fc.call(fc.x.d.usd, "balanceOf", keeper)})


def test_state__populated_book__equals_ape_reads_field_by_field(x, book, lp, liquidator):
    traders, _ = book
    fast, slow = fast_state(FastChain(x), traders, [lp], liquidator), ape_state(x, traders, [lp], liquidator)
    assert fast.keys() == slow.keys()
    for key in slow:
        assert fast[key] == slow[key], key
    opened = {(w, s): a["open_markets"] for (w, s), a in fast["accounts"].items() if a["open_markets"]}
    assert opened == {(0, 0): [0, 1], (1, 0): [1], (1, 1): [0]}  # the book really is populated
    assert all(a["health"][2] != 0 for a in fast["accounts"].values() if a["open_markets"])  # a day of funding


def test_state__populated_book__equals_model_state(x, book, lp, liquidator):
    traders, m = book
    m.lp_shares[str(lp)] = int(x.vault.lp_shares(lp))
    chain_state = fast_state(FastChain(x), traders, [lp], liquidator)
    assert chain_state == model_state(m, [str(t) for t in traders], SUBS, MARKETS, [str(lp)], [str(liquidator)])


def test_state__on_boa__never_goes_through_ape(x, book, lp, liquidator, monkeypatch):
    traders, _ = book
    fc = FastChain(x)
    assert ape.chain.provider.name == "boa" and fc.fast

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("FastChain used Ape's provider.send_call on boa")

    expected = fast_state(fc, traders, [lp], liquidator)
    monkeypatch.setattr(type(ape.chain.provider), "send_call", refuse)
    assert fast_state(fc, traders, [lp], liquidator) == expected


def test_state__ape_fallback_path__equals_fast_path(x, book, lp, liquidator):
    """The path every other provider takes (provider.send_call), exercised on boa."""
    traders, _ = book
    fc, fallback = FastChain(x), FastChain(x)
    fallback.env = None
    assert not fallback.fast
    assert fast_state(fallback, traders, [lp], liquidator) == fast_state(fc, traders, [lp], liquidator)


def test_call__plain_values_like_ape(x, trader, lp):
    fc = FastChain(x)
    assert fc.call(x.vault, "lp_shares", lp) == int(x.vault.lp_shares(lp)) > 0
    assert fc.call(x.vault, "paused") is False
    assert fc.call(x.d.oracle, "latest", 0) == tuple(int(v) for v in x.d.oracle.latest(0))
    assert fc.call(x.d.lens, "open_markets", trader, 0) == ()


def test_call__revert__raises_the_reason_like_ape(x):
    with ape.reverts("lens: unknown market"):
        FastChain(x).call(x.d.lens, "fill_price", 99, WAD)
