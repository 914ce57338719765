# pragma version ~=0.4.3
"""
@title OrderRouter
@notice Two-step trading and LP moves (SPEC 13). A request is committed now and filled at
        its settlement round: the first oracle round of its market with
        `updated_at >= committed_at + settlement_delay` (`settle_after`); LP requests use
        every market's first round at or after that time, and fill only LP_GRACE seconds
        after those rounds were published (their deadline is that much later too): the
        liquidations those prices call for are booked first, so an LP who leaves bears its
        part of the bad debt they book, like the LPs who stay. Nobody, the owner included, can
        choose the price: the settler only chooses when to send, and everything fills at
        that round whenever it is settled before the deadline (`settle_after +
        settlement_window`), even after later rounds have landed. A request that fails the
        vault's checks at that price, or is not settled by the deadline, is cancelled with
        its reason. The settler's reward (`settlement_reward`, flat, in tokens) is escrowed
        from the owner's wallet at commit and paid for a settlement or a cancellation
        alike; it never comes from the pool.
@dev Cancelling: the owner may cancel a pending request only before `settle_after`, when no
     settlement round can exist (the reward comes back); from `settle_after` to the
     deadline the request belongs to the settlers and nobody can cancel it, so a cancel can
     never be timed after its price is known; after the deadline anyone may cancel it and
     is paid the reward as a settler would be. At most MAX_PENDING requests wait per
     account (owner, sub-account; an owner's LP requests count as one more account).
     Each request keeps the delay and window it was committed under.
     Storage: a request's head (who, when, what, status) is its own slot for good; its body
     (size and acceptable price, or LP amount) lives in one of its account's MAX_PENDING
     body slots, which the account's next request reuses once the order is finished. So
     `order(id)` of a finished order whose body slot was reused returns zero size_delta,
     acceptable_price and amount; the events keep every amount.
@custom:kill The vault's owner calls `vault.set_router(empty(address))`: every settlement
             then fails in the vault and cancels with the reason "vault: not the order
             router", returning LP tokens (and the settler is paid), and new requests are
             refused ("router: not the vault's router").
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from interfaces import IMarginVault
from interfaces import IPriceOracle
from interfaces import IOrderRouter

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

# ------------------------------------------------------------------ constants

MAX_PENDING: constant(uint256) = 4     # pending requests per account (owner, sub): its body slots
MAX_BATCH: constant(uint256) = 100
MAX_MARKETS: constant(uint256) = 64
MAX_SUB: constant(uint256) = 2**30 - 1  # sub-accounts a request can name (packed in 30 bits)
LP_ACCOUNT: constant(uint256) = 2**30   # the account of an owner's LP requests
MAX_ABS_SIZE: constant(int256) = 2**120
MAX_PRICE: constant(uint256) = 2**96 - 1  # an acceptable price clamps here: still no bound
MAX_AMOUNT: constant(uint256) = 2**224 - 1  # LP tokens or shares a request can name
SIZE_BIAS: constant(int256) = 2**127
MASK128: constant(uint256) = 2**128 - 1
MASK96: constant(uint256) = 2**96 - 1
MASK38: constant(uint256) = 2**38 - 1
TAG_MASK: constant(uint256) = 2**32 - 1
COUNT_MASK: constant(uint256) = 2**240 - 1
BUSY: constant(uint256) = 2**MAX_PENDING - 1  # every body slot of the account busy
USED: constant(uint256) = 2**MAX_PENDING  # the account's word never returns to zero
MIN_DELAY: constant(uint256) = 1       # seconds: a round must come after the commit's block
MAX_DELAY: constant(uint256) = 60
MIN_WINDOW: constant(uint256) = 10
MAX_WINDOW: constant(uint256) = 1_000
MAX_REWARD: constant(uint256) = 1_000 * 10**18
# Seconds an LP request waits after its settlement rounds before it can fill (and is added to
# its deadline): liquidations of the accounts those prices made bankrupt land first, so an LP
# who leaves shares the bad debt they book with the LPs who stay (issue 17's LP dodge).
LP_GRACE: public(constant(uint256)) = 12

# conditional orders (SPEC 15): kinds (events report 4 + kind), statuses, caps
LIMIT: constant(uint256) = 0
STOP: constant(uint256) = 1
TAKE_PROFIT: constant(uint256) = 2
STOP_LOSS: constant(uint256) = 3
KIND_CONDITIONAL: constant(uint256) = 4
C_OPEN: constant(uint256) = 1
C_TRIGGERED: constant(uint256) = 2
C_FILLED: constant(uint256) = 3
C_CANCELLED: constant(uint256) = 4
MAX_CONDITIONAL: public(constant(uint256)) = 8   # live conditional orders per account (owner, sub)
MAX_PER_POSITION: public(constant(uint256)) = 4  # of them, TP/SL on one position (owner, sub, market)
MASK32: constant(uint256) = 2**32 - 1
MASK64: constant(uint256) = 2**64 - 1

KIND_TRADE: constant(uint256) = 0
KIND_CLOSE: constant(uint256) = 1
KIND_ADD: constant(uint256) = 2
KIND_REMOVE: constant(uint256) = 3
PENDING: constant(uint256) = 1
SETTLED: constant(uint256) = 2
CANCELLED: constant(uint256) = 3

# ------------------------------------------------------------------ immutables

VAULT: public(immutable(IMarginVault))
ORACLE: public(immutable(IPriceOracle))
TOKEN: public(immutable(IERC20))
SETTLEMENT_REWARD: immutable(uint256)  # USD (WAD)
REWARD_TOKENS: public(immutable(uint256))  # the same in token units, rounded up: what an order escrows

# ------------------------------------------------------------------ storage

# Layout (a commit writes one new slot, the head, and reuses a body slot of its account):
# _config: order_count (240 bits; ids are 1, 2, 3...) | settlement_delay (6) << 240
#       | settlement_window (10) << 246: the delay and window sit where the head keeps them
# _heads[order_id]: owner (160 bits) | committed_at (38: until the year 10,680) << 160 | body slot k (2) << 198
#       | market (6) << 200 | kind (2) << 206 | status (2) << 208 | sub (30) << 210
#       | delay (6) << 240 | window (10) << 246
# _bodies[owner][account][k] (account: sub, or LP_ACCOUNT for LP requests; k < MAX_PENDING):
#       trades: (size_delta + 2**127) | acceptable_price (96) << 128 | tag (32) << 224 (a
#       close keeps the sign of the position it closes as its size); LP requests: amount
#       (224) | tag << 224. The tag, order_id mod 2**32, tells whether the body is still
#       this order's or a later one's of the account (2**32 orders later would collide).
# _busy[owner][account]: bit k set while body slot k holds a pending request (the pending
#       count is their popcount) | USED once the account committed (never zero again, so
#       every later commit writes a non-zero slot: 2,900 gas instead of 20,000)
_config: uint256
_heads: HashMap[uint256, uint256]
_bodies: HashMap[address, HashMap[uint256, HashMap[uint256, uint256]]]
_busy: HashMap[address, HashMap[uint256, uint256]]
# Conditional orders (ids from the same count as requests; three slots each, written at place;
# a trigger reads the first two and writes the head only):
# .head: owner (160) | sub (30) << 160 | market (6) << 190 | kind (2) << 196 | sells (1) << 198
#       | reduce_only (1) << 199 | status (3) << 200 | delay (6) << 203 | window (10) << 209
#       | triggered_at (37) << 219 (the delay and window of its settlement, set when it triggers)
# .prices: size (128; 0 = a TP/SL's whole position) | trigger_price (96) << 128 | expiry (32) << 224
# .more: acceptable_price (96) | oco (64) << 96
# _cond_count[owner][sub]: live orders (8 bits) | live TP/SL of market m (3 bits) << (8 + 3 m)
struct Stored:
    head: uint256
    prices: uint256
    more: uint256


_conds: HashMap[uint256, Stored]
_cond_count: HashMap[address, HashMap[uint256, uint256]]


struct Head:
    owner: address
    committed_at: uint256
    slot: uint256  # k of its body slot
    market: uint256
    kind: uint256
    status: uint256
    sub: uint256
    delay: uint256
    window: uint256


struct Cond:
    owner: address
    sub: uint256
    market: uint256
    kind: uint256
    side: int256
    reduce_only: bool
    status: uint256
    delay: uint256
    window: uint256
    size: uint256
    trigger_price: uint256
    acceptable_price: uint256
    expiry: uint256
    triggered_at: uint256
    oco: uint256


@deploy
def __init__(_vault: IMarginVault, _settlement_reward: uint256, _settlement_delay: uint256, _settlement_window: uint256):
    """
    @param _vault The MarginVault this router fills requests in (its owner then calls
           `vault.set_router(this)`).
    @param _settlement_reward What a settler earns per request, USD (WAD), at most 1,000.
    @param _settlement_delay Seconds from commit to the settlement time (1 to 60).
    @param _settlement_window Seconds after the settlement time in which a request can
           still fill (10 to 1,000).
    """
    ownable.__init__()
    ownable_2step.__init__()
    assert _settlement_reward <= MAX_REWARD, "router: bad settlement_reward"
    VAULT = _vault
    ORACLE = IPriceOracle(staticcall _vault.ORACLE())
    TOKEN = IERC20(staticcall _vault.TOKEN())
    scale: uint256 = staticcall _vault.TOKEN_SCALE()
    SETTLEMENT_REWARD = _settlement_reward
    REWARD_TOKENS = (_settlement_reward + scale - 1) // scale
    self._set_settlement_config(_settlement_delay, _settlement_window)
    # the vault pulls an LP request's escrowed tokens when it settles (and only then: it
    # pulls from its caller, and only this router calls settle_liquidity)
    assert extcall TOKEN.approve(_vault.address, max_value(uint256), default_return_value=True), "router: approve failed"


# ================================================================== commit


@external
@nonreentrant
def commit_order(_sub: uint256, _market: uint256, _size_delta: int256, _acceptable_price: uint256) -> uint256:
    """
    @notice Request a trade of `_size_delta` base units (> 0 buys) in `_market` for
            sub-account `_sub`, filled at the settlement round if the fill is not worse
            than `_acceptable_price` (at or below it for a buy, at or above for a sell; it is
            clamped at 2**96 - 1, about 7.9e10 per unit in WAD: a buy's bound there or above
            is no bound). Escrows `REWARD_TOKENS` from the
            caller's wallet (approve this router first).
    @return The order id.
    """
    assert _size_delta != 0, "router: zero size"
    assert _size_delta >= -MAX_ABS_SIZE and _size_delta <= MAX_ABS_SIZE, "router: size out of range"
    assert _size_delta < 0 or _acceptable_price != 0, "router: zero acceptable price"
    self._check_trade_account(_sub, _market)
    # an account with a position may always reduce it; otherwise it needs collateral (read
    # first: one vault slot where the position is two)
    if staticcall VAULT.collateral(msg.sender, _sub) <= 0:
        assert self._position_size(msg.sender, _sub, _market) != 0, "router: no collateral"
    return self._commit(_sub, _market, KIND_TRADE, self._pack_trade(_size_delta, _acceptable_price), 0)


@external
@nonreentrant
def commit_close(_sub: uint256, _market: uint256, _acceptable_price: uint256) -> uint256:
    """
    @notice Request to close the position of `_sub` in `_market`, whatever its size is at
            settlement (cancelled if it is gone or has flipped side by then).
    @return The order id.
    """
    size: int256 = self._position_size(msg.sender, _sub, _market)
    assert size != 0, "router: no position"
    assert size > 0 or _acceptable_price != 0, "router: zero acceptable price"
    self._check_trade_account(_sub, _market)
    # the body keeps the side being closed (+1 long, -1 short), never the size
    side: int256 = 1
    if size < 0:
        side = -1
    return self._commit(_sub, _market, KIND_CLOSE, self._pack_trade(side, _acceptable_price), 0)


@external
@nonreentrant
def commit_add_liquidity(_amount: uint256) -> uint256:
    """
    @notice Request to deposit `_amount` tokens into the LP pool, for shares priced at the
            pool value of the settlement rounds. Escrows `_amount + REWARD_TOKENS`.
    @return The order id.
    """
    assert _amount != 0, "router: zero amount"
    assert _amount <= MAX_AMOUNT, "router: amount out of range"
    return self._commit(0, 0, KIND_ADD, _amount, _amount)


@external
@nonreentrant
def commit_remove_liquidity(_shares: uint256) -> uint256:
    """
    @notice Request to burn `_shares` for tokens at the pool value of the settlement rounds.
            Escrows `REWARD_TOKENS`.
    @return The order id.
    """
    assert _shares != 0, "router: zero shares"
    assert _shares <= MAX_AMOUNT, "router: amount out of range"
    assert _shares <= staticcall VAULT.lp_shares(msg.sender), "router: insufficient shares"
    return self._commit(0, 0, KIND_REMOVE, _shares, 0)


# ================================================================== settle and cancel


@external
@nonreentrant
def settle(_order_id: uint256):
    """
    @notice Fill the order at its settlement round (anyone; the caller earns the reward),
            or cancel it with the reason when it cannot fill there or its deadline passed.
            Reverts and changes nothing while the settlement round does not exist yet.
    """
    if self._heads[_order_id] == 0 and self._conds[_order_id].head != 0:
        assert self._settle_conditional(_order_id, self._load_cond(_order_id)), "router: settlement round not yet"
        return
    head: Head = self._load_pending(_order_id)
    assert self._settle(_order_id, head), "router: settlement round not yet"


@external
@nonreentrant
def settle_many(_order_ids: DynArray[uint256, MAX_BATCH]) -> uint256:
    """
    @notice `settle` each order that can be settled or cancelled now; skips the others
            (unknown, already done, round not yet) instead of reverting.
    @return How many were settled or cancelled.
    """
    done: uint256 = 0
    for order_id: uint256 in _order_ids:
        # an unknown id (0, or above order_count) has no head: status 0
        word: uint256 = self._heads[order_id]
        if word == 0:
            c: Cond = self._load_cond(order_id)
            if c.status == C_TRIGGERED and self._settle_conditional(order_id, c):
                done += 1
            continue
        head: Head = self._unpack(word)
        if head.status != PENDING:
            continue
        if self._settle(order_id, head):
            done += 1
    return done


@external
@nonreentrant
def cancel(_order_id: uint256):
    """
    @notice Cancel a pending order: the owner before its settlement time (everything
            escrowed comes back), anyone after its deadline (the caller is paid the reward,
            the owner gets back LP tokens). In between nobody can: see the contract notes.
    """
    if self._heads[_order_id] == 0 and self._conds[_order_id].head != 0:
        # a conditional order: its owner's, while it is open (once triggered it settles)
        c: Cond = self._load_open(_order_id)
        assert msg.sender == c.owner, "router: not the owner"
        self._cancel_conditional(_order_id, c, "router: cancelled by owner", False)
        return
    head: Head = self._load_pending(_order_id)
    settle_after: uint256 = head.committed_at + head.delay
    if block.timestamp > settle_after + head.window:
        self._cancel(_order_id, head, "router: expired", True)
        return
    assert msg.sender == head.owner, "router: not the owner"
    assert block.timestamp < settle_after, "router: order is live"
    self._cancel(_order_id, head, "router: cancelled by owner", False)


# ================================================================== conditional orders (SPEC 15)


@external
@nonreentrant
def place_conditional(
    _sub: uint256,
    _market: uint256,
    _kind: uint256,
    _size: int256,
    _trigger_price: uint256,
    _acceptable_price: uint256,
    _reduce_only: bool,
    _expiry: uint256,
    _oco_with: uint256,
) -> uint256:
    """
    @notice Place a conditional order for sub-account `_sub` in `_market`: `_kind` 0 limit
            (buys at or below `_trigger_price`, sells at or above), 1 stop (buys at or above,
            sells at or below), 2 take-profit or 3 stop-loss on the position (always
            reduce-only, on its other side: the TP fires when the price reaches the trigger
            in the position's favour, the SL against it). `_size`: signed for a limit or stop
            (> 0 buys); unsigned for a TP/SL, 0 for the whole position at settlement.
            Anyone may `trigger` it once the latest round meets the trigger; it then fills
            like a request at the first round at or after that + settlement_delay, at a
            price not worse than `_acceptable_price` (0: any, for a sell). `_reduce_only`
            (any kind) never grows or flips the position. `_expiry`: 0, or the last second
            it may trigger. `_oco_with`: an open TP/SL on the same position to pair with (one
            filling cancels the other). Escrows two settler rewards (the trigger's and the
            settle's) from the caller's wallet.
    @return The order id (from the same count as requests).
    """
    assert staticcall VAULT.router() == self, "router: not the vault's router"
    assert _kind <= STOP_LOSS, "router: unknown order kind"
    self._check_trade_account(_sub, _market)
    assert _trigger_price != 0, "router: zero trigger price"
    assert _trigger_price <= MAX_PRICE, "router: trigger price out of range"
    assert _size >= -MAX_ABS_SIZE and _size <= MAX_ABS_SIZE, "router: size out of range"
    assert _expiry == 0 or _expiry > block.timestamp, "router: expiry in the past"
    assert _expiry <= MASK32, "router: expiry out of range"
    position: int256 = self._position_size(msg.sender, _sub, _market)
    side: int256 = self._conditional_side(_kind, _size, position, _trigger_price, _market)
    if _reduce_only:
        assert position != 0, "router: no position to reduce"
        assert (position > 0) != (side > 0), "router: reduce-only on the position's own side"
    assert side < 0 or _acceptable_price != 0, "router: zero acceptable price"
    closes: bool = _kind >= TAKE_PROFIT
    count: uint256 = self._cond_count[msg.sender][_sub]
    assert count & 255 < MAX_CONDITIONAL, "router: too many conditional orders"
    if closes:
        assert (count >> (8 + 3 * _market)) & 7 < MAX_PER_POSITION, "router: too many orders on the position"
        count += 1 << (8 + 3 * _market)
    self._cond_count[msg.sender][_sub] = count + 1
    escrow: uint256 = 2 * REWARD_TOKENS
    self._pull(escrow)
    config: uint256 = self._config
    order_id: uint256 = (config & COUNT_MASK) + 1
    self._config = config + 1
    if _oco_with != 0:
        other: Cond = self._load_cond(_oco_with)
        assert (
            closes and other.status == C_OPEN and other.oco == 0 and other.kind >= TAKE_PROFIT
            and other.owner == msg.sender and other.sub == _sub and other.market == _market
        ), "router: bad OCO leg"
        self._conds[_oco_with].more = self._conds[_oco_with].more | (order_id << 96)
    sells: uint256 = 0
    if side < 0:
        sells = 1
    ro: uint256 = 0
    if _reduce_only or closes:
        ro = 1
    self._conds[order_id].head = (
        convert(msg.sender, uint256) | (_sub << 160) | (_market << 190) | (_kind << 196) | (sells << 198)
        | (ro << 199) | (C_OPEN << 200)
    )
    self._conds[order_id].prices = convert(abs(_size), uint256) | (_trigger_price << 128) | (_expiry << 224)
    more: uint256 = min(_acceptable_price, MAX_PRICE) | (_oco_with << 96)
    if more != 0:  # a sell with no bound and no OCO leg (a plain stop-loss) writes two slots
        self._conds[order_id].more = more
    log IOrderRouter.ConditionalPlaced(
        order_id=order_id,
        owner=msg.sender,
        sub=_sub,
        market=_market,
        kind=KIND_CONDITIONAL + _kind,
        side=side,
        size=convert(abs(_size), uint256),
        trigger_price=_trigger_price,
        acceptable_price=min(_acceptable_price, MAX_PRICE),
        reduce_only=ro == 1,
        expiry=_expiry,
        oco=_oco_with,
        escrow=escrow,
    )
    return order_id


@external
@nonreentrant
def trigger(_order_id: uint256):
    """
    @notice Trigger an open conditional order whose trigger price the latest round meets
            (anyone; paid one settler reward): it then settles at the first round at or
            after now + settlement_delay. Reverts while the price does not meet it. An
            expired order is cancelled instead (pruned: the caller is paid the same). A
            reduce-only order with nothing left to reduce still triggers: its settle cancels
            it (or `prune` it first).
    """
    c: Cond = self._load_open(_order_id)
    assert self._trigger(_order_id, c, True), "router: trigger price not reached"
    self._pay(msg.sender, REWARD_TOKENS)


@external
@nonreentrant
def trigger_many(_order_ids: DynArray[uint256, MAX_BATCH]) -> uint256:
    """
    @notice `trigger` each open order whose trigger the latest round meets (an expired one
            is pruned); skips the others (not open, price not met) instead of reverting.
            The caller is paid one reward per order triggered or pruned, in one transfer.
    @return How many were triggered or pruned.
    """
    done: uint256 = 0
    for order_id: uint256 in _order_ids:
        c: Cond = self._load_cond(order_id)
        if c.status == C_OPEN and self._trigger(order_id, c, False):
            done += 1
    self._pay(msg.sender, done * REWARD_TOKENS)
    return done


@external
@nonreentrant
def prune(_order_id: uint256):
    """
    @notice Cancel an open conditional order that can never fill (anyone; paid one settler
            reward, the other goes back to the owner): expired, or reduce-only with nothing
            left to reduce. Reverts for a live one ("router: order is live").
    """
    c: Cond = self._load_open(_order_id)
    reason: String[64] = self._dead_reason(c)
    assert len(reason) != 0, "router: order is live"
    self._pay(msg.sender, self._cancel_conditional(_order_id, c, reason, True))


@external
@nonreentrant
def prune_many(_order_ids: DynArray[uint256, MAX_BATCH]) -> uint256:
    """
    @notice `prune` each open order that can never fill; skips the others (not open, live)
            instead of reverting. The caller is paid one reward per order, in one transfer.
    @return How many were pruned.
    """
    done: uint256 = 0
    for order_id: uint256 in _order_ids:
        c: Cond = self._load_cond(order_id)
        if c.status != C_OPEN:
            continue
        reason: String[64] = self._dead_reason(c)
        if len(reason) != 0:
            self._cancel_conditional(order_id, c, reason, True)
            done += 1
    self._pay(msg.sender, done * REWARD_TOKENS)
    return done


# ================================================================== views


@view
@external
def order(_order_id: uint256) -> IOrderRouter.Order:
    """
    @notice The order as committed, with its settlement time, deadline and status
            (an unknown id returns an empty order with status 0). A pending order always
            has its size_delta, acceptable_price (as clamped) and amount; a finished one
            has them until its account's body slot is reused by a later request, and
            returns 0 for all three from then on (its events keep every amount).
    """
    head: Head = self._unpack(self._heads[_order_id])
    o: IOrderRouter.Order = IOrderRouter.Order(
        owner=head.owner,
        sub=head.sub,
        market=head.market,
        kind=head.kind,
        size_delta=0,
        acceptable_price=0,
        amount=0,
        committed_at=head.committed_at,
        settle_after=head.committed_at + head.delay,
        deadline=head.committed_at + head.delay + head.window,
        status=head.status,
    )
    body: uint256 = self._body(head)
    if head.status == 0 or body >> 224 != _order_id & TAG_MASK:
        return o  # unknown, or its body slot now holds a later request
    if head.kind == KIND_TRADE or head.kind == KIND_CLOSE:
        if head.kind == KIND_TRADE:
            o.size_delta = convert(body & MASK128, int256) - SIZE_BIAS
        o.acceptable_price = (body >> 128) & MASK96
    else:
        o.amount = body & MAX_AMOUNT
    return o


@view
@external
def settleable(_order_id: uint256) -> bool:
    """
    @notice True when `settle` would fill the order at its round now (or cancel it if the
            vault refuses it there): it is pending, its round exists, its deadline has not
            passed. An expired order is not settleable, only cancellable.
    """
    head: Head = self._unpack(self._heads[_order_id])
    settle_after: uint256 = head.committed_at + head.delay
    return head.status == PENDING and block.timestamp <= settle_after + head.window and self._round_exists(head, settle_after)


@view
@external
def conditional_order(_order_id: uint256) -> IOrderRouter.ConditionalOrder:
    """
    @notice A conditional order as placed, with its trigger time and status (an unknown id:
            an empty order, status 0).
    """
    c: Cond = self._load_cond(_order_id)
    if c.status == 0:
        return empty(IOrderRouter.ConditionalOrder)
    return IOrderRouter.ConditionalOrder(
        owner=c.owner,
        sub=c.sub,
        market=c.market,
        kind=c.kind,
        side=c.side,
        size=c.size,
        trigger_price=c.trigger_price,
        acceptable_price=c.acceptable_price,
        reduce_only=c.reduce_only,
        expiry=c.expiry,
        triggered_at=c.triggered_at,
        oco=c.oco,
        status=c.status,
    )


@view
@external
def conditional_orders(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Live (open or triggered) conditional orders of the account.
    """
    return self._cond_count[_owner][_sub] & 255


@view
@external
def pending_orders(_owner: address, _sub: uint256) -> uint256:
    """
    @notice Pending requests of the account (`_sub` = 2**30: the owner's LP requests).
    """
    busy: uint256 = self._busy[_owner][_sub] & BUSY
    count: uint256 = 0
    for k: uint256 in range(MAX_PENDING):
        count += (busy >> k) & 1
    return count


@view
@external
def order_count() -> uint256:
    """
    @notice Orders committed so far: ids are 1 to order_count.
    """
    return self._config & COUNT_MASK


@view
@external
def settlement_delay() -> uint256:
    """
    @notice Seconds from a new request's commit to its settlement time.
    """
    return (self._config >> 240) & 63


@view
@external
def settlement_window() -> uint256:
    """
    @notice Seconds after a new request's settlement time in which it can still fill.
    """
    return self._config >> 246


@view
@external
def settlement_reward() -> uint256:
    """
    @notice What a settler earns per settled or cancelled request, USD (WAD).
    """
    return SETTLEMENT_REWARD


# ================================================================== owner


@external
def set_settlement_config(_settlement_delay: uint256, _settlement_window: uint256):
    """
    @notice Set the delay (1 to 60 s) and window (10 to 1,000 s) of new requests; pending
            ones keep theirs.
    @dev Owner only.
    """
    ownable._check_owner()
    self._set_settlement_config(_settlement_delay, _settlement_window)


# ================================================================== internals


@internal
def _commit(_sub: uint256, _market: uint256, _kind: uint256, _body: uint256, _lp_tokens: uint256) -> uint256:
    assert staticcall VAULT.router() == self, "router: not the vault's router"
    account: uint256 = self._account(_sub, _kind)
    busy: uint256 = self._busy[msg.sender][account]
    assert busy & BUSY != BUSY, "router: too many pending requests"
    # the lowest free body slot: never one whose request is pending
    k: uint256 = 0
    for i: uint256 in range(MAX_PENDING):
        if (busy >> i) & 1 == 0:
            break
        k += 1
    self._busy[msg.sender][account] = busy | USED | (1 << k)
    escrow: uint256 = REWARD_TOKENS + _lp_tokens
    self._pull(escrow)
    config: uint256 = self._config
    order_id: uint256 = (config & COUNT_MASK) + 1
    self._config = config + 1  # the count never reaches 2**240
    delay: uint256 = (config >> 240) & 63
    window: uint256 = config >> 246
    self._heads[order_id] = (
        convert(msg.sender, uint256)
        | (block.timestamp << 160)
        | (k << 198)
        | (_market << 200)
        | (_kind << 206)
        | (PENDING << 208)
        | (_sub << 210)
        | (config >> 240 << 240)  # delay and window, at the same bits as in the config
    )
    self._bodies[msg.sender][account][k] = _body | ((order_id & TAG_MASK) << 224)
    size_delta: int256 = 0
    acceptable: uint256 = 0
    if _kind < KIND_ADD:
        size_delta = convert(_body & MASK128, int256) - SIZE_BIAS
        acceptable = _body >> 128  # no tag yet
    log IOrderRouter.OrderCommitted(
        order_id=order_id,
        owner=msg.sender,
        sub=_sub,
        market=_market,
        kind=_kind,
        size_delta=size_delta,
        acceptable_price=acceptable,
        amount=_lp_tokens if _kind == KIND_ADD else (_body if _kind == KIND_REMOVE else 0),
        committed_at=block.timestamp,
        settle_after=block.timestamp + delay,
        deadline=block.timestamp + delay + window + (LP_GRACE if _kind >= KIND_ADD else 0),
        escrow=escrow,
    )
    return order_id


@internal
def _settle(_order_id: uint256, _head: Head) -> bool:
    """
    @dev Settles or cancels a pending order; False (nothing changed) while its round does
         not exist yet. A fill the vault refuses cancels the order with its reason
         (`_refusal`: one without a reason reverts instead).
    """
    settle_after: uint256 = _head.committed_at + _head.delay
    if block.timestamp > settle_after + _head.window:
        self._cancel(_order_id, _head, "router: expired", True)
        return True
    if not self._round_exists(_head, settle_after):
        return False
    body: uint256 = self._body(_head)
    calldata: Bytes[228] = b""
    size_delta: int256 = 0
    if _head.kind < KIND_ADD:
        size_delta = convert(body & MASK128, int256) - SIZE_BIAS
        if _head.kind == KIND_CLOSE:
            # the whole position, on the other side of the one it closes (the body keeps it)
            size_delta = self._reduce_size(self._position_size(_head.owner, _head.sub, _head.market), -size_delta, 0)
            if size_delta == 0:
                self._cancel(_order_id, _head, "router: position closed or flipped", True)
                return True
        calldata = abi_encode(
            _head.owner, _head.sub, _head.market, size_delta, (body >> 128) & MASK96, settle_after,
            method_id=method_id("settle_trade(address,uint256,uint256,int256,uint256,uint256)"),
        )
    else:
        calldata = abi_encode(
            _head.owner, body & MAX_AMOUNT, _head.kind == KIND_ADD, settle_after,
            method_id=method_id("settle_liquidity(address,uint256,bool,uint256)"),
        )
    ok: bool = False
    response: Bytes[256] = b""
    ok, response = raw_call(VAULT.address, calldata, max_outsize=256, revert_on_failure=False)
    if not ok:
        self._cancel(_order_id, _head, self._refusal(response), True)
        return True

    fill: uint256 = 0
    fee: uint256 = 0
    amount: uint256 = 0
    if _head.kind < KIND_ADD:
        size_delta, fill, fee = abi_decode(response, (int256, uint256, uint256))
    else:
        amount = abi_decode(response, uint256)
    self._finish(_order_id, _head, SETTLED)
    self._pay(msg.sender, REWARD_TOKENS)
    log IOrderRouter.OrderSettled(
        order_id=_order_id,
        owner=_head.owner,
        settler=msg.sender,
        sub=_head.sub,
        market=_head.market,
        kind=_head.kind,
        size_delta=size_delta,
        fill_price=fill,
        fee=fee,
        amount=amount,
        reward=REWARD_TOKENS,
    )
    return True


@internal
def _cancel(_order_id: uint256, _head: Head, _reason: String[64], _pay_caller: bool):
    """
    @dev Ends the order as cancelled: LP tokens of an add go back to the owner; the reward
         to the caller (`_pay_caller`, a settler's work) or back to the owner.
    """
    self._finish(_order_id, _head, CANCELLED)
    refund: uint256 = 0
    if _head.kind == KIND_ADD:
        refund = self._body(_head) & MAX_AMOUNT  # _finish leaves the body: its slot is only reused by a later commit
    reward: uint256 = 0
    if _pay_caller:
        reward = REWARD_TOKENS
    else:
        refund += REWARD_TOKENS
    self._pay(_head.owner, refund)
    self._pay(msg.sender, reward)
    log IOrderRouter.OrderCancelled(
        order_id=_order_id, owner=_head.owner, caller=msg.sender, reason=_reason, refund=refund, reward=reward
    )


@internal
def _finish(_order_id: uint256, _head: Head, _status: uint256):
    # status bits 208-209 go from PENDING (1) to SETTLED (2) or CANCELLED (3)
    self._heads[_order_id] = self._heads[_order_id] + ((_status - PENDING) << 208)
    # its body slot is free for the account's next request
    self._busy[_head.owner][self._account(_head.sub, _head.kind)] -= 1 << _head.slot


@pure
@internal
def _refusal(_response: Bytes[256]) -> String[64]:
    """
    @dev Why the vault refused a fill (the order is cancelled with it). A fill that failed
         without a reason (out of gas, a panic) reverts instead, so that no settler can turn
         a fill into a cancellation by the gas it sends.
    """
    reason: String[64] = self._reason(_response)
    assert len(reason) != 0, "router: fill failed without a reason"
    return reason


@internal
def _pull(_escrow: uint256):
    """
    @dev `_escrow` tokens from the caller's wallet, accounted exactly: a token that takes a
         fee on transfer is refused here (it would settle orders out of other orders' escrow).
    """
    if _escrow != 0:
        before: uint256 = staticcall TOKEN.balanceOf(self)
        assert extcall TOKEN.transferFrom(msg.sender, self, _escrow, default_return_value=True), "router: transfer failed"
        assert staticcall TOKEN.balanceOf(self) - before == _escrow, "router: token took a fee"


@internal
def _trigger(_order_id: uint256, _c: Cond, _strict: bool) -> bool:
    """
    @dev Triggers the open order `_c` when the latest fresh round meets its trigger price
         (status TRIGGERED, with now and the settlement delay and window it keeps), or
         prunes it when it expired; False (nothing changed) while the price does not meet it.
         The caller's reward is the caller's to pay. `_strict`: a stale price reverts (one
         order); else it only skips (a batch).
    """
    if _c.expiry != 0 and block.timestamp > _c.expiry:
        self._cancel_conditional(_order_id, _c, "router: expired", True)
        return True
    price: uint256 = 0
    if _strict:
        price = staticcall ORACLE.price(_c.market)
    else:
        latest: uint256 = 0
        updated_at: uint256 = 0
        latest, updated_at = staticcall ORACLE.latest(_c.market)
        if block.timestamp - updated_at > staticcall ORACLE.max_price_age():
            return False
        price = latest
    if not self._triggers(_c.kind, _c.side, _c.trigger_price, price):
        return False
    config: uint256 = self._config
    # status OPEN -> TRIGGERED; the settlement delay and window it keeps; triggered_at
    self._conds[_order_id].head = (
        (self._conds[_order_id].head + (1 << 200)) | ((config >> 240) << 203) | (block.timestamp << 219)
    )
    log IOrderRouter.ConditionalTriggered(
        order_id=_order_id,
        owner=_c.owner,
        caller=msg.sender,
        price=price,
        triggered_at=block.timestamp,
        settle_after=block.timestamp + ((config >> 240) & 63),
        reward=REWARD_TOKENS,
    )
    return True


@internal
def _settle_conditional(_order_id: uint256, _c: Cond) -> bool:
    """
    @dev Settles (or cancels) a triggered conditional order at its settlement round, like
         a request: False while that round does not exist. A reduce-only order's size is
         resolved against the position now (at most it, on the other side); with nothing
         left to reduce it is cancelled, never filled into a new position. A fill cancels
         the other OCO leg (its escrow back to the owner).
    """
    assert _c.status == C_TRIGGERED, "router: order not triggered"
    settle_after: uint256 = _c.triggered_at + _c.delay
    if block.timestamp > settle_after + _c.window:
        self._pay(msg.sender, self._cancel_conditional(_order_id, _c, "router: expired", True))
        return True
    if not self._has_round(_c.market, settle_after):
        return False
    size_delta: int256 = _c.side * convert(_c.size, int256)
    if _c.reduce_only:
        size_delta = self._reduce_size(self._position_size(_c.owner, _c.sub, _c.market), _c.side, _c.size)
        if size_delta == 0:
            self._pay(msg.sender, self._cancel_conditional(_order_id, _c, "router: position closed or flipped", True))
            return True
    ok: bool = False
    response: Bytes[256] = b""
    ok, response = raw_call(
        VAULT.address,
        abi_encode(
            _c.owner, _c.sub, _c.market, size_delta, _c.acceptable_price, settle_after,
            method_id=method_id("settle_trade(address,uint256,uint256,int256,uint256,uint256)"),
        ),
        max_outsize=256,
        revert_on_failure=False,
    )
    if not ok:
        self._pay(msg.sender, self._cancel_conditional(_order_id, _c, self._refusal(response), True))
        return True
    fill: uint256 = 0
    fee: uint256 = 0
    size_delta, fill, fee = abi_decode(response, (int256, uint256, uint256))
    self._end_conditional(_order_id, _c, C_FILLED)
    self._pay(msg.sender, REWARD_TOKENS)
    log IOrderRouter.OrderSettled(
        order_id=_order_id,
        owner=_c.owner,
        settler=msg.sender,
        sub=_c.sub,
        market=_c.market,
        kind=KIND_CONDITIONAL + _c.kind,
        size_delta=size_delta,
        fill_price=fill,
        fee=fee,
        amount=0,
        reward=REWARD_TOKENS,
    )
    if _c.oco != 0:
        other: Cond = self._load_cond(_c.oco)
        if other.status == C_OPEN or other.status == C_TRIGGERED:
            self._cancel_conditional(_c.oco, other, "router: OCO leg filled", False)
    return True


@internal
def _cancel_conditional(_order_id: uint256, _c: Cond, _reason: String[64], _pay_caller: bool) -> uint256:
    """
    @dev Ends a conditional order as cancelled: what it still escrows (two rewards while
         open, one once triggered) goes back to the owner, but one reward to the caller
         when `_pay_caller` (a keeper's work: a prune, an expiry, a refused fill), which
         this returns for the caller to pay (a batch pays once).
    """
    self._end_conditional(_order_id, _c, C_CANCELLED)
    left: uint256 = REWARD_TOKENS
    if _c.status == C_OPEN:
        left = 2 * REWARD_TOKENS
    reward: uint256 = 0
    if _pay_caller:
        reward = REWARD_TOKENS
    self._pay(_c.owner, left - reward)
    log IOrderRouter.OrderCancelled(
        order_id=_order_id, owner=_c.owner, caller=msg.sender, reason=_reason, refund=left - reward, reward=reward
    )
    return reward


@internal
def _end_conditional(_order_id: uint256, _c: Cond, _status: uint256):
    """
    @dev The order's status becomes `_status` (filled or cancelled) and it no longer counts
         against its account's caps.
    """
    word: uint256 = self._conds[_order_id].head
    self._conds[_order_id].head = (word & ~(7 << 200)) | (_status << 200)
    count: uint256 = self._cond_count[_c.owner][_c.sub] - 1
    if _c.kind >= TAKE_PROFIT:
        count -= 1 << (8 + 3 * _c.market)
    self._cond_count[_c.owner][_c.sub] = count


@view
@internal
def _load_cond(_order_id: uint256) -> Cond:
    s: Stored = self._conds[_order_id]
    side: int256 = 1
    if (s.head >> 198) & 1 == 1:
        side = -1
    return Cond(
        owner=convert(s.head & (2**160 - 1), address),
        sub=(s.head >> 160) & MAX_SUB,
        market=(s.head >> 190) & 63,
        kind=(s.head >> 196) & 3,
        side=side,
        reduce_only=(s.head >> 199) & 1 == 1,
        status=(s.head >> 200) & 7,
        delay=(s.head >> 203) & 63,
        window=(s.head >> 209) & 1023,
        size=s.prices & MASK128,
        trigger_price=(s.prices >> 128) & MASK96,
        acceptable_price=s.more & MASK96,
        expiry=s.prices >> 224,
        triggered_at=s.head >> 219,
        oco=s.more >> 96,
    )


@view
@internal
def _load_open(_order_id: uint256) -> Cond:
    c: Cond = self._load_cond(_order_id)
    assert c.status != 0, "router: unknown order"
    assert c.status == C_OPEN, "router: order not open"
    return c


@view
@internal
def _dead_reason(_c: Cond) -> String[64]:
    """
    @dev Why an open order can only be pruned, or "": expired, or reduce-only with nothing
         left to reduce.
    """
    if _c.expiry != 0 and block.timestamp > _c.expiry:
        return "router: expired"
    if _c.reduce_only:
        if self._reduce_size(self._position_size(_c.owner, _c.sub, _c.market), _c.side, _c.size) == 0:
            return "router: position closed or flipped"
    return ""


@view
@internal
def _conditional_side(_kind: uint256, _size: int256, _position: int256, _trigger_price: uint256, _market: uint256) -> int256:
    """
    @dev The order's side: a limit's or stop's from its size; a TP/SL's is the position's
         other side, and its trigger must wait on the side of the latest price it fires
         from (one at or past it would fire at once).
    """
    if _kind < TAKE_PROFIT:
        assert _size != 0, "router: zero size"
        if _size > 0:
            return 1
        return -1
    assert _size >= 0, "router: a TP/SL size is unsigned"
    assert _position != 0, "router: no position to reduce"
    side: int256 = 1
    if _position > 0:
        side = -1
    price: uint256 = (staticcall ORACLE.latest(_market))[0]
    waiting: bool = _trigger_price > price
    if self._fires_below(_kind, side):
        waiting = _trigger_price < price
    if _kind == TAKE_PROFIT:
        assert waiting, "router: take-profit at or past the price"
    else:
        assert waiting, "router: stop-loss at or past the price"
    return side


@pure
@internal
def _fires_below(_kind: uint256, _side: int256) -> bool:
    """
    @dev Whether the order fires at or below its trigger (else at or above): a buying limit
         or take-profit, a selling stop or stop-loss.
    """
    return (_kind == LIMIT or _kind == TAKE_PROFIT) == (_side > 0)


@pure
@internal
def _triggers(_kind: uint256, _side: int256, _trigger_price: uint256, _price: uint256) -> bool:
    if self._fires_below(_kind, _side):
        return _price <= _trigger_price
    return _price >= _trigger_price


@pure
@internal
def _reduce_size(_position: int256, _side: int256, _size: uint256) -> int256:
    """
    @dev What a reduce-only order trades against `_position`: at most all of it, on the
         other side (`_size` 0: all of it); 0 with nothing to reduce.
    """
    if _position == 0 or (_position > 0) == (_side > 0):
        return 0
    held: uint256 = convert(abs(_position), uint256)
    if _size != 0:
        held = min(_size, held)
    return _side * convert(held, int256)


@internal
def _pay(_to: address, _amount: uint256):
    if _amount != 0:
        assert extcall TOKEN.transfer(_to, _amount, default_return_value=True), "router: transfer failed"


@view
@internal
def _round_exists(_head: Head, _settle_after: uint256) -> bool:
    """
    @dev Whether the settlement round exists: the order's market has a round at or after
         the settlement time. LP requests: every market has one, published LP_GRACE seconds
         ago or more. A settled market needs none: the vault values it at its final price,
         whatever the oracle does.
    """
    if _head.kind < KIND_ADD:
        return self._has_round(_head.market, _settle_after)
    for m: uint256 in range(staticcall VAULT.market_count(), bound=MAX_MARKETS):
        if not self._lp_round_ready(m, _settle_after):
            return False
    return True


@view
@internal
def _has_round(_market: uint256, _settle_after: uint256) -> bool:
    if staticcall VAULT.settled_price(_market) != 0:
        return True
    return (staticcall ORACLE.latest(_market))[1] >= _settle_after


@view
@internal
def _lp_round_ready(_market: uint256, _settle_after: uint256) -> bool:
    """
    @dev The market's first round at or after `_settle_after` exists and was published at
         least LP_GRACE seconds ago (or the market is settled). A round that has left the
         oracle's history counts as ready: the fill then fails with the oracle's reason and
         the request is cancelled, instead of one request blocking a batch.
    """
    if staticcall VAULT.settled_price(_market) != 0:
        return True
    ok: bool = False
    response: Bytes[96] = b""
    ok, response = raw_call(
        ORACLE.address,
        abi_encode(_market, _settle_after, method_id=method_id("round_at(uint256,uint256)")),
        max_outsize=96,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not ok:
        return True
    round_id: uint256 = 0
    price: uint256 = 0
    updated_at: uint256 = 0
    round_id, price, updated_at = abi_decode(response, (uint256, uint256, uint256))
    return round_id != 0 and updated_at + LP_GRACE <= block.timestamp


@view
@internal
def _check_trade_account(_sub: uint256, _market: uint256):
    assert _sub <= MAX_SUB, "router: sub out of range"
    assert _market < staticcall VAULT.market_count(), "router: unknown market"


@view
@internal
def _position_size(_owner: address, _sub: uint256, _market: uint256) -> int256:
    return (staticcall VAULT.position(_owner, _sub, _market)).size


@view
@internal
def _body(_head: Head) -> uint256:
    return self._bodies[_head.owner][self._account(_head.sub, _head.kind)][_head.slot]


@pure
@internal
def _account(_sub: uint256, _kind: uint256) -> uint256:
    if _kind >= KIND_ADD:
        return LP_ACCOUNT
    return _sub


@view
@internal
def _load_pending(_order_id: uint256) -> Head:
    word: uint256 = self._heads[_order_id]
    # every committed order has a head (its owner is never zero); 0 and ids above
    # order_count have none
    assert word != 0, "router: unknown order"
    head: Head = self._unpack(word)
    assert head.status == PENDING, "router: order not pending"
    return head


@pure
@internal
def _unpack(_word: uint256) -> Head:
    return Head(
        owner=convert(_word & (2**160 - 1), address),
        committed_at=(_word >> 160) & MASK38,
        slot=(_word >> 198) & 3,
        market=(_word >> 200) & 63,
        kind=(_word >> 206) & 3,
        status=(_word >> 208) & 3,
        sub=(_word >> 210) & MAX_SUB,
        delay=(_word >> 240) & 63,
        # an LP request's deadline also counts its LP_GRACE
        window=(_word >> 246) + (LP_GRACE if (_word >> 206) & 3 >= KIND_ADD else 0),
    )


@pure
@internal
def _pack_trade(_size_delta: int256, _acceptable_price: uint256) -> uint256:
    return convert(_size_delta + SIZE_BIAS, uint256) | (min(_acceptable_price, MAX_PRICE) << 128)


@pure
@internal
def _reason(_response: Bytes[256]) -> String[64]:
    """
    @dev The message of an `Error(string)` revert; empty for anything else.
    """
    if len(_response) < 68 or slice(_response, 0, 4) != method_id("Error(string)"):
        return ""
    return abi_decode(slice(_response, 4, len(_response) - 4), String[64])


@internal
def _set_settlement_config(_delay: uint256, _window: uint256):
    assert _delay >= MIN_DELAY and _delay <= MAX_DELAY, "router: bad settlement_delay"
    assert _window >= MIN_WINDOW and _window <= MAX_WINDOW, "router: bad settlement_window"
    self._config = (self._config & COUNT_MASK) | (_delay << 240) | (_window << 246)
    log IOrderRouter.SettlementConfigSet(settlement_delay=_delay, settlement_window=_window)
