"""The report's figures against numbers computed by hand from the receipts, its checks, and
its files."""

from __future__ import annotations

from typing import Any

from perpdex.model import WAD
from perpdex.report import Expected, build_report, print_report, write_report
from perpdex.report.build import usd


def decoded(history: Any, event: Any) -> list[Any]:
    return [ev for r in history.receipts for ev in r.decode_logs(event)]


def report_of(history: Any, lp: Any, liquidator: Any, **kw: Any) -> Any:
    return build_report(history.x, history.log, history.sampler, accounts=history.accounts, lps=[lp],
                        keeper=liquidator, title="test", **kw)


def test_event_log__receipt_added_twice__counts_once(history):
    before = len(history.log)
    assert sum(history.log.add_receipt(r) for r in history.receipts) == 0
    assert len(history.log) == before
    names = {e.name for e in history.log.events}
    assert {"Deposit", "PositionModified", "FundingAccrued", "FundingSettled", "PriceUpdated", "Liquidation",
            "PositionLiquidated", "BadDebtCovered", "Withdraw"} <= names


def test_event_log__matches_apes_decoding(history):
    ours = [e for e in history.log.events if e.name == "PositionModified"]
    apes = decoded(history, history.x.vault.PositionModified)
    assert [e.args for e in ours] == [dict(ev.event_arguments) for ev in apes]
    assert [e.block for e in ours] == [ev.block_number for ev in apes]


def test_figures__trades_volume_fees__from_receipts(history, lp, liquidator):
    report = report_of(history, lp, liquidator, exit_check=False)
    trades = decoded(history, history.x.vault.PositionModified)
    assert report.summary["trades"] == len(trades) == 6
    assert report.summary["fees_usd"] == usd(sum(int(t.fee) for t in trades))
    assert report.summary["volume_usd"] == usd(sum(abs(int(t.size_delta)) * int(t.fill_price) // WAD for t in trades))
    assert report.markets["BTC-USD"]["trades"] == 1
    assert report.summary["deposits_usd"] == 20_500.0  # token units to USD
    assert report.summary["withdrawals_usd"] == 100.0


def test_figures__partial_and_full_liquidation__counted_apart(history, lp, liquidator):
    report = report_of(history, lp, liquidator, exit_check=False)
    liquidations = decoded(history, history.x.vault.Liquidation)
    assert [int(ev.fraction) < WAD for ev in liquidations] == [True, False]
    assert (report.summary["liquidations_partial"], report.summary["liquidations_full"]) == (1, 1)
    assert [row.full for row in report.liquidations] == [False, True]
    assert report.summary["bad_debt_usd"] == usd(int(liquidations[1].bad_debt)) > 0
    covered = decoded(history, history.x.vault.BadDebtCovered)[0]
    assert report.summary["bad_debt_from_insurance_usd"] == usd(int(covered.from_insurance))
    assert report.summary["bad_debt_from_pool_usd"] == usd(int(covered.from_pool))
    assert int(covered.from_insurance) + int(covered.from_pool) + int(covered.to_adl) == int(covered.bad_debt)
    assert report.summary["bad_debt_to_adl_usd"] == usd(int(covered.to_adl))
    start = history.sampler.rows[0].pool_value
    cap = int(history.x.vault.pool_caps()[3])
    assert report.summary["pool_loss_cap_used_pct"] == round(int(covered.from_pool) * 100 / (start * cap // WAD), 4)
    # no deleverager runs here: ADL is pending at the end exactly when some went beyond the cap
    assert (report.summary["adl_pending_at_end"] == "none") == (int(covered.to_adl) == 0)
    # ... and LPs bear what the pool absorbed plus all it advanced to ADL (none recovered)
    assert report.summary["adl_unrecovered_usd"] == usd(int(covered.to_adl))
    assert report.summary["bad_debt_to_lps_usd"] == usd(int(covered.from_pool) + int(covered.to_adl))
    assert report.summary["bad_debt_to_lps_pct"] == round((int(covered.from_pool) + int(covered.to_adl)) * 100 / start, 4)
    assert report.summary["liquidation_fees_usd"] == usd(sum(int(ev.fee) for ev in liquidations))


def test_figures__keeper_reward__equals_keepers_token_balance_change(history, lp, liquidator):
    report = report_of(history, lp, liquidator, exit_check=False)
    transfers = decoded(history, history.x.d.usd.Transfer)
    received = sum(int(t.value) for t in transfers if str(t.receiver) == str(liquidator))
    assert report.summary["keeper_rewards_usd"] == received / 10 ** int(history.x.d.usd.decimals()) > 0
    assert sum(r.keeper_reward for r in report.liquidations) == received * history.x.token_scale  # WAD USD


def test_figures__funding__zero_sum_between_longs_shorts_and_pool(history, lp, liquidator):
    report = report_of(history, lp, liquidator, exit_check=False)
    s = report.summary
    assert s["funding_history"] == "complete"
    assert s["funding_paid_by_longs_usd"] > 0  # ETH skew is long: longs pay
    assert abs(s["funding_paid_by_longs_usd"] - s["funding_received_by_shorts_usd"] - s["funding_to_pool_usd"]) < 1e-6
    zero_sum = next(c for c in report.checks if c.name == "funding is zero-sum")
    assert zero_sum.ok, zero_sum.detail


def test_figures__pool_insurance_prices__from_samples_and_events(history, lp, liquidator):
    report = report_of(history, lp, liquidator, exit_check=False)
    s, eth = report.summary, report.markets["ETH-USD"]
    assert s["insurance_end_usd"] == usd(int(history.x.vault.insurance_fund()))
    assert s["pool_value_end_usd"] == usd(int(history.x.vault.pool_value()))
    assert (eth["price_start_usd"], eth["price_min_usd"], eth["price_end_usd"]) == (3000.0, 2770.0, 2770.0)
    assert s["price_updates"] == len(decoded(history, history.x.d.oracle.PriceUpdated))


def test_checks__all_pass__including_everyone_exits__accounts_taken_from_events(history, lp, liquidator):
    report = build_report(history.x, history.log, history.sampler, lps=[lp], keeper=liquidator)
    assert report.summary["accounts"] == len(history.accounts) == 4
    names = [c.name for c in report.checks]
    assert names[:5] == ["vault balance == ledger", "open interest == positions", "funding is zero-sum",
                         "everyone can exit", "bad debt to LPs <= 1% of the pool"]
    assert report.ok, report.failed


def test_checks__simulator_disagrees__failed_check(history, lp, liquidator):
    right = Expected(trades=6, liquidations=2, deposits_tokens=history.x.tokens(20_500))
    assert report_of(history, lp, liquidator, expected=right, exit_check=False).ok
    wrong = Expected(trades=7, withdrawals_tokens=history.x.tokens(100))
    report = report_of(history, lp, liquidator, expected=wrong, exit_check=False)
    assert not report.ok
    assert [(c.name, c.detail) for c in report.failed] == [("simulator == chain: trades", "simulator 7, chain 6 (off by +1)")]


def test_output__charts_html_json_written(history, lp, liquidator, tmp_path):
    from rich.console import Console

    report = report_of(history, lp, liquidator, exit_check=False)
    files = write_report(report, tmp_path)
    pngs = {n: p for n, p in files.items() if p.suffix == ".png"}
    assert set(pngs) == {"price_liquidations", "funding_rate", "open_interest", "pool_insurance", "equity_distribution",
                         "stop_fills"}
    for path in pngs.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1024
    page = files["report.html"].read_text()
    assert page.count("data:image/png;base64,") == 6 and "funding is zero-sum" in page
    assert '"ok": true' in files["summary.json"].read_text()
    console = Console(record=True, width=160)
    print_report(report, console)
    text = console.export_text()
    assert "Liquidations (2 of 2)" in text and "all passed" in text
