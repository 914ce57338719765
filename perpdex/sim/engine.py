"""The block loop: deploy, fund LPs and traders, then per block feed the path's prices
(a round of every market), let the traders act (deposits go straight to the vault; trades
and closes are two-step requests to the OrderRouter), then the feeder's next round, one
settlement delay later at the same prices, settles them (as the devnet's feeder keeper
does: a round every few seconds, and the requests it made due settled with it); run the
funding keeper and the liquidator; end with a report.

On the embedded chain (boa) the keepers run in-process: `perpdex.keepers.funding.FundingKeeper`
decides which markets to poke, and `SimLiquidator` (the simulated accounts through
`LiquidationKeeper.liquidatable` / `liquidate_many`) stands in for the event-indexed bot,
which needs eth_getLogs. Every receipt goes into the report's `EventLog`. On Anvil
(`perpdex.sim.anvil`) the keepers are real separate processes and the log is read back
with eth_getLogs at the end.

Deterministic for a seed on boa: the path, the population and every decision are seeded or
read from the chain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from perpdex.chain import EMBEDDED, move_time, test_signers
from perpdex.config import deep_merge
from perpdex.deploy import deploy_system
from perpdex.keepers.adl import deleverage_pending
from perpdex.keepers.funding import FundingKeeper
from perpdex.keepers.index import chunks
from perpdex import model
from perpdex.model import WAD, MarketParams
from perpdex.report import EventLog, Expected, Report, RunInfo, Sampler, build_report
from perpdex.sdk import Exchange, feed_prices
from perpdex.sim.paths import PricePath, build_path, hourly_volatility
from perpdex.sim.traders import AccountState, Close, Deposit, Order, Trade, Trader, decide, population

# A devnet without a block time makes every transaction a block one second after the last:
# a block's first requests may be a few dozen seconds old by the round that settles them.
SIM_ROUTER = {"router": {"settlement_window": 600}}
SLIPPAGE = 3 * WAD // 100  # traders accept 3% from the quote (crowded books move fills)
VOLATILITY_WINDOW = 10  # blocks of chain prices a trader looks back over
VIEW_BATCH = 100  # LiquidationKeeper.MAX_BATCH
Key = tuple[str, int]  # (owner address, sub)


@dataclass(frozen=True)
class SimConfig:
    """One simulation run. `overrides` go to `deploy_system` (e.g. `oracle={"max_price_jump": 0.1}`),
    `path_params` to the path function of `path` (see `perpdex.sim.paths.build_path`)."""

    name: str = "demo"
    path: str = "gbm"
    traders: int = 50
    blocks: int = 200
    seconds_per_block: int = 60
    seed: int = 7
    network: str = EMBEDDED
    long_share: float = 0.55
    max_leverage: float | None = None  # traders' highest leverage (default: the markets' maximum)
    pool_usd: int = 5_000_000
    liquidate_every: int = 2  # blocks between liquidator scans (boa)
    sample_every: int = 5  # blocks between state samples
    funding_max_idle_blocks: int = 10  # the funding keeper pokes markets idle this long
    overrides: dict[str, Any] = field(default_factory=dict)
    path_params: dict[str, Any] = field(default_factory=dict)

    def run_info(self) -> RunInfo:
        """What the report's header says of this run."""
        return RunInfo(self.seed, self.traders, self.blocks)


@dataclass(frozen=True)
class BlockStatus:
    """What the progress display shows after each block."""

    block: int
    blocks: int
    prices: dict[str, float]  # market name -> USD
    trades: int
    liquidations: int


Progress = Callable[[BlockStatus], None]


@dataclass(frozen=True)
class Roles:
    """Test accounts by role; traders are sub-accounts of `owners` (separate signers from
    the feeder and the keepers, so nonces never clash)."""

    admin: Any  # deployer and price feeder
    lp: Any
    liquidator: Any
    funder: Any  # the funding keeper
    owners: list[Any]

    @classmethod
    def from_test_accounts(cls) -> "Roles":
        admin, lp, liquidator, funder, *owners = test_signers(12)
        return cls(admin, lp, liquidator, funder, owners)


@dataclass
class Bookkeeping:
    """The simulator's own counts, compared with the chain's in the report."""

    trades: int = 0
    refused: int = 0
    liquidations: int | None = 0  # None: keepers ran as other processes
    deposits_tokens: int = 0
    lp_added_tokens: int = 0
    price_updates: int = 0

    def expected(self) -> Expected:
        return Expected(
            trades=self.trades, liquidations=self.liquidations, deposits_tokens=self.deposits_tokens,
            withdrawals_tokens=0, lp_added_tokens=self.lp_added_tokens, price_updates=self.price_updates,
        )


@dataclass
class SimResult:
    config: SimConfig
    x: Exchange
    path: PricePath
    traders: list[Trader]
    books: Bookkeeping
    report: Report
    wall_seconds: float  # the block loop only (deploy and report excluded)
    keeper_logs: dict[str, str] = field(default_factory=dict)  # keeper processes' output (Anvil)

    @property
    def blocks_per_second(self) -> float:
        return self.config.blocks / self.wall_seconds if self.wall_seconds else 0.0

    def trader_of(self, owner: str, sub: int) -> Trader:
        return next(t for t in self.traders if str(t.owner) == str(owner) and t.sub == sub)

    def liquidated(self) -> list[Trader]:
        """The traders the chain's Liquidation events name (each once)."""
        keys = dict.fromkeys((str(r.owner), r.sub) for r in self.report.liquidations)
        return [self.trader_of(owner, sub) for owner, sub in keys]


@dataclass
class Book:
    """Each simulated account's collateral and positions as the vault's events last left them
    (funding left out): a cheap estimate of who is near liquidation, to ask the chain about
    only those (a `liquidatable` check costs ~6 ms per account on boa)."""

    collateral: dict[Key, int] = field(default_factory=dict)
    positions: dict[Key, dict[int, tuple[int, int]]] = field(default_factory=dict)  # market -> (size, entry)
    seen: int = 0  # events of the log read so far

    def read(self, events: list[Any]) -> None:
        for e in events[self.seen :]:
            a = e.args
            if "owner" not in a or "sub" not in a:
                continue
            key = (str(a["owner"]), int(a["sub"]))
            if "collateral" in a:
                self.collateral[key] = int(a["collateral"])
            if e.name == "PositionModified":
                self.positions.setdefault(key, {})[int(a["market"])] = (int(a["size"]), int(a["entry_price"]))
            elif e.name in ("PositionLiquidated", "Deleveraged"):  # the entry stays
                _, entry = self.positions.get(key, {}).get(int(a["market"]), (0, 0))
                self.positions.setdefault(key, {})[int(a["market"])] = (int(a["size"]), entry)
        self.seen = len(events)

    def at_risk(self, key: Key, prices: dict[int, int], params: dict[int, MarketParams], buffer: float) -> bool:
        """Estimated equity below `buffer` times the estimated maintenance margin."""
        held = [(m, size, entry) for m, (size, entry) in self.positions.get(key, {}).items() if size]
        if not held:
            return False
        equity = self.collateral.get(key, 0) + sum(size * (prices[m] - entry) // WAD for m, size, entry in held)
        mm = sum(
            model.maintenance_margin(size, prices[m], params[m]) for m, size, _ in held
        )
        return equity < mm * buffer


@dataclass
class SimLiquidator:
    """The in-process keeper: of the simulated accounts its `Book` puts near liquidation, flags
    the liquidatable ones with `LiquidationKeeper.liquidatable` (100 per call) and liquidates
    them with one `liquidate_many` per chunk."""

    x: Exchange
    sender: Any
    accounts: list[tuple[Any, int]]
    params: dict[int, MarketParams]
    book: Book = field(default_factory=Book)
    buffer: float = 1.5  # funding and fees are left out of the estimate: ask the chain early

    def step(self, events: list[Any], prices: dict[int, int]) -> list[Any]:
        self.book.read(events)
        near = [a for a in self.accounts if self.book.at_risk((str(a[0]), a[1]), prices, self.params, self.buffer)]
        receipts = []
        for chunk in chunks(near, VIEW_BATCH):
            flags = self.x.d.keeper.liquidatable([o for o, _ in chunk], [s for _, s in chunk])
            flagged = [account for account, flag in zip(chunk, flags) if flag]
            if flagged:
                owners, subs = [o for o, _ in flagged], [s for _, s in flagged]
                receipts.append(self.x.d.keeper.liquidate_many(owners, subs, sender=self.sender))
        return receipts


class Simulation:
    """One run of `config` on the connected network (see `perpdex.sim.run` to connect too)."""

    def __init__(self, config: SimConfig, progress: Progress | None = None, roles: Roles | None = None):
        self.config = config
        self.progress = progress
        self.roles = roles or Roles.from_test_accounts()
        self.books = Bookkeeping()
        self.history: dict[int, list[int]] = {}  # market -> chain price per block

    # ------------------------------------------------------------ setup
    def deploy(self) -> Exchange:
        c = self.config
        self.x = Exchange(deploy_system(self.roles.admin, **deep_merge(SIM_ROUTER, c.overrides)))
        self.pending: dict[int, tuple[Trader, Order]] = {}  # the traders' requests not settled yet
        self.log, self.sampler = EventLog(self.x), Sampler(self.x)
        self.params = {m: self.x.params(m) for m in self.x.market_names()}
        start = [self.x.price(m) for m in sorted(self.x.market_names())]
        self.path = build_path(c.path, start, c.blocks, c.seconds_per_block, c.seed, c.path_params)
        self.history = {m: [p] for m, p in enumerate(start)}
        return self.x

    def fund(self) -> list[Trader]:
        """LP liquidity, then every trader's collateral (one mint per owner)."""
        x, c = self.x, self.config
        pool = x.tokens(c.pool_usd)
        commit = self.record(x.add_liquidity(self.roles.lp, pool, settle=False))
        self.record(x.next_round(feeder=self.roles.admin))
        self.books.price_updates += len(self.params)
        x.wait_lp_grace()
        self.record(x.settle(x.order_id(commit), self.roles.admin))
        self.books.lp_added_tokens += pool
        top = c.max_leverage or min(p.max_leverage for p in self.params.values()) / WAD
        self.traders = population(self.roles.owners, c.traders, c.seed, top, c.long_share, len(self.params))
        for owner in self.roles.owners:
            mine = [t for t in self.traders if t.owner is owner]
            if mine:
                # twice the collateral: room to add margin, and the requests' settlement rewards
                x.fund(owner, x.tokens(sum(2 * t.collateral_usd for t in mine)))
        for t in self.traders:
            self.deposit(t, t.collateral_usd)
        return self.traders

    def deposit(self, trader: Trader, usd: int) -> None:
        tokens = self.x.tokens(usd)
        self.record(self.x.deposit(trader.owner, tokens, sub=trader.sub, mint=False))
        self.books.deposits_tokens += tokens

    def record(self, receipt: Any) -> Any:
        self.log.add_receipt(receipt)
        return receipt

    # ------------------------------------------------------------ the loop
    def run(self) -> SimResult:
        self.deploy()
        self.fund()
        keepers = self.start_keepers()
        self.sampler.sample()
        started = time.monotonic()
        try:
            for block in range(1, self.config.blocks):
                self.block(block, keepers)
        finally:
            self.stop_keepers(keepers)
        wall = time.monotonic() - started
        report = self.finish()
        return SimResult(self.config, self.x, self.path, self.traders, self.books, report, wall)

    def start_keepers(self) -> Any:
        """The in-process keepers (Anvil runs them as processes: see perpdex.sim.anvil)."""
        funding = FundingKeeper(
            self.x, self.roles.funder, max_idle=self.config.funding_max_idle_blocks * self.config.seconds_per_block,
            report=lambda _: None,
        )
        return funding, SimLiquidator(self.x, self.roles.liquidator, [t.account for t in self.traders], self.params)

    def stop_keepers(self, keepers: Any) -> None:
        """Nothing to stop in-process."""

    def block(self, block: int, keepers: Any) -> None:
        move_time(self.config.seconds_per_block)
        self.feed(block)
        for trader in self.traders:
            if trader.acts_at(block):
                self.act(trader)
        self.settle_round()
        self.keep(block, keepers)
        if block % self.config.sample_every == 0 or block == self.config.blocks - 1:
            self.sampler.sample()
        if self.progress:
            self.progress(self.status(block))

    def feed(self, block: int) -> None:
        for receipt in feed_prices(self.x, self.path.at(block), feeder=self.roles.admin):
            self.record(receipt)
            self.books.price_updates += len(self.params)
        for m, price in self.path.at(block).items():  # feed_prices ends at the path's prices
            self.history[m].append(price)

    def settle_round(self) -> None:
        """The feeder's next round, a settlement delay after the traders' requests, at the
        same prices, and every request it made due settled at it: each fill is a trade, each
        cancellation (with its reason) a refusal."""
        if not self.pending:
            return
        self.record(self.x.next_round(feeder=self.roles.admin))
        self.books.price_updates += len(self.params)
        for chunk in chunks(list(self.pending), VIEW_BATCH):
            receipt = self.record(self.x.settle(chunk, self.roles.admin))
            for e in self.x.events(receipt, "OrderSettled"):
                trader, order = self.pending.pop(int(e["order_id"]))
                self.books.trades += 1
                trader.history.append(str(order))
            for e in self.x.events(receipt, "OrderCancelled"):
                trader, order = self.pending.pop(int(e["order_id"]))
                trader.refused += 1
                self.books.refused += 1
                trader.history.append(f"refused {order}: {e['reason']}")

    def keep(self, block: int, keepers: Any) -> None:
        funding, liquidator = keepers
        for market in funding.due():
            self.record(self.x.vault.poke(market, sender=funding.sender))
        if block % self.config.liquidate_every == 0:
            prices = {m: h[-1] for m, h in self.history.items()}
            for receipt in liquidator.step(self.log.events, prices):
                self.record(receipt)
                assert self.books.liquidations is not None
                self.books.liquidations += int(receipt.return_value)
            # bad debt beyond the pool's loss cap: the ADL keeper (the deployer holds the role)
            for outcome in deleverage_pending(self.x, self.roles.admin, [t.account for t in self.traders]):
                if outcome.receipt is not None:
                    self.record(outcome.receipt)

    def status(self, block: int) -> BlockStatus:
        names = self.x.market_names()
        prices = {names[m]: self.history[m][-1] / WAD for m in self.history}
        liquidations = sum(1 for e in self.log.events if e.name == "Liquidation")
        return BlockStatus(block, self.config.blocks, prices, self.books.trades, liquidations)

    # ------------------------------------------------------------ traders
    def state_of(self, trader: Trader) -> AccountState:
        positions = {m: self.x.position(trader.owner, trader.sub, m) for m, _ in trader.legs}
        first = next(iter(self.params.values()))
        return AccountState(
            health=self.x.health(trader.owner, trader.sub),
            sizes={m: p.size for m, p in positions.items()},
            entries={m: p.entry_price for m, p in positions.items()},
            prices={m: h[-1] for m, h in self.history.items()},
            max_leverage={m: p.max_leverage for m, p in self.params.items()},
            min_position_margin=first.min_position_margin,
            hourly_volatility=max(
                hourly_volatility(h[-VOLATILITY_WINDOW:], self.config.seconds_per_block) for h in self.history.values()
            ),
        )

    def act(self, trader: Trader) -> None:
        state = self.state_of(trader)
        if trader.opened and not any(state.sizes.values()):
            trader.done = True  # liquidated out (or stopped out)
            return
        orders = decide(trader, state)
        for order in orders:
            if not self.send(trader, order):
                trader.refused += 1
                self.books.refused += 1
                return
        if orders and not trader.opened:
            trader.opened = True
        if trader.style == "stop_loss" and any(isinstance(o, Close) for o in orders):
            trader.done = True

    def send(self, trader: Trader, order: Order) -> bool:
        """Send one order (a deposit, or a request that fills at the next block's round);
        False when the chain refuses it now."""
        from ape.exceptions import ContractLogicError

        x, owner, sub = self.x, trader.owner, trader.sub
        try:
            if isinstance(order, Deposit):
                self.deposit(trader, order.usd)
                trader.margin_added_usd += order.usd
                trader.history.append(f"added {order.usd} USD")
                return True
            if isinstance(order, Trade):
                commit = x.trade(owner, order.market, order.size_delta, sub=sub, slippage=SLIPPAGE, settle=False)
            else:
                commit = x.close(owner, order.market, sub=sub, slippage=SLIPPAGE, settle=False)
        except ContractLogicError as exc:
            trader.history.append(f"refused {order}: {exc}")
            return False
        self.pending[x.order_id(self.record(commit))] = (trader, order)
        return True

    # ------------------------------------------------------------ the end
    def finish(self) -> Report:
        return build_report(
            self.x, self.log, self.sampler, accounts=[t.account for t in self.traders], lps=[self.roles.lp],
            keeper=self.roles.liquidator, title=self.config.name, expected=self.books.expected(), exit_check=True,
            run=self.config.run_info(),
        )
