"""A typed layer over the deployed contracts: tests, scripts, the CLI and keepers call these
instead of writing contract calls again. Amounts: `tokens` are token units, everything else WAD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from perpdex import model
from perpdex.deploy import Deployment
from perpdex.logs import EventDecoder
from perpdex.model import ADL_EXPIRY, KIND_ADD, WAD, AdlPending, Health, MarketParams, Position, VaultModel, to_wad

MAX_UINT256 = 2**256 - 1
DEFAULT_SLIPPAGE = WAD // 100  # 1%
MAX_ACCEPTABLE = 2**96 - 1  # OrderRouter.MAX_PRICE: a buy's acceptable price there is no bound


def slippage_bound(quote: int, size_delta: int, slippage: int = DEFAULT_SLIPPAGE) -> int:
    """The acceptable price for a trade quoted at `quote`: above it for buys, below for sells."""
    if size_delta > 0:
        return quote * (WAD + slippage) // WAD
    return quote * (WAD - slippage) // WAD


@dataclass
class Exchange:
    """Convenience calls on one deployment."""

    d: Deployment
    _decoder: EventDecoder | None = field(default=None, repr=False, compare=False)

    @property
    def vault(self) -> Any:
        return self.d.vault

    @property
    def token_scale(self) -> int:
        return int(self.vault.TOKEN_SCALE())

    def tokens(self, usd: int | float) -> int:
        """Whole USD to token units."""
        return int(usd * 10 ** int(self.d.usd.decimals()))

    # ---- money in and out
    def fund(self, account: Any, tokens: int) -> None:
        """Mint devnet tokens to `account` and approve the vault (deposits) and the router
        (the settlement reward and LP tokens it escrows) for them."""
        self.d.usd.mint(account, tokens, sender=account)
        self.d.usd.approve(self.vault, MAX_UINT256, sender=account)
        if self.d.router is not None:
            self.d.usd.approve(self.d.router, MAX_UINT256, sender=account)

    @cached_property
    def atomic(self) -> bool:
        """Whether owners trade directly (a deployment for unit tests of the margin math) or
        every trade and LP move is a two-step request through the router."""
        return bool(self.vault.atomic_trading())

    def deposit(self, account: Any, tokens: int | None = None, sub: int = 0, mint: bool = True, *,
                usd: float | int | None = None) -> Any:
        """Deposit `tokens` (token units) or `usd` dollars (`usd=10_000`) into sub-account `sub`,
        minting them first (`mint`: the devnet's MockUSD)."""
        if (tokens is None) == (usd is None):
            raise ValueError("deposit: give tokens or usd=, not both")
        amount = self.tokens(usd) if usd is not None else int(tokens)  # type: ignore[arg-type]
        if mint:
            self.fund(account, amount)
        return self.vault.deposit(sub, amount, sender=account)

    def market_id(self, market: int | str) -> int:
        """A market's id from its id or its name ("ETH-USD")."""
        if isinstance(market, str):
            if market not in self.d.markets:
                raise ValueError(f"unknown market {market!r}: one of {', '.join(self.d.markets)}")
            return int(self.d.markets[market])
        return int(market)

    def add_liquidity(self, account: Any, tokens: int, mint: bool = True, settle: bool = True) -> Any:
        """Add `tokens` to the LP pool: directly with atomic trading, else a request that
        (with `settle`) is filled at the next round, as `settle_next` does."""
        if mint:
            self.fund(account, tokens + (0 if self.atomic else self.reward_tokens))
        if self.atomic:
            return self.vault.add_liquidity(tokens, sender=account)
        return self._request(self.d.router.commit_add_liquidity(tokens, sender=account), settle)

    def remove_liquidity(self, account: Any, shares: int, settle: bool = True) -> Any:
        """Burn `shares` for tokens: directly with atomic trading, else a request (the settler's
        reward escrowed from the wallet, minted on the devnet token when it is short)."""
        if self.atomic:
            return self.vault.remove_liquidity(shares, sender=account)
        self._reward_ready(account)
        return self._request(self.d.router.commit_remove_liquidity(shares, sender=account), settle)

    # ---- trading
    def quote(self, market: int, size_delta: int) -> int:
        return int(self.d.lens.fill_price(market, size_delta))

    def trade(
        self, account: Any, market: int | str, size_delta: int | float | Decimal, sub: int = 0,
        slippage: int = DEFAULT_SLIPPAGE, settle: bool = True,
    ) -> Any:
        """Buy (> 0) or sell `size_delta` within `slippage` of the quote now: directly with atomic
        trading; else commit a request to the router and, with `settle`, fill it at the next
        round (`settle_next`). Returns the fill's receipt (the commit's when not settled).
        `market` is an id or a name ("ETH-USD"); `size_delta` a float or Decimal in base units
        (1.5 = 1.5 ETH) or an int in WAD (15 * 10**17)."""
        market = self.market_id(market)
        if not isinstance(size_delta, int):
            size_delta = to_wad(size_delta)
        bound = slippage_bound(self.quote(market, size_delta), size_delta, slippage)
        if self.atomic:
            return self.vault.modify_position(sub, market, size_delta, bound, sender=account)
        self._reward_ready(account)
        return self._request(self.d.router.commit_order(sub, market, size_delta, bound, sender=account), settle)

    def close(
        self, account: Any, market: int | str, sub: int = 0, slippage: int = DEFAULT_SLIPPAGE, settle: bool = True
    ) -> Any:
        """Close the whole position in `market` (an id or a name)."""
        market = self.market_id(market)
        size = self.position(account, sub, market).size
        bound = slippage_bound(self.quote(market, -size), -size, slippage)
        if self.atomic:
            return self.vault.close_position(sub, market, bound, sender=account)
        self._reward_ready(account)
        return self._request(self.d.router.commit_close(sub, market, bound, sender=account), settle)

    # ---- conditional orders (SPEC 15, perpdex/conditional.py)
    def place_order(
        self, account: Any, market: int | str, kind: int | str, trigger: int | float | Decimal,
        size: int | float | Decimal = 0, acceptable: int | float | Decimal | None = None, reduce_only: bool = False,
        expiry: int = 0, oco_with: int = 0, sub: int = 0,
    ) -> int:
        """Place a conditional order; its id. `kind`: 0-3 or "limit", "stop", "take-profit",
        "stop-loss". `trigger` and `acceptable` in USD (a float) or WAD (an int); `size` in base
        units like `trade` (signed for a limit or stop, > 0 buys; unsigned for a TP/SL, 0 = the
        whole position). `acceptable` by default: a limit's own trigger price (it buys at or
        below / sells at or above it); none for the other kinds (they fill at their round's
        price, however far it gapped). The two rewards it escrows are minted when short."""
        from perpdex.conditional import KIND_NAMES, LIMIT

        market = self.market_id(market)
        kind = _kind_id(kind, KIND_NAMES)
        size_wad = size if isinstance(size, int) else to_wad(size)
        trigger_wad = trigger if isinstance(trigger, int) else to_wad(trigger)
        if acceptable is None:
            bound = trigger_wad if kind == LIMIT else 0
        else:
            bound = acceptable if isinstance(acceptable, int) else to_wad(acceptable)
        if bound == 0 and self._buys(account, sub, market, kind, size_wad):
            bound = MAX_ACCEPTABLE  # no bound, for a buy
        if int(self.d.usd.balanceOf(account)) < 2 * self.reward_tokens:
            self.fund(account, 2 * self.reward_tokens)
        receipt = self.d.router.place_conditional(sub, market, kind, size_wad, trigger_wad, bound, reduce_only, expiry,
                                                  oco_with, sender=account)
        return int(self.events(receipt, "ConditionalPlaced")[0]["order_id"])

    def _buys(self, account: Any, sub: int, market: int, kind: int, size: int) -> bool:
        """Whether the order buys: a limit or stop by its size, a TP/SL closes a short."""
        from perpdex.conditional import TAKE_PROFIT

        if kind < TAKE_PROFIT:
            return size > 0
        return self.position(account, sub, market).size < 0

    def conditional(self, order_id: int) -> Any:
        return self.d.router.conditional_order(order_id)

    # ---- two-step requests (SPEC 13)
    @cached_property
    def reward_tokens(self) -> int:
        """What the router escrows per request from the owner's wallet (token units)."""
        return int(self.d.router.REWARD_TOKENS())

    def order(self, order_id: int) -> Any:
        return self.d.router.order(order_id)

    def next_round(self, feeder: Any | None = None) -> Any:
        """On a chain whose clock the caller drives (the embedded chain, or an Anvil without
        a feeder): move time past the settlement delay and feed every market's price again,
        so every request committed before now has its settlement round."""
        from perpdex.chain import move_time

        move_time(int(self.d.router.settlement_delay()))
        return self.refresh_prices(feeder=feeder)

    def settle(self, order_ids: int | list[int], settler: Any | None = None) -> Any:
        """Settle one order (reverts if its round does not exist yet) or a batch (skips those)."""
        who = settler or self.d.deployer
        if isinstance(order_ids, int):
            return self.d.router.settle(order_ids, sender=who)
        return self.d.router.settle_many(order_ids, sender=who)

    def settle_next(self, order_id: int, settler: Any | None = None) -> Any:
        """Feed the next round (as the devnet's feeder keeper would) and settle `order_id` at it;
        an LP request after its LP_GRACE seconds too (liquidations at that round land first)."""
        self.next_round()
        if int(self.order(order_id).kind) >= KIND_ADD:
            self.wait_lp_grace()
        return self.settle(order_id, settler)

    def wait_lp_grace(self) -> None:
        """On a chain whose clock the caller drives: move time past LP_GRACE, after which LP
        requests fill at the round just fed."""
        from perpdex.chain import move_time

        move_time(self.lp_grace)

    @cached_property
    def lp_grace(self) -> int:
        """Seconds an LP request waits after its settlement rounds (OrderRouter.LP_GRACE)."""
        return int(self.d.router.LP_GRACE())

    def events(self, receipt: Any, name: str) -> list[dict[str, Any]]:
        """The arguments of every `name` event the deployment's contracts emitted in `receipt`
        (decoded from the raw logs with their ABIs: see perpdex.logs)."""
        if self._decoder is None:
            contracts = (self.d.usd, self.d.oracle, self.vault, self.d.keeper, self.d.router)
            self._decoder = EventDecoder(c for c in contracts if c is not None)
        return self._decoder.named(receipt, name)

    def wait_settled(self, order_id: int, timeout: float = 30.0, poll: float = 0.5) -> Any:
        """Poll until the request is settled or cancelled (a devnet whose feeder keeper writes
        rounds and settles them); returns the order. Raises TimeoutError if it is still
        pending after `timeout` seconds (no feeder running, or no settler)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            o = self.order(order_id)
            if int(o.status) != 1:
                return o
            if time.monotonic() > deadline:
                raise TimeoutError(f"request {order_id} still pending after {timeout:g} s")
            time.sleep(poll)

    def order_id(self, commit_receipt: Any) -> int:
        """The id of the order a commit receipt created (from its OrderCommitted event)."""
        committed = self.events(commit_receipt, "OrderCommitted")
        if not committed:
            raise ValueError(f"no OrderCommitted event in transaction {commit_receipt.txn_hash}")
        return int(committed[0]["order_id"])

    def _reward_ready(self, account: Any) -> None:
        """A request escrows the settler's reward from the owner's wallet: on the devnet's token,
        mint it when the wallet is short (a wallet that holds it is left alone)."""
        if int(self.d.usd.balanceOf(account)) < self.reward_tokens:
            self.fund(account, self.reward_tokens)

    def _request(self, commit_receipt: Any, settle: bool) -> Any:
        return self.settle_next(self.order_id(commit_receipt)) if settle else commit_receipt

    def set_price(self, market: int, price: int, feeder: Any | None = None) -> Any:
        return self.d.oracle.set_price(market, price, sender=feeder or self.d.deployer)

    def refresh_prices(self, markets: tuple[int, ...] | None = None, feeder: Any | None = None) -> Any:
        """Feed every market's (or `markets`') current price again, stamped now: after time
        passes, trading would otherwise see prices older than `max_price_age`."""
        wanted = list(markets if markets is not None else self.market_names())
        return self.d.oracle.set_prices(wanted, [self.price(m) for m in wanted], sender=feeder or self.d.deployer)

    # ---- reading
    def position(self, owner: Any, sub: int, market: int | str) -> Position:
        p = self.vault.position(owner, sub, self.market_id(market))
        return Position(int(p.size), int(p.entry_price), int(p.funding_index))

    def health(self, owner: Any, sub: int = 0) -> Health:
        h = self.vault.account_health(owner, sub)
        return Health(*(int(getattr(h, f)) for f in Health.__dataclass_fields__))

    def open_markets(self, owner: Any, sub: int = 0) -> list[int]:
        return [int(m) for m in self.d.lens.open_markets(owner, sub)]

    def params(self, market: int) -> MarketParams:
        return MarketParams.from_chain(self.vault.market_params(market))

    def price(self, market: int | str) -> int:
        return int(self.d.oracle.latest(self.market_id(market))[0])

    def market_names(self) -> dict[int, str]:
        return {i: name for name, i in self.d.markets.items()}



def liquidation_price_of(x: Exchange, owner: Any, sub: int, market: int) -> int | None:
    """Model-computed liquidation price of one position from chain state (other prices fixed)."""
    pos = x.position(owner, sub, market)
    if pos.size == 0:
        return None
    h = x.health(owner, sub)
    price, params = x.price(market), x.params(market)
    own_funding = model.accrued_funding(pos.size, int(x.vault.funding(market)[1]), pos.funding_index)
    equity_excluding = h.equity - model.unrealized_pnl(pos.size, pos.entry_price, price) - own_funding
    mm_excluding = h.maintenance_margin - model.maintenance_margin(pos.size, price, params)
    return model.liquidation_price(equity_excluding, mm_excluding, pos.size, pos.entry_price, own_funding, params)


# ---- feeding prices as a feeder would


def step_toward(price: int, target: int, jump: int) -> int:
    """One oracle update from `price` toward `target` that moves at most `jump` (WAD fraction)."""
    most = price * jump // WAD
    return min(target, price + most) if target > price else max(target, price - most)


def price_steps(price: int, target: int, jump: int) -> list[int]:
    """The prices a feeder sends to get from `price` to `target` within the jump limit
    (the last one is `target`; empty when already there)."""
    steps: list[int] = []
    while price != target:
        price = step_toward(price, target, jump)
        steps.append(price)
    return steps


def feed_prices(x: Exchange, prices: dict[int, int], feeder: Any | None = None) -> list[Any]:
    """Move the oracle to `prices` as a feeder would: every market in each update (the
    others at their current price, so that none goes stale), in steps within the jump limit.
    Returns the receipts, one per update (at least one)."""
    jump = int(x.d.oracle.max_price_jump())
    target = {m: prices.get(m, x.price(m)) for m in x.d.markets.values()}
    current = {m: x.price(m) for m in target}
    receipts = []
    while True:
        current = {m: step_toward(current[m], target[m], jump) for m in target}
        receipts.append(x.d.oracle.set_prices(list(current), list(current.values()), sender=feeder or x.d.deployer))
        if current == target:
            return receipts


# ---- the reference model of a running system


def model_from_chain(x: Exchange, now: int) -> VaultModel:
    """A VaultModel holding the chain's markets (open interest, funding state, settlement),
    prices, pool, insurance fund, keeper pay bounds, pauses and total LP shares; not the
    traders' accounts nor who owns the shares: the model a test or the fuzz machine starts
    from on a system already running."""
    v = x.vault
    m = VaultModel(token_scale=x.token_scale, now=now)
    for market in range(int(v.market_count())):
        state = v.market_state(market)
        m.add_market(MarketParams.from_chain(v.market_params(market)), x.price(market))
        mine = m.markets[market]
        for name in ("oi_long", "oi_short", "entry_sum", "funding_sum", "funding_rate", "funding_index",
                     "last_funding_time", "long_entry_sum"):
            setattr(mine, name, int(getattr(state, name)))
        mine.paused = bool(v.market_paused(market))
        if final := int(v.settled_price(market)):
            m.settled.add(market)
            m.prices[market] = final
    m.pool_balance = int(v.pool_balance())
    m.total_lp_shares = int(v.total_lp_shares())
    m.insurance_fund = int(v.insurance_fund())
    m.paused = bool(v.paused())
    m.reserve_factor, m.max_exposure_factor, m.max_pnl_factor, m.pool_loss_cap = (int(f) for f in v.pool_caps())
    m.loss_window_start, m.loss_budget = (int(f) for f in v.loss_window())
    for market in range(len(m.markets)):
        for side in (0, 1):
            size, price, expires = (int(f) for f in v.adl_pending(market, side))
            if size:
                # the chain keeps the size-weighted price's notional only; the deposit lock
                # is rebuilt from the sides still owed (exact while none of them expired)
                m.adl[(market, side)] = AdlPending(size, size * price, expires - ADL_EXPIRY)
                m.adl_owing += 1
                m.adl_until = max(m.adl_until, expires)
    m.max_keeper_reward, m.min_keeper_reward = int(v.max_keeper_reward()), int(v.min_keeper_reward())
    return m


def _kind_id(kind: int | str, names: dict[int, str]) -> int:
    """A conditional order's kind from its id or its name ("stop-loss")."""
    if isinstance(kind, int):
        return kind
    ids = {name: k for k, name in names.items()}
    if kind not in ids:
        raise ValueError(f"unknown order kind {kind!r}: one of {', '.join(ids)}")
    return ids[kind]
