# pragma version ~=0.4.3
"""
@title PriceOracle
@notice Per-market USD prices (WAD) written by feeders. Every update must be positive,
        must not go back in time, and must not move more than `max_price_jump` from the
        previous price. Strict readers (`price`) revert once a price is older than
        `max_price_age`; `latest` never reverts, so health views keep working.
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
MAX_PRICE: constant(uint256) = 2**192 - 1


is_feeder: public(HashMap[address, bool])
max_price_age: public(uint256)
max_price_jump: public(uint256)
# price in the low 192 bits, updated_at in the high 64: one cold read per market
_points: HashMap[uint256, uint256]


@deploy
def __init__(_max_price_age: uint256, _max_price_jump: uint256):
    """
    @param _max_price_age Seconds after which a strict read reverts.
    @param _max_price_jump Largest move allowed in one update, WAD fraction (25% = 0.25e18).
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
    price: uint256 = 0
    updated_at: uint256 = 0
    price, updated_at = self._point(_market)
    assert price != 0, "oracle: no price"
    assert block.timestamp - updated_at <= self.max_price_age, "oracle: stale price"
    return price


@view
@external
def latest(_market: uint256) -> (uint256, uint256):
    """
    @notice `(price, updated_at)` of the latest update; `(0, 0)` if none. Never reverts.
    """
    return self._point(_market)


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
    previous: uint256 = 0
    previous_at: uint256 = 0
    previous, previous_at = self._point(_market)
    assert _updated_at >= previous_at, "oracle: time went back"
    if previous != 0:
        move: uint256 = 0
        if _price > previous:
            move = _price - previous
        else:
            move = previous - _price
        assert move * WAD <= previous * self.max_price_jump, "oracle: price jump too large"
    self._points[_market] = (_updated_at << 192) | _price
    log IPriceOracle.PriceUpdated(market=_market, price=_price, updated_at=_updated_at, feeder=msg.sender)


@view
@internal
def _point(_market: uint256) -> (uint256, uint256):
    word: uint256 = self._points[_market]
    return word & MAX_PRICE, word >> 192


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
