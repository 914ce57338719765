"""The Python side of funding: the overview the CLI prints and the funding keeper."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from perpdex import model
from perpdex.cli import main
from perpdex.funding import funding_overview, position_funding
from perpdex.chain import move_time
from perpdex.keepers.funding import FundingKeeper
from perpdex.model import DAY, WAD

HOUR = 3600


def warp(chain: Any, x: Any, seconds: int, refresh: bool = True) -> None:
    move_time(seconds)
    if refresh:
        x.refresh_prices()


def skew_eth(x: Any, trader: Any, trader2: Any) -> None:
    for who, size in ((trader, 150 * WAD), (trader2, -30 * WAD)):
        x.deposit(who, x.tokens(100_000))
        x.trade(who, 0, size)


def test_overview__matches_views_and_model(x, vault, trader, trader2, chain, eth, lens):
    skew_eth(x, trader, trader2)
    warp(chain, x, 6 * HOUR)
    eth_row, btc_row = funding_overview(x)
    rate, index = vault.funding(eth)
    assert (eth_row.skew, eth_row.rate, eth_row.index) == (120 * WAD, rate, index)
    assert eth_row.predicted == {h: lens.predicted_funding_rate(eth, h) for h in (1, 8, 24)}
    assert eth_row.rate_per_hour == rate // 24 and eth_row.apr == rate * 365
    # a long pays over the next day the trapezoid of today's rate and tomorrow's, at the price
    expected = -(rate + eth_row.predicted[24]) * 3_000 * WAD // (2 * WAD)
    assert abs(eth_row.long_unit_day - expected) <= 1
    assert btc_row.rate == 0 and btc_row.long_unit_day == 0
    (mine,) = position_funding(x, trader, 0)
    assert mine.accrued == lens.accrued_funding(trader, 0, eth) < 0
    assert mine.next_day == model.funding_over(150 * WAD, rate, 120 * WAD, 3_000 * WAD, DAY, x.params(eth)) < 0


def test_cli_funding_example__prints_rates_predictions_and_position():
    result = CliRunner().invoke(main, ["funding", "--example"])
    assert result.exit_code == 0, result.output
    for expected in ("Funding", "ETH-USD", "APR", "in 8h", "next 24h", "150.0000", "-486.0000"):
        assert expected in result.output


def test_keeper__pokes_idle_markets_only(x, vault, trader, trader2, liquidator, chain):
    skew_eth(x, trader, trader2)
    lines: list[str] = []
    bot = FundingKeeper(x, liquidator, max_idle=HOUR, report=lines.append)
    assert bot.step() == []  # just traded / just deployed within the hour? ETH yes; BTC maybe
    warp(chain, x, 2 * HOUR)
    x.trade(trader2, 0, -WAD)  # ETH accrues by itself through trading
    poked = bot.step()
    assert [p.market for p in poked] == [1]  # only BTC was idle
    assert vault.market_state(1).last_funding_time == chain.blocks.head.timestamp
    warp(chain, x, 2 * HOUR)
    poked = bot.step()
    assert sorted(p.market for p in poked) == [0, 1]
    assert all(p.gas > 0 and p.idle >= 2 * HOUR for p in poked)
    assert poked[0].rate == vault.funding(0)[0] > 0
    assert any("poked ETH-USD" in line for line in lines)


def test_keeper__second_instance_and_restart_send_nothing_more(x, vault, trader, trader2, liquidator, attacker, chain):
    skew_eth(x, trader, trader2)
    warp(chain, x, 2 * HOUR)
    first = FundingKeeper(x, liquidator, max_idle=HOUR, report=lambda _: None)
    second = FundingKeeper(x, attacker, max_idle=HOUR, report=lambda _: None)
    assert len(first.step()) == 2
    nonce = attacker.nonce
    assert second.step() == []  # a second keeper sees fresh markets and sends nothing
    restarted = FundingKeeper(x, liquidator, max_idle=HOUR, report=lambda _: None)
    assert restarted.step() == []  # a restart reads the same chain state
    assert attacker.nonce == nonce


def test_keeper__stale_price__skips_and_says_so(x, vault, liquidator, chain):
    warp(chain, x, 2 * HOUR, refresh=False)
    lines: list[str] = []
    bot = FundingKeeper(x, liquidator, max_idle=HOUR, report=lines.append)
    assert bot.step() == []
    assert bot.skipped_stale == 2 and "oracle price stale" in lines[0]


def test_keeper__run_survives_errors_with_backoff(x, liquidator, monkeypatch):
    lines: list[str] = []
    bot = FundingKeeper(x, liquidator, max_idle=HOUR, report=lines.append)
    calls = iter([ConnectionError("rpc down"), []])

    def flaky() -> list:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(bot, "step", flaky)
    monkeypatch.setattr("perpdex.keepers.common.time.sleep", lambda s: lines.append(f"slept {s}"))
    bot.run(interval=1, iterations=2)
    assert "error: ConnectionError: rpc down" in lines[0]
    assert lines[1] == "slept 2"  # backed off
