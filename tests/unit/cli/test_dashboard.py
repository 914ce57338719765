"""`perpdex dashboard` without a browser: the snapshot the page renders (on the session's
deployment on the embedded chain, its events fed from receipts), the app's routes and its
server-sent events, and the command's one-line errors. tests/integration/test_dashboard_anvil.py
drives the page itself in headless Chromium against Anvil."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from click.testing import CliRunner

from perpdex.cli import main
from perpdex.dashboard import NOTHING_OWED, HISTORY_POINTS, Board, pending_ids, snapshot
from perpdex.dashboard_server import Latest, make_app, publish_next, stream
from perpdex.model import WAD
from perpdex.report.events import ChainEvent, EventLog


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def snap_of(x: Any, receipts: list[Any]) -> dict[str, Any]:
    from ape import chain

    log = EventLog(x)
    for receipt in receipts:
        log.add_receipt(receipt)
    head = chain.blocks.head
    doc = snapshot(x, log.events, int(head.number), int(head.timestamp))
    assert json.loads(json.dumps(doc)) == doc  # JSON-able as it is: what the page receives
    return doc


def test_snapshot__accounts_ranked_then_a_liquidation_listed(x, open_position, trader, trader2, liquidator, eth):
    bold = open_position(trader, 10 * WAD, collateral_usd=2_000)  # 15x long
    careful = open_position(trader2, 2 * WAD, collateral_usd=10_000)  # under 1x long
    doc = snap_of(x, [bold, careful])
    assert [a["owner"] for a in doc["accounts"]] == [str(trader), str(trader2)]  # the closer to liquidation first
    first = doc["accounts"][0]
    assert first["margin_ratio"] < doc["accounts"][1]["margin_ratio"] and not first["liquidatable"]
    [position] = first["positions"]
    assert position["market"] == "ETH-USD" and position["size"] == 10.0
    assert 2_800 < position["liquidation_price_usd"] < 3_000 and -0.07 < position["distance_to_liquidation"] < 0
    by_name = {m["market"]: m for m in doc["markets"]}
    assert by_name["ETH-USD"]["oi_long"] == 12.0 and by_name["ETH-USD"]["skew"] == 12.0
    assert by_name["ETH-USD"]["funding"]["predicted_rate_per_day"]["24h"] > 0  # longs crowd: they will pay
    assert doc["pool"]["pool_value_usd"] == int(x.vault.pool_value()) / WAD
    assert doc["liquidations"] == [] and doc["adl"] == {"events": [], "note": NOTHING_OWED}

    crash = x.set_price(eth, 2_860 * WAD)
    liquidated = x.d.keeper.liquidate(trader, 0, sender=liquidator)
    doc = snap_of(x, [bold, careful, crash, liquidated])
    [seen] = doc["liquidations"]
    assert (seen["owner"], seen["sub"], seen["keeper"]) == (str(trader), 0, str(liquidator))
    assert seen["block"] == int(liquidated.block_number) and 0 < seen["share_closed"] <= 1
    assert seen["notional_closed_usd"] > 0 and seen["bad_debt_usd"] == 0
    keepers = {k["keeper"]: k for k in doc["keepers"]}
    assert keepers["liquidator"]["last_block"] == int(liquidated.block_number)
    assert keepers["liquidator"]["last_sender"] == str(liquidator) and keepers["liquidator"]["actions"] == 1
    assert keepers["price feeder"]["last_block"] == int(crash.block_number)
    assert keepers["settler"]["last_block"] is None and keepers["settler"]["actions"] == 0  # atomic trading: no requests


def test_snapshot__a_liquidatable_account_is_flagged_and_the_liquidator_told(x, open_position, trader, eth):
    opened = open_position(trader, 10 * WAD, collateral_usd=2_000)
    crash = x.set_price(eth, 2_860 * WAD)
    doc = snap_of(x, [opened, crash])
    [account] = doc["accounts"]
    assert account["liquidatable"] and account["margin_ratio"] < 1
    liquidator = next(k for k in doc["keepers"] if k["keeper"] == "liquidator")
    assert liquidator["waiting"] == "1 account(s) liquidatable now" and liquidator["last_block"] is None


def event(name: str, block: int, **args: Any) -> ChainEvent:
    return ChainEvent(block, 0, f"0x{block:064x}", 0, name, args)


def test_pending_ids__committed_and_neither_settled_nor_cancelled():
    events = [event("OrderCommitted", 1, order_id=1), event("OrderCommitted", 1, order_id=2),
              event("OrderCommitted", 2, order_id=3), event("OrderSettled", 3, order_id=1),
              event("OrderCancelled", 3, order_id=3), event("OrderCommitted", 4, order_id=4)]
    assert pending_ids(events) == [2, 4]


def test_board_history__a_point_per_block_seen__the_oldest_dropped(x):
    board = Board(x, since=0)
    for block in range(HISTORY_POINTS + 5):
        snap = board.with_history({"block": {"number": block}, "pool": {"pool_value_usd": 1.0 * block, "insurance_fund_usd": 2.0}})
    history = snap["history"]
    assert len(history) == HISTORY_POINTS and history[-1] == {"block": HISTORY_POINTS + 4,
                                                              "pool_value_usd": HISTORY_POINTS + 4.0, "insurance_fund_usd": 2.0}
    assert history[0]["block"] == 5


def test_stream__each_new_snapshot_once__as_server_sent_events():
    async def first_two(latest: Latest) -> list[bytes]:
        events = stream(latest, poll=0.01)
        got = [await anext(events)]
        latest.publish({"block": {"number": 8}})
        got.append(await anext(events))
        latest.close()
        assert [e async for e in events] == []  # closed: the stream ends
        return got

    latest = Latest()
    latest.publish({"block": {"number": 7}})
    first, second = asyncio.run(first_two(latest))
    assert first == b'data: {"block": {"number": 7}}\n\n' and second == b'data: {"block": {"number": 8}}\n\n'


def test_app__page_script_and_snapshot_served_from_the_package():
    import httpx

    async def get(*paths: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=make_app(latest))  # the app in process, no socket
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
            return [await client.get(path) for path in paths]

    latest = Latest()
    latest.publish({"block": {"number": 3}})
    page, script, style, snap = asyncio.run(get("/", "/static/dashboard.js", "/static/dashboard.css", "/api/snapshot"))
    assert page.status_code == 200 and '<script src="/static/dashboard.js">' in page.text
    assert "http" not in page.text  # nothing fetched from elsewhere: no CDN
    assert script.status_code == 200 and 'new EventSource("/api/stream")' in script.text
    assert style.status_code == 200 and snap.json() == {"block": {"number": 3}}


class FlakyBoard:
    """A board whose reads fail as scripted: an exception is raised, anything else returned."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)

    def refresh(self) -> Any:
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def test_publish_next__a_failed_read_keeps_the_last_figures_with_the_error(capsys):
    latest = Latest()
    board = FlakyBoard({"block": {"number": 5}}, ConnectionError("node at http://127.0.0.1:1 refused\nmore"), None,
                       {"block": {"number": 6}})
    last, ok = publish_next(board, latest, None)
    assert ok and last == {"block": {"number": 5}}
    last, ok = publish_next(board, latest, last)
    assert not ok and last == {"block": {"number": 5}}
    assert json.loads(latest.get()[1]) == {"block": {"number": 5}, "error": "ConnectionError: node at http://127.0.0.1:1 refused"}
    assert "dashboard: reading the chain failed: ConnectionError" in capsys.readouterr().err
    version = latest.get()[0]
    assert publish_next(board, latest, last) == (last, True) and latest.get()[0] == version  # no new block: nothing sent
    last, ok = publish_next(board, latest, last)
    assert ok and json.loads(latest.get()[1]) == {"block": {"number": 6}}  # the error is gone with the next block


def one_line_error(args: list[str]) -> str:
    """The error line of a failed command (click's usage errors print the usage above it)."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.strip()][-1]


def test_dashboard__no_devnet__one_line_exit_2():
    port = free_port()
    line = one_line_error(["dashboard", "--port", str(port), "--http-port", str(free_port())])
    assert line == f"error: no devnet at http://127.0.0.1:{port}: start one with `perpdex devnet` (or give the right --port)"


@pytest.mark.parametrize("value", ["0", "65536", "web"])
def test_dashboard__bad_http_port__one_line_exit_2(value):
    assert "Invalid value for '--http-port'" in one_line_error(["dashboard", "--http-port", value])


def test_dashboard__http_port_in_use__one_line_exit_2_before_the_devnet_is_asked():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        line = one_line_error(["dashboard", "--port", str(free_port()), "--http-port", str(busy)])
    assert line.startswith(f"error: cannot serve the page on 127.0.0.1:{busy}: ") and "give another --http-port" in line
