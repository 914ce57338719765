# pragma version ~=0.4.3
"""
@title adl
@notice Auto-deleveraging owed per market side (SPEC 14, the end of the loss waterfall): the
        part of a bankrupt account's shortfall beyond the insurance fund and the pool's loss
        cap, booked against the other side of each market where the account lost, as a size
        to close and the bankruptcy price to close it at. Closing that size of the other
        side's profitable positions at that price (VaultExtension.deleverage) takes back from
        them exactly what the pool advanced, whatever the price does in between: the pool
        bought the bankrupt position at the mark and holds it until then.
        What is owed expires ADL_EXPIRY after it was last booked: positions opened later
        had no part in the bankruptcy, so the pool keeps the rest as its loss. While any ADL
        can still be recovered, LP deposits wait (the recovery would go to shares bought at a
        value that does not count it).
@dev Pure bookkeeping (no module of its own is used): per market and owing side, the size
     still to close and sum(size * bankruptcy price), so that several bankruptcies share
     one size-weighted price.
"""

from ..interfaces import IMarginVault
from . import errors

WAD: constant(uint256) = 10**18
LONGS: constant(uint256) = 0   # the longs owe (a short went bankrupt)
SHORTS: constant(uint256) = 1  # the shorts owe (a long went bankrupt)
ADL_EXPIRY: constant(uint256) = 3600  # seconds after its last booking that ADL stays owed
MASK64: constant(uint256) = 2**64 - 1


struct Pending:
    size: uint256       # base units (WAD) still to close on the owing side
    notional: uint256   # sum(size * bankruptcy price), WAD * WAD
    booked_at: uint256  # the last booking's time; owed until ADL_EXPIRY after it


pending: public(HashMap[uint256, HashMap[uint256, Pending]])
# how many market sides owe ADL (size != 0, expired or not) | the last booking's expiry << 64:
# LP deposits wait while both are live
_owing: uint256


@internal
def _book(_market: uint256, _bankrupt_size: int256, _price: uint256, _recover: uint256):
    """
    @dev The bankrupt account's position of `_bankrupt_size` was closed at `_price` and
         `_recover` (USD, WAD) of its shortfall is to come back from the other side: that
         side closes |size| at the price where it gives up exactly `_recover` against
         `_price` (a short pays more than `_price` for a bankrupt long's size, a long
         receives less for a bankrupt short's). The price is rounded towards `_price` (the
         owing side is never asked for more) and kept above zero.
    """
    size: uint256 = convert(abs(_bankrupt_size), uint256)
    if size == 0 or _recover == 0:
        return
    per_unit: uint256 = _recover * WAD // size
    side: uint256 = SHORTS
    price: uint256 = _price + per_unit
    if _bankrupt_size < 0:
        side = LONGS
        price = max(_price, per_unit + 1) - per_unit
    p: Pending = self.pending[_market][side]
    owing: uint256 = self._owing & MASK64
    if p.size == 0:
        owing += 1
    elif not self._live(p):
        # what was owed before expired: the pool keeps it as its loss
        log IMarginVault.DeleverageExpired(market=_market, owing_side=side, size=p.size, price=self._price(_market, side))
        p = empty(Pending)
    self.pending[_market][side] = Pending(size=p.size + size, notional=p.notional + size * price, booked_at=block.timestamp)
    self._owing = owing | ((block.timestamp + ADL_EXPIRY) << 64)
    log IMarginVault.DeleverageBooked(market=_market, owing_side=side, size=size, price=price, recover=_recover)


@view
@internal
def _live(_p: Pending) -> bool:
    return _p.size != 0 and block.timestamp < _p.booked_at + ADL_EXPIRY


@view
@internal
def _owed(_market: uint256, _side: uint256) -> uint256:
    """
    @dev The size `_side` of `_market` still owes (0 once expired).
    """
    p: Pending = self.pending[_market][_side]
    if not self._live(p):
        return 0
    return p.size


@view
@internal
def _check_no_recovery_pending():
    """
    @dev LP deposits wait while ADL can still give the pool back what it advanced.
    """
    owing: uint256 = self._owing
    if not (owing & MASK64 == 0 or block.timestamp >= owing >> 64):
        errors._fail("vault: ADL recovery pending")


@view
@internal
def _price(_market: uint256, _side: uint256) -> uint256:
    """
    @dev The size-weighted bankruptcy price the owing side closes at (0: nothing owed),
         rounded against the owing side's favour by at most a wei per unit: down for the
         longs, up for the shorts.
    """
    p: Pending = self.pending[_market][_side]
    if p.size == 0:
        return 0
    if _side == LONGS:
        return p.notional // p.size
    return (p.notional + p.size - 1) // p.size


@internal
def _consume(_market: uint256, _side: uint256, _size: uint256):
    """
    @dev `_size` (at most what is pending) was closed: its share of the notional goes too.
    """
    p: Pending = self.pending[_market][_side]
    if _size == p.size:
        self.pending[_market][_side] = empty(Pending)
        # unsafe_sub: this side was counted when its first booking made its size non-zero
        self._owing = unsafe_sub(self._owing, 1)
        return
    self.pending[_market][_side] = Pending(size=p.size - _size, notional=p.notional - p.notional * _size // p.size, booked_at=p.booked_at)
