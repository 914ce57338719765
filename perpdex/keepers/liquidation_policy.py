"""The liquidator's decisions, as pure functions of numbers read from the chain (unit-tested
without a node): which blocks a scan commits, which accounts go first, which are dust not
worth their gas, when a skipped account is tried again, and the fees of a replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpdex.keepers.index import Account
from perpdex.model import keeper_reward_due

WAD = 10**18
GWEI = 10**9
# A replacement transaction (same nonce) must raise both EIP-1559 fees by at least this
# fraction to be accepted by the mempool (geth asks 10%, others 12.5%: the stricter one).
BUMP_NUMERATOR, BUMP_DENOMINATOR = 9, 8


# ---------------------------------------------------------------- confirmations


@dataclass(frozen=True)
class ScanWindow:
    """Blocks one scan reads: `start..confirmed` move the checkpoint (at least
    `confirmations` blocks deep, a reorg of that depth cannot undo them); `confirmed+1..head`
    are read again on every scan into an overlay that is rebuilt each time, so a reorg of
    the tail leaves nothing behind in the index."""

    start: int
    confirmed: int  # last block the checkpoint moves to (start - 1: nothing to commit)
    head: int

    @classmethod
    def of(cls, last_block: int, head: int, confirmations: int) -> "ScanWindow":
        return cls(last_block + 1, max(last_block, head - confirmations), head)


# ---------------------------------------------------------------- ordering and dust


@dataclass(frozen=True)
class Candidate:
    """A liquidatable account with what ordering and the dust rule need (USD in WAD)."""

    account: Account
    equity: int
    maintenance_margin: int
    notional: int  # sum of |size| * price over its positions
    reward_bound: int  # the most its liquidation can pay the keeper (see `reward_bound`)

    @property
    def shortfall(self) -> int:
        return self.maintenance_margin - self.equity


def by_risk(candidates: list[Candidate]) -> list[Candidate]:
    """Largest shortfall (MM - equity) first, then largest notional; address as the tie-break
    only, so that a low address buys no priority."""
    return sorted(candidates, key=lambda c: (-c.shortfall, -c.notional, c.account.owner, c.account.sub))


@dataclass(frozen=True)
class DustRule:
    """An account is dust when even the most its liquidation can pay (`reward_bound`) is
    below the gas it costs at the current gas price, unless its equity is below
    `bad_debt_equity` (USD, WAD): heading for bad debt, it is liquidated at a loss."""

    gas_price: int  # wei per gas
    gas_per_account: int
    gas_token_usd: int  # USD per native token (WAD), to price gas in USD
    bad_debt_equity: int

    def gas_cost_usd(self) -> int:
        return self.gas_price * self.gas_per_account * self.gas_token_usd // WAD

    def is_dust(self, c: Candidate) -> bool:
        return c.equity >= self.bad_debt_equity and c.reward_bound < self.gas_cost_usd()


def reward_bound(notional_fees: int, max_keeper_reward: int, equity: int, min_keeper_reward: int = 0,
                 insurance_fund: int = 0) -> int:
    """The most a liquidation can pay the keeper: the fee is collected only as far as the
    account can pay it (its equity), so at most the fee of closing every position
    (`notional_fees`, sum of |size| * price * fee ratio) and the equity, capped; topped up to
    the floor by the insurance fund as far as it holds it (model.keeper_reward_due)."""
    collected = min(notional_fees, max(equity, 0))
    return keeper_reward_due(collected, max_keeper_reward, min_keeper_reward, insurance_fund)


# ---------------------------------------------------------------- skip and backoff


@dataclass(frozen=True)
class Backoff:
    """A skipped account is tried again `base * 2**(failures - 1)` blocks later, at most
    `cap` blocks: never given up on, never retried in every round."""

    base: int = 1
    cap: int = 256

    def retry_at(self, block: int, failures: int) -> int:
        return block + min(self.base << min(max(failures - 1, 0), 30), self.cap)


# ---------------------------------------------------------------- fees


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fees of a transaction, wei per gas."""

    max_fee: int
    priority_fee: int


def initial_fees(base_fee: int, priority_fee: int, cap: int) -> Fees:
    """Room for the base fee to double before the transaction is priced out, within `cap`."""
    max_fee = min(cap, 2 * base_fee + priority_fee)
    return Fees(max_fee, min(priority_fee, max_fee))


def _bump(value: int) -> int:
    return max(-(-value * BUMP_NUMERATOR // BUMP_DENOMINATOR), value + 1)


def bumped(fees: Fees, cap: int) -> Fees | None:
    """The fees of a replacement: both at least +12.5% (rounded up, +1 wei at least); None
    when the max fee would pass `cap` (the transaction then waits as it is)."""
    new = Fees(_bump(fees.max_fee), _bump(fees.priority_fee))
    if new.max_fee > cap:
        return None
    return Fees(new.max_fee, min(new.priority_fee, new.max_fee))


def gwei(value: float) -> int:
    return int(round(value * GWEI))
