"""What `perpdex order` shows: conditional orders (SPEC 15) as rows in human units, read from
the router's view `conditional_order(id)` (kind, side, size, prices, status, trigger time, OCO
leg) and its events (which ids exist: `ConditionalPlaced`; how each ended: `OrderSettled` /
`OrderCancelled`), and `perpdex order --example`: a 10x long's take-profit / stop-loss pair
with the price gapping through the stop, the keeper's steps driven in-process."""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from perpdex.conditional import KIND_NAMES
from perpdex.model import WAD
from perpdex.readouts import human
from perpdex.sdk import MAX_ACCEPTABLE, Exchange

STATUS_NAMES = ("-", "open", "triggered", "filled", "cancelled")  # conditional_order(id).status
KIND_CONDITIONAL = 4  # the router's events report a conditional order's kind as 4 + kind


def outcome(name: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """How a conditional order ended, from its router event (None: not a conditional order's
    end): the fill (size, price, fee) or the cancellation's reason and refund."""
    if name == "OrderSettled" and int(args["kind"]) >= KIND_CONDITIONAL:
        return {"filled": human(args["size_delta"]), "fill_price_usd": human(args["fill_price"]), "fee_usd": human(args["fee"])}
    if name == "OrderCancelled":
        return {"cancelled": str(args["reason"]), "refund_tokens": int(args["refund"])}
    return None


def order_row(x: Exchange, order_id: int, ended: dict[str, Any] | None = None) -> dict[str, Any]:
    """One conditional order in human units (`perpdex order list --json` has a list of these).
    `size` null: a TP/SL on the whole position (resized with it); `acceptable_usd` null: no
    bound (a sell at 0, a buy at the router's largest price); `expiry`, `triggered_at` and
    `oco` null when there are none; `outcome`: the fill or the cancellation, once it ended."""
    o = x.conditional(order_id)
    size, acceptable = int(o.size), int(o.acceptable_price)
    return {
        "id": order_id, "owner": str(o.owner), "sub": int(o.sub), "market": x.market_names()[int(o.market)],
        "kind": KIND_NAMES[int(o.kind)], "side": "buy" if int(o.side) > 0 else "sell",
        "size": human(size) if size else None, "trigger_usd": human(o.trigger_price),
        "acceptable_usd": human(acceptable) if 0 < acceptable < MAX_ACCEPTABLE else None,
        "reduce_only": bool(o.reduce_only), "expiry": int(o.expiry) or None, "status": STATUS_NAMES[int(o.status)],
        "triggered_at": int(o.triggered_at) or None, "oco": int(o.oco) or None, "outcome": ended,
    }


def order_rows(x: Exchange, events: Iterable[Any], owner: str | None = None) -> list[dict[str, Any]]:
    """Every conditional order the router's `events` (perpdex.report.events.ChainEvent) placed,
    of `owner` only if given, oldest first, each with its outcome when it ended."""
    placed: list[int] = []
    ended: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.name == "ConditionalPlaced" and (not owner or str(e.args["owner"]).lower() == owner.lower()):
            placed.append(int(e.args["order_id"]))
        elif (end := outcome(e.name, e.args)) is not None:
            ended[int(e.args["order_id"])] = end  # request ids end this way too: only placed ids are read
    return [order_row(x, order_id, ended.get(order_id)) for order_id in placed]


def status_text(row: dict[str, Any]) -> str:
    """The table's status: with the fill, or the cancellation's reason, once the order ended."""
    end = row["outcome"]
    if end is None:
        return row["status"]
    if "cancelled" in end:
        return f"cancelled: {end['cancelled']}"
    return f"filled {end['filled']:+,.4f} at {end['fill_price_usd']:,.2f}"


# ---------------------------------------------------------------- the example


class Steps(Protocol):
    """Where the example's steps go: printed (tables) or collected (`--json`)."""

    def account(self, title: str, x: Any, who: Any) -> None: ...

    def orders(self, title: str, x: Any, rows: list[dict[str, Any]]) -> None: ...

    def note(self, title: str, fields: dict[str, Any]) -> None: ...

    def done(self) -> list[dict[str, Any]]: ...


EXAMPLE_COLLATERAL = 3_000  # USD: 10 ETH at 3,000 on it is 10x (liquidation near 2,772)
TAKE_PROFIT_AT, STOP_LOSS_AT = 3_300, 2_900
WALK = (2_950, 2_820, 2_810)  # a round short of the stop, the gap through it, the round after
# The example's clock starts here (2033-05-18 03:33:20 UTC; later if the chain is already past
# it): with the clock stopped, its times (trigger, expiry) are the same in every run.
EXAMPLE_CLOCK = 2_000_000_000


def example(out: Steps) -> list[dict[str, Any]]:
    """On a fresh routed deployment (the caller connects and stops the clock: `frozen_clock`;
    it starts at EXAMPLE_CLOCK, so every figure and time is the same run after run): a trader opens 10 ETH long on 3,000 USD (10x), places a
    take-profit at 3,300 and a stop-loss at 2,900 on the whole position as an OCO pair; ETH
    walks to 2,950 (a keeper's early trigger is refused), gaps to 2,820 through the stop (the
    keeper triggers it), and the next round (2,810) is the stop's settlement round: the
    keeper's `settle_many` fills it there and the fill cancels the take-profit. The keeper's
    calls (trigger, settle_many) and the feeder's rounds are made here, in-process."""
    from ape import chain

    from perpdex.chain import set_clock, test_signers
    from perpdex.deploy import deploy_system

    set_clock(max(EXAMPLE_CLOCK, int(chain.blocks.head.timestamp) + 1))
    admin, lp, trader, keeper = test_signers(4)
    x = Exchange(deploy_system(admin))
    eth = x.market_id("ETH-USD")
    x.add_liquidity(lp, x.tokens(1_000_000))
    x.deposit(trader, usd=EXAMPLE_COLLATERAL)
    x.trade(trader, eth, 10.0)  # a request, filled at the next round
    liquidation = human(x.d.keeper.liquidation_price(trader, 0, eth))
    out.account(f"1. A trader opens 10 ETH long on {EXAMPLE_COLLATERAL:,} USD at 3,000 (10x; liquidation at "
                f"{liquidation:,.2f})", x, trader)

    tp = x.place_order(trader, eth, "take-profit", float(TAKE_PROFIT_AT))
    sl = x.place_order(trader, eth, "stop-loss", float(STOP_LOSS_AT), oco_with=tp)
    out.orders(f"2. A take-profit at {TAKE_PROFIT_AT:,} and a stop-loss at {STOP_LOSS_AT:,} on the whole position, "
               "one cancelling the other (OCO); each escrows two settler rewards", x, [order_row(x, tp), order_row(x, sl)])

    _round(x, WALK[0])
    out.note(f"3. ETH {WALK[0]:,}: the keeper's trigger of the stop-loss is refused",
             {"order": sl, "price_usd": float(WALK[0]), "trigger_usd": float(STOP_LOSS_AT),
              "refused": _refusal(lambda: x.d.router.trigger(sl, sender=keeper))})

    _round(x, WALK[1])
    triggered = x.events(x.d.router.trigger(sl, sender=keeper), "ConditionalTriggered")[0]
    out.note(f"4. ETH gaps to {WALK[1]:,}, through the stop: the keeper triggers it (anyone may), and it settles at "
             "the first round from settle_after on",
             {"order": sl, "price_usd": human(triggered["price"]), "trigger_usd": float(STOP_LOSS_AT),
              "triggered_at": int(triggered["triggered_at"]), "settle_after": int(triggered["settle_after"]),
              "keeper_reward_usd": _usd(x, triggered["reward"])})

    _round(x, WALK[2])
    receipt = x.settle([sl, tp], settler=keeper)  # settle_many: the open TP is skipped, the SL fills
    filled, cancelled = x.events(receipt, "OrderSettled")[0], x.events(receipt, "OrderCancelled")[0]
    fill = human(filled["fill_price"])
    out.note(f"5. The next round ({WALK[2]:,}) is its settlement round: the keeper's settle_many fills the stop-loss "
             f"at {fill:,.2f}, {(fill - STOP_LOSS_AT) / STOP_LOSS_AT:+.2%} from its trigger (the gap), "
             "and the fill cancels the take-profit",
             {"order": sl, "filled": human(filled["size_delta"]), "fill_price_usd": fill, "trigger_usd": float(STOP_LOSS_AT),
              "slippage": (fill - STOP_LOSS_AT) / STOP_LOSS_AT, "fee_usd": human(filled["fee"]),
              "keeper_reward_usd": _usd(x, filled["reward"]), "take_profit": int(cancelled["order_id"]),
              "take_profit_cancelled": str(cancelled["reason"]), "take_profit_refund_usd": _usd(x, cancelled["refund"])})
    out.orders("6. The orders after", x, [order_row(x, tp, outcome("OrderCancelled", cancelled)),
                                          order_row(x, sl, outcome("OrderSettled", filled))])
    out.account(f"7. The account after: no position; the stop closed it at {fill:,.2f}, above its liquidation price "
                f"({liquidation:,.2f})", x, trader)
    return out.done()


def _usd(x: Exchange, tokens: int) -> float:
    """Token units (escrow, rewards, refunds) as USD."""
    return int(tokens) / 10 ** int(x.d.usd.decimals())


def _round(x: Exchange, eth_usd: int) -> None:
    """A feeder's round two seconds on (the router's settlement delay): ETH at `eth_usd`,
    every other market at its price."""
    from perpdex.chain import move_time
    from perpdex.sdk import feed_prices

    move_time(int(x.d.router.settlement_delay()))
    feed_prices(x, {x.market_id("ETH-USD"): eth_usd * WAD})


def _refusal(call: Any) -> str:
    """The revert reason of `call` (which must revert)."""
    from ape.exceptions import ContractLogicError

    try:
        call()
    except ContractLogicError as exc:
        return str(exc)
    raise RuntimeError("the call was expected to revert and did not")
