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
@dev Pure bookkeeping (no module of its own is used): per market and owing side, the size
     still to close and sum(size * bankruptcy price), so that several bankruptcies share
     one size-weighted price.
"""

from ..interfaces import IMarginVault

WAD: constant(uint256) = 10**18
LONGS: constant(uint256) = 0   # the longs owe (a short went bankrupt)
SHORTS: constant(uint256) = 1  # the shorts owe (a long went bankrupt)


struct Pending:
    size: uint256       # base units (WAD) still to close on the owing side
    notional: uint256   # sum(size * bankruptcy price), WAD * WAD


pending: public(HashMap[uint256, HashMap[uint256, Pending]])


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
    self.pending[_market][side].size += size
    self.pending[_market][side].notional += size * price
    log IMarginVault.DeleverageBooked(market=_market, owing_side=side, size=size, price=price, recover=_recover)


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
        return
    self.pending[_market][_side] = Pending(size=p.size - _size, notional=p.notional - p.notional * _size // p.size)
