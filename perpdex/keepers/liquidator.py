"""The liquidator bot: finds unhealthy accounts and liquidates them in gas-sized batches.

One `step()`:
1. **Chain check.** The chain id, the genesis hash and the head are compared with what the
   index was built from; a devnet reset (a restarted Anvil, a reverted snapshot) wipes the
   index and re-reads the vault's events from `start_block`.
2. **Recovery.** Batches journalled but not yet settled (a crash between broadcast and
   receipt) are looked up: mined ones are settled from their receipts, ones still pending
   are waited for, ones whose nonce went to another transaction are marked replaced and
   ones the node never saw are marked dropped. Nothing is re-sent blindly: the accounts are
   simply evaluated again.
3. **Scan.** `PositionModified` and `PositionLiquidated` logs since the checkpoint (in chunks)
   update the size of every (owner, sub, market); the checkpoint moves in the same SQLite
   transaction. No storage scans.
4. **Evaluate.** Accounts with an open position are checked with `LiquidationKeeper.liquidatable`,
   up to 100 per `eth_call`.
5. **Send.** Liquidatable accounts go out in `liquidate_many` batches: each batch is
   simulated (gas estimate) first and split while its gas is over the budget; a batch that
   would revert is not sent. The nonce comes from the node's pending count, and the batch is
   journalled before it is broadcast.

`run()` repeats it, retrying RPC errors with backoff (`keepers.common.run_loop`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Collection

from eth_utils import keccak, to_checksum_address

from perpdex.keepers.common import Report, pending_nonce, run_loop
from perpdex.keepers.index import Account, AccountIndex, ChainId, PositionSeen, Send, chunks
from perpdex.sdk import Exchange

VIEW_BATCH = 100  # LiquidationKeeper.MAX_BATCH
SCAN_CHUNK = 2_000  # blocks per eth_getLogs
FIRST_GUESS_GAS = 150_000  # per account, until a receipt tells better
# A batch is simulated against the head block but runs a block later, where time has passed:
# each market accrues funding and each position settles it (storage writes that a simulation
# with no time elapsed skips). Seen on Anvil: simulated 411,198, used 492,738 for 8 accounts,
# out of gas at +20% (the same batch a block later used 629,698). Each account gets this much
# on top of the simulated gas (+20%); unused gas is not paid for.
GAS_HEADROOM_PER_ACCOUNT = 50_000


@dataclass(frozen=True)
class EventLayout:
    """Where to find what the bot needs in a log of one of the vault's events."""

    topic: bytes
    word: int  # index of the wanted field among the data words
    signed: bool


def _layout(event: Any, field_name: str) -> EventLayout:
    abi = event.abi
    data = [i for i in abi.inputs if not i.indexed]
    position = [i.name for i in data].index(field_name)
    return EventLayout(keccak(text=abi.selector), position, data[position].type.startswith("int"))


def _word(data: bytes, layout: EventLayout) -> int:
    return int.from_bytes(data[32 * layout.word : 32 * layout.word + 32], "big", signed=layout.signed)


def _topic_int(topic: bytes) -> int:
    return int.from_bytes(bytes(topic), "big")


def _topic_address(topic: bytes) -> str:
    return to_checksum_address(bytes(topic)[-20:])


def gas_limit(simulated: int, accounts: int) -> int:
    """The gas limit of a batch simulated at `simulated` gas (see GAS_HEADROOM_PER_ACCOUNT)."""
    return simulated * 6 // 5 + GAS_HEADROOM_PER_ACCOUNT * accounts


@dataclass(frozen=True)
class LiquidationSeen:
    """One `Liquidation` log, as read back from the chain."""

    owner: str
    sub: int
    keeper: str
    block: int
    tx_hash: str
    fraction: int  # WAD; WAD = full
    keeper_reward: int  # token units


@dataclass(frozen=True)
class LiquidationLogs:
    """Decodes the vault's `Liquidation` logs (from `eth_getLogs` or a receipt)."""

    fraction: EventLayout
    reward: EventLayout

    @classmethod
    def of(cls, vault: Any) -> "LiquidationLogs":
        return cls(_layout(vault.Liquidation, "fraction"), _layout(vault.Liquidation, "keeper_reward"))

    @property
    def topic(self) -> bytes:
        return self.fraction.topic

    def decode(self, log: Any) -> LiquidationSeen | None:
        """The liquidation a log records; None for a log of another event."""
        topics = log["topics"]
        if not topics or bytes(topics[0]) != self.topic:
            return None
        data = bytes(log["data"])
        return LiquidationSeen(
            _topic_address(topics[1]), _topic_int(topics[2]), _topic_address(topics[3]),
            int(log["blockNumber"]), "0x" + bytes(log["transactionHash"]).hex(),
            _word(data, self.fraction), _word(data, self.reward),
        )


def liquidations(x: Exchange, from_block: int = 0, to_block: int | str = "latest") -> list[LiquidationSeen]:
    """Every `Liquidation` the vault emitted in the block range (needs a node with eth_getLogs)."""
    from ape import chain

    decoder = LiquidationLogs.of(x.vault)
    logs = chain.provider.web3.eth.get_logs(
        {"address": str(x.vault.address), "fromBlock": from_block, "toBlock": to_block, "topics": [[decoder.topic]]}
    )
    return [seen for log in logs if (seen := decoder.decode(log)) is not None]


@dataclass
class Metrics:
    tracked: int = 0
    open: int = 0
    liquidatable: int = 0
    last_block: int = -1
    cleared_since: float | None = None  # when the current run of liquidatable accounts was first seen
    cleared_count: int = 0


@dataclass
class Liquidator:
    """Liquidates every liquidatable account of `x`'s vault, signed by `sender`."""

    x: Exchange
    sender: Any
    index: AccountIndex
    report: Report = print
    max_batch: int = 50
    gas_budget: int = 12_000_000
    start_block: int = 0
    receipt_timeout: float = 120.0
    gas_per_account: int = FIRST_GUESS_GAS
    metrics: Metrics = field(default_factory=Metrics)
    _status: str = ""

    def __post_init__(self) -> None:
        vault = self.x.vault
        self.positions = {
            layout.topic: layout
            for layout in (_layout(vault.PositionModified, "size"), _layout(vault.PositionLiquidated, "size"))
        }
        self.liquidation = LiquidationLogs.of(vault)
        self._token_unit = 0  # read from the token when first needed (the chain may not have it yet)

    @property
    def w3(self) -> Any:
        from ape import chain

        return chain.provider.web3

    # ---- 1. the chain
    def check_chain(self) -> bool:
        """Rebuild the index after a reset; False while the deployment is missing."""
        w3 = self.w3
        head = int(w3.eth.block_number)
        current = ChainId(int(w3.eth.chain_id), bytes(w3.eth.get_block(0)["hash"]).hex(), str(self.x.vault.address))
        known = self.index.chain()
        if known is None:
            self.index.reset(current, self.start_block)
            self.report(f"index: new, reading the vault's events from block {self.start_block}")
        elif known != current or head < self.index.last_block():
            why = "chain id" if known.chain_id != current.chain_id else "genesis" if known.genesis != current.genesis else "head went back"
            was_at = self.index.last_block()
            orphaned = self.index.reset(current, self.start_block)
            self.metrics = Metrics()
            self.report(
                f"devnet reset detected ({why}: head {head}, index was at block {was_at}); "
                f"re-indexing from block {self.start_block}, {orphaned} in-flight batch(es) orphaned"
            )
        if not w3.eth.get_code(self.x.d.keeper.address):
            self.report(f"no LiquidationKeeper at {self.x.d.keeper.address} yet (waiting for a deployment)")
            return False
        return True

    # ---- 2. recovery
    def recover(self) -> list[Send]:
        """Settle journalled batches left in flight; returns those still pending."""
        pending = []
        for send in self.index.in_flight():
            receipt = self._receipt(send.tx_hash)
            if receipt is None and self._nonce_used(send):
                receipt = self._receipt(send.tx_hash)  # mined since the first look, or replaced
                if receipt is None:
                    self.index.settle(send.id, "replaced")
                    self.report(f"recovered batch {send.tx_hash[:10]}: nonce {send.nonce} used by another transaction")
                    continue
            if receipt is None and pending_nonce(self.sender) <= send.nonce:
                self.index.settle(send.id, "dropped")
                self.report(f"recovered batch {send.tx_hash[:10]}: never broadcast (dropped); its accounts are re-checked")
                continue
            if receipt is None:  # in the mempool: wait for it
                receipt = self._wait(send.tx_hash)
                if receipt is None:
                    pending.append(send)
                    continue
            done = self._settle(send, receipt)
            self.report(f"recovered batch {send.tx_hash[:10]}: mined in block {receipt['blockNumber']}, liquidated {done}")
        return pending

    def _nonce_used(self, send: Send) -> bool:
        return int(self.w3.eth.get_transaction_count(self.sender.address, "latest")) > send.nonce

    def _receipt(self, tx_hash: str) -> Any | None:
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _wait(self, tx_hash: str) -> Any | None:
        from web3.exceptions import TimeExhausted

        try:
            return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout, poll_latency=0.2)
        except TimeExhausted:
            return None

    def _settle(self, send: Send, receipt: Any) -> int:
        """Record what a mined batch did, from its own logs: liquidations paid to us, rewards."""
        ours = [
            seen for log in receipt["logs"]
            if (seen := self.liquidation.decode(log)) is not None and seen.keeper == self.sender.address
        ]
        liquidated, reward = len(ours), sum(seen.keeper_reward for seen in ours)
        status = "mined" if receipt["status"] == 1 else "reverted"
        gas = int(receipt["gasUsed"])
        self.index.settle(send.id, status, int(receipt["blockNumber"]), liquidated, reward, gas)
        if liquidated:
            self.gas_per_account = max(gas // liquidated, 1)
        return liquidated

    # ---- 3. scan
    def scan(self) -> int:
        """Read position logs from the checkpoint to the head; returns how many were applied."""
        head = int(self.w3.eth.block_number)
        applied, start = 0, self.index.last_block() + 1
        while start <= head:
            stop = min(start + SCAN_CHUNK - 1, head)
            logs = self.w3.eth.get_logs(
                {"address": str(self.x.vault.address), "fromBlock": start, "toBlock": stop, "topics": [list(self.positions)]}
            )
            applied += self.index.record_positions((self._position(log) for log in logs), stop)
            start = stop + 1
        self.metrics.last_block = self.index.last_block()
        return applied

    def _position(self, log: Any) -> PositionSeen:
        topics = log["topics"]
        layout = self.positions[bytes(topics[0])]
        return PositionSeen(_topic_address(topics[1]), _topic_int(topics[2]), _topic_int(topics[3]), _word(bytes(log["data"]), layout))

    # ---- 4. evaluate
    def liquidatable(self, exclude: Collection[Account] = ()) -> list[Account]:
        accounts = [a for a in self.index.open_accounts() if a not in exclude]
        self.metrics.tracked, self.metrics.open = self.index.tracked(), len(accounts)
        found = []
        for batch in chunks(accounts, VIEW_BATCH):
            flags = self.x.d.keeper.liquidatable([a.owner for a in batch], [a.sub for a in batch])
            found += [a for a, flag in zip(batch, flags) if flag]
        self.metrics.liquidatable = len(found)
        return found

    # ---- 5. send
    def first_batch_size(self) -> int:
        return max(1, min(self.max_batch, VIEW_BATCH, self.gas_budget // max(self.gas_per_account, 1)))

    def liquidate(self, accounts: list[Account]) -> int:
        """Send every account in batches sized by gas; returns how many were liquidated."""
        done = 0
        for batch in chunks(accounts, self.first_batch_size()):
            outcome = self._send_sized(batch)
            if outcome is None:  # the whole round would revert (e.g. a stale price): stop here
                break
            done += outcome
        return done

    def _send_sized(self, batch: list[Account]) -> int | None:
        """Simulate, halve while over the gas budget or reverting, send. None: stop the round."""
        from ape.exceptions import VirtualMachineError

        owners, subs = [a.owner for a in batch], [a.sub for a in batch]
        try:
            gas = int(self.x.d.keeper.liquidate_many.estimate_gas_cost(owners, subs, sender=self.sender))
        except VirtualMachineError as err:
            if len(batch) > 1:
                return self._halves(batch)
            reason = getattr(err, "revert_message", None) or str(err)
            self.report(f"not sent: liquidating {batch[0].owner}/{batch[0].sub} would revert ({reason})")
            return None if "stale" in reason or "price" in reason else 0
        if gas > self.gas_budget and len(batch) > 1:
            return self._halves(batch)
        return self._broadcast(batch, gas)

    def _halves(self, batch: list[Account]) -> int | None:
        half = len(batch) // 2
        first = self._send_sized(batch[:half])
        if first is None:
            return None
        second = self._send_sized(batch[half:])
        return None if second is None else first + second

    def _broadcast(self, batch: list[Account], gas: int) -> int:
        keeper = self.x.d.keeper
        nonce = pending_nonce(self.sender)
        txn = keeper.liquidate_many.as_transaction(
            [a.owner for a in batch], [a.sub for a in batch], sender=self.sender, nonce=nonce,
            gas_limit=gas_limit(gas, len(batch)),
        )
        signed = self.sender.sign_transaction(txn)
        tx_hash = "0x" + bytes(signed.txn_hash).hex()
        send_id = self.index.journal(nonce, tx_hash, batch)  # written down before it leaves
        self.w3.eth.send_raw_transaction(signed.serialize_transaction())
        self.report(f"sent batch {tx_hash[:10]} (nonce {nonce}): {len(batch)} account(s), simulated gas {gas:,}")
        receipt = self._wait(tx_hash)
        if receipt is None:  # recovery picks it up on the next step
            self.report(f"batch {tx_hash[:10]} not mined after {self.receipt_timeout:.0f}s; will check again")
            return 0
        done = self._settle(Send(send_id, nonce, tx_hash, tuple(batch)), receipt)
        gas_used = int(receipt["gasUsed"])
        outcome = "mined" if receipt["status"] == 1 else "REVERTED"
        self.report(
            f"batch {tx_hash[:10]} {outcome} in block {receipt['blockNumber']}: liquidated {done}/{len(batch)}, "
            f"gas {gas_used:,} ({gas_used // max(done, 1):,}/account)"
        )
        return done

    # ---- the loop
    def step(self) -> int:
        """One pass (see the module docstring); returns how many accounts were liquidated."""
        if not self.check_chain():
            return 0
        still_pending = self.recover()
        self.scan()
        busy = {a for send in still_pending for a in send.accounts}
        candidates = self.liquidatable(exclude=busy)
        if candidates and self.metrics.cleared_since is None:
            self.metrics.cleared_since, self.metrics.cleared_count = time.monotonic(), 0
        done = self.liquidate(candidates) if candidates else 0
        self.metrics.cleared_count += done
        if not candidates and self.metrics.cleared_since is not None:
            self._report_cleared()
        self.print_status()
        return done

    def _report_cleared(self) -> None:
        assert self.metrics.cleared_since is not None
        seconds = time.monotonic() - self.metrics.cleared_since
        count = self.metrics.cleared_count
        if count:
            self.report(f"cleared {count} account(s) in {seconds:.2f}s ({count / max(seconds, 1e-9):.1f} accounts/s)")
        self.metrics.cleared_since, self.metrics.cleared_count = None, 0

    def status_line(self) -> str:
        t = self.index.totals()
        m = self.metrics
        if not self._token_unit:
            self._token_unit = 10 ** int(self.x.d.usd.decimals())
        reward = t.reward / self._token_unit
        return (
            f"block {m.last_block} | tracked {m.tracked} | open {m.open} | liquidatable {m.liquidatable} | "
            f"liquidated {t.liquidated} in {t.mined} tx | rewards {reward:,.2f} USD | gas {t.gas:,}"
        )

    def print_status(self) -> None:
        line = self.status_line()
        if line != self._status:
            self.report(line)
            self._status = line

    def run(self, interval: float, iterations: int | None = None, max_backoff: float = 30.0) -> None:
        run_loop(self.step, interval, self.report, iterations, max_backoff)

