"""The order keeper: triggers, settles and prunes the OrderRouter's conditional orders (SPEC 15).

One `step()`:
1. **Chain check** (perpdex.keepers.router_log): a devnet reset wipes the index; transactions
   the journal still had in flight are marked orphaned.
2. **Recovery.** Transactions journalled but not concluded (a crash between broadcast and
   receipt) are looked up: a mined one is concluded from its receipt, one the node still
   holds stays in flight (its orders are left alone this pass), one the node never saw is
   marked dropped. Nothing is re-sent blindly: its orders are simply decided again.
3. **Scan.** `ConditionalPlaced`, `ConditionalTriggered`, `OrderSettled` and `OrderCancelled`
   since the checkpoint (an SQLite transaction with it, like the settler's index): an order is
   open, triggered (with its `settle_after`) or done. Requests' ids share the count, but a
   request has no `ConditionalPlaced`, so its settle or cancel changes nothing here.
4. **Decide** (`decide`, `settleable`: pure): an open order that is dead (expired, or
   reduce-only with nothing to reduce: `perpdex.conditional.reduce_size` against the vault's
   position now) is pruned; one whose trigger the latest oracle price meets
   (`perpdex.conditional.triggers`; a price older than the oracle's `max_price_age` meets
   nothing: `trigger` would revert) is triggered, in `trigger_many` batches (and a trigger prunes it itself if it expired
   meanwhile); a triggered order whose settlement round exists (its market's latest round at
   or after `settle_after`), or whose deadline passed, is settled with `settle_many` in
   batches of up to 100, which fills it, cancels it with the vault's reason, and cancels the
   other leg of its OCO group.
5. **Send.** Each transaction is simulated first: one that would revert is not sent, and its
   order is skipped with the reason (reported once per reason) and decided again next pass,
   while the others go on. A transaction is journalled (verb, orders, nonce, hash) before it
   is broadcast; the pass's transactions go out back to back (consecutive nonces) and their
   receipts are awaited together, then the index is scanned again.

Sending twice is harmless on chain (a second `trigger` or `prune` of an order no longer open
reverts, `settle_many` skips what is done) but costs gas: the journal and the simulation keep
a restarted keeper from doing it.

`run()` repeats it, retrying RPC errors with backoff (`keepers.common.run_loop`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from perpdex.conditional import KIND_NAMES, dead_reason, triggers
from perpdex.keepers.common import Line, PassKeeper, Report, pending_nonce
from perpdex.keepers.liquidator import gas_limit
from perpdex.keepers.router_log import EventStore, RouterLog
from perpdex.model import WAD
from perpdex.sdk import Exchange

MAX_BATCH = 100  # OrderRouter.MAX_BATCH
KIND_CONDITIONAL = 4  # events carry 4 + kind for a conditional order (OrderRouter.KIND_CONDITIONAL)
ORDER_EVENTS = ("ConditionalPlaced", "ConditionalTriggered", "OrderSettled", "OrderCancelled")
OPEN, TRIGGERED, DONE = "open", "triggered", "done"
IN_FLIGHT = "sent"
RECEIPT_TIMEOUT = 60.0  # seconds a pass waits for its transactions before leaving them to recovery

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, sub INTEGER NOT NULL, market INTEGER NOT NULL,
    kind INTEGER NOT NULL, side INTEGER NOT NULL, size TEXT NOT NULL, trigger_price TEXT NOT NULL,
    reduce_only INTEGER NOT NULL, expiry INTEGER NOT NULL,
    status TEXT NOT NULL,                  -- open | triggered | done
    settle_after INTEGER NOT NULL DEFAULT 0 -- once triggered: its round is the first at or after it
);
CREATE TABLE IF NOT EXISTS sends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    verb TEXT NOT NULL,                    -- prune_many | trigger_many | settle_many
    orders TEXT NOT NULL,                  -- JSON list of order ids
    nonce INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    status TEXT NOT NULL,                  -- sent | mined | reverted | dropped | orphaned
    block INTEGER,
    sent_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Order:
    """A conditional order as its events tell it (sizes and prices in WAD)."""

    order_id: int
    owner: str
    sub: int
    market: int
    kind: int  # perpdex.conditional: LIMIT, STOP, TAKE_PROFIT, STOP_LOSS
    side: int  # +1 buys, -1 sells
    size: int  # 0: a TP/SL on the whole position
    trigger_price: int
    reduce_only: bool
    expiry: int  # 0: none; else the last second it may trigger
    status: str = OPEN
    settle_after: int = 0

    @property
    def position_key(self) -> tuple[str, int, int]:
        return self.owner, self.sub, self.market

    def describe(self) -> str:
        side = "buy" if self.side > 0 else "sell"
        return f"{KIND_NAMES[self.kind]} {side} at {self.trigger_price / WAD:,.2f}"


@dataclass(frozen=True)
class Action:
    """What the keeper does to one open order: "trigger" or "prune", and why."""

    order_id: int
    verb: str
    why: str


@dataclass(frozen=True)
class Sent:
    """A journalled transaction still in flight."""

    id: int
    verb: str
    orders: tuple[int, ...]
    nonce: int
    tx_hash: str


# ---------------------------------------------------------------- the decision (pure)


def decide(open_orders: Iterable[Order], prices: dict[int, int | None], positions: dict[tuple[str, int, int], int],
           now: int) -> list[Action]:
    """The open orders to prune (dead at `now` against `positions`) or to trigger (the market's
    latest fresh price meets the trigger; None: no fresh price, nothing triggers), in id order."""
    actions = []
    for o in sorted(open_orders, key=lambda o: o.order_id):
        if reason := dead_reason(o, positions.get(o.position_key, 0), now):
            actions.append(Action(o.order_id, "prune", reason))
            continue
        price = prices.get(o.market)
        if price is not None and triggers(o.kind, o.side, o.trigger_price, price):
            actions.append(Action(o.order_id, "trigger", f"{o.describe()}, price {price / WAD:,.2f}"))
    return actions


def settleable(triggered: Iterable[Order], round_times: dict[int, int], now: int, window: int) -> list[int]:
    """The triggered orders `settle_many` settles now: their market's latest round is at or
    after `settle_after` (it fills or cancels them), or their deadline (`settle_after +
    window`) passed (it cancels them, and pays the reward all the same)."""
    return sorted(o.order_id for o in triggered
                  if round_times.get(o.market, -1) >= o.settle_after or now > o.settle_after + window)


def positions_needed(open_orders: Iterable[Order]) -> set[tuple[str, int, int]]:
    """The positions the dead rule reads: those of the reduce-only orders."""
    return {o.position_key for o in open_orders if o.reduce_only}


# ---------------------------------------------------------------- the index

class OrderIndex(EventStore):
    """The order keeper's SQLite file: the orders as their events tell them, and the journal
    of the transactions it sent."""

    def __init__(self, path: str | Path):
        super().__init__(path, SCHEMA, ("orders",))

    def reset(self, chain: dict[str, Any]) -> None:
        with self.transaction():
            self.db.execute("UPDATE sends SET status = 'orphaned' WHERE status = ?", (IN_FLIGHT,))
        super().reset(chain)

    def book(self, name: str, a: dict[str, Any]) -> None:
        order_id = int(a["order_id"])
        if name == "ConditionalPlaced":
            self.db.execute(
                "INSERT OR IGNORE INTO orders (order_id, owner, sub, market, kind, side, size, trigger_price, reduce_only, "
                "expiry, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order_id, str(a["owner"]), int(a["sub"]), int(a["market"]), int(a["kind"]) - KIND_CONDITIONAL,
                 int(a["side"]), str(int(a["size"])), str(int(a["trigger_price"])), int(bool(a["reduce_only"])),
                 int(a["expiry"]), OPEN),
            )
        elif name == "ConditionalTriggered":
            self.db.execute("UPDATE orders SET status = ?, settle_after = ? WHERE order_id = ? AND status = ?",
                            (TRIGGERED, int(a["settle_after"]), order_id, OPEN))
        elif name == "OrderCancelled" or int(a["kind"]) >= KIND_CONDITIONAL:  # a request's id is not in the table
            self.db.execute("UPDATE orders SET status = ? WHERE order_id = ?", (DONE, order_id))

    def orders(self, status: str) -> list[Order]:
        rows = self.db.execute(
            "SELECT order_id, owner, sub, market, kind, side, size, trigger_price, reduce_only, expiry, status, "
            "settle_after FROM orders WHERE status = ? ORDER BY order_id", (status,)
        ).fetchall()
        return [Order(int(i), o, int(s), int(m), int(k), int(sd), int(sz), int(tp), bool(ro), int(e), st, int(sa))
                for i, o, s, m, k, sd, sz, tp, ro, e, st, sa in rows]

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM orders GROUP BY status").fetchall()
        return {OPEN: 0, TRIGGERED: 0, DONE: 0, **{status: int(n) for status, n in rows}}

    # ---- the send journal
    def journal(self, verb: str, orders: list[int], nonce: int, tx_hash: str) -> Sent:
        """Write down a transaction about to be broadcast."""
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO sends (verb, orders, nonce, tx_hash, status, sent_at) VALUES (?, ?, ?, ?, ?, ?)",
                (verb, json.dumps(orders), nonce, tx_hash, IN_FLIGHT, time.time()),
            )
        return Sent(int(cursor.lastrowid or 0), verb, tuple(orders), nonce, tx_hash)

    def in_flight(self) -> list[Sent]:
        rows = self.db.execute(
            "SELECT id, verb, orders, nonce, tx_hash FROM sends WHERE status = ? ORDER BY id", (IN_FLIGHT,)
        ).fetchall()
        return [Sent(int(i), v, tuple(json.loads(o)), int(n), h) for i, v, o, n, h in rows]

    def conclude(self, send_id: int, status: str, block: int | None = None) -> None:
        with self.transaction():
            self.db.execute("UPDATE sends SET status = ?, block = ? WHERE id = ?", (status, block, send_id))

    def sends(self) -> dict[str, int]:
        """Journal rows by status."""
        return {status: int(n) for status, n in self.db.execute("SELECT status, COUNT(*) FROM sends GROUP BY status")}


# ---------------------------------------------------------------- the keeper

@dataclass
class Tally:
    """What this run did, from its receipts' events."""

    triggered: int = 0
    pruned: int = 0  # cancelled by our trigger or prune of an open order
    filled: int = 0
    cancelled: int = 0  # cancelled by our settle_many (the vault's reason, expiry, OCO)
    transactions: int = 0


@dataclass
class OrderKeeper(PassKeeper):
    """Triggers, settles and prunes conditional orders, signed by `sender`; `index` is its store."""

    x: Exchange
    sender: Any
    index: OrderIndex
    report: Report = print
    max_batch: int = MAX_BATCH
    receipt_timeout: float = RECEIPT_TIMEOUT
    tally: Tally = field(default_factory=Tally)
    log: RouterLog = field(init=False)
    skipped: dict[int, str] = field(default_factory=dict)  # order -> the reason last reported
    _status: str = ""

    def __post_init__(self) -> None:
        self.log = RouterLog(self.x.d.router, self.index, ORDER_EVENTS, self.report)

    @property
    def w3(self) -> Any:
        return self.log.w3

    @property
    def router(self) -> Any:
        return self.x.d.router

    # ---- 2. recovery
    def recover(self) -> set[int]:
        """Conclude journalled transactions left in flight; returns the orders of those the
        node still holds (left alone this pass)."""
        busy: set[int] = set()
        for sent in self.index.in_flight():
            receipt = self._receipt(sent.tx_hash)
            if receipt is not None:
                self._conclude(sent, receipt)
                self.report(Line(f"recovered {sent.verb} {sent.tx_hash[:10]}: mined in block {receipt['blockNumber']}",
                                 "recovered_mined", tx=sent.tx_hash, verb=sent.verb, block=int(receipt["blockNumber"])))
            elif self._known(sent.tx_hash):
                busy.update(sent.orders)
            else:
                self.index.conclude(sent.id, "dropped")
                self.report(Line(f"recovered {sent.verb} {sent.tx_hash[:10]}: never broadcast (dropped); "
                                 f"order(s) {list(sent.orders)} decided again", "recovered_dropped", tx=sent.tx_hash,
                                 verb=sent.verb, orders=list(sent.orders)))
        return busy

    def _receipt(self, tx_hash: str) -> Any | None:
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _known(self, tx_hash: str) -> bool:
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction(tx_hash) is not None
        except TransactionNotFound:
            return False

    # ---- 4. decide
    def market_state(self) -> tuple[dict[int, int | None], dict[int, int]]:
        """Each market's latest price (None when older than the oracle's max_price_age: a
        trigger would revert) and the time of its latest round."""
        from ape import chain

        oracle, now = self.x.d.oracle, int(chain.blocks.head.timestamp)
        max_age = int(oracle.max_price_age())
        prices: dict[int, int | None] = {}
        rounds: dict[int, int] = {}
        for m in self.x.market_names():
            price, updated_at = (int(v) for v in oracle.latest(m))
            prices[m], rounds[m] = (price if price and now - updated_at <= max_age else None), updated_at
        return prices, rounds

    def positions(self, keys: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], int]:
        return {key: int(self.x.vault.position(*key).size) for key in keys}

    # ---- 5. send
    def _send(self, verb: str, orders: list[int], nonce: int) -> tuple[Sent, int] | None:
        """Simulate `verb` of `orders`; when it would revert, skip them with the reason and
        return None; else sign it, journal it, broadcast it."""
        from ape.exceptions import VirtualMachineError

        method = getattr(self.router, verb)
        arg: Any = orders if verb.endswith("_many") else orders[0]
        try:
            gas = int(method.estimate_gas_cost(arg, sender=self.sender))
        except VirtualMachineError as err:
            self._skip(verb, orders, getattr(err, "revert_message", None) or str(err)[:120])
            return None
        txn = method.as_transaction(arg, sender=self.sender, nonce=nonce, gas_limit=gas_limit(gas, len(orders)))
        signed = self.sender.sign_transaction(txn)
        tx_hash = "0x" + bytes(signed.txn_hash).hex()
        sent = self.index.journal(verb, orders, nonce, tx_hash)  # before it leaves
        self.w3.eth.send_raw_transaction(signed.serialize_transaction())
        for order_id in orders:
            self.skipped.pop(order_id, None)
        return sent, gas

    def _skip(self, verb: str, orders: list[int], reason: str) -> None:
        """Report a simulated revert once per order and reason; the orders are decided again next pass."""
        fresh = [o for o in orders if self.skipped.get(o) != reason]
        for order_id in orders:
            self.skipped[order_id] = reason
        if fresh:
            self.report(Line(f"skipped {verb} of order(s) {fresh}: {reason} (retried next pass)", "skipped",
                             verb=verb, orders=fresh, reason=reason))

    def send_all(self, jobs: list[tuple[str, list[int], str]]) -> int:
        """Send each (verb, orders, why) back to back, then await and conclude them; returns
        how many transactions were mined."""
        nonce, sent = pending_nonce(self.sender), []
        for verb, orders, why in jobs:
            out = self._send(verb, orders, nonce)
            if out is None:
                continue
            nonce += 1
            sent.append(out[0])
            self.report(Line(f"sent {verb} of {_ids(orders)} ({why}), simulated gas {out[1]:,}", "sent", verb=verb,
                             orders=orders, why=why, tx=out[0].tx_hash, nonce=out[0].nonce, simulated_gas=out[1]))
        return sum(self._await(s) for s in sent)

    def _await(self, sent: Sent) -> int:
        from web3.exceptions import TimeExhausted

        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(sent.tx_hash, timeout=self.receipt_timeout, poll_latency=0.05)
        except TimeExhausted:  # recovery picks it up on a later pass
            self.report(Line(f"{sent.verb} {sent.tx_hash[:10]} not mined after {self.receipt_timeout:.0f}s; will check again",
                             "pending", tx=sent.tx_hash, verb=sent.verb))
            return 0
        self._conclude(sent, receipt)
        return 1

    def _conclude(self, sent: Sent, receipt: Any) -> None:
        """Journal a mined transaction and count (and report) what its events did."""
        ok, block = int(receipt["status"]) == 1, int(receipt["blockNumber"])
        self.index.conclude(sent.id, "mined" if ok else "reverted", block)
        self.tally.transactions += 1
        events = [d for log in receipt["logs"] if (d := self.log.decoder.decode(log)) is not None]
        triggered = [int(a["order_id"]) for name, a in events if name == "ConditionalTriggered"]
        filled = [int(a["order_id"]) for name, a in events if name == "OrderSettled"]
        cancelled = [(int(a["order_id"]), str(a["reason"])) for name, a in events if name == "OrderCancelled"]
        opened = sent.verb in ("trigger", "prune", "trigger_many", "prune_many")
        self.tally.triggered += len(triggered)
        self.tally.filled += len(filled)
        self.tally.pruned += len(cancelled) if opened else 0
        self.tally.cancelled += 0 if opened else len(cancelled)
        state = "mined" if ok else "REVERTED"
        parts = [f"triggered {_ids(triggered)}" if triggered else "", f"filled {_ids(filled)}" if filled else "",
                 ", ".join(f"cancelled {i} ({reason})" for i, reason in cancelled)]
        self.report(Line(f"{sent.verb} {sent.tx_hash[:10]} {state} in block {block}, gas {int(receipt['gasUsed']):,}: "
                         + ("; ".join(p for p in parts if p) or "nothing to do"), "mined", verb=sent.verb,
                         tx=sent.tx_hash, status=state.lower(), block=block, gas=int(receipt["gasUsed"]),
                         triggered=triggered, filled=filled, cancelled=[{"order": i, "reason": r} for i, r in cancelled]))

    # ---- the loop
    def plan(self, busy: set[int]) -> list[tuple[str, list[int], str]]:
        """This pass's transactions: `prune_many`, `trigger_many` and `settle_many` batches (up to
        `max_batch` orders each: a batch skips an order it cannot act on, so one order never
        holds up the others)."""
        from ape import chain

        now = int(chain.blocks.head.timestamp)
        prices, rounds = self.market_state()
        open_orders = [o for o in self.index.orders(OPEN) if o.order_id not in busy]
        actions = decide(open_orders, prices, self.positions(positions_needed(open_orders)), now)
        triggered = [o for o in self.index.orders(TRIGGERED) if o.order_id not in busy]
        due = settleable(triggered, rounds, now, int(self.router.settlement_window())) if triggered else []
        jobs: list[tuple[str, list[int], str]] = []
        for verb, why in (("prune", "dead"), ("trigger", "trigger price met")):
            ids = [a.order_id for a in actions if a.verb == verb]
            for start in range(0, len(ids), self.max_batch):
                jobs.append((f"{verb}_many", ids[start:start + self.max_batch], why))
        for start in range(0, len(due), self.max_batch):
            jobs.append(("settle_many", due[start:start + self.max_batch], "settlement round exists"))
        return jobs

    def step(self) -> int:
        """One pass (see the module docstring); returns how many transactions were mined."""
        self.log.check_chain()
        busy = self.recover()
        self.log.scan()
        jobs = self.plan(busy)
        mined = self.send_all(jobs) if jobs else 0
        if mined:
            self.log.scan()
        self.print_status()
        return mined

    def status_line(self) -> Line:
        c, t = self.index.counts(), self.tally
        return Line(
            f"open {c[OPEN]} | triggered {c[TRIGGERED]} | done {c[DONE]} | this run: triggered {t.triggered}, "
            f"filled {t.filled}, pruned {t.pruned}, cancelled {t.cancelled} in {t.transactions} tx",
            "status", open=c[OPEN], triggered_now=c[TRIGGERED], done=c[DONE], triggered=t.triggered, filled=t.filled,
            pruned=t.pruned, cancelled=t.cancelled, transactions=t.transactions,
        )



def _ids(orders: list[int]) -> str:
    """Order ids for a log line: all of a few, the count and range of many."""
    if len(orders) <= 5:
        return "order(s) " + ", ".join(str(o) for o in orders)
    return f"{len(orders)} orders ({orders[0]}..{orders[-1]})"
