# pragma version ~=0.4.3
"""
@title PriceOracle
@notice Per-market USD prices (WAD) written by feeders. Every write is a round (ids count
        from 1 per market); the last HISTORY rounds of each market are kept, so that an
        order settles at one exact round fixed after it was committed, even when later
        rounds have landed (`price_at`, `round_data`). Every write must be positive, must
        not go back in time, and must not move more than `max_price_jump` from the price
        the block started with: repeating a market in `set_prices`, or writing it twice in
        a block, cannot move it further than one write could. Strict readers (`price`,
        `price_at`) revert once a price is older than `max_price_age`; `latest` never
        reverts, so health views keep working.
@custom:kill The owner revokes every feeder with `set_feeder(feeder, False)`. Prices then
             age past `max_price_age` and every strict read (trading, withdrawing with
             open positions, liquidity moves) reverts with "oracle: stale price", while
             views keep answering from the last price.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from interfaces import IPriceOracle

implements: IPriceOracle

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

WAD: constant(uint256) = 10**18
MAX_BATCH: constant(uint256) = 64
MAX_PRICE: constant(uint256) = 2**128 - 1
MASK64: constant(uint256) = 2**64 - 1
# Rounds kept per market: at one write every 2 seconds, two minutes of history, twice the
# default settlement window. An order whose round has left it is cancelled, never filled
# at another price.
HISTORY: constant(uint256) = 64


is_feeder: public(HashMap[address, bool])
max_price_age: public(uint256)
max_price_jump: public(uint256)
# The newest round of each market: price (128 bits) | updated_at (64) << 128 | round id
# (64) << 192. Readers of the latest price read this one slot.
_heads: HashMap[uint256, uint256]
# Round `r` of a market at index r % HISTORY: price (128 bits) | updated_at (64) << 128.
_rounds: HashMap[uint256, HashMap[uint256, uint256]]
# The price a market had when the current block started (128 bits) | that block's number
# << 128: the jump limit's reference for every write in the block.
_opening: HashMap[uint256, uint256]


@deploy
def __init__(_max_price_age: uint256, _max_price_jump: uint256):
    """
    @param _max_price_age Seconds after which a strict read reverts.
    @param _max_price_jump Largest move allowed within one block, WAD fraction (25% = 0.25e18).
    """
    ownable.__init__()
    ownable_2step.__init__()
    self._set_max_price_age(_max_price_age)
    self._set_max_price_jump(_max_price_jump)


# ------------------------------------------------------------------ feeders


@external
def set_price(_market: uint256, _price: uint256):
    """
    @notice Record `_price` (USD per unit, WAD) for `_market` at the current block time.
    @dev Feeders only.
    """
    self._check_feeder()
    self._record(_market, _price, block.timestamp)


@external
def set_price_at(_market: uint256, _price: uint256, _updated_at: uint256):
    """
    @notice Record an observation made at `_updated_at` (for replayed feeds). It must not
            be in the future nor older than the price it replaces.
    @dev Feeders only.
    """
    self._check_feeder()
    assert _updated_at <= block.timestamp, "oracle: timestamp in the future"
    self._record(_market, _price, _updated_at)


@external
def set_prices(_markets: DynArray[uint256, MAX_BATCH], _prices: DynArray[uint256, MAX_BATCH]):
    """
    @notice Batch of `set_price`, all at the current block time.
    @dev Feeders only. Lengths must match.
    """
    self._check_feeder()
    assert len(_markets) == len(_prices), "oracle: length mismatch"
    for i: uint256 in range(len(_markets), bound=MAX_BATCH):
        self._record(_markets[i], _prices[i], block.timestamp)


# ------------------------------------------------------------------ readers


@view
@external
def price(_market: uint256) -> uint256:
    """
    @notice The latest price, reverting when there is none or it is older than `max_price_age`.
    """
    head: uint256 = self._heads[_market]
    assert head != 0, "oracle: no price"
    return self._fresh(head)


@view
@external
def latest(_market: uint256) -> (uint256, uint256):
    """
    @notice `(price, updated_at)` of the latest round; `(0, 0)` if none. Never reverts.
    """
    head: uint256 = self._heads[_market]
    return head & MAX_PRICE, (head >> 128) & MASK64


@view
@external
def latest_round(_market: uint256) -> uint256:
    """
    @notice The id of the market's newest round (0: never written).
    """
    return self._heads[_market] >> 192


@view
@external
def round_data(_market: uint256, _round_id: uint256) -> (uint256, uint256):
    """
    @notice `(price, updated_at)` of round `_round_id` of `_market`. Reverts for a round
            that does not exist yet and for one that has left the history.
    """
    latest: uint256 = self._heads[_market] >> 192
    assert _round_id != 0 and _round_id <= latest, "oracle: no such round"
    assert _round_id + HISTORY > latest, "oracle: round expired"
    word: uint256 = self._rounds[_market][_round_id % HISTORY]
    return word & MAX_PRICE, word >> 128


@view
@external
def price_at(_market: uint256, _time: uint256) -> (uint256, uint256):
    """
    @notice The settlement round of a request made for `_time`: `(price, round id)` of the
            first round of `_market` with `updated_at >= _time`, however many rounds came
            after it. Reverts while no such round exists ("oracle: no round yet"), when it
            has left the history ("oracle: round expired") and, like `price`, when it is
            older than `max_price_age`.
    """
    round_id: uint256 = 0
    word: uint256 = 0
    round_id, word = self._round_at(_market, _time)
    assert round_id != 0, "oracle: no round yet"
    return self._fresh(word), round_id


@view
@external
def round_at(_market: uint256, _time: uint256) -> (uint256, uint256, uint256):
    """
    @notice `(round id, price, updated_at)` of the first round of `_market` with
            `updated_at >= _time`; `(0, 0, 0)` while there is none. Reverts when that round
            has left the history. Never checks staleness (see `price_at`).
    """
    round_id: uint256 = 0
    word: uint256 = 0
    round_id, word = self._round_at(_market, _time)
    return round_id, word & MAX_PRICE, (word >> 128) & MASK64


# ------------------------------------------------------------------ owner


@external
def set_feeder(_feeder: address, _allowed: bool):
    """
    @notice Grant or revoke the feeder role.
    @dev Owner only.
    """
    ownable._check_owner()
    self.is_feeder[_feeder] = _allowed
    log IPriceOracle.FeederSet(feeder=_feeder, allowed=_allowed)


@external
def set_max_price_age(_max_price_age: uint256):
    """
    @dev Owner only. Between 1 second and 1 day.
    """
    ownable._check_owner()
    self._set_max_price_age(_max_price_age)


@external
def set_max_price_jump(_max_price_jump: uint256):
    """
    @dev Owner only. Between 0.1% and 100% (WAD).
    """
    ownable._check_owner()
    self._set_max_price_jump(_max_price_jump)


# ------------------------------------------------------------------ internals


@internal
def _check_feeder():
    assert self.is_feeder[msg.sender], "oracle: not a feeder"


@internal
def _record(_market: uint256, _price: uint256, _updated_at: uint256):
    assert _price != 0, "oracle: zero price"
    assert _price <= MAX_PRICE, "oracle: price out of range"
    assert _updated_at <= MASK64, "oracle: timestamp out of range"
    head: uint256 = self._heads[_market]
    assert _updated_at >= (head >> 128) & MASK64, "oracle: time went back"
    if head != 0:
        opening: uint256 = self._opening[_market]
        if opening >> 128 != block.number:
            # the first write of this block: the block starts from the latest price
            opening = (block.number << 128) | (head & MAX_PRICE)
            self._opening[_market] = opening
        reference: uint256 = opening & MAX_PRICE
        move: uint256 = 0
        if _price > reference:
            move = _price - reference
        else:
            move = reference - _price
        assert move * WAD <= reference * self.max_price_jump, "oracle: price jump too large"
    # round ids start at 1 and count writes: 2**64 of them is out of reach
    round_id: uint256 = (head >> 192) + 1
    point: uint256 = (_updated_at << 128) | _price
    self._rounds[_market][round_id % HISTORY] = point
    self._heads[_market] = (round_id << 192) | point
    log IPriceOracle.PriceUpdated(
        market=_market, price=_price, updated_at=_updated_at, feeder=msg.sender, round_id=round_id
    )


@view
@internal
def _round_at(_market: uint256, _time: uint256) -> (uint256, uint256):
    """
    @dev The first round at or after `_time` and its word (0, 0 if none yet). Rounds are in
         time order, so it walks back from the newest while the round before still
         qualifies; that round must still be kept, or the answer is unknown.
    """
    head: uint256 = self._heads[_market]
    if head == 0 or (head >> 128) & MASK64 < _time:
        return 0, 0
    round_id: uint256 = head >> 192
    word: uint256 = head
    for i: uint256 in range(HISTORY):
        if round_id == 1:
            break
        assert i + 1 < HISTORY, "oracle: round expired"
        before: uint256 = self._rounds[_market][(round_id - 1) % HISTORY]
        if (before >> 128) & MASK64 < _time:
            break
        round_id -= 1
        word = before
    return round_id, word


@view
@internal
def _fresh(_point: uint256) -> uint256:
    """
    @dev The price of a round, reverting when it is older than `max_price_age`.
    """
    assert block.timestamp - ((_point >> 128) & MASK64) <= self.max_price_age, "oracle: stale price"
    return _point & MAX_PRICE


@internal
def _set_max_price_age(_max_price_age: uint256):
    assert _max_price_age != 0 and _max_price_age <= 86_400, "oracle: bad max_price_age"
    self.max_price_age = _max_price_age
    log IPriceOracle.MaxPriceAgeSet(max_price_age=_max_price_age)


@internal
def _set_max_price_jump(_max_price_jump: uint256):
    assert _max_price_jump >= WAD // 1000 and _max_price_jump <= WAD, "oracle: bad max_price_jump"
    self.max_price_jump = _max_price_jump
    log IPriceOracle.MaxPriceJumpSet(max_price_jump=_max_price_jump)
