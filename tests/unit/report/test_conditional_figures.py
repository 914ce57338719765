"""The report's conditional-order figures (issue 18, SPEC 15) from events alone: orders placed
by kind, triggered, filled, cancelled by reason (apart from the two-step requests' own
counts), open at the end; each stop or stop-loss fill against its trigger price (slippage in
bps, + worse for the trader) and the chart of them. Synthetic events with round numbers, so
every expected figure is worked out by hand."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from perpdex.conditional import LIMIT, STOP, STOP_LOSS, TAKE_PROFIT
from perpdex.model import WAD
from perpdex.report.build import Expected, compare, conditional_figures
from perpdex.report.charts import stop_fills
from perpdex.report.events import ChainEvent
from perpdex.report.figures import StopFill, Tally, tally
from perpdex.report.units import figure_text

ALICE, BOB = "0xA11ce", "0xB0b"
KIND_CONDITIONAL = 4  # events carry 4 + kind


def event(name: str, timestamp: int = 0, **args: Any) -> ChainEvent:
    return ChainEvent(block=1, timestamp=timestamp, tx="0x1", log_index=0, name=name, args=args)


def placed(order_id: int, kind: int, side: int, trigger_usd: int, market: int = 0, owner: str = ALICE) -> ChainEvent:
    return event("ConditionalPlaced", order_id=order_id, owner=owner, sub=0, market=market, kind=KIND_CONDITIONAL + kind,
                 side=side, size=0, trigger_price=trigger_usd * WAD, acceptable_price=0, reduce_only=True, expiry=0,
                 oco=0, escrow=2)


def triggered(order_id: int) -> ChainEvent:
    return event("ConditionalTriggered", order_id=order_id, owner=ALICE, caller=BOB, price=0, triggered_at=0,
                 settle_after=2, reward=1)


def settled(order_id: int, kind: int, fill_usd: float, timestamp: int = 0) -> ChainEvent:
    """An OrderSettled: `kind` is the event's (a request's 0-3, a conditional order's 4 + its kind)."""
    return event("OrderSettled", timestamp, order_id=order_id, owner=ALICE, settler=BOB, sub=0, market=0, kind=kind,
                 size_delta=-WAD, fill_price=int(fill_usd * WAD), fee=0, amount=0, reward=1)


def cancelled(order_id: int, reason: str) -> ChainEvent:
    return event("OrderCancelled", order_id=order_id, owner=ALICE, caller=BOB, reason=reason, refund=0, reward=1)


def committed(order_id: int) -> ChainEvent:
    return event("OrderCommitted", order_id=order_id, owner=ALICE, sub=0, market=0, kind=0, size_delta=WAD,
                 acceptable_price=0, amount=0, committed_at=0, settle_after=2, deadline=600, escrow=1)


def run(*events: ChainEvent) -> Tally:
    return tally(list(events), [0, 1])


# a long's stop-loss gapped through (2,850 -> 2,400), a short's stop-loss 15 worse, a stop that
# filled 10 better, a take-profit (not a stop), an expired limit, the pruned and OCO-cancelled
# legs, a request settled and one cancelled, one stop-loss still open
HISTORY = (
    committed(1), placed(2, STOP_LOSS, -1, 2_850), placed(3, TAKE_PROFIT, -1, 3_300), placed(4, STOP_LOSS, 1, 3_150),
    placed(5, STOP, -1, 3_000), placed(6, LIMIT, 1, 2_985), placed(7, STOP_LOSS, -1, 55_000, market=1),
    placed(8, STOP_LOSS, -1, 2_000, owner=BOB), committed(9),
    settled(1, 0, 3_000), triggered(2), triggered(4), triggered(5),
    settled(2, KIND_CONDITIONAL + STOP_LOSS, 2_400, timestamp=60), cancelled(3, "router: OCO leg filled"),
    settled(4, KIND_CONDITIONAL + STOP_LOSS, 3_165), settled(5, KIND_CONDITIONAL + STOP, 3_010),
    cancelled(6, "router: expired"), cancelled(7, "router: position closed or flipped"),
    cancelled(9, "vault: insufficient margin"),
)


def test_counts__placed_by_kind_triggered_filled_cancelled_by_reason_open() -> None:
    figures = conditional_figures(run(*HISTORY))
    assert figures["conditional_placed"] == 7
    assert figures["conditional_placed_by_kind"] == "limit: 1; stop: 1; take-profit: 1; stop-loss: 4"
    assert (figures["conditional_triggered"], figures["conditional_filled"], figures["conditional_cancelled"]) == (3, 3, 3)
    assert figures["conditional_cancelled_by_reason"] == (
        "router: OCO leg filled: 1; router: expired: 1; router: position closed or flipped: 1")
    assert figures["conditional_open_at_end"] == 1  # Bob's stop-loss


def test_requests__counted_apart_from_conditional_orders() -> None:
    t = run(*HISTORY)
    assert (t.requests_committed, t.requests_settled) == (2, 1)
    assert t.cancel_reasons == {"vault: insufficient margin": 1}
    assert t.orders.cancel_reasons["router: expired"] == 1 and "vault: insufficient margin" not in t.orders.cancel_reasons


def test_stop_fills__against_the_trigger__sells_below_and_buys_above_are_worse() -> None:
    t = run(*HISTORY)
    assert [(f.order_id, f.market, f.side, f.trigger_price, f.fill_price) for f in t.orders.stop_fills] == [
        (2, 0, -1, 2_850 * WAD, 2_400 * WAD), (4, 0, 1, 3_150 * WAD, 3_165 * WAD), (5, 0, -1, 3_000 * WAD, 3_010 * WAD)]
    assert t.orders.stop_fills[0].timestamp == 60
    slips = [f.slippage_bps for f in t.orders.stop_fills]
    assert slips == pytest.approx([450 / 2_850 * 10_000, 15 / 3_150 * 10_000, -10 / 3_000 * 10_000])
    figures = conditional_figures(t)
    assert figures["stops_filled"] == 3  # the take-profit's fill is not a stop's
    assert figures["stop_slippage_mean_bps"] == round(sum(slips) / 3, 2) == 531.08
    assert figures["stop_slippage_worst_bps"] == 1_578.95


def test_no_conditional_orders__zeros_and_none() -> None:
    figures = conditional_figures(run(committed(1), settled(1, 0, 3_000)))
    assert figures == {
        "conditional_placed": 0, "conditional_placed_by_kind": "none", "conditional_triggered": 0,
        "conditional_filled": 0, "conditional_cancelled": 0, "conditional_cancelled_by_reason": "none",
        "conditional_open_at_end": 0, "stops_filled": 0, "stop_slippage_mean_bps": 0.0, "stop_slippage_worst_bps": 0.0,
    }


def test_human_units__slippage_in_bps() -> None:
    assert figure_text("stop_slippage_worst_bps", 1_578.95) == "1,579.0 bps"
    assert figure_text("conditional_placed_by_kind", "stop-loss: 4") == "stop-loss: 4"


def test_simulator_vs_chain__conditional_placed_and_filled_compared() -> None:
    t = run(*HISTORY)
    checks = {c.name: c for c in compare(Expected(conditional_placed=7, conditional_filled=4), t, 6)}
    assert checks["simulator == chain: conditional placed"].ok
    filled = checks["simulator == chain: conditional filled"]
    assert not filled.ok and filled.detail == "simulator 4, chain 3 (off by +1)"


def test_chart__each_stop_fill_at_trigger_and_fill__per_market() -> None:
    fills = [StopFill(2, 0, -1, 2_850 * WAD, 2_400 * WAD, 0), StopFill(4, 0, 1, 3_150 * WAD, 3_165 * WAD, 0)]
    report = SimpleNamespace(market_names={0: "ETH-USD", 1: "BTC-USD"}, stop_fills=fills)
    fig = stop_fills(report)  # type: ignore[arg-type]
    eth, btc = fig.axes
    points = sorted(tuple(p) for c in eth.collections for p in c.get_offsets())
    assert points == [(2_850.0, 2_400.0), (3_150.0, 3_165.0)]
    assert "worst 1,579" in eth.get_title() and btc.get_title() == "BTC-USD: no stop fills"
    assert (eth.get_xlabel(), eth.get_ylabel()) == ("trigger price (USD)", "fill price (USD)")
    labels = [t.get_text() for t in eth.get_legend().get_texts()]
    assert labels == ["sells (a long's stop): 1", "buys (a short's stop): 1", "fill = trigger"]
