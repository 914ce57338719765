"""The loss waterfall's end on Anvil, driven as an operator would (issue 17, SPEC 14): a gap
leaves 20 shorts bankrupt beyond the pool's loss cap; `perpdex keeper liquidator` (a separate
process) liquidates them, skipping a stale-market attacker and a dust account; the rest of
the bad debt is booked to ADL; `perpdex adl --json` ranks the longs that owe it and one pass
of `perpdex keeper adl` closes them at the bankruptcy price, which gives the pool back what
it advanced. A depositor without a position pays nothing."""

from __future__ import annotations

import pytest
from ape import accounts, chain

from perpdex.bench_live import (BOOK_COLLATERAL_USD, BOT_ACCOUNT, GAP_BOT_OPTIONS, GAP_BYSTANDER, GAP_BYSTANDER_USD,
                                GAP_LONGS, GAP_LOSS_CAP, GAP_PRICE, adl_pass, deleveraged, gap, gap_book,
                                gap_deployment, waterfall)
from perpdex.chain import DEVNET, connect
from perpdex.model import ADL_LONGS, ADL_SHORTS, WAD
from perpdex.processes import cli_json, liquidator_process

pytestmark = pytest.mark.anvil

USD_WEI = 10**12  # a millionth of a USD, in WAD: the per-close rounding of a bankruptcy price


def test_anvil_gap__bad_debt_beyond_the_loss_cap__liquidated__ranked_and_deleveraged_by_the_cli(devnet, tmp_path, bots):
    with connect(DEVNET, host=devnet.url, manage_process=False):
        x, deployment = gap_deployment(tmp_path)
        book = gap_book(x, per_owner=5)  # 20 shorts, 1 ETH on 300 USD each
        vault, bystander = x.vault, accounts.test_accounts[GAP_BYSTANDER]
        cash_before = int(vault.pool_balance()) - int(vault.unpaid_losses())
        bot = liquidator_process(devnet.url, deployment, tmp_path / "bot.db", BOT_ACCOUNT, options=GAP_BOT_OPTIONS)
        bots.append(bot)
        bot.wait_for(f"tracked {book.tracked} | open {book.tracked} | liquidatable 0", timeout=90)

        gapped_at = gap(x)
        bot.wait_for(f"cleared {len(book.shorts)} account(s)", timeout=90)
        bot.wait_for(f"skipped {book.attacker[0]}/0: oracle: stale price")
        bot.wait_for(f"dust: not liquidating {book.dust[0]}/1")
        bot.wait_for("| backed off 1 | dust 1")
        bot.stop()

        # the liquidator: every bankrupt short, each once, in one batch in the gap's block or the next
        w = waterfall(x, gapped_at)
        assert sorted(w.liquidated) == sorted(book.shorts) and len(w.per_tx) == 1
        assert w.blocks[-1] - gapped_at <= 1
        assert x.d.keeper.liquidatable(*zip(book.attacker, book.dust)) == [True, True]  # left alone, with reasons
        # the waterfall: each short ~300 past its collateral; the pool spends its whole budget
        # (its loss cap of the cash it held when the window opened), ADL takes the rest
        assert w.bad_debt > len(book.shorts) * (GAP_PRICE - 3_000 * WAD - BOOK_COLLATERAL_USD * WAD) / WAD
        assert w.bad_debt == pytest.approx(w.from_insurance + w.from_pool + w.to_adl, abs=1e-9)
        assert int(vault.loss_window()[1]) == 0 and w.to_adl > w.from_pool
        assert w.from_pool == pytest.approx(cash_before * GAP_LOSS_CAP / WAD, rel=1e-3)
        owed, price, _ = (int(v) for v in vault.adl_pending(0, ADL_LONGS))
        assert owed / WAD == w.adl_booked and 0 < owed < len(book.shorts) * WAD  # shorts fully on the pool book none
        assert tuple(vault.adl_pending(0, ADL_SHORTS)) == (0, 0, 0)
        assert 3_000 * WAD < price < GAP_PRICE  # the longs give up part of their profit, never a loss
        value_before = int(vault.pool_value())

    # `perpdex adl --json`: the owing side and its ranking, as an operator reads it
    [row] = cli_json("adl", "--json", "--port", str(devnet.port), "--deployment", str(deployment))
    assert (row["market"], row["owing_side"], row["size"]) == ("ETH-USD", "longs", owed / WAD)
    assert row["bankruptcy_price_usd"] == price / WAD and row["mark_price_usd"] == GAP_PRICE / WAD
    ranked = row["candidates"]
    # only the longs: no short, not the attacker, not the dust account, not the bystander
    assert [(c["owner"], c["sub"]) for c in ranked] == book.longs
    assert [c["rank"] for c in ranked] == [1, 2, 3]
    assert [c["size"] for c in ranked] == [eth for _, eth, _ in GAP_LONGS]
    for c in ranked:  # profit at the mark, and the key they are ranked by
        assert c["profit_usd"] == pytest.approx(c["size"] * (GAP_PRICE / WAD - c["entry_price_usd"]), rel=1e-9)
        assert c["return_on_equity"] == pytest.approx(c["profit_usd"] / c["equity_usd"], rel=1e-9)
    assert [c["return_on_equity"] for c in ranked] == sorted((c["return_on_equity"] for c in ranked), reverse=True)

    with connect(DEVNET, host=devnet.url, manage_process=False):
        since = int(chain.blocks.head.number) + 1
        sizes_before = {who: int(x.position(who, sub, 0).size) for who, sub in book.longs}
    # `perpdex keeper adl --once`: the best-ranked first, until nothing is owed
    run = adl_pass(devnet.url, deployment)
    closes = run.of("deleveraged")
    assert run.of("skipped") == [] and run.seconds > 0
    assert [(c["owner"], c["sub"]) for c in closes] == book.longs[:len(closes)]
    assert sum(c["closed"] for c in closes) == pytest.approx(owed / WAD, abs=1e-12)
    assert [c["closed"] for c in closes[:-1]] == [eth for _, eth, _ in GAP_LONGS[:len(closes) - 1]]  # all but the last in full

    with connect(DEVNET, host=devnet.url, manage_process=False):
        assert tuple(vault.adl_pending(0, ADL_LONGS)) == (0, 0, 0)
        done = deleveraged(x, since)
        assert done.size == pytest.approx(owed / WAD, abs=1e-12) and done.positions == len(closes)
        # the pool gets back what it advanced to ADL, and its value rises by that (a few
        # seconds of funding aside)
        assert abs(done.recovered - w.to_adl) <= len(closes) * USD_WEI / WAD
        assert int(vault.pool_value()) - value_before == pytest.approx(done.recovered * WAD, abs=WAD)
        for who, sub in book.longs[len(closes):]:  # not reached: untouched
            assert int(x.position(who, sub, 0).size) == sizes_before[who]
        # the bystander had no position: it paid nothing and withdraws everything it put in
        assert int(vault.collateral(bystander, 0)) == GAP_BYSTANDER_USD * WAD
        wallet = int(x.d.usd.balanceOf(bystander))
        vault.withdraw(0, x.tokens(GAP_BYSTANDER_USD), sender=bystander)
        assert int(x.d.usd.balanceOf(bystander)) - wallet == x.tokens(GAP_BYSTANDER_USD)
