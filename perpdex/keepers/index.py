"""The liquidator's local store (SQLite): which accounts hold positions, up to which block
the vault's events were read, a journal of every transaction it sent, and the accounts it
had to skip (why, how often, and from which block to try them again).

Everything that must survive a crash is written in one SQLite transaction with the
checkpoint that covers it: the positions seen in a block range and the new last block
commit together, so a process killed mid-scan re-reads that range and misses nothing. A
liquidation batch is journalled (nonce, hash, accounts) *before* it is broadcast, so a
restarted bot knows what may be in flight and waits for it instead of sending it again.
A fee-bumped replacement is a journal row of its own with the same nonce: whichever of the
rows with that nonce gets mined settles, the others are marked replaced.

Only blocks at least `confirmations` deep are committed (see liquidation_policy.ScanWindow):
the newer ones are read again on every scan into an overlay passed to `open_positions`, so
the stored positions never hold a log that a reorg took back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    owner TEXT NOT NULL, sub INTEGER NOT NULL, market INTEGER NOT NULL, size TEXT NOT NULL,
    PRIMARY KEY (owner, sub, market)
);
CREATE TABLE IF NOT EXISTS sends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nonce INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    accounts TEXT NOT NULL,           -- JSON list of [owner, sub]
    status TEXT NOT NULL,             -- sent | mined | reverted | dropped | replaced | orphaned
    block INTEGER,
    liquidated INTEGER NOT NULL DEFAULT 0,
    reward INTEGER NOT NULL DEFAULT 0, -- token units
    gas INTEGER NOT NULL DEFAULT 0,
    sent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS skips (
    owner TEXT NOT NULL, sub INTEGER NOT NULL,
    reason TEXT NOT NULL,             -- the revert reason of the last failed liquidation
    failures INTEGER NOT NULL,        -- in a row; reset by a liquidation
    retry_at INTEGER NOT NULL,        -- first block at which it is tried again
    PRIMARY KEY (owner, sub)
);
"""
# Columns added to `sends` after the first release: (name, declaration), added to older files.
SENDS_COLUMNS = (
    ("max_fee", "INTEGER NOT NULL DEFAULT 0"),       # wei per gas (EIP-1559)
    ("priority_fee", "INTEGER NOT NULL DEFAULT 0"),
    ("sent_block", "INTEGER NOT NULL DEFAULT 0"),    # the head when it was broadcast
    ("gas_limit", "INTEGER NOT NULL DEFAULT 0"),     # a replacement keeps it
)
IN_FLIGHT = "sent"


@dataclass(frozen=True)
class Account:
    owner: str
    sub: int


@dataclass(frozen=True)
class ChainId:
    """What identifies the chain the index was built from; a devnet reset changes it."""

    chain_id: int
    genesis: str  # hash of block 0
    vault: str


@dataclass(frozen=True)
class PositionSeen:
    """One `PositionModified`/`PositionLiquidated` log: the size after, in log order."""

    owner: str
    sub: int
    market: int
    size: int


@dataclass(frozen=True)
class Send:
    """A journalled batch still in flight."""

    id: int
    nonce: int
    tx_hash: str
    accounts: tuple[Account, ...]
    max_fee: int = 0  # wei per gas; 0 in rows journalled before fees were (never bumped)
    priority_fee: int = 0
    sent_block: int = 0
    gas_limit: int = 0


@dataclass(frozen=True)
class Skip:
    """An account whose liquidation failed: why, how many times in a row, when to retry."""

    account: Account
    reason: str
    failures: int
    retry_at: int


PositionKey = tuple[str, int, int]  # owner, sub, market


@dataclass(frozen=True)
class Totals:
    sends: int
    mined: int
    liquidated: int
    reward: int  # token units
    gas: int
    lost: int  # dropped, replaced or orphaned by a reset


class AccountIndex:
    """The SQLite file at `path` (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = open_store(self.path, SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(sends)")}
        for name, declaration in SENDS_COLUMNS:
            if name not in have:
                self.db.execute(f"ALTER TABLE sends ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        self.db.close()

    # ---- the checkpoint
    def _meta(self, key: str) -> str | None:
        return get_meta(self.db, key)

    def chain(self) -> ChainId | None:
        raw = self._meta("chain")
        return ChainId(**json.loads(raw)) if raw else None

    def last_block(self) -> int:
        raw = self._meta("last_block")
        return int(raw) if raw is not None else -1

    def reset(self, chain: ChainId, start_block: int) -> int:
        """Forget every position and start over on `chain` from `start_block`; journal rows
        still in flight are marked orphaned (their chain is gone). Returns how many were."""
        with self._transaction():
            self.db.execute("DELETE FROM positions")
            self.db.execute("DELETE FROM skips")
            orphaned = self.db.execute(
                "UPDATE sends SET status = 'orphaned' WHERE status = ?", (IN_FLIGHT,)
            ).rowcount
            self._set("chain", json.dumps(chain.__dict__))
            self._set("last_block", str(start_block - 1))
        return orphaned

    def record_positions(self, seen: Iterable[PositionSeen], up_to_block: int) -> int:
        """Apply logs read up to `up_to_block` (inclusive) and move the checkpoint, atomically."""
        count = 0
        with self._transaction():
            for p in seen:
                self.db.execute(
                    "INSERT INTO positions (owner, sub, market, size) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (owner, sub, market) DO UPDATE SET size = excluded.size",
                    (p.owner, p.sub, p.market, str(p.size)),
                )
                count += 1
            self._set("last_block", str(up_to_block))
        return count

    # ---- accounts
    def _sizes(self, overlay: dict[PositionKey, int]) -> dict[PositionKey, int]:
        rows = self.db.execute("SELECT owner, sub, market, size FROM positions").fetchall()
        return {**{(o, int(s), int(m)): int(size) for o, s, m, size in rows}, **overlay}

    def open_positions(self, overlay: dict[PositionKey, int] | None = None) -> dict[Account, dict[int, int]]:
        """Every account with an open position: {market: size}, the stored sizes updated by
        `overlay` (the unconfirmed blocks' logs); accounts in a stable order."""
        result: dict[Account, dict[int, int]] = {}
        for (owner, sub, market), size in sorted(self._sizes(overlay or {}).items()):
            if size != 0:
                result.setdefault(Account(owner, sub), {})[market] = size
        return result

    def open_accounts(self, overlay: dict[PositionKey, int] | None = None) -> list[Account]:
        """Accounts with at least one open position, in a stable order."""
        return list(self.open_positions(overlay))

    def tracked(self, overlay: dict[PositionKey, int] | None = None) -> int:
        return len({(owner, sub) for owner, sub, _ in self._sizes(overlay or {})})

    # ---- accounts skipped after a failed liquidation
    def record_skip(self, account: Account, reason: str, retry_at: Callable[[int], int]) -> Skip:
        """Count one more failure of `account` (`retry_at(failures)` gives the retry block)."""
        row = self.db.execute(
            "SELECT failures FROM skips WHERE owner = ? AND sub = ?", (account.owner, account.sub)
        ).fetchone()
        failures = (int(row[0]) if row else 0) + 1
        skip = Skip(account, reason, failures, int(retry_at(failures)))
        with self._transaction():
            self.db.execute(
                "INSERT INTO skips (owner, sub, reason, failures, retry_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (owner, sub) DO UPDATE SET reason = excluded.reason, failures = excluded.failures, "
                "retry_at = excluded.retry_at",
                (account.owner, account.sub, reason, failures, skip.retry_at),
            )
        return skip

    def clear_skips(self, accounts: Iterable[Account]) -> None:
        with self._transaction():
            self.db.executemany("DELETE FROM skips WHERE owner = ? AND sub = ?", [(a.owner, a.sub) for a in accounts])

    def skips(self) -> dict[Account, Skip]:
        rows = self.db.execute("SELECT owner, sub, reason, failures, retry_at FROM skips").fetchall()
        return {Account(o, int(s)): Skip(Account(o, int(s)), r, int(f), int(at)) for o, s, r, f, at in rows}

    # ---- the send journal
    def journal(self, nonce: int, tx_hash: str, accounts: Iterable[Account], max_fee: int = 0,
                priority_fee: int = 0, sent_block: int = 0, gas_limit: int = 0) -> Send:
        """Write down a transaction about to be broadcast (or a replacement: same nonce)."""
        batch = tuple(accounts)
        with self._transaction():
            cursor = self.db.execute(
                "INSERT INTO sends (nonce, tx_hash, accounts, status, sent_at, max_fee, priority_fee, sent_block, "
                "gas_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (nonce, tx_hash, json.dumps([[a.owner, a.sub] for a in batch]), IN_FLIGHT, time.time(),
                 max_fee, priority_fee, sent_block, gas_limit),
            )
        return Send(int(cursor.lastrowid or 0), nonce, tx_hash, batch, max_fee, priority_fee, sent_block, gas_limit)

    def in_flight(self) -> list[Send]:
        rows = self.db.execute(
            "SELECT id, nonce, tx_hash, accounts, max_fee, priority_fee, sent_block, gas_limit FROM sends "
            "WHERE status = ? ORDER BY id", (IN_FLIGHT,)
        ).fetchall()
        return [
            Send(id_, nonce, tx_hash, tuple(Account(o, int(s)) for o, s in json.loads(accounts)), mf, pf, sb, gl)
            for id_, nonce, tx_hash, accounts, mf, pf, sb, gl in rows
        ]

    def in_flight_by_nonce(self) -> list[list[Send]]:
        """In-flight rows grouped by nonce (a transaction and its fee-bumped replacements), oldest first."""
        groups: dict[int, list[Send]] = {}
        for send in self.in_flight():
            groups.setdefault(send.nonce, []).append(send)
        return [groups[n] for n in sorted(groups)]

    def settle(self, send_id: int, status: str, block: int | None = None, liquidated: int = 0, reward: int = 0, gas: int = 0) -> None:
        with self._transaction():
            self.db.execute(
                "UPDATE sends SET status = ?, block = ?, liquidated = ?, reward = ?, gas = ? WHERE id = ?",
                (status, block, liquidated, reward, gas, send_id),
            )

    def totals(self) -> Totals:
        row = self.db.execute(
            "SELECT COUNT(*), SUM(status IN ('mined', 'reverted')), COALESCE(SUM(liquidated), 0), "
            "COALESCE(SUM(reward), 0), COALESCE(SUM(gas), 0), "
            "SUM(status IN ('dropped', 'replaced', 'orphaned')) FROM sends"
        ).fetchone()
        return Totals(int(row[0]), int(row[1] or 0), int(row[2]), int(row[3]), int(row[4]), int(row[5] or 0))

    # ---- plumbing
    def _set(self, key: str, value: str) -> None:
        set_meta(self.db, key, value)

    def _transaction(self) -> Any:
        return transaction(self.db)


# ---- the SQLite plumbing the keepers' stores share (this index, the settler's)


def open_store(path: Path, schema: str) -> sqlite3.Connection:
    """The SQLite file at `path` (created with `schema` on first use): explicit transactions
    only, WAL, fsync on commit. One connection may be handed between threads (Silverback runs
    handlers in a worker pool); callers never use it from two at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


def get_meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (a kill leaves nothing half-written)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def chunks(items: list[Account], size: int) -> Iterator[list[Account]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
