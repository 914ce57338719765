"""The live dashboard's data: `snapshot` is everything the page shows at one block, as one
JSON-able dict (figures from `perpdex.readouts`, the same as the read commands' `--json`);
`Board` keeps what a snapshot needs between blocks (the deployment's event log, read on
from the last block seen, and the pool's history) and makes one per new block.

The page itself and its server are `perpdex.dashboard_server` and `perpdex/static/`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from perpdex import readouts
from perpdex.funding import funding_overview
from perpdex.report.events import ChainEvent, EventLog
from perpdex.model import WAD
from perpdex.sdk import Exchange

RECENT = 20  # liquidations and requests shown
HISTORY_POINTS = 720  # pool value points kept (one per block seen)
NOTHING_OWED = "no market side owes ADL now"

# Who acted for the keepers, from the events their transactions leave: (event, its argument
# naming the sender). The funding keeper has none of its own: any trade accrues funding too.
KEEPER_EVENTS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "price feeder": (("PriceUpdated", "feeder"),),
    "settler": (("OrderSettled", "settler"), ("OrderCancelled", "caller")),
    "liquidator": (("Liquidation", "keeper"), ("LiquidationSkipped", "keeper")),
    "ADL keeper": (("Deleveraged", None),),
    "funding accrual (keeper poke or any trade)": (("FundingAccrued", None),),
}


def snapshot(x: Exchange, events: list[ChainEvent], block: int, timestamp: int) -> dict[str, Any]:
    """What the page shows at `block` (stamped `timestamp`): `events` are the deployment's
    events up to it (`EventLog.events`). Amounts in human units as `readouts` has them."""
    accounts = readouts.accounts(x, readouts.open_accounts(events))
    return {
        "block": {"number": block, "timestamp": timestamp},
        "markets": markets(x),
        "pool": readouts.pool(x),
        "accounts": accounts,
        "requests": requests(x, events),
        "liquidations": recent_liquidations(x, events),
        "adl": adl(x, events),
        "keepers": keeper_status(x, events, block, timestamp, accounts),
    }


def markets(x: Exchange) -> list[dict[str, Any]]:
    """Each market as `show --json` has it, with its funding as `funding --json` has it
    (rate now and the predicted rates) under "funding"."""
    rates = {f["market"]: f for f in readouts.funding(funding_overview(x))["markets"]}
    rows = [readouts.market(x, m) for m in x.market_names()]
    return [{**row, "funding": rates[row["market"]]} for row in rows]


def pending_ids(events: Iterable[ChainEvent]) -> list[int]:
    """The requests committed and neither settled nor cancelled, oldest first (from the
    router's events: exact, and no scan of every order id)."""
    committed: dict[int, None] = {}
    for e in events:
        if e.name == "OrderCommitted":
            committed[int(e.args["order_id"])] = None
        elif e.name in ("OrderSettled", "OrderCancelled"):
            committed.pop(int(e.args["order_id"]), None)
    return list(committed)


def requests(x: Exchange, events: list[ChainEvent]) -> dict[str, Any]:
    """The router's pending requests (every one) and its newest `RECENT` of any status."""
    if x.d.router is None:
        return {"pending": [], "recent": []}
    return {"pending": [readouts.order(x, i) for i in pending_ids(events)], "recent": readouts.orders(x, last=RECENT)}


def recent_liquidations(x: Exchange, events: list[ChainEvent]) -> list[dict[str, Any]]:
    """The newest `RECENT` liquidations, newest first: block, transaction, keeper, and the
    event's figures (`readouts.liquidation_event`)."""
    scale = x.token_scale
    found = [e for e in events if e.name == "Liquidation"][-RECENT:]
    return [{"block": e.block, "tx": e.tx, "keeper": str(e.args["keeper"]), **readouts.liquidation_event(e.args, scale)}
            for e in reversed(found)]


def adl(x: Exchange, events: list[ChainEvent]) -> dict[str, Any]:
    """What market sides owe by ADL now (the note) and the newest `RECENT` ADL events, newest
    first: bookings (a bankruptcy beyond the pool's loss cap) and deleveraged positions."""
    from perpdex.keepers.adl import SIDE_NAMES, pending

    names = x.market_names()
    owed = [f"{names[p.market]}: the {SIDE_NAMES[p.side]} owe {p.size / WAD:g} at {p.price / WAD:,.2f} USD"
            for p in pending(x)]
    found = [e for e in events if e.name in ("DeleverageBooked", "Deleveraged")][-RECENT:]
    return {"note": "; ".join(owed) or NOTHING_OWED, "events": [_adl_event(names, e) for e in reversed(found)]}


def _adl_event(names: dict[int, str], e: ChainEvent) -> dict[str, Any]:
    a = e.args
    if e.name == "DeleverageBooked":
        side = "longs" if int(a["owing_side"]) == 0 else "shorts"
        text = (f"block {e.block}: {names[int(a['market'])]} {side} owe {int(a['size']) / WAD:g} at "
                f"{int(a['price']) / WAD:,.2f} USD ({int(a['recover']) / WAD:,.2f} USD of bad debt beyond the pool's loss cap)")
        return {"block": e.block, "kind": "booked", "text": text}
    text = (f"block {e.block}: {a['owner']} sub {int(a['sub'])} {names[int(a['market'])]}: "
            f"{abs(int(a['closed_size'])) / WAD:g} closed at {int(a['price']) / WAD:,.2f} USD (mark "
            f"{int(a['mark_price']) / WAD:,.2f}), {int(a['recovered']) / WAD:,.2f} USD back to the pool")
    return {"block": e.block, "kind": "deleveraged", "owner": str(a["owner"]), "text": text}


def keeper_status(x: Exchange, events: list[ChainEvent], block: int, timestamp: int,
                  accounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the chain says of each keeper: the last block it acted in (and who sent it), how
    many actions, and what waits for it now (stale prices, due requests, liquidatable accounts)."""
    rows = []
    for name, kinds in KEEPER_EVENTS.items():
        acts = [(e, who) for e in events for kind, who in kinds if e.name == kind]
        last = acts[-1] if acts else None
        rows.append({
            "keeper": name, "actions": len(acts), "last_block": last[0].block if last else None,
            "blocks_ago": block - last[0].block if last else None,
            "last_sender": str(last[0].args[last[1]]) if last and last[1] else None,
            "waiting": _waiting(x, name, events, timestamp, accounts),
        })
    return rows


def _waiting(x: Exchange, keeper: str, events: list[ChainEvent], timestamp: int,
             accounts: list[dict[str, Any]]) -> str:
    if keeper == "price feeder":
        oldest = min(int(x.d.oracle.latest(m)[1]) for m in x.market_names())
        age, limit = timestamp - oldest, int(x.d.oracle.max_price_age())
        return f"oldest price {age} s old (stale after {limit} s)" + (": STALE" if age > limit else "")
    if keeper == "settler":
        due = [i for i in pending_ids(events) if x.d.router is not None and int(x.order(i).settle_after) <= timestamp]
        return f"{len(due)} request(s) past their settlement time"
    if keeper == "liquidator":
        return f"{sum(a['liquidatable'] for a in accounts)} account(s) liquidatable now"
    if keeper == "ADL keeper":
        from perpdex.keepers.adl import pending

        return f"{len(pending(x))} market side(s) owe ADL now"
    return "-"


@dataclass
class Board:
    """The dashboard's memory between blocks: the event log (read on from the last block
    seen) and the pool value and insurance fund at every block seen (from the start)."""

    x: Exchange
    since: int  # the deployment's block: events before it are not the deployment's
    log: EventLog = field(init=False)
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    last_block: int = -1

    def __post_init__(self) -> None:
        self.log = EventLog(self.x)

    def refresh(self) -> dict[str, Any] | None:
        """A snapshot of the head if it is a block not seen yet, else None."""
        from ape import chain

        head = chain.blocks.head
        number = int(head.number)
        if number == self.last_block:
            return None
        self.log.add_range(max(self.since, self.last_block + 1), number)  # a log seen twice counts once
        snap = snapshot(self.x, self.log.events, number, int(head.timestamp))
        self.last_block = number  # only now: a read that failed is tried again at the next call
        return self.with_history(snap)

    def with_history(self, snap: dict[str, Any]) -> dict[str, Any]:
        """`snap` with its pool point added to the history, and the history in it."""
        pool = snap["pool"]
        self.history.append({"block": snap["block"]["number"], "pool_value_usd": pool["pool_value_usd"],
                             "insurance_fund_usd": pool["insurance_fund_usd"]})
        return {**snap, "history": list(self.history)}
