"""`perpdex order` (SPEC 15, issue 18): the example on the embedded chain (the same output every
run; the stop filled past its trigger after a gap, the take-profit cancelled by the fill),
`order place` / `order cancel` against the session's routed deployment (`_devnet` replaced by
it, so no Anvil is needed), and the one-line errors of bad input. `order list` reads the
router's events with eth_getLogs, which the boa provider lacks: the Anvil test
(tests/integration/test_cli_orders_anvil.py) runs it."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from perpdex import cli
from perpdex.cli import main
from perpdex.conditional import CANCELLED, OPEN, STOP_LOSS, TAKE_PROFIT
from perpdex.model import WAD
from perpdex.sdk import MAX_ACCEPTABLE

ETH = 0


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line_error(result: Result) -> str:
    """The last line of a user error (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.strip()][-1]


@pytest.fixture
def on_routed_chain(monkeypatch: pytest.MonkeyPatch, rx: Any) -> Any:
    """The devnet commands use the session's routed deployment (two-step trading, as a devnet's)."""
    monkeypatch.setattr(cli, "_devnet", lambda *_args, **_kwargs: nullcontext(rx))
    return rx


@pytest.fixture
def long10(rx: Any, trader: Any) -> Any:
    """The trader (test account 1, the CLI's default --account) holds 10 ETH long on 10,000 USD."""
    rx.deposit(trader, usd=10_000)
    rx.trade(trader, ETH, 10 * WAD)
    return trader


# ---------------------------------------------------------------- the example


def test_order_example__the_same_output_every_run__as_the_readme_shows_it():
    """Its clock starts at a fixed time and stays stopped: here, on the test session's chain,
    it prints exactly what a fresh `./run order --example` printed into the README (times and
    figures alike; rich pads table lines with spaces, which the README leaves out)."""
    result = run("order", "--example")
    assert result.exit_code == 0, result.output
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    shown = readme.split("so its output is the same every run:\n\n```text\n", 1)[1].split("```", 1)[0]
    assert [line.rstrip() for line in result.output.splitlines()] == shown.splitlines()
    assert "refused: router: trigger price not reached" in shown
    assert "take profit cancelled: router: OCO leg filled" in shown
    assert "triggered at: 2000000020" in shown  # the fixed clock (EXAMPLE_CLOCK) + the example's rounds


def test_order_example_json__the_gap_fills_past_the_trigger__the_take_profit_cancelled():
    result = run("order", "--example", "--json")
    assert result.exit_code == 0, result.output
    opened, placed, early, triggered, settled, after, account = json.loads(result.output)["steps"]
    assert [s["step"][:2] for s in (opened, placed, early, triggered, settled, after, account)] == \
        ["1.", "2.", "3.", "4.", "5.", "6.", "7."]
    [long] = opened["account"]["positions"]
    assert long["size"] == 10.0 and long["liquidation_price_usd"] < 2_810  # the stop's fill stays above it
    equity, collateral = opened["account"]["health"]["equity_usd"], opened["account"]["health"]["collateral_usd"]
    assert 9.9 < 30_000 / equity < 10.1  # 10x
    tp, sl = placed["orders"]
    assert (tp["kind"], sl["kind"], tp["oco"], sl["oco"]) == ("take-profit", "stop-loss", sl["id"], tp["id"])
    assert tp["size"] is sl["size"] is None and tp["side"] == sl["side"] == "sell"  # the whole long
    assert (tp["trigger_usd"], sl["trigger_usd"], tp["status"], sl["status"]) == (3_300.0, 2_900.0, "open", "open")
    assert early["figures"]["refused"] == "router: trigger price not reached" and early["figures"]["price_usd"] > 2_900
    t = triggered["figures"]
    assert t["price_usd"] == 2_820.0 < t["trigger_usd"]  # the gap went through the stop
    assert t["settle_after"] - t["triggered_at"] == 2  # the router's settlement delay
    s = settled["figures"]
    assert s["filled"] == -10.0 and 2_810 <= s["fill_price_usd"] < 2_810.1  # the next round's price, not the trigger
    assert s["slippage"] == pytest.approx((s["fill_price_usd"] - 2_900) / 2_900) and s["slippage"] < -0.03
    assert (s["take_profit"], s["take_profit_cancelled"]) == (tp["id"], "router: OCO leg filled")
    assert s["take_profit_refund_usd"] == 2 * s["keeper_reward_usd"] == 1.0  # both its rewards back
    tp_after, sl_after = after["orders"]
    assert (tp_after["status"], tp_after["outcome"]["cancelled"]) == ("cancelled", "router: OCO leg filled")
    assert sl_after["status"] == "filled" and sl_after["triggered_at"] == t["triggered_at"]
    assert sl_after["outcome"]["fill_price_usd"] == s["fill_price_usd"]
    health = account["account"]["health"]
    assert account["account"]["positions"] == []
    lost = 10 * (long["entry_price_usd"] - s["fill_price_usd"]) + s["fee_usd"]
    assert health["collateral_usd"] == pytest.approx(collateral - lost, abs=0.01)


# ---------------------------------------------------------------- place and cancel


def test_order_place_and_cancel__what_the_router_holds(on_routed_chain, long10, chain):
    x = on_routed_chain
    result = run("order", "place", "--kind", "stop-loss", "--market", "ETH-USD", "--trigger", "2,800")
    assert result.exit_code == 0 and "placed" in result.output, result.output
    sl = int(x.d.router.order_count())
    o = x.conditional(sl)
    assert (o.kind, o.side, o.size, o.trigger_price, o.acceptable_price, o.status) == \
        (STOP_LOSS, -1, 0, 2_800 * WAD, 0, OPEN)
    result = run("order", "place", "--kind", "take-profit", "--market", "ETH-USD", "--trigger", "3300", "--size", "4",
                 "--oco-with", str(sl))
    assert result.exit_code == 0, result.output
    tp = x.conditional(sl + 1)
    assert (tp.kind, tp.size, tp.oco, x.conditional(sl).oco) == (TAKE_PROFIT, 4 * WAD, sl, sl + 1)
    now = int(chain.blocks.head.timestamp)
    result = run("order", "place", "--kind", "stop", "--side", "buy", "--size", "1.5", "--market", "ETH-USD",
                 "--trigger", "3100", "--expiry", "1d")
    assert result.exit_code == 0, result.output
    stop = x.conditional(sl + 2)
    assert (stop.side, stop.size, stop.acceptable_price) == (1, 3 * WAD // 2, MAX_ACCEPTABLE)  # a buying stop: no bound
    assert now + 86_400 <= stop.expiry <= now + 86_400 + 2
    result = run("order", "cancel", str(sl + 2))
    assert result.exit_code == 0 and f"order {sl + 2} cancelled: 1.00 USD of escrow back" in result.output, result.output
    assert x.conditional(sl + 2).status == CANCELLED


def test_order_cancel__someone_elses__or_unknown__or_triggered__the_routers_reason(on_routed_chain, long10, trader2):
    x = on_routed_chain
    sl = x.place_order(long10, ETH, "stop-loss", 2_950.0)
    assert one_line_error(run("order", "cancel", str(sl), "--account", "2")) == "error: cancel refused: router: not the owner"
    assert one_line_error(run("order", "cancel", "999")) == "error: no conditional order 999: `perpdex order list` lists them"
    x.set_price(ETH, 2_940 * WAD)
    x.d.router.trigger(sl, sender=trader2)
    assert one_line_error(run("order", "cancel", str(sl))) == "error: cancel refused: router: order not open"


@pytest.mark.parametrize(("args", "says"), [
    (["--kind", "stop-loss", "--market", "DOGE-USD", "--trigger", "2800"], "error: unknown market 'DOGE-USD'"),
    (["--kind", "take-profit", "--market", "ETH-USD", "--trigger", "2800"],
     "error: order refused: router: take-profit at or past the price (it would fire at once"),
    (["--kind", "limit", "--side", "buy", "--size", "1", "--market", "ETH-USD", "--trigger", "2800", "--expiry", "1000"],
     "error: --expiry 1000 is in the past (the chain's time is"),
    (["--kind", "stop-loss", "--market", "ETH-USD", "--trigger", "2800", "--oco-with", "999"],
     "error: order refused: router: bad OCO leg (--oco-with takes an open take-profit or stop-loss"),
])
def test_order_place__refused_on_chain__one_line(on_routed_chain, long10, args, says):
    assert one_line_error(run("order", "place", *args)).startswith(says)


def test_order_place__no_position__the_hint_says_trade_first(on_routed_chain, trader2):
    line = one_line_error(run("order", "place", "--kind", "stop-loss", "--market", "ETH-USD", "--trigger", "2800",
                              "--account", "2"))
    assert line.startswith("error: order refused: router: no position to reduce") and "`perpdex trade`" in line


PLACE = ["order", "place", "--market", "ETH-USD"]


@pytest.mark.parametrize(("args", "says"), [
    (["--kind", "stop-limit", "--trigger", "2800"], "Invalid value for '--kind': 'stop-limit' is not one of"),
    (["--kind", "stop-loss", "--trigger", "0"], "Invalid value for '--trigger': '0': must be more than 0"),
    (["--kind", "stop-loss", "--trigger", "-5"], "Invalid value for '--trigger': '-5': must be more than 0"),
    (["--kind", "stop-loss", "--trigger", "abc"], "Invalid value for '--trigger': 'abc' is not a number"),
    (["--kind", "stop-loss", "--trigger", "2800", "--size", "lots"], "Invalid value for '--size': 'lots' is not a number"),
    (["--kind", "stop-loss", "--trigger", "2800", "--expiry", "tomorrow"],
     "Invalid value for '--expiry': 'tomorrow': give it as 1d, 2h, 30m, 90s or a unix time"),
    (["--kind", "stop-loss", "--trigger", "2800", "--expiry", "0h"], "Invalid value for '--expiry': '0h': must be more than 0"),
    (["--kind", "stop-loss", "--trigger", "2800", "--side", "sell"], "a stop-loss is on the position's other side"),
    (["--kind", "limit", "--trigger", "2800", "--size", "1"], "a limit order needs --side buy or --side sell"),
    (["--kind", "stop", "--side", "buy", "--trigger", "2800"], "a stop order needs a number of base units"),
    (["--kind", "stop", "--side", "buy", "--trigger", "2800", "--size", "all"], "a stop order needs a number of base units"),
    (["--kind", "stop-loss", "--trigger", "2800", "--oco-with", "0"], "Invalid value for '--oco-with'"),
])
def test_order_place__bad_input__one_line_before_any_devnet(args, says):
    assert says in one_line_error(run(*PLACE, *args))


@pytest.mark.parametrize(("args", "says"), [
    (["order", "cancel", "abc"], "Invalid value for 'ORDER_ID': 'abc' is not a valid integer"),
    (["order", "--example", "list"], "--example and --json of `perpdex order` take no sub-command"),
    (["order", "list", "--owner", "0xabc"], "'0xabc' is not an address"),
])
def test_order__bad_usage__one_line(args, says):
    assert says in one_line_error(run(*args))
