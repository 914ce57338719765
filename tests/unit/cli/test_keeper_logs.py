"""`perpdex keeper ... --log-format json`: one JSON object per line per action (timestamp,
keeper, action, fields, message); the text stays the default. The feeder and the funding
keeper run here through the CLI on the session's deployment (the embedded chain; `_devnet`
replaced by it); the settler, which reads logs with eth_getLogs, on py-evm; the liquidator's
lines in tests/unit/liquidation/test_liquidator_bot.py."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import pytest
from ape import accounts, networks
from click.testing import CliRunner

from perpdex import cli
from perpdex.chain import move_time
from perpdex.cli import main
from perpdex.keepers.common import Line, json_report, log_record, run_loop
from perpdex.model import WAD


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of `output` as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def keeper_run(monkeypatch: pytest.MonkeyPatch, x: Any, *args: str) -> list[dict[str, Any]]:
    monkeypatch.setattr(cli, "_devnet", lambda *_a, **_k: nullcontext(x))
    result = CliRunner().invoke(main, ["keeper", *args, "--log-format", "json"])
    assert result.exit_code == 0, result.output
    return json_lines(result.output)


def test_log_record__a_line_carries_its_action_and_fields__a_plain_str_is_a_message():
    record = log_record("feeder", Line("round 3 in block 9: ETH-USD 3,000.00", "round", round=3), now=0.25)
    assert record == {"timestamp": "1970-01-01T00:00:00.250Z", "keeper": "feeder", "action": "round",
                      "fields": {"round": 3}, "message": "round 3 in block 9: ETH-USD 3,000.00"}
    assert log_record("feeder", "hello", now=0)["action"] == "message" and log_record("feeder", "hello")["fields"] == {}
    written: list[str] = []
    json_report("settler", written.append)(Line("x", "status", pending=2))
    assert "\n" not in written[0] and json.loads(written[0])["fields"] == {"pending": 2}


def test_line__is_its_text_for_every_text_report():
    line = Line("poked ETH-USD", "poked", market="ETH-USD")
    assert line == "poked ETH-USD" and line.startswith("poked") and f"{line}" == "poked ETH-USD"


def test_run_loop__an_error_is_an_error_action_with_its_backoff():
    lines: list[str] = []

    def fails() -> None:
        raise ConnectionError("node down")

    run_loop(fails, 0.5, lines.append, iterations=1)
    [line] = lines
    assert isinstance(line, Line) and line.action == "error"
    assert line.fields == {"error": "ConnectionError", "message": "node down", "retry_in_s": 0.5}
    assert line.startswith("error: ConnectionError: node down")


def test_feeder_json__started_a_line_per_round_stopped(monkeypatch, rx):
    records = keeper_run(monkeypatch, rx, "feeder", "--rounds", "2", "--no-settle", "--interval", "0.01")
    assert [r["action"] for r in records] == ["started", "round", "round", "stopped"]
    assert {r["keeper"] for r in records} == {"feeder"}
    for r in records:
        datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))  # ISO 8601, UTC
    first = records[1]["fields"]
    assert first["round"] == 1 and isinstance(first["block"], int)
    assert first["prices_usd"] == {"ETH-USD": rx.price(0) / WAD, "BTC-USD": rx.price(1) / WAD}  # hold: today's prices
    assert records[0]["fields"]["path"] == "hold" and records[0]["fields"]["settling"] is False
    assert records[-1]["fields"] == {"rounds": 2}


def test_feeder_text__stays_the_default(monkeypatch, rx):
    monkeypatch.setattr(cli, "_devnet", lambda *_a, **_k: nullcontext(rx))
    result = CliRunner().invoke(main, ["keeper", "feeder", "--rounds", "1", "--no-settle"])
    assert result.exit_code == 0 and "round 1 in block" in result.output and "feeder stopped after 1 rounds" in result.output
    assert not result.output.lstrip().startswith("{")


def test_funding_json__a_poke_per_idle_market(monkeypatch, x):
    move_time(2 * 3600)
    x.refresh_prices()
    records = keeper_run(monkeypatch, x, "funding", "--once", "--max-idle", "60")
    poked = [r["fields"] for r in records if r["action"] == "poked"]
    assert {p["market"] for p in poked} == {"ETH-USD", "BTC-USD"}
    assert all(p["idle_s"] >= 2 * 3600 and p["gas"] > 0 and p["tx"].startswith("0x") for p in poked)
    assert records[0]["action"] == "started" and records[-1] == {**records[-1], "action": "stopped"}
    assert records[-1]["fields"] == {"pokes": 2, "gas": sum(p["gas"] for p in poked)}


def test_funding_json__a_stale_price_is_a_skip(monkeypatch, x):
    move_time(int(x.d.oracle.max_price_age()) + 3600)  # idle, and no feeder wrote a price meanwhile
    records = keeper_run(monkeypatch, x, "funding", "--once", "--max-idle", "60")
    skipped = [r["fields"]["market"] for r in records if r["action"] == "skip_stale"]
    assert skipped == ["ETH-USD", "BTC-USD"] and not [r for r in records if r["action"] == "poked"]


def test_settler_lines__batch_sent_settled_and_status_fields(tmp_path):
    """On py-evm (the settler reads the router's events with eth_getLogs)."""
    from perpdex.deploy import deploy_system
    from perpdex.keepers.settler import RequestIndex, Settler
    from perpdex.sdk import Exchange

    with networks.parse_network_choice("ethereum:local:test"):
        admin, lp, trader = accounts.test_accounts[0], accounts.test_accounts[1], accounts.test_accounts[2]
        x = Exchange(deploy_system(admin, governance_delay=0))
        x.add_liquidity(lp, x.tokens(1_000_000))
        x.deposit(trader, x.tokens(10_000))
        x.fund(trader, x.reward_tokens)  # the settlement reward the router escrows
        order = x.order_id(x.trade(trader, 0, WAD, settle=False))
        x.next_round()
        records: list[dict[str, Any]] = []
        settler = Settler(x, admin, RequestIndex(tmp_path / "s.db"), report=json_report("settler", lambda t: records.append(json.loads(t))))
        assert settler.step() == 1
        assert [r["action"] for r in records] == ["batch_sent", "batch_settled"]
        assert records[0]["fields"] == {"orders": [order]}
        settled = records[1]["fields"]
        assert settled["settled"] == 1 and settled["cancelled"] == 0 and settled["gas"] > 0 and settled["tx"].startswith("0x")
        assert settler.status_line().fields == {"seen": 2, "done": 2, "pending": 0, "settled": 1, "cancelled": 0, "transactions": 1}
