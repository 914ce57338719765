# pragma version ~=0.4.3
"""
@title positions
@notice Accounts, positions and margin (SPEC 3, 4, 7): collateral and the set of markets
        of each sub-account, positions, the fill price and realized PnL of a trade, the
        account's health (the one function that values an account), free collateral, and
        the settlement of funding into collateral.
@dev Every trade and every liquidation moves a position through `_move_position`, which
     keeps open interest and the aggregates behind pool_value exact.
"""

from ..interfaces import IMarginVault
from . import errors
from . import wad_math
from . import markets
from . import funding_index
from . import pool
from . import token_io
from . import adl

uses: markets
uses: funding_index
uses: pool
uses: token_io
uses: adl

# ------------------------------------------------------------------ constants

WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_MARKETS: constant(uint256) = 64
MAX_MARKETS_PER_ACCOUNT: constant(uint256) = 8
# Sizes and prices are packed into one slot (see _store_position): 128 bits each.
MAX_ABS_SIZE: constant(int256) = 2**120
MAX_PRICE: constant(uint256) = 2**128 - 1
SIZE_BIAS: constant(int256) = 2**127
COLLATERAL_BIAS: constant(int256) = 2**191
MASK60: constant(uint256) = 2**60 - 1
MASK80: constant(uint256) = 2**80 - 1
MASK128: constant(uint256) = 2**128 - 1
MASK192: constant(uint256) = 2**192 - 1

# ------------------------------------------------------------------ storage


struct StoredPosition:
    size_entry: uint256     # low 128 bits: size + 2**127, high 128 bits: entry price
    funding_index: int256


_positions: HashMap[address, HashMap[uint256, HashMap[uint256, StoredPosition]]]
# Per account: (collateral + 2**191) in the low 192 bits, the set of markets with a
# position (bit m = market m) in the high 64. 0 = empty account. A trade writes this one
# slot for both its fee/PnL and its market set.
_accounts: HashMap[address, HashMap[uint256, uint256]]


# ================================================================== trading


@internal
def _modify(_owner: address, _sub: uint256, _market: uint256, _size_delta: int256, _acceptable_price: uint256) -> (uint256, uint256):
    """
    @dev One trade of the account (SPEC 4, 7): fill at the strict price adjusted for skew,
         fee to the pool, realized PnL and funding settled into collateral; risk-increasing
         trades need an unpaused market, room under the caps and equity >= IM afterwards;
         reducing ones may not make a healthy account liquidatable.
    @return (fill price, fee in USD WAD)
    """
    if not (_size_delta != 0):
        errors._fail("vault: zero size")
    if not (_size_delta >= -MAX_ABS_SIZE and _size_delta <= MAX_ABS_SIZE):
        errors._fail("vault: size out of range")
    sizes: uint256 = markets._params[_market].sizes
    if not (sizes != 0):
        errors._fail("vault: unknown market")
    price: uint256 = markets._strict_price(_market)
    skew: int256 = markets._skew(_market)
    index: int256 = funding_index._accrue(_market, price, skew)
    trading: uint256 = markets._params[_market].trading

    pos: IMarginVault.Position = self._load_position(_owner, _sub, _market)
    size: int256 = pos.size + _size_delta
    increases_risk: bool = self._increases_risk(pos.size, size)
    # A settled market (SPEC 14) only closes and reduces, at its final price: no price
    # impact, no fee, so every position ends the same whoever closes it and when.
    settled: bool = markets._is_settled(_market)
    if settled and increases_risk:
        errors._fail("vault: market settled")
    healthy_before: bool = True
    if not increases_risk:
        h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
        healthy_before = h.equity >= convert(h.maintenance_margin, int256)

    fill: uint256 = price
    if not settled:
        fill = self._fill_price(price, skew, _size_delta, sizes & MASK128)
    if _size_delta > 0:
        if not (fill <= _acceptable_price):
            errors._fail("vault: fill above acceptable price")
    else:
        if not (fill >= _acceptable_price):
            errors._fail("vault: fill below acceptable price")
    fee: uint256 = 0
    if not settled:
        fee = wad_math._ceil_div(wad_math._ceil_div(wad_math._abs(_size_delta) * fill, WAD) * (trading & MASK60), WAD)

    funding_paid: int256 = wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)
    pnl: int256 = 0
    entry: uint256 = 0
    pnl, entry = self._trade_pnl_and_entry(pos.size, pos.entry_price, _size_delta, fill)
    if pnl > 0:
        pnl = self._capped_profit(pnl)

    oi: uint256 = self._move_position(_owner, _sub, _market, pos, size, entry, index)

    # money: everything the trader gains the pool pays, and the other way round
    delta: int256 = pnl + funding_paid - convert(fee, int256)
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = self._load_account(_owner, _sub)
    delta = pool._pay_trader(_owner, _sub, delta, convert(max(-collateral, 0), uint256))
    collateral += delta
    if pos.size == 0 or size == 0:
        mask ^= 1 << _market
    if mask == 0 and collateral < 0:
        # An underwater owner closed their last position: what they cannot pay is bad debt,
        # covered now, never left as negative collateral on an empty account (SPEC 11.6);
        # beyond the pool's loss cap, the other side of this market gives it back (ADL)
        adl._book(_market, pos.size, fill, pool._cover_bad_debt(_owner, _sub, convert(-collateral, uint256)))
        collateral = 0
    self._store_account(_owner, _sub, collateral, mask)

    if increases_risk:
        markets._check_not_paused(_market)
        max_open_interest: uint256 = sizes >> 128
        if size > 0:
            if not (oi & MASK128 <= max_open_interest):
                errors._fail("vault: open interest cap")
        else:
            if not (oi >> 128 <= max_open_interest):
                errors._fail("vault: open interest cap")
        if not (pool._pool_backs(skew + _size_delta, price, pool.pool_balance, trading)):
            errors._fail("vault: pool cannot back open interest")
        side_oi: uint256 = oi >> 128
        if size > 0:
            side_oi = oi & MASK128
        pool._check_trade_caps(_market, side_oi, price)
        if pos.size == 0:
            self._check_market_count(mask)
        h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
        if not (h.equity >= convert(h.initial_margin, int256)):
            errors._fail("vault: below initial margin")
    elif healthy_before:
        h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
        if not (h.equity >= convert(h.maintenance_margin, int256)):
            errors._fail("vault: trade would make account liquidatable")

    log IMarginVault.PositionModified(
        owner=_owner,
        sub=_sub,
        market=_market,
        size_delta=_size_delta,
        size=size,
        entry_price=entry,
        fill_price=fill,
        oracle_price=price,
        fee=fee,
        realized_pnl=pnl,
        funding=funding_paid,
        collateral=collateral,
    )
    return fill, fee


@view
@internal
def _open_size(_owner: address, _sub: uint256, _market: uint256) -> int256:
    size: int256 = self._load_position(_owner, _sub, _market).size
    if not (size != 0):
        errors._fail("vault: no position")
    return size


@pure
@internal
def _increases_risk(_old: int256, _new: int256) -> bool:
    # Growing |size| or flipping to the other side opens risk; shrinking does not.
    if _new == 0:
        return False
    if _old == 0:
        return True
    if (_old > 0) != (_new > 0):
        return True
    return wad_math._abs(_new) > wad_math._abs(_old)


@pure
@internal
def _trade_pnl_and_entry(_size: int256, _entry: uint256, _delta: int256, _fill: uint256) -> (int256, uint256):
    """
    @dev Realized PnL of the part that closes (floored: the trader never gains from
         rounding) and the entry price after the trade: unchanged on a reduce, the fill on
         a flip or open, the size-weighted average on an increase (rounded up for longs,
         down for shorts, against the trader).
    """
    new_size: int256 = _size + _delta
    if _size == 0:
        return 0, _fill
    if (_size > 0) == (_delta > 0):
        # increase on the same side
        total: uint256 = wad_math._abs(_size) * _entry + wad_math._abs(_delta) * _fill
        if _size > 0:
            return 0, wad_math._ceil_div(total, wad_math._abs(new_size))
        return 0, total // wad_math._abs(new_size)
    closed: int256 = _size
    if wad_math._abs(_delta) < wad_math._abs(_size):
        closed = -_delta
    pnl: int256 = wad_math._floor_div(closed * (convert(_fill, int256) - convert(_entry, int256)), IWAD)
    if new_size == 0:
        return pnl, 0
    if (new_size > 0) != (_size > 0):
        return pnl, _fill
    return pnl, _entry


@pure
@internal
def _fill_price(_price: uint256, _skew: int256, _delta: int256, _skew_scale: uint256) -> uint256:
    """
    @dev fill = P * (1 + (skew_before + skew_after) / (2 * skew_scale)), rounded up for a
         buy and down for a sell.
    """
    scale2: int256 = 2 * convert(_skew_scale, int256)
    numerator: int256 = convert(_price, int256) * (scale2 + 2 * _skew + _delta)
    if not (numerator > 0):
        errors._fail("vault: fill price not positive")
    fill: uint256 = 0
    if _delta > 0:
        fill = wad_math._ceil_div(convert(numerator, uint256), convert(scale2, uint256))
    else:
        fill = convert(numerator, uint256) // convert(scale2, uint256)
    if not (fill != 0 and fill <= MAX_PRICE):
        errors._fail("vault: fill price out of range")
    return fill


@pure
@internal
def _check_market_count(_mask: uint256):
    count: uint256 = 0
    mask: uint256 = _mask
    for m: uint256 in range(MAX_MARKETS):
        if mask == 0:
            break
        count += mask & 1
        mask = mask >> 1
    if not (count <= MAX_MARKETS_PER_ACCOUNT):
        errors._fail("vault: too many positions")


@internal
def _move_position(
    _owner: address, _sub: uint256, _market: uint256, _pos: IMarginVault.Position, _size: int256, _entry: uint256, _index: int256
) -> uint256:
    """
    @dev Stores the account's new position and books the change in the market's open
         interest and in the aggregates behind pool_value, all exact; returns the new open
         interest word (long | short << 128, each capped far below 2**128 by
         max_open_interest). Trades and liquidations both go through here.
    """
    oi: uint256 = markets._markets[_market].oi
    if _pos.size > 0:
        oi -= convert(_pos.size, uint256)
    elif _pos.size < 0:
        oi -= convert(-_pos.size, uint256) << 128
    if _size > 0:
        oi += convert(_size, uint256)
    elif _size < 0:
        oi += convert(-_size, uint256) << 128
    markets._markets[_market].oi = oi
    markets._markets[_market].entry_sum += _size * convert(_entry, int256) - _pos.size * convert(_pos.entry_price, int256)
    if _size > 0 or _pos.size > 0:
        # the longs' part (a short's trade leaves it alone); sizes are within 2**120 and
        # prices within 2**128, so both products fit
        markets._markets[_market].long_entry_sum = (
            markets._markets[_market].long_entry_sum
            + convert(max(_size, 0), uint256) * _entry
            - convert(max(_pos.size, 0), uint256) * _pos.entry_price
        )
    markets._markets[_market].funding_sum += _size * _index - _pos.size * _pos.funding_index
    self._store_position(_owner, _sub, _market, _size, _entry, _index)
    return oi


# ================================================================== collateral and funding


@internal
def _credit(_owner: address, _sub: uint256, _amount: uint256) -> int256:
    """
    @dev Adds `_amount` tokens' worth to the account's collateral; returns the collateral.
    """
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = self._load_account(_owner, _sub)
    collateral += token_io._to_wad(_amount)
    self._store_account(_owner, _sub, collateral, mask)
    return collateral


@internal
def _debit_free_collateral(_owner: address, _sub: uint256, _amount: uint256) -> int256:
    """
    @dev Settles the account's funding, then takes `_amount` tokens' worth of collateral
         out of it if it is free (see `_free_collateral`); returns the collateral left.
    """
    amount_wad: int256 = token_io._to_wad(_amount)
    self._settle_funding(_owner, _sub)
    h: IMarginVault.AccountHealth = self._health(_owner, _sub, True)
    if amount_wad > h.collateral:
        if amount_wad <= h.equity - convert(h.initial_margin, int256):
            errors._fail("vault: unrealized profit not withdrawable")
        errors._fail("vault: insufficient collateral")
    if not (amount_wad <= convert(self._free_collateral(h), int256)):
        errors._fail("vault: below initial margin")
    left: int256 = h.collateral - amount_wad
    self._store_account(_owner, _sub, left, self._load_account(_owner, _sub)[1])
    return left


@pure
@internal
def _free_collateral(_h: IMarginVault.AccountHealth) -> uint256:
    """
    @dev What may leave the account: min(collateral + funding, equity) - IM, never negative.
         Funding counts as settled (a withdrawal settles it first); unrealized PnL does not.
    """
    free: int256 = min(_h.collateral + _h.funding, _h.equity) - convert(_h.initial_margin, int256)
    if free <= 0:
        return 0
    return convert(free, uint256)


@internal
def _settle_funding(_owner: address, _sub: uint256) -> int256:
    """
    @dev Settles the account's accrued funding into its collateral, market by market (the
         pool takes the other side), and returns the collateral. Every margin move that
         takes collateral out calls it first, so what was received is withdrawable and
         what is owed is paid.
    """
    collateral: int256 = 0
    mask: uint256 = 0
    collateral, mask = self._load_account(_owner, _sub)
    rest: uint256 = mask
    settled: int256 = 0
    for m: uint256 in range(MAX_MARKETS):
        if rest == 0:
            break
        if rest & 1 == 1:
            settled += self._settle_position(_owner, _sub, m, markets._strict_price(m))[1]
        rest = rest >> 1
    if settled != 0:
        collateral += pool._pay_trader(_owner, _sub, settled, convert(max(-collateral, 0), uint256))
        self._store_account(_owner, _sub, collateral, mask)
    return collateral


@internal
def _settle_position(_owner: address, _sub: uint256, _market: uint256, _price: uint256) -> (IMarginVault.Position, int256):
    """
    @dev Accrues the market's funding, then settles what the position received (+) or owes
         (-) since its last settlement: returns the position with its new funding snapshot
         and that amount, which the caller books into collateral and the pool.
    """
    index: int256 = funding_index._accrue(_market, _price, markets._skew(_market))
    pos: IMarginVault.Position = self._load_position(_owner, _sub, _market)
    if index == pos.funding_index:
        return pos, 0
    amount: int256 = wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)
    markets._markets[_market].funding_sum += pos.size * (index - pos.funding_index)
    self._positions[_owner][_sub][_market].funding_index = index
    log IMarginVault.FundingSettled(owner=_owner, sub=_sub, market=_market, amount=amount, funding_index=index)
    pos.funding_index = index
    return pos, amount


# ================================================================== valuation


@view
@internal
def _health(_owner: address, _sub: uint256, _strict: bool) -> IMarginVault.AccountHealth:
    """
    @dev The one function that values an account (SPEC 7). `_strict` reads prices that
         revert when stale (trading, withdrawing); views use the latest price and never
         revert.
    """
    h: IMarginVault.AccountHealth = empty(IMarginVault.AccountHealth)
    mask: uint256 = 0
    h.collateral, mask = self._load_account(_owner, _sub)
    profit: int256 = 0
    for m: uint256 in range(MAX_MARKETS):
        if mask == 0:
            break
        if mask & 1 == 1:
            price: uint256 = markets._price(m, _strict)
            pos: IMarginVault.Position = self._load_position(_owner, _sub, m)
            rate: int256 = 0
            index: int256 = 0
            rate, index = funding_index._funding_now(m, price)
            pnl: int256 = wad_math._floor_div(pos.size * (convert(price, int256) - convert(pos.entry_price, int256)), IWAD)
            if pnl > 0:
                profit += pnl
            else:
                h.unrealized_pnl += pnl
            h.funding += wad_math._floor_div(-pos.size * (index - pos.funding_index), IWAD)
            notional: uint256 = wad_math._ceil_div(wad_math._abs(pos.size) * price, WAD)
            margin: uint256 = markets._params[m].margin
            min_margin: uint256 = margin >> 160
            h.initial_margin += wad_math._ceil_div(notional * WAD, margin & MASK80) + min_margin
            h.maintenance_margin += wad_math._ceil_div(notional * ((margin >> 80) & MASK80), WAD) + min_margin
            h.positions += 1
        mask = mask >> 1
    if profit > 0:
        # profit counts at the share the pool would pay (SPEC 14, pool._profit_ratio)
        h.unrealized_pnl += self._capped_profit(profit)
    h.equity = h.collateral + h.unrealized_pnl + h.funding
    return h


@view
@internal
def _capped_profit(_profit: int256) -> int256:
    """
    @dev `_profit` (> 0) at the share the pool pays (floored, in the pool's favour).
    """
    num: uint256 = 0
    den: uint256 = 0
    num, den = pool._profit_ratio()
    if num == den:
        return _profit
    return convert(convert(_profit, uint256) * num // den, int256)


# ================================================================== storage


@view
@internal
def _load_position(_owner: address, _sub: uint256, _market: uint256) -> IMarginVault.Position:
    stored: StoredPosition = self._positions[_owner][_sub][_market]
    if stored.size_entry == 0:
        return empty(IMarginVault.Position)
    return IMarginVault.Position(
        size=convert(stored.size_entry & MASK128, int256) - SIZE_BIAS,
        entry_price=stored.size_entry >> 128,
        funding_index=stored.funding_index,
    )


@internal
def _store_position(_owner: address, _sub: uint256, _market: uint256, _size: int256, _entry: uint256, _funding_index: int256):
    """
    @dev Size (biased to unsigned) and entry price share one slot: a first open writes two
         slots instead of three. An empty position is stored as zeros.
    """
    if _size == 0:
        self._positions[_owner][_sub][_market] = empty(StoredPosition)
        return
    if not (_size >= -MAX_ABS_SIZE and _size <= MAX_ABS_SIZE):
        errors._fail("vault: size out of range")
    self._positions[_owner][_sub][_market] = StoredPosition(
        size_entry=(_entry << 128) | convert(_size + SIZE_BIAS, uint256),
        funding_index=_funding_index,
    )


@view
@internal
def _load_account(_owner: address, _sub: uint256) -> (int256, uint256):
    word: uint256 = self._accounts[_owner][_sub]
    if word == 0:
        return 0, 0
    return convert(word & MASK192, int256) - COLLATERAL_BIAS, word >> 192


@internal
def _store_account(_owner: address, _sub: uint256, _collateral: int256, _mask: uint256):
    # keep pool.unpaid_losses the sum of every account's negative collateral
    old: int256 = self._load_account(_owner, _sub)[0]
    if old < 0 or _collateral < 0:
        # old's share is part of the sum, so adding first never underflows
        pool.unpaid_losses = pool.unpaid_losses + convert(max(-_collateral, 0), uint256) - convert(max(-old, 0), uint256)
    if _collateral == 0 and _mask == 0:
        self._accounts[_owner][_sub] = 0
        return
    if not (_collateral > -COLLATERAL_BIAS and _collateral < COLLATERAL_BIAS):
        errors._fail("vault: collateral out of range")
    self._accounts[_owner][_sub] = convert(_collateral + COLLATERAL_BIAS, uint256) | (_mask << 192)
