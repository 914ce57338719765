"""What the router's event-indexed keepers share (the settler, the order keeper): an SQLite
store of what the OrderRouter's events taught them, with its checkpoint, and the scan that
feeds it with eth_getLogs.

The checkpoint (the last block read) commits in one SQLite transaction with what that block
range taught, so a process killed mid-scan re-reads the range and misses nothing; reading a
log twice must therefore change nothing (each store's `book` is idempotent). A devnet reset
(another chain id, genesis or router) wipes the store's tables and starts over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perpdex.keepers.common import Line, Report
from perpdex.keepers.index import get_meta, open_store, set_meta, transaction
from perpdex.logs import EventDecoder

LOG_CHUNK = 2_000  # blocks per eth_getLogs
META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"

Event = tuple[str, dict[str, Any]]


class EventStore:
    """An SQLite file (created on first use) of `schema` plus the meta table; `tables` are
    the ones a reset empties. Subclasses book each event in `book`."""

    def __init__(self, path: str | Path, schema: str, tables: tuple[str, ...]):
        self.path = Path(path)
        self.db = open_store(self.path, META_SCHEMA + schema)
        self.tables = tables

    def meta(self, key: str) -> str | None:
        return get_meta(self.db, key)

    def last_block(self) -> int:
        raw = self.meta("last_block")
        return int(raw) if raw is not None else -1

    def reset(self, chain: dict[str, Any]) -> None:
        with self.transaction():
            for table in self.tables:
                self.db.execute(f"DELETE FROM {table}")
            self._set("chain", json.dumps(chain, sort_keys=True))
            self._set("last_block", "-1")

    def apply(self, events: list[Event], up_to_block: int) -> None:
        """Book the router's events read up to `up_to_block` and move the checkpoint, atomically."""
        with self.transaction():
            for name, args in events:
                self.book(name, args)
            self._set("last_block", str(up_to_block))

    def book(self, name: str, args: dict[str, Any]) -> None:
        raise NotImplementedError

    def _set(self, key: str, value: str) -> None:
        set_meta(self.db, key, value)

    def transaction(self) -> Any:
        return transaction(self.db)


class RouterLog:
    """Reads the router's events named `names` into `store`."""

    def __init__(self, router: Any, store: EventStore, names: tuple[str, ...], report: Report):
        self.router, self.store, self.names, self.report = router, store, names, report
        self.decoder = EventDecoder([router])
        self.topics = ["0x" + topic.hex() for (_, topic), layout in self.decoder.layouts.items() if layout.name in names]

    @property
    def w3(self) -> Any:
        from ape import chain

        return chain.provider.web3

    def chain_id(self) -> dict[str, Any]:
        from ape import chain

        return {"chain_id": int(chain.chain_id), "genesis": str(chain.blocks[0].hash.hex()),
                "router": str(self.router.address)}

    def check_chain(self) -> bool:
        """Start over when the node is another chain than the store was built from; True
        when it did (a reset, or a new store)."""
        here = self.chain_id()
        known = self.store.meta("chain")
        if known == json.dumps(here, sort_keys=True):
            return False
        if known is not None:
            self.report(Line("devnet reset detected: rebuilding the index", "reset_detected", **here))
        self.store.reset(here)
        return True

    def scan(self) -> int:
        """Read the router's events up to the head into the store; returns how many."""
        head = int(self.w3.eth.block_number)
        read = 0
        for start in range(self.store.last_block() + 1, head + 1, LOG_CHUNK):
            stop = min(start + LOG_CHUNK - 1, head)
            logs = self.w3.eth.get_logs({"address": str(self.router.address), "fromBlock": start, "toBlock": stop,
                                         "topics": [self.topics]})
            events = [d for log in logs if (d := self.decoder.decode(log)) is not None and d[0] in self.names]
            self.store.apply(events, stop)
            read += len(events)
        return read
