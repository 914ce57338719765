"""Views agree with the model and never revert, even on stale prices."""

from perpdex import model
from perpdex.model import WAD


def test_health_views__match_model(x, vault, trader, eth, btc, open_position, model_of):
    open_position(trader, 10 * WAD, collateral_usd=5_000)
    x.trade(trader, btc, -WAD // 4)
    x.set_price(eth, 3_100 * WAD)
    h = x.health(trader)
    pos_e, pos_b = x.position(trader, 0, eth), x.position(trader, 0, btc)
    upnl = model.unrealized_pnl(pos_e.size, pos_e.entry_price, 3_100 * WAD) + model.unrealized_pnl(
        pos_b.size, pos_b.entry_price, 60_000 * WAD
    )
    assert h.unrealized_pnl == upnl
    assert vault.equity(trader, 0) == h.collateral + upnl + h.funding
    assert vault.initial_margin(trader, 0) == model.initial_margin(pos_e.size, 3_100 * WAD, x.params(eth)) + model.initial_margin(
        pos_b.size, 60_000 * WAD, x.params(btc)
    )
    assert vault.maintenance_margin(trader, 0) == model.maintenance_margin(pos_e.size, 3_100 * WAD, x.params(eth)) + model.maintenance_margin(
        pos_b.size, 60_000 * WAD, x.params(btc)
    )


def test_is_liquidatable__flips_when_equity_crosses_mm(x, vault, trader, eth, open_position):
    open_position(trader, 60 * WAD, collateral_usd=10_000)
    assert not vault.is_liquidatable(trader, 0)
    x.set_price(eth, 2_850 * WAD)
    h = x.health(trader)
    assert h.equity < h.maintenance_margin
    assert vault.is_liquidatable(trader, 0)


def test_views__stale_prices__never_revert(x, vault, trader, open_position, chain, oracle, lens):
    open_position(trader, 10 * WAD)
    chain.pending_timestamp += 10 * oracle.max_price_age()
    chain.mine()
    assert vault.equity(trader, 0) > 0
    assert vault.withdrawable(trader, 0) > 0
    assert not vault.is_liquidatable(trader, 0)
    assert vault.pool_value() > 0
    assert lens.fill_price(0, WAD) > 3000 * WAD


def test_empty_account__zeros(vault, attacker, lens):
    assert vault.equity(attacker, 3) == 0
    assert vault.initial_margin(attacker, 3) == 0
    assert vault.maintenance_margin(attacker, 3) == 0
    assert not vault.is_liquidatable(attacker, 3)
    assert vault.withdrawable(attacker, 3) == 0
    assert lens.open_markets(attacker, 3) == []


def test_market_params__spec_units(vault, eth):
    p = vault.market_params(eth)
    assert p.max_leverage == 20 * WAD
    assert p.maintenance_margin_ratio == WAD * 25 // 1000


def test_fill_price__unknown_market__reverts(vault, lens):
    import ape

    with ape.reverts("lens: unknown market"):
        lens.fill_price(9, WAD)


def test_insurance_fund__starts_empty(vault):
    assert vault.insurance_fund() == 0
