"""`--json` on the read commands (show, funding, liquidation): one JSON document in human
units, the same figures the tables show. The devnet commands run here against the session's
deployment on the embedded chain (`_devnet` replaced by it), so no Anvil is needed."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

import pytest
from click.testing import CliRunner

from perpdex import cli, readouts
from perpdex.cli import main
from perpdex.model import WAD


def run_json(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # the whole output is the document: nothing printed around it


@pytest.fixture
def on_session_chain(monkeypatch: pytest.MonkeyPatch, x: Any) -> Any:
    """The devnet commands read the session's deployment instead of a devnet's file."""
    monkeypatch.setattr(cli, "_devnet", lambda *_args, **_kwargs: nullcontext(x))
    return x


def test_show_json__markets_pool_and_an_account_in_human_units(on_session_chain, open_position, trader, eth):
    x = on_session_chain
    open_position(trader, 10 * WAD, collateral_usd=2_000)  # 10 ETH long on 2,000 USD (15x): a liquidation price
    doc = run_json("show", "--json", "--owner", str(trader))
    assert doc["contracts"]["vault"] == str(x.vault.address)
    by_name = {m["market"]: m for m in doc["markets"]}
    assert set(by_name) == {"ETH-USD", "BTC-USD"}
    assert by_name["ETH-USD"]["price_usd"] == x.price(eth) / WAD == 3000.0
    assert by_name["ETH-USD"]["oi_long"] == 10.0 and by_name["ETH-USD"]["skew"] == 10.0
    assert by_name["ETH-USD"]["max_leverage"] == x.params(eth).max_leverage / WAD
    assert doc["pool"]["pool_value_usd"] == int(x.vault.pool_value()) / WAD > 900_000
    account = doc["account"]
    assert account["owner"] == str(trader) and account["sub"] == 0
    [position] = account["positions"]
    assert position["market"] == "ETH-USD" and position["size"] == 10.0
    assert position["liquidation_price_usd"] == int(x.d.keeper.liquidation_price(trader, 0, eth)) / WAD
    assert 2800.0 < position["liquidation_price_usd"] < 3000.0 and position["distance_to_liquidation"] < 0  # a long: below
    health = account["health"]
    assert health["equity_usd"] == int(x.vault.equity(trader, 0)) / WAD
    assert health["liquidatable"] is False and health["margin_ratio"] > 1


def test_show_json__without_owner_has_no_account(on_session_chain):
    assert run_json("show", "--json")["account"] is None


def test_liquidation_owner_json__an_account_without_positions(on_session_chain, trader2):
    doc = run_json("liquidation", "--owner", str(trader2), "--json")
    assert doc["positions"] == [] and doc["health"]["margin_ratio"] is None  # no margin needed: unbounded
    assert doc["health"]["equity_usd"] == 0.0 and doc["health"]["liquidatable"] is False


def test_funding_json__owner_positions_pay_what_the_table_says(on_session_chain, open_position, trader, eth):
    from perpdex.chain import move_time

    x = on_session_chain
    open_position(trader, 100 * WAD, collateral_usd=100_000)  # longs crowd the market: they pay
    move_time(3600)
    x.refresh_prices()
    doc = run_json("funding", "--json", "--owner", str(trader))
    eth_row = next(m for m in doc["markets"] if m["market"] == "ETH-USD")
    rate = int(x.vault.funding(eth)[0])
    assert eth_row["rate_per_day"] == rate / WAD > 0 and eth_row["skew"] == 100.0
    assert set(eth_row["predicted_rate_per_day"]) == {"1h", "8h", "24h"}
    assert eth_row["one_unit_long_next_day_usd"] < 0
    [position] = doc["positions"]
    assert doc["owner"] == str(trader) and position["size"] == 100.0 and position["next_day_usd"] < 0
    assert position["accrued_usd"] == int(x.d.lens.accrued_funding(trader, 0, eth)) / WAD < 0


def test_liquidation_example_json__four_steps_the_keeper_restores_health():
    steps = run_json("liquidation", "--example", "--json")["steps"]
    assert [s["step"][:2] for s in steps] == ["1.", "2.", "3.", "4."]
    assert steps[0]["account"]["health"]["liquidatable"] is False
    assert steps[1]["account"]["health"]["liquidatable"] is True  # ETH fell to 2,860
    [done] = steps[2]["liquidation"]["liquidations"]
    assert 0 < done["share_closed"] < 1 and done["bad_debt_usd"] == 0  # partial, no bad debt
    assert done["to_keeper_usd"] + done["to_insurance_usd"] == pytest.approx(done["fee_usd"], abs=1e-6)
    [closed] = steps[2]["liquidation"]["closed"]
    assert closed["market"] == "ETH-USD" and closed["price_usd"] == 2860.0 and 0 < closed["size_after"] < 10
    after = steps[3]["account"]
    assert after["health"]["liquidatable"] is False and after["positions"][0]["size"] == closed["size_after"]


def test_funding_example_json__skewed_long_book():
    doc = run_json("funding", "--example", "--json")
    eth_row = next(m for m in doc["markets"] if m["market"] == "ETH-USD")
    assert eth_row["skew"] == 120.0 and eth_row["rate_per_day"] > 0  # 150 long, 30 short, 12 hours on
    assert doc["positions"][0]["size"] == 150.0 and doc["positions"][0]["accrued_usd"] < 0


def test_ratio__unbounded_is_none():
    assert readouts.ratio(2**256 - 1) is None and readouts.ratio(WAD * 3 // 2) == 1.5
