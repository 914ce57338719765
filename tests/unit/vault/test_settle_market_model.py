"""`settle_market` and `close_settled` against the reference model (perpdex/model.py): the
frozen funding, the values at the final price, the closes without fee or price impact, and a
bankrupt account's shortfall down the waterfall. Atomic trading (the margin-math deployment)."""

from __future__ import annotations

import ape

from perpdex.chain import move_time
from perpdex.model import WAD

ETH = 0


def test_settle_and_close__chain_equals_model(x, vault, oracle, trader, trader2, attacker, model_of, chain):
    m = model_of()
    for who, size, usd in ((trader, 20 * WAD, 5_000), (trader2, -5 * WAD, 10_000)):
        x.deposit(who, x.tokens(usd))
        m.deposit(str(who), 0, x.tokens(usd))
        bound = 2**256 - 1 if size > 0 else 0
        vault.modify_position(0, ETH, size, bound, sender=who)
        m.modify_position(str(who), 0, ETH, size, bound)
    move_time(int(oracle.max_price_age()) + 3_600)  # funding accrues; the feeder is gone
    last, updated_at = (int(v) for v in oracle.latest(ETH))
    final = last * 4 // 5  # the long's 20 ETH lose 12,000 USD on 5,000 of collateral: bankrupt
    x.d.govern(vault, "settle_market", ETH, final)
    m.now = int(chain.blocks.head.timestamp)
    assert m.settle_market(ETH, final, updated_at, int(oracle.max_price_age()), int(oracle.max_price_jump())) == final
    st, mine = vault.market_state(ETH), m.markets[ETH]
    assert (st.funding_rate, st.funding_index, st.last_funding_time) == (0, mine.funding_index, mine.last_funding_time)
    move_time(86_400)  # nothing moves any more
    m.now = int(chain.pending_timestamp)
    assert vault.funding(ETH) == m.funding_now(ETH) == (0, mine.funding_index)
    assert int(vault.pool_value()) == m.pool_value()
    for who in (trader, trader2):
        assert x.health(who) == m.health(str(who), 0)
    with ape.reverts("vault: market settled"):
        vault.modify_position(0, ETH, -WAD, 0, sender=trader2)  # growing the short: new risk
    for who in (trader2, trader):
        vault.close_settled(who, 0, ETH, sender=attacker)
        result = m.close_settled(str(who), 0, ETH)
        assert (result.fill_price, result.fee) == (final, 0)
        assert int(vault.collateral(who, 0)) == m.collateral[(str(who), 0)]
    assert m.collateral[(str(trader), 0)] == 0  # the shortfall went down the waterfall
    assert (int(vault.pool_balance()), int(vault.insurance_fund())) == (m.pool_balance, m.insurance_fund)
    assert vault.market_state(ETH).oi_long == vault.market_state(ETH).oi_short == 0
