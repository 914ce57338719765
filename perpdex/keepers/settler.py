"""The settler: settles the OrderRouter's requests once their settlement round exists (and
cancels, for the reward, those whose deadline passed), in `settle_many` batches.

It learns the requests from the router's events (`OrderCommitted`, `OrderSettled`,
`OrderCancelled`) read with eth_getLogs into an SQLite index, whose checkpoint commits in one
transaction with what the read block range taught it: a process killed mid-scan re-reads
that range, one killed mid-send finds its requests still pending and sends them again. That
is safe because settling is idempotent on chain: `settle_many` skips what is no longer
pending, so a request fills (or is cancelled) exactly once whoever sends it, however often,
and two settlers racing only cost each other gas. A devnet reset (another chain id or
genesis) wipes the index and starts over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perpdex.keepers.common import Line, Report, pending_nonce, run_loop
from perpdex.keepers.router_log import EventStore, RouterLog
from perpdex.sdk import Exchange

MAX_BATCH = 100  # OrderRouter.MAX_BATCH
REQUEST_EVENTS = ("OrderCommitted", "OrderSettled", "OrderCancelled")
LP_MARKET = -1  # an LP request's market in the index: its round needs every market

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    order_id INTEGER PRIMARY KEY, market INTEGER NOT NULL, settle_after INTEGER NOT NULL,
    deadline INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Request:
    order_id: int
    market: int  # LP_MARKET for LP requests
    settle_after: int
    deadline: int


class RequestIndex(EventStore):
    """The settler's SQLite file (created on first use)."""

    def __init__(self, path: str | Path):
        super().__init__(path, SCHEMA, ("requests",))

    def book(self, name: str, a: dict[str, Any]) -> None:
        if name == "OrderCommitted":
            market = int(a["market"]) if int(a["kind"]) < 2 else LP_MARKET
            self.db.execute(
                "INSERT OR IGNORE INTO requests (order_id, market, settle_after, deadline) VALUES (?, ?, ?, ?)",
                (int(a["order_id"]), market, int(a["settle_after"]), int(a["deadline"])),
            )
        else:  # settled or cancelled: done (a conditional order's id is not in the table: no-op)
            self.db.execute("UPDATE requests SET done = 1 WHERE order_id = ?", (int(a["order_id"]),))

    def pending(self) -> list[Request]:
        rows = self.db.execute(
            "SELECT order_id, market, settle_after, deadline FROM requests WHERE done = 0 ORDER BY order_id"
        ).fetchall()
        return [Request(*map(int, row)) for row in rows]

    def counts(self) -> tuple[int, int]:
        """(requests seen, requests done)."""
        seen, done = self.db.execute("SELECT COUNT(*), COALESCE(SUM(done), 0) FROM requests").fetchone()
        return int(seen), int(done)


def due(pending: list[Request], round_times: dict[int, int], now: int) -> list[int]:
    """The requests `settle` would fill or cancel now: their settlement round exists (the
    market's latest round is at or after `settle_after`; for LP requests every market's is),
    or their deadline passed (then it cancels them, and pays the reward all the same)."""
    ready = []
    for r in pending:
        latest = min(round_times.values()) if r.market == LP_MARKET else round_times.get(r.market, -1)
        if now > r.deadline or latest >= r.settle_after:
            ready.append(r.order_id)
    return ready


@dataclass
class Settler:
    """Settles due requests, signed by `sender`; `index` is its SQLite store."""

    x: Exchange
    sender: Any
    index: RequestIndex
    report: Report = print
    max_batch: int = MAX_BATCH
    settled: int = 0
    cancelled: int = 0
    transactions: int = 0
    log: RouterLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = RouterLog(self.x.d.router, self.index, REQUEST_EVENTS, self.report)

    def check_chain(self) -> None:
        """Start over when the node is another chain than the index was built from."""
        self.log.check_chain()

    def scan(self) -> int:
        """Read the router's events up to the head into the index; returns how many."""
        return self.log.scan()

    def due(self) -> list[int]:
        from ape import chain

        oracle = self.x.d.oracle
        rounds = {m: int(oracle.latest(m)[1]) for m in self.x.market_names()}
        return due(self.index.pending(), rounds, int(chain.blocks.head.timestamp))

    def settle(self, order_ids: list[int]) -> None:
        """One `settle_many` per batch, simulated first (a batch that would revert is not sent)."""
        router = self.x.d.router
        for start in range(0, len(order_ids), self.max_batch):
            batch = order_ids[start:start + self.max_batch]
            router.settle_many.estimate_gas_cost(batch, sender=self.sender)
            self.report(Line(f"sending settle_many of {len(batch)} (first {batch[0]})", "batch_sent", orders=batch))
            receipt = router.settle_many(batch, sender=self.sender, nonce=pending_nonce(self.sender))
            filled = len(self.x.events(receipt, "OrderSettled"))
            cancelled = len(self.x.events(receipt, "OrderCancelled"))
            self.settled, self.cancelled, self.transactions = self.settled + filled, self.cancelled + cancelled, self.transactions + 1
            self.report(Line(f"settled {filled}, cancelled {cancelled} in block {receipt.block_number}, gas {int(receipt.gas_used):,}",
                             "batch_settled", settled=filled, cancelled=cancelled, block=int(receipt.block_number),
                             gas=int(receipt.gas_used), tx=str(receipt.txn_hash)))

    def step(self) -> int:
        self.check_chain()
        self.scan()
        ready = self.due()
        if ready:
            self.settle(ready)
            self.scan()
        return len(ready)

    def status_line(self) -> Line:
        seen, done = self.index.counts()
        return Line(f"requests seen {seen}, done {done}, pending {seen - done}; this run settled {self.settled}, "
                    f"cancelled {self.cancelled} in {self.transactions} tx", "status", seen=seen, done=done,
                    pending=seen - done, settled=self.settled, cancelled=self.cancelled, transactions=self.transactions)

    def run(self, interval: float, iterations: int | None = None, max_backoff: float = 30.0) -> None:
        run_loop(self.step, interval, self.report, iterations, max_backoff)
