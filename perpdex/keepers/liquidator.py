"""The liquidator bot: finds unhealthy accounts and liquidates them in gas-sized batches.

One `step()`:
1. **Chain check.** The chain id, the genesis hash and the head are compared with what the
   index was built from; a devnet reset (a restarted Anvil, a reverted snapshot, a reorg
   deeper than `confirmations`) wipes the index and re-reads the vault's events from
   `start_block`.
2. **Recovery.** Batches journalled but not yet settled (a crash between broadcast and
   receipt) are looked up, per nonce (a batch and its fee-bumped replacements): a mined one
   is settled from its receipt and the others of its nonce marked replaced; ones still
   pending are waited for (and bumped when stuck), ones whose nonce went to a transaction
   not in the journal are marked replaced and ones the node never saw are marked dropped.
   Nothing is re-sent blindly: the accounts are simply evaluated again.
3. **Scan.** `PositionModified` and `PositionLiquidated` logs since the checkpoint (in chunks)
   update the size of every (owner, sub, market); the checkpoint moves in the same SQLite
   transaction, but only to `confirmations` blocks behind the head: the newer blocks are read
   again on every scan into an overlay (a reorg of them leaves nothing behind). No storage scans.
4. **Evaluate.** Accounts with an open position are checked with `LiquidationKeeper.liquidatable`,
   up to 100 per `eth_call`. Accounts skipped lately wait out their backoff; once it runs
   out, their liquidation is simulated alone first (free) and, still failing, skipped again
   with a longer backoff, so a retry costs no gas until it would succeed. The liquidatable
   ones are read with `LiquidationKeeper.health` and ordered by risk (largest shortfall
   MM - equity first); dust (the most it can pay is below its gas at the current gas price)
   is left alone unless its equity is below `bad_debt_equity`.
5. **Send.** Candidates go out in `liquidate_many` batches: each batch is simulated (gas
   estimate) first and split while its gas is over the budget or it would revert; a single
   account that would revert is skipped with the reason, backed off, and the round goes on.
   An account the contract skips (its liquidation failed with a reason, e.g. a stale price
   in one of its markets) is reported from the batch's LiquidationSkipped log and backed off
   the same way. The nonce comes from the node's pending count, and the batch is journalled
   before it is broadcast; a batch not mined `stuck_blocks` blocks later is replaced (same
   nonce, both fees +12.5%) up to the `max_fee` cap, each replacement journalled first.

`run()` repeats it, retrying RPC errors with backoff (`keepers.common.run_loop`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Collection

from eth_utils import keccak, to_checksum_address

from perpdex.keepers.common import Line, PassKeeper, Report, pending_nonce
from perpdex.keepers.index import Account, AccountIndex, ChainId, PositionKey, PositionSeen, Send, Skip, chunks
from perpdex.keepers.liquidation_policy import (
    WAD, Backoff, Candidate, DustRule, Fees, ScanWindow, bumped, by_risk, gwei, initial_fees, reward_bound,
)
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
# Anvil counts a mined transaction in the account's nonce a moment before it serves its
# receipt: a used nonce without a receipt of ours is "replaced" only after this long (seen:
# two batches of one pass wrongly marked replaced when it was concluded at once).
NONCE_RECEIPT_GRACE = 3.0
DEFAULT_PRIORITY_FEE = gwei(1)  # when the node has no eth_maxPriorityFeePerGas
GAS_TOKEN_MARKET = "ETH-USD"  # prices the native token for the dust rule, unless given


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


@dataclass(frozen=True)
class SkipLogs:
    """Decodes the keeper's `LiquidationSkipped` logs (owner, sub, keeper indexed; reason)."""

    topic: bytes

    @classmethod
    def of(cls, keeper: Any) -> "SkipLogs":
        return cls(keccak(text=keeper.LiquidationSkipped.abi.selector))

    def decode(self, log: Any) -> tuple[Account, str] | None:
        from eth_abi import decode

        topics = log["topics"]
        if not topics or bytes(topics[0]) != self.topic:
            return None
        (reason,) = decode(["string"], bytes(log["data"]))
        return Account(_topic_address(topics[1]), _topic_int(topics[2])), reason


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
    backed_off: int = 0  # liquidatable but waiting out a skip's backoff
    dust: int = 0  # liquidatable but not worth their gas
    last_block: int = -1
    cleared_since: float | None = None  # when the current run of liquidatable accounts was first seen
    cleared_count: int = 0


@dataclass
class Liquidator(PassKeeper):
    """Liquidates every liquidatable account of `x`'s vault, signed by `sender`. Fees and gas
    prices in wei per gas; `gas_price` None: the head's base fee plus the priority fee;
    `priority_fee` None: the node's eth_maxPriorityFeePerGas; `gas_token_usd` (WAD) None:
    the oracle's ETH-USD price; `bad_debt_equity` in USD (WAD)."""

    x: Exchange
    sender: Any
    index: AccountIndex
    report: Report = print
    max_batch: int = 50
    gas_budget: int = 12_000_000
    start_block: int = 0
    receipt_timeout: float = 120.0
    gas_per_account: int = FIRST_GUESS_GAS
    confirmations: int = 2
    max_fee: int = gwei(100)
    priority_fee: int | None = None
    stuck_blocks: int = 3
    gas_price: int | None = None
    gas_token_usd: int | None = None
    bad_debt_equity: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    poll: float = 0.2
    metrics: Metrics = field(default_factory=Metrics)
    _status: str = ""

    def __post_init__(self) -> None:
        vault = self.x.vault
        self.positions = {
            layout.topic: layout
            for layout in (_layout(vault.PositionModified, "size"), _layout(vault.PositionLiquidated, "size"))
        }
        self.liquidation = LiquidationLogs.of(vault)
        self.skip_logs = SkipLogs.of(self.x.d.keeper)
        self._token_unit = 0  # read from the token when first needed (the chain may not have it yet)
        self._overlay: dict[PositionKey, int] = {}  # sizes from the blocks not yet confirmed
        self._dust: set[Account] = set()  # reported as dust (reported again once it no longer is)

    @property
    def w3(self) -> Any:
        from ape import chain

        return chain.provider.web3

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    # ---- 1. the chain
    def check_chain(self) -> bool:
        """Rebuild the index after a reset; False while the deployment is missing."""
        w3 = self.w3
        head = self.head()
        current = ChainId(int(w3.eth.chain_id), bytes(w3.eth.get_block(0)["hash"]).hex(), str(self.x.vault.address))
        known = self.index.chain()
        if known is None:
            self.index.reset(current, self.start_block)
            self.report(Line(f"index: new, reading the vault's events from block {self.start_block}", "index_new",
                             from_block=self.start_block))
        elif known != current or head < self.index.last_block():
            why = "chain id" if known.chain_id != current.chain_id else "genesis" if known.genesis != current.genesis else "head went back"
            was_at = self.index.last_block()
            orphaned = self.index.reset(current, self.start_block)
            self.metrics, self._overlay = Metrics(), {}
            self.report(Line(
                f"devnet reset detected ({why}: head {head}, index was at block {was_at}); "
                f"re-indexing from block {self.start_block}, {orphaned} in-flight batch(es) orphaned",
                "reset_detected", reason=why, head=head, index_block=was_at, from_block=self.start_block, orphaned=orphaned,
            ))
        if not w3.eth.get_code(self.x.d.keeper.address):
            self.report(Line(f"no LiquidationKeeper at {self.x.d.keeper.address} yet (waiting for a deployment)",
                             "waiting_for_deployment", keeper=str(self.x.d.keeper.address)))
            return False
        return True

    # ---- 2. recovery
    def recover(self) -> list[Send]:
        """Settle journalled batches left in flight; returns those still pending."""
        pending: list[Send] = []
        for group in self.index.in_flight_by_nonce():
            nonce = group[0].nonce
            if not self._mined(group) and not self._nonce_used(nonce) and pending_nonce(self.sender) <= nonce:
                for send in group:
                    self.index.settle(send.id, "dropped")
                self.report(Line(f"recovered batch {group[-1].tx_hash[:10]}: never broadcast (dropped); its accounts are re-checked",
                                 "recovered_dropped", tx=group[-1].tx_hash, nonce=nonce))
                continue
            outcome = self._await(group)
            if outcome is None:
                pending += group
                continue
            done = self._conclude(group, outcome)
            if outcome != "replaced":
                self.report(Line(f"recovered batch {outcome[0].tx_hash[:10]}: mined in block {outcome[1]['blockNumber']}, liquidated {done}",
                                 "recovered_mined", tx=outcome[0].tx_hash, block=int(outcome[1]["blockNumber"]), liquidated=done))
        return pending

    def _mined(self, group: list[Send]) -> tuple[Send, Any] | None:
        for send in group:
            receipt = self._receipt(send.tx_hash)
            if receipt is not None:
                return send, receipt
        return None

    def _nonce_used(self, nonce: int) -> bool:
        return int(self.w3.eth.get_transaction_count(self.sender.address, "latest")) > nonce

    def _receipt(self, tx_hash: str) -> Any | None:
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _await(self, group: list[Send]) -> tuple[Send, Any] | str | None:
        """Wait up to `receipt_timeout` for one transaction of `group` (one nonce) to be mined,
        replacing the newest with bumped fees whenever it has waited `stuck_blocks` blocks.
        Returns (the mined one, its receipt), "replaced" when the nonce went to a transaction
        not in the journal, or None while still pending."""
        deadline, at_cap, used_since = time.monotonic() + self.receipt_timeout, False, None
        while True:
            mined = self._mined(group)
            if mined is not None:
                return mined
            if used_since is None and self._nonce_used(group[0].nonce):
                used_since = time.monotonic()
            if used_since is not None and time.monotonic() - used_since > NONCE_RECEIPT_GRACE:
                return "replaced"
            newest = group[-1]
            if used_since is None and newest.max_fee and self.head() - newest.sent_block >= self.stuck_blocks and not at_cap:
                fees = bumped(Fees(newest.max_fee, newest.priority_fee), self.max_fee)
                if fees is None:
                    at_cap = True
                    self.report(Line(f"batch {newest.tx_hash[:10]} stuck at the --max-fee cap ({newest.max_fee / 1e9:.2f} gwei); waiting",
                                     "stuck_at_fee_cap", tx=newest.tx_hash, nonce=newest.nonce, max_fee_gwei=newest.max_fee / 1e9))
                else:
                    replacement = self._send_tx(list(newest.accounts), newest.nonce, newest.gas_limit, fees)
                    group.append(replacement)
                    self.report(Line(
                        f"batch {newest.tx_hash[:10]} stuck {self.stuck_blocks} blocks: replaced by {replacement.tx_hash[:10]} "
                        f"(nonce {newest.nonce}, max fee {newest.max_fee / 1e9:.2f} -> {fees.max_fee / 1e9:.2f} gwei, "
                        f"priority {newest.priority_fee / 1e9:.2f} -> {fees.priority_fee / 1e9:.2f} gwei)",
                        "fee_bumped", tx=newest.tx_hash, replacement=replacement.tx_hash, nonce=newest.nonce,
                        max_fee_gwei=fees.max_fee / 1e9, priority_fee_gwei=fees.priority_fee / 1e9,
                    ))
            if time.monotonic() > deadline:
                return None
            time.sleep(self.poll)

    def _conclude(self, group: list[Send], outcome: tuple[Send, Any] | str) -> int:
        """Journal the end of a nonce: the mined transaction settled from its receipt, every
        other of the nonce replaced. Returns how many it liquidated."""
        if outcome == "replaced":
            for send in group:
                self.index.settle(send.id, "replaced")
            self.report(Line(f"batch {group[-1].tx_hash[:10]}: nonce {group[0].nonce} used by a transaction not in the journal (replaced)",
                             "replaced_elsewhere", tx=group[-1].tx_hash, nonce=group[0].nonce))
            return 0
        mined, receipt = outcome
        for send in group:
            if send.id != mined.id:
                self.index.settle(send.id, "replaced")
        return self._settle(mined, receipt)

    def _settle(self, send: Send, receipt: Any) -> int:
        """Record what a mined batch did, from its own logs: liquidations paid to us, rewards,
        accounts skipped (backed off, with the reason)."""
        ours = [
            seen for log in receipt["logs"]
            if (seen := self.liquidation.decode(log)) is not None and seen.keeper == self.sender.address
        ]
        liquidated, reward = len(ours), sum(seen.keeper_reward for seen in ours)
        status = "mined" if receipt["status"] == 1 else "reverted"
        gas = int(receipt["gasUsed"])
        self.index.settle(send.id, status, int(receipt["blockNumber"]), liquidated, reward, gas)
        self.index.clear_skips(Account(seen.owner, seen.sub) for seen in ours)
        for log in receipt["logs"]:
            if (skipped := self.skip_logs.decode(log)) is not None:
                self._skip(*skipped, block=int(receipt["blockNumber"]))
        if liquidated:
            self.gas_per_account = max(gas // liquidated, 1)
        return liquidated

    def _skip(self, account: Account, reason: str, block: int) -> Skip:
        skip = self.index.record_skip(account, reason, lambda failures: self.backoff.retry_at(block, failures))
        self.report(Line(
            f"skipped {account.owner}/{account.sub}: {reason} (failure {skip.failures}, retry from block {skip.retry_at})",
            "skipped", owner=account.owner, sub=account.sub, reason=reason, failures=skip.failures, retry_from_block=skip.retry_at,
        ))
        return skip

    # ---- 3. scan
    def scan(self) -> int:
        """Read position logs from the checkpoint to the head: the confirmed blocks move the
        checkpoint, the newer ones make the overlay. Returns how many logs were read."""
        window = ScanWindow.of(self.index.last_block(), self.head(), self.confirmations)
        applied = 0
        for start, stop in _ranges(window.start, window.confirmed):
            logs = self._position_logs(start, stop)
            applied += self.index.record_positions((self._position(log) for log in logs), stop)
        overlay: dict[PositionKey, int] = {}
        for start, stop in _ranges(window.confirmed + 1, window.head):
            for log in self._position_logs(start, stop):
                p = self._position(log)
                overlay[(p.owner, p.sub, p.market)] = p.size
                applied += 1
        self._overlay = overlay
        self.metrics.last_block = window.head
        return applied

    def _position_logs(self, start: int, stop: int) -> list[Any]:
        return list(self.w3.eth.get_logs(
            {"address": str(self.x.vault.address), "fromBlock": start, "toBlock": stop, "topics": [list(self.positions)]}
        ))

    def _position(self, log: Any) -> PositionSeen:
        topics = log["topics"]
        layout = self.positions[bytes(topics[0])]
        return PositionSeen(_topic_address(topics[1]), _topic_int(topics[2]), _topic_int(topics[3]), _word(bytes(log["data"]), layout))

    # ---- 4. evaluate
    def open_accounts(self) -> list[Account]:
        """Accounts with an open position: the index, updated by the unconfirmed blocks."""
        return self.index.open_accounts(self._overlay)

    def liquidatable(self, exclude: Collection[Account] = ()) -> list[Account]:
        accounts = [a for a in self.open_accounts() if a not in exclude]
        self.metrics.tracked, self.metrics.open = self.index.tracked(self._overlay), len(accounts)
        found = []
        for batch in chunks(accounts, VIEW_BATCH):
            flags = self.x.d.keeper.liquidatable([a.owner for a in batch], [a.sub for a in batch])
            found += [a for a, flag in zip(batch, flags) if flag]
        self.metrics.liquidatable = len(found)
        return found

    def candidates(self, accounts: list[Account]) -> list[Candidate]:
        """The health, notional and most possible reward of each account (one `health` call each)."""
        positions = self.index.open_positions(self._overlay)
        markets = sorted({m for a in accounts for m in positions.get(a, {})})
        prices = {m: int(self.x.d.oracle.latest(m)[0]) for m in markets}  # the last price, however old
        fee_ratios = {m: int(self.x.vault.market_params(m).liquidation_fee_ratio) for m in markets}
        cap, floor = int(self.x.vault.max_keeper_reward()), int(self.x.vault.min_keeper_reward())
        insurance = int(self.x.vault.insurance_fund())
        found = []
        for a in accounts:
            h = self.x.d.keeper.health(a.owner, a.sub)
            sizes = positions.get(a, {})
            notionals = {m: abs(size) * prices[m] // WAD for m, size in sizes.items()}
            fees = sum(n * fee_ratios[m] // WAD for m, n in notionals.items())
            bound = reward_bound(fees, cap, int(h.equity), floor, insurance)
            found.append(Candidate(a, int(h.equity), int(h.maintenance_margin), sum(notionals.values()), bound))
        return found

    def fees(self) -> tuple[Fees, int]:
        """The fees of a new transaction, and the gas price (wei) the dust rule prices gas at."""
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        priority = self.priority_fee
        if priority is None:
            try:
                priority = int(self.w3.eth.max_priority_fee)
            except Exception:  # noqa: BLE001 - nodes without eth_maxPriorityFeePerGas
                priority = DEFAULT_PRIORITY_FEE
        fees = initial_fees(base, priority, self.max_fee)
        return fees, self.gas_price if self.gas_price is not None else min(fees.max_fee, base + fees.priority_fee)

    def dust_rule(self, gas_price: int) -> DustRule:
        token_usd = self.gas_token_usd
        if token_usd is None:
            market = self.x.d.markets.get(GAS_TOKEN_MARKET)
            if market is None:
                raise ValueError(f"no {GAS_TOKEN_MARKET} market to price gas with: give gas_token_usd (--gas-token-usd)")
            token_usd = int(self.x.d.oracle.latest(market)[0])
        return DustRule(gas_price, self.gas_per_account, token_usd, self.bad_debt_equity)

    def worth_it(self, candidates: list[Candidate], rule: DustRule) -> list[Candidate]:
        """The candidates that are not dust; the newly dust ones are reported once."""
        dust = [c for c in candidates if rule.is_dust(c)]
        for c in dust:
            if c.account not in self._dust:
                self.report(Line(
                    f"dust: not liquidating {c.account.owner}/{c.account.sub}: reward at most {c.reward_bound / WAD:,.4f} USD "
                    f"< gas {rule.gas_cost_usd() / WAD:,.4f} USD ({rule.gas_per_account:,} gas at {rule.gas_price / 1e9:.2f} gwei); "
                    f"equity {c.equity / WAD:,.2f} USD",
                    "dust", owner=c.account.owner, sub=c.account.sub, reward_bound_usd=c.reward_bound / WAD,
                    gas_cost_usd=rule.gas_cost_usd() / WAD, gas_per_account=rule.gas_per_account,
                    gas_price_gwei=rule.gas_price / 1e9, equity_usd=c.equity / WAD,
                ))
        self._dust = {c.account for c in dust}
        self.metrics.dust = len(dust)
        return [c for c in candidates if not rule.is_dust(c)]

    def backed_off(self, accounts: list[Account], head: int) -> list[Account]:
        """The accounts to try now: not those waiting out a skip's backoff, nor those whose
        backoff ran out but whose liquidation, simulated alone (free), still fails: they are
        skipped again (reported, a longer backoff) without spending gas on them."""
        skips = self.index.skips()
        waiting = {a for a in accounts if a in skips and skips[a].retry_at > head}
        for a in accounts:
            if a in skips and a not in waiting and (reason := self._failure(a)) is not None:
                self._skip(a, reason, head)
                waiting.add(a)
        self.metrics.backed_off = len(waiting)
        return [a for a in accounts if a not in waiting]

    def _failure(self, account: Account) -> str | None:
        """The revert reason of liquidating `account` alone now (an eth_call), None if it works."""
        from ape.exceptions import VirtualMachineError

        try:
            self.x.d.keeper.liquidate.call(account.owner, account.sub, sender=self.sender)
        except VirtualMachineError as err:
            return getattr(err, "revert_message", None) or str(err)
        return None

    # ---- 5. send
    def first_batch_size(self) -> int:
        return max(1, min(self.max_batch, VIEW_BATCH, self.gas_budget // max(self.gas_per_account, 1)))

    def liquidate(self, accounts: list[Account]) -> int:
        """Send every account in batches sized by gas; returns how many were liquidated."""
        done = 0
        for batch in chunks(accounts, self.first_batch_size()):
            done += self._send_sized(batch)
        return done

    def _send_sized(self, batch: list[Account]) -> int:
        """Simulate, halve while over the gas budget or reverting, send. A single account
        that would revert is skipped (reported, backed off): the round goes on."""
        from ape.exceptions import VirtualMachineError

        owners, subs = [a.owner for a in batch], [a.sub for a in batch]
        try:
            gas = int(self.x.d.keeper.liquidate_many.estimate_gas_cost(owners, subs, sender=self.sender))
        except VirtualMachineError as err:
            if len(batch) > 1:
                return self._halves(batch)
            reason = getattr(err, "revert_message", None) or str(err)
            self._skip(batch[0], f"would revert: {reason}", self.head())
            return 0
        if gas > self.gas_budget and len(batch) > 1:
            return self._halves(batch)
        return self._broadcast(batch, gas)

    def _halves(self, batch: list[Account]) -> int:
        half = len(batch) // 2
        return self._send_sized(batch[:half]) + self._send_sized(batch[half:])

    def _send_tx(self, batch: list[Account], nonce: int, limit: int, fees: Fees) -> Send:
        """Sign `liquidate_many(batch)`, journal it, then broadcast it."""
        txn = self.x.d.keeper.liquidate_many.as_transaction(
            [a.owner for a in batch], [a.sub for a in batch], sender=self.sender, nonce=nonce, gas_limit=limit,
            max_fee=fees.max_fee, max_priority_fee=fees.priority_fee,
        )
        signed = self.sender.sign_transaction(txn)
        tx_hash = "0x" + bytes(signed.txn_hash).hex()
        send = self.index.journal(nonce, tx_hash, batch, fees.max_fee, fees.priority_fee, self.head(), limit)  # before it leaves
        self.w3.eth.send_raw_transaction(signed.serialize_transaction())
        return send

    def _broadcast(self, batch: list[Account], gas: int) -> int:
        fees, _ = self.fees()
        send = self._send_tx(batch, pending_nonce(self.sender), gas_limit(gas, len(batch)), fees)
        self.report(Line(
            f"sent batch {send.tx_hash[:10]} (nonce {send.nonce}): {len(batch)} account(s), simulated gas {gas:,}, "
            f"max fee {fees.max_fee / 1e9:.2f} gwei",
            "batch_sent", tx=send.tx_hash, nonce=send.nonce, accounts=[f"{a.owner}/{a.sub}" for a in batch],
            simulated_gas=gas, max_fee_gwei=fees.max_fee / 1e9,
        ))
        group = [send]
        outcome = self._await(group)
        if outcome is None:  # recovery picks it up on the next step
            self.report(Line(f"batch {group[-1].tx_hash[:10]} not mined after {self.receipt_timeout:.0f}s; will check again",
                             "batch_pending", tx=group[-1].tx_hash, waited_s=self.receipt_timeout))
            return 0
        done = self._conclude(group, outcome)
        if outcome == "replaced":
            return 0
        mined, receipt = outcome
        gas_used = int(receipt["gasUsed"])
        state = "mined" if receipt["status"] == 1 else "REVERTED"
        self.report(Line(
            f"batch {mined.tx_hash[:10]} {state} in block {receipt['blockNumber']}: liquidated {done}/{len(batch)}, "
            f"gas {gas_used:,} ({gas_used // max(done, 1):,}/account)",
            "batch_mined", tx=mined.tx_hash, status=state.lower(), block=int(receipt["blockNumber"]), liquidated=done,
            accounts=len(batch), gas=gas_used, gas_per_account=gas_used // max(done, 1),
        ))
        return done

    # ---- the loop
    def step(self) -> int:
        """One pass (see the module docstring); returns how many accounts were liquidated."""
        if not self.check_chain():
            return 0
        still_pending = self.recover()
        self.scan()
        busy = {a for send in still_pending for a in send.accounts}
        liquidatable = self.liquidatable(exclude=busy)
        now = self.backed_off(liquidatable, self.head())
        candidates: list[Account] = []
        if now:
            _, gas_price = self.fees()
            ranked = by_risk(self.worth_it(self.candidates(now), self.dust_rule(gas_price)))
            candidates = [c.account for c in ranked]
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
            rate = count / max(seconds, 1e-9)
            self.report(Line(f"cleared {count} account(s) in {seconds:.2f}s ({rate:.1f} accounts/s)", "cleared",
                             accounts=count, seconds=round(seconds, 3), accounts_per_s=round(rate, 1)))
        self.metrics.cleared_since, self.metrics.cleared_count = None, 0

    def status_line(self) -> Line:
        t = self.index.totals()
        m = self.metrics
        if not self._token_unit:
            self._token_unit = 10 ** int(self.x.d.usd.decimals())
        reward = t.reward / self._token_unit
        return Line(
            f"block {m.last_block} | tracked {m.tracked} | open {m.open} | liquidatable {m.liquidatable} | "
            f"liquidated {t.liquidated} in {t.mined} tx | rewards {reward:,.2f} USD | gas {t.gas:,} | "
            f"backed off {m.backed_off} | dust {m.dust}",
            "status", block=m.last_block, tracked=m.tracked, open=m.open, liquidatable=m.liquidatable,
            liquidated=t.liquidated, transactions=t.mined, rewards_usd=reward, gas=t.gas, backed_off=m.backed_off, dust=m.dust,
        )



def _ranges(first: int, last: int) -> list[tuple[int, int]]:
    """first..last (inclusive) in chunks of SCAN_CHUNK blocks."""
    return [(start, min(start + SCAN_CHUNK - 1, last)) for start in range(first, last + 1, SCAN_CHUNK)]
