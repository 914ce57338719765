# pragma version ~=0.4.3
"""
@title funding_index
@notice The funding index (SPEC 6, the `FundingIndex` of SPEC 9, compiled into the
        MarginVault): accrual of each market's rate and index, lazily on every touch and
        on `poke`, in O(1) whatever the number of positions. The formula itself is
        modules/funding_math.vy (shared with the VaultLens); what a position owes or
        receives is settled in modules/positions.vy.
"""

from ..interfaces import IMarginVault
from . import funding_math
from . import markets

uses: markets

MASK68: constant(uint256) = 2**68 - 1
MASK128: constant(uint256) = 2**128 - 1


@view
@internal
def _funding_now(_market: uint256, _price: uint256) -> (int256, int256):
    """
    @dev Funding rate and index as of now, including time not yet accrued (a settled
         market's are frozen: rate 0, the index of its settlement).
    """
    rate: int256 = 0
    index: int256 = 0
    time: uint256 = 0
    rate, index, time = markets._load_funding(_market)
    if markets._is_settled(_market):
        return rate, index
    return self._advance(_market, rate, index, block.timestamp - time, _price, markets._skew(_market))


@view
@internal
def _advance(_market: uint256, _rate: int256, _index: int256, _dt: uint256, _price: uint256, _skew: int256) -> (int256, int256):
    """
    @dev The market's funding `_dt` seconds on (see modules/funding_math.vy).
    """
    return funding_math._advance(
        _rate, _index, _dt, _price, _skew, markets._params[_market].sizes & MASK128, (markets._params[_market].trading >> 120) & MASK68
    )


@internal
def _accrue(_market: uint256, _price: uint256, _skew: int256) -> int256:
    """
    @dev Brings the stored funding up to now (one slot read, one written) and returns the
         funding index. Emits FundingAccrued when time has passed.
    """
    rate: int256 = 0
    index: int256 = 0
    time: uint256 = 0
    rate, index, time = markets._load_funding(_market)
    if time == block.timestamp or markets._is_settled(_market):
        return index
    elapsed: uint256 = block.timestamp - time
    rate, index = self._advance(_market, rate, index, elapsed, _price, _skew)
    markets._markets[_market].funding = markets._pack_funding(rate, index, block.timestamp)
    log IMarginVault.FundingAccrued(
        market=_market,
        funding_rate=rate,
        funding_index=index,
        skew=_skew,
        price=_price,
        elapsed=elapsed,
    )
    return index
