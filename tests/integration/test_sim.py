"""The market simulation on the embedded chain at a small size: the demo and each stress
scenario run, and their reports (numbers from chain events and state only) say what the
scenario should do; the simulator's own bookkeeping equals the chain's."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from perpdex.cli import main
from perpdex.model import WAD
from perpdex.report import Report, write_report
from perpdex.sim import SCENARIOS, SimResult, Simulation, scenario
from perpdex.sim.traders import Trader

BOOKKEEPING = {"trades", "liquidations", "deposits", "withdrawals", "lp added", "price updates", "conditional placed",
               "conditional filled"}


def run(name: str, **changes: object) -> SimResult:
    result = Simulation(scenario(name, **changes)).run()
    print(f"{name}: {result.config.traders} traders, {result.config.blocks} blocks, "
          f"{result.blocks_per_second:.1f} blocks/s (under load)")
    return result


def assert_checks_pass(report: Report) -> None:
    """Every check the report ran passed (ledger, OI, funding zero-sum, everyone exits, ...)."""
    failed = report.failed
    assert not failed, "\n".join(f"{c.name}: {c.detail}" for c in failed)


def all_long(t: Trader) -> bool:
    return all(side > 0 for _, side in t.legs)


def test_demo__runs__every_check_passes__simulator_equals_chain(tmp_path: Path):
    result = run("demo", traders=10, blocks=40)
    report, s = result.report, result.report.summary
    assert report.ok, [f"{c.name}: {c.detail}" for c in report.failed]
    compared = {c.name.removeprefix("simulator == chain: ") for c in report.checks if c.name.startswith("simulator")}
    assert compared == BOOKKEEPING
    assert s["trades"] == result.books.trades > 10
    # two markets, one update a block (no GBM step near the 25% limit), the round the LP's
    # deposit settled at, and a settlement round in each block where traders sent requests
    assert 2 * 39 + 2 < s["price_updates"] <= 2 * 39 + 2 + 2 * 39
    # every trade was a two-step request, filled at the feeder's next round, 2 seconds on
    assert s["requests_committed"] == s["requests_settled"] + s["requests_cancelled"] > s["trades"] - s["conditional_filled"]
    assert s["requests_pending_at_end"] == 0
    # the trades are the requests' fills (and the LP's deposit is one more) and the conditional orders'
    assert s["requests_settled"] + s["conditional_filled"] == s["trades"] + 1
    assert s["commit_to_fill_seconds_median"] == 2 and s["commit_to_fill_seconds_max"] < 60
    assert {t.style for t in result.traders} == {"fixed", "dynamic", "stop_loss", "hedged"}
    assert float(s["volume_usd"]) > 100_000 and int(s["accounts"]) == 10
    # the stop-loss traders' orders: a stop-loss on every open leg (a take-profit paired with
    # some), a limit entry; all the simulator placed and filled is what the chain's events say
    stops = [t for t in result.traders if t.style == "stop_loss"]
    assert all(t.protected for t in stops if t.opened)
    kinds = str(s["conditional_placed_by_kind"])
    assert "stop-loss: " in kinds and "take-profit: " in kinds and "limit: " in kinds
    assert s["conditional_placed"] == result.books.conditional_placed == (
        s["conditional_filled"] + s["conditional_cancelled"] + s["conditional_open_at_end"])


def test_demo__charts_and_html_are_written_and_not_empty(tmp_path: Path):
    result = run("demo", traders=8, blocks=30)
    paths = write_report(result.report, tmp_path)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == sorted(f"{n}.png" for n in (
        "price_liquidations", "funding_rate", "open_interest", "pool_insurance", "equity_distribution", "stop_fills"))
    assert all((tmp_path / n).stat().st_size > 5_000 for n in pngs)
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6
    assert (tmp_path / "summary.json").stat().st_size > 500 and len(paths) >= 7


def test_demo__same_seed_same_chain_figures():
    first, second = run("demo", traders=6, blocks=25), run("demo", traders=6, blocks=25)
    where = {"first_block", "last_block"}  # the second run follows the first on the same chain
    assert {k: v for k, v in first.report.summary.items() if k not in where} == {
        k: v for k, v in second.report.summary.items() if k not in where}


def test_demo__same_seed_in_two_processes__the_same_summary_to_the_last_digit(tmp_path: Path):
    """Block times come from the simulation, not the wall clock (perpdex.chain.frozen_clock):
    two separate runs of the same seed, each on a fresh embedded chain, at whatever speed the
    machine runs them, write the same summary (events, volume, funding, pool value...)."""
    import subprocess
    import sys

    summaries = []
    for i in (1, 2):
        out = tmp_path / f"run{i}"
        done = subprocess.run([sys.executable, "-c", "from perpdex.cli import main; main()", "demo", "--traders", "8",
                               "--blocks", "30", "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        summaries.append((out / "summary.json").read_text())
    assert summaries[0] == summaries[1]


def test_crash__liquidates_the_high_leverage_longs__insurance_pays_the_bad_debt_first():
    result = run("crash", traders=12, blocks=45, seconds_per_block=120)  # an hour is 30 blocks
    report, s = result.report, result.report.summary
    assert_checks_pass(report)
    assert float(s["ETH-USD.price_min_usd"]) == 1_800.0  # down 40%
    liquidated = set(t.index for t in result.liquidated())
    high_leverage_longs = {t.index for t in result.traders if all_long(t) and t.leverage >= 10 and t.style != "stop_loss"}
    assert high_leverage_longs and high_leverage_longs <= liquidated
    assert all(all_long(result.traders[i]) for i in liquidated)  # no short, no hedged book
    # the insurance fund (built by the liquidation fees) pays first, the pool only what it lacked
    # (here, since the stop-loss traders leave through their orders rather than liquidations,
    # about 100 of 600 USD: 0.002% of the pool), nothing reaches ADL
    assert float(s["bad_debt_from_insurance_usd"]) > 0
    assert float(s["bad_debt_from_pool_usd"]) == 0.0 or float(s["insurance_end_usd"]) == 0.0
    assert float(s["bad_debt_to_lps_pct"]) < 0.01 and float(s["bad_debt_to_adl_usd"]) == 0.0
    assert float(s["bad_debt_usd"]) == pytest.approx(
        float(s["bad_debt_from_insurance_usd"]) + float(s["bad_debt_from_pool_usd"]), abs=1e-5)
    assert float(s["keeper_rewards_usd"]) > 0


def test_gap__the_feeder_splits_a_20_percent_gap_into_steps_within_the_10_percent_limit():
    result = run("gap", traders=10, blocks=30)
    report, s = result.report, result.report.summary
    assert_checks_pass(report)
    eth = [int(e.args["price"]) for e in report.events if e.name == "PriceUpdated" and int(e.args["market"]) == 0]
    # the gap in steps of at most 10% (settlement rounds repeat the prices the path is at)
    assert list(dict.fromkeys(eth)) == [3_000 * WAD, 2_700 * WAD, 2_430 * WAD, 2_400 * WAD]
    assert all(abs(b - a) * 10 <= a for a, b in zip(eth, eth[1:]))
    assert int(s["liquidations"]) >= 1
    # the stop-losses the gap jumps are triggered at 2,400 and fill there, far below their
    # triggers (each half the way to its trader's wipe-out: within 10% of the entry at 3,000);
    # their OCO take-profits are cancelled
    fills = report.stop_fills
    assert fills and all(f.side < 0 and f.fill_price < f.trigger_price for f in fills)
    assert all(abs(f.fill_price - 2_400 * WAD) < 24 * WAD for f in fills if f.market == 0)  # price impact < 1%
    assert float(s["stop_slippage_worst_bps"]) >= float(s["stop_slippage_mean_bps"]) > 1_000
    assert "router: OCO leg filled" in str(s["conditional_cancelled_by_reason"])
    assert float(s["bad_debt_to_lps_pct"]) <= 1.0


def test_squeeze__liquidates_shorts_only():
    result = run("squeeze", traders=12, blocks=45, seconds_per_block=120)
    s = result.report.summary
    assert_checks_pass(result.report)
    assert float(s["ETH-USD.price_max_usd"]) == 4_050.0  # up 35%
    liquidated = result.liquidated()
    assert liquidated and all(not all_long(t) for t in liquidated)


def test_bleed__longs_pay_funding_to_the_pool_and_shorts():
    result = run("bleed", traders=10, blocks=40, seconds_per_block=1800)
    s = result.report.summary
    assert_checks_pass(result.report)
    assert float(s["funding_paid_by_longs_usd"]) > 500
    assert float(s["funding_to_pool_usd"]) > 0
    assert -0.125 < float(s["ETH-USD.price_end_usd"]) / float(s["ETH-USD.price_start_usd"]) - 1 < -0.115


def test_cli_stress_all__comparison_table_of_every_scenario(tmp_path: Path):
    out = CliRunner().invoke(main, ["stress", "--all", "--traders", "4", "--blocks", "12", "--out", str(tmp_path)])
    assert "Stress scenarios" in out.output, out.output
    for name in SCENARIOS:
        assert name in out.output
        assert (tmp_path / name / "report.html").exists() and (tmp_path / name / "timeseries.csv").exists()
    saved = (tmp_path / "comparison.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in saved] == ["Scenario", *SCENARIOS]
    assert all(f"| {name} |" in (tmp_path / "comparison.md").read_text() for name in SCENARIOS)


def test_cli_stress__needs_a_scenario_or_all():
    out = CliRunner().invoke(main, ["stress"])
    assert out.exit_code == 2 and "--scenario NAME" in out.output
    out = CliRunner().invoke(main, ["stress", "--scenario", "moon"])
    assert out.exit_code == 2 and "unknown scenario 'moon'" in out.output
