"""The block loop: deploy, fund LPs and traders, then per block feed the path's prices
(a round of every market); the order keeper triggers the conditional orders that round
meets and prunes the dead ones; the traders act (deposits go straight to the vault; trades
and closes are two-step requests to the OrderRouter; stop-losses, take-profits and limit
entries are conditional orders); then the feeder's next round, one settlement delay later
at the same prices, settles the requests and the triggered orders with `settle_many` (as
the devnet's feeder keeper does: a round every few seconds, and the requests it made due
settled with it); run the funding keeper and the liquidator; end with a report.

The order keeper runs in-process on both chains (`SimOrderKeeper`: the decisions of
`perpdex.keepers.orders`, `decide` and `settleable`, over its `OrderIndex` fed from the
receipts), signed by the feeder, so a trigger and its settlement round are in one block.

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
from perpdex.conditional import KIND_NAMES, LIMIT
from perpdex.config import deep_merge
from perpdex.deploy import deploy_system
from perpdex.keepers.adl import deleverage_pending
from perpdex.keepers.funding import FundingKeeper
from perpdex.keepers.index import chunks
from perpdex.keepers.orders import OPEN, ORDER_EVENTS, TRIGGERED, Action, OrderIndex, positions_needed, settleable
from perpdex.keepers.orders import decide as keeper_decide
from perpdex.logs import EventDecoder
from perpdex import model
from perpdex.model import WAD, MarketParams
from perpdex.report import EventLog, Expected, Report, RunInfo, Sampler, build_report
from perpdex.sdk import MAX_ACCEPTABLE, Exchange, feed_prices
from perpdex.sim.paths import PricePath, build_path, hourly_volatility
from perpdex.sim.traders import (
    AccountState, Close, Conditional, Deposit, Order, Trade, Trader, decide, population,
)

# A devnet without a block time makes every transaction a block one second after the last:
# a block's first requests may be a few dozen seconds old by the round that settles them.
SIM_ROUTER = {"router": {"settlement_window": 600}}
SLIPPAGE = 3 * WAD // 100  # traders accept 3% from the quote (crowded books move fills)
VOLATILITY_WINDOW = 10  # blocks of chain prices a trader looks back over
VIEW_BATCH = 100  # LiquidationKeeper.MAX_BATCH
Key = tuple[str, int]  # (owner address, sub)
PositionKey = tuple[str, int, int]  # (owner address, sub, market)
RouterEvent = tuple[str, dict[str, Any]]  # (name, args)


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

    trades: int = 0  # fills: requests' and conditional orders'
    refused: int = 0
    conditional_placed: int = 0
    conditional_filled: int = 0
    liquidations: int | None = 0  # None: keepers ran as other processes
    deposits_tokens: int = 0
    lp_added_tokens: int = 0
    price_updates: int = 0

    def expected(self) -> Expected:
        return Expected(
            trades=self.trades, liquidations=self.liquidations, deposits_tokens=self.deposits_tokens,
            withdrawals_tokens=0, lp_added_tokens=self.lp_added_tokens, price_updates=self.price_updates,
            conditional_placed=self.conditional_placed, conditional_filled=self.conditional_filled,
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


@dataclass
class SimOrderKeeper:
    """The order keeper in-process: the conditional orders as the router's events in the
    receipts it is shown tell them (an in-memory `OrderIndex`, as the keeper process's file),
    and its pure decisions: `actions` (what to trigger or prune at the latest round),
    `due` (the triggered orders `settle_many` settles at a round)."""

    x: Exchange
    sender: Any
    index: OrderIndex = field(default_factory=lambda: OrderIndex(":memory:"))

    def __post_init__(self) -> None:
        self.decoder = EventDecoder([self.x.d.router])
        self.window = int(self.x.d.router.settlement_window())
        self.markets = list(self.x.market_names())

    def read(self, receipt: Any) -> list[RouterEvent]:
        """The order events of `receipt`, booked into the index; returned in log order."""
        events = [d for log in receipt.logs if (d := self.decoder.decode(log)) is not None and d[0] in ORDER_EVENTS]
        if events:
            self.index.apply(events, int(receipt.block_number))
        return events

    def actions(self, prices: dict[int, int], now: int,
                positions: Callable[[set[PositionKey]], dict[PositionKey, int]]) -> list[Action]:
        """The open orders to prune (dead: expired, or nothing left to reduce against the
        `positions` of their accounts now) or to trigger (`prices`, the latest round, meets them)."""
        open_orders = self.index.orders(OPEN)
        if not open_orders:
            return []
        return keeper_decide(open_orders, dict(prices), positions(positions_needed(open_orders)), now)

    def vault_positions(self, keys: set[PositionKey]) -> dict[PositionKey, int]:
        """The sizes the vault holds now (a view call each), as the keeper process reads them."""
        return {key: int(self.x.vault.position(*key).size) for key in keys}

    def send(self, action: Action) -> Any:
        return getattr(self.x.d.router, action.verb)(action.order_id, sender=self.sender)

    def triggered(self) -> bool:
        return self.index.counts()[TRIGGERED] > 0

    def due(self, round_time: int, now: int) -> list[int]:
        """The triggered orders settled now, every market's latest round being at `round_time`."""
        return settleable(self.index.orders(TRIGGERED), {m: round_time for m in self.markets}, now, self.window)


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
        self.placed: dict[int, tuple[Trader, Conditional]] = {}  # the traders' conditional orders, by id
        self.orders = SimOrderKeeper(self.x, self.roles.admin)
        self.last_placed = 0  # the conditional order placed last (an OCO take-profit pairs with it)
        self.book = Book()  # the positions as the vault's events left them (the order keeper's dead rule)
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
        self.keep_orders()
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

    def keep_orders(self) -> None:
        """The order keeper at the round just fed: trigger what it meets, prune dead orders
        (their events tell the traders: a pruned limit entry lets its trader open at market)."""
        from ape import chain

        now = int(chain.blocks.head.timestamp)
        for action in self.orders.actions({m: h[-1] for m, h in self.history.items()}, now, self.positions):
            self.conclude(self.orders.read(self.record(self.orders.send(action))))

    def positions(self, keys: set[PositionKey]) -> dict[PositionKey, int]:
        """Position sizes for the order keeper's dead rule, from the vault's events: every
        receipt of the run is in the log here (PositionModified, PositionLiquidated and
        Deleveraged carry the size after), so no view call per order and block."""
        self.book.read(self.log.events)
        return {(o, sub, m): self.book.positions.get((o, sub), {}).get(m, (0, 0))[0] for o, sub, m in keys}

    def settle_round(self) -> None:
        """The feeder's next round, a settlement delay after the traders' requests and the
        orders the keeper triggered, at the same prices, and every request and triggered
        order it made due settled at it with `settle_many`: each fill is a trade, a request's
        cancellation (with its reason) a refusal."""
        from ape import chain

        if not self.pending and not self.orders.triggered():
            return
        self.record(self.x.next_round(feeder=self.roles.admin))
        self.books.price_updates += len(self.params)
        now = int(chain.blocks.head.timestamp)  # the round just fed: every market's, in one update
        due = list(self.pending) + self.orders.due(now, now)
        for chunk in chunks(due, VIEW_BATCH):
            self.conclude(self.orders.read(self.record(self.x.settle(chunk, self.roles.admin))))
        for trader in self.traders:
            if trader.style == "stop_loss" and trader.opened and not trader.protected and not trader.done:
                self.act(trader)  # its position just opened: it places its stops in this block

    def conclude(self, events: list[RouterEvent]) -> None:
        """What settles and cancellations mean to the traders who sent the orders."""
        for name, e in events:
            order_id = int(e["order_id"])
            if order_id in self.pending and name in ("OrderSettled", "OrderCancelled"):
                self.request_done(order_id, name, e)
            elif order_id in self.placed and name in ("OrderSettled", "OrderCancelled"):
                self.conditional_done(order_id, name, e)

    def request_done(self, order_id: int, name: str, e: dict[str, Any]) -> None:
        trader, order = self.pending.pop(order_id)
        if name == "OrderSettled":
            self.books.trades += 1
            trader.history.append(str(order))
        else:
            trader.refused += 1
            self.books.refused += 1
            trader.history.append(f"refused {order}: {e['reason']}")

    def conditional_done(self, order_id: int, name: str, e: dict[str, Any]) -> None:
        """A conditional order filled or cancelled (by the keeper's prune, at its settlement,
        or as the other leg of a filled OCO pair); a filled limit entry opened its trader's
        position."""
        trader, order = self.placed.pop(order_id)
        filled = name == "OrderSettled"
        trader.history.append(f"{KIND_NAMES[order.kind]} {order_id} " + ("filled" if filled else f"cancelled: {e['reason']}"))
        if filled:
            self.books.trades += 1
            self.books.conditional_filled += 1
        if order.kind != LIMIT:
            return
        trader.entries_live -= 1
        trader.opened |= filled

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
        if any(isinstance(o, Trade) for o in orders) and not trader.opened:
            trader.opened = True  # a market open (a limit entry opens when it fills)
        if any(isinstance(o, Close) or (isinstance(o, Conditional) and o.kind != LIMIT) for o in orders):
            trader.protected = True  # a stop-loss trader's stops are placed (or it closed at market: then it is out)
            trader.done = any(isinstance(o, Close) for o in orders)

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
            if isinstance(order, Conditional):
                self.place(trader, order)
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

    def place(self, trader: Trader, order: Conditional) -> int:
        """Place a conditional order (an OCO take-profit paired with the trader's order placed
        just before it); its id. The acceptable price is the SDK's default
        (`Exchange.place_order`): a limit's own trigger; none for a TP/SL (a sell takes any
        price, a buy up to MAX_ACCEPTABLE), so a stop fills at its round however far the
        price gapped, and the report measures by how much."""
        from ape import chain

        expiry = int(chain.blocks.head.timestamp) + order.expires_in if order.expires_in else 0
        receipt = self.record(self.x.d.router.place_conditional(
            trader.sub, order.market, order.kind, order.size, order.trigger, self.acceptable(trader, order), False,
            expiry, self.last_placed if order.oco else 0, sender=trader.owner,
        ))
        (order_id,) = [int(e["order_id"]) for name, e in self.orders.read(receipt) if name == "ConditionalPlaced"]
        self.placed[order_id] = (trader, order)
        self.last_placed = order_id
        self.books.conditional_placed += 1
        trader.entries_live += order.kind == LIMIT
        trader.limits_placed |= order.kind == LIMIT
        trader.history.append(f"placed {KIND_NAMES[order.kind]} {order_id} at {order.trigger / WAD:,.2f}")
        return order_id

    @staticmethod
    def acceptable(trader: Trader, order: Conditional) -> int:
        """The order's worst fill price (see `place`)."""
        if order.kind == LIMIT:
            return order.trigger
        return MAX_ACCEPTABLE if not trader.is_long(order.market) else 0  # a TP/SL of a short buys

    # ------------------------------------------------------------ the end
    def finish(self) -> Report:
        return build_report(
            self.x, self.log, self.sampler, accounts=[t.account for t in self.traders], lps=[self.roles.lp],
            keeper=self.roles.liquidator, title=self.config.name, expected=self.books.expected(), exit_check=True,
            run=self.config.run_info(),
        )
